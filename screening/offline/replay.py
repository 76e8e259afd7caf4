"""Replay an event file through the live graph, feature kernels and policy, in event-time order.

No gRPC and no second implementation: the events, encoded in bulk (``encode_events``), go in
large chunks through the screening core the server uses (``screening.core.Screener.screen``:
the graph pass, then the feature kernels and the compiled policy). Decisions come out as a
polars frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from features.layout import TXN_FEATURES, DecisionCol, EventCol, Kind, Memory, TxnFlag, join_reasons
from features.state import FeatureState
from graph.live import LiveGraph
from screening.config import Settings
from screening.core import Interner, Screener
from screening.engine import EngineSnapshot
from screening.errors import InputFileError
from screening.ledger import replayed
from screening.model import NEVER, WatchEntry
from screening.offline.events import EncodedEvents, encode_events, validate_events
from screening.offline.schema import KIND_CALL, KIND_TXN
from screening.policy import ACTION_NAMES, CALL_ACTION_NAMES, Policy

__all__ = ["DECISION_SCHEMA", "ReplayResult", "read_registry", "read_watchlist", "replay",
           "replay_snapshot"]

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.UInt32(),  # row of the event in the input file
    "event_id": pl.String(),
    "kind": pl.String(),
    "event_time": pl.Datetime("ms", "UTC"),
    "action": pl.String(),
    "reason_codes": pl.List(pl.String()),
    "reason_bits": pl.Int64(),  # rules 0..62 (bit i: rule i)
    "reason_bits_high": pl.Int64(),  # rules 63.. (bit i: rule 63 + i)
    "risk_score": pl.Int32(),
    "large_value": pl.Boolean(),
    "suspicious": pl.Boolean(),
    "notify_police": pl.Boolean(),
    "duplicate": pl.Boolean(),
    "amount_fen": pl.Int64(),
    "policy_version": pl.String(),
}


@dataclass(frozen=True)
class ReplayResult:
    decisions: pl.DataFrame
    encoded: EncodedEvents
    kernel_seconds: float
    total_seconds: float
    # the graph after the replay (None when [graph] enabled = false); edge refs are event rows
    graph: LiveGraph | None = None
    # float64[n, N_TXN_FEATURE] per encoded event, when replay(keep_features=True)
    features: np.ndarray | None = None
    graph_seconds: float = 0.0
    # the feature state after the replay (what a server warmed from this history starts with)
    state: FeatureState | None = None

    @property
    def events_per_second(self) -> float:
        """Throughput of the feature and policy kernels (graph pass excluded), on one core."""
        n = self.encoded.events.shape[0]
        busy = self.kernel_seconds - self.graph_seconds
        return n / busy if busy > 0 else float("inf")

    @property
    def graph_events_per_second(self) -> float:
        """Throughput of the graph pass (edges and detectors), on one core."""
        n = self.encoded.events.shape[0]
        return n / self.graph_seconds if self.graph_seconds > 0 else float("inf")


def read_watchlist(path: Path) -> pl.DataFrame:
    """CSV or Parquet with columns kind (account|phone|device), value, [expires_at]."""
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    for col in ("kind", "value"):
        if col not in frame.columns:
            raise InputFileError(f"{path}: missing column {col}")
    bad = frame.filter(~pl.col("kind").is_in(["account", "phone", "device"]))
    if bad.height:
        raise InputFileError(f"{path}: column kind: must be account, phone or device "
                             f"(got {bad.get_column('kind')[0]!r})")
    return frame


def _apply_watchlist(core: Screener, enc: EncodedEvents, watch: pl.DataFrame) -> None:
    from screening.offline.events import normalise_phones

    expires = np.full(watch.height, NEVER, dtype=np.int64)
    if "expires_at" in watch.columns:
        when = watch.get_column("expires_at")
        if when.dtype == pl.String:
            when = when.str.to_datetime(time_unit="ms", time_zone="UTC", strict=True)
        expires = when.dt.epoch("ms").fill_null(NEVER).to_numpy()
    kinds = watch.get_column("kind").to_list()
    values = watch.get_column("value")
    phones = normalise_phones(values).to_list()
    lookups = {"account": (1, core.accounts), "phone": (2, core.phones), "device": (3, core.devices)}
    for i, (kind, value) in enumerate(zip(kinds, values.to_list(), strict=True)):
        entity, ids = lookups[kind]
        idx = ids.get(phones[i] if kind == "phone" else value)
        if idx is not None:
            core.set_watch(entity, idx, int(expires[i]))


def read_registry(path: Path) -> pl.DataFrame:
    """An account registry file (Parquet or CSV, :data:`REGISTRY_SCHEMA`), typed and checked."""
    from screening.offline.events import read_table, validate_registry

    return validate_registry(read_table(path), str(path))


def registry_profiles(registry: pl.DataFrame) -> list[tuple[str, int | None, int | None, int, str]]:
    """(account, opened ms, last active ms, profile bits, phone) per registry row, as the live
    ``UpsertAccounts`` records them."""
    from screening.offline.events import normalise_phones

    day = 86_400_000
    opened = registry.get_column("opened_date").cast(pl.Int64) * day
    active = registry.get_column("last_active_date").cast(pl.Int64) * day
    bits = (Memory.PROFILE_KNOWN
            + registry.get_column("merchant_category").fill_null("").str.len_chars().gt(0)
            .cast(pl.Int64) * Memory.PROFILE_MERCHANT
            + registry.get_column("payroll").fill_null(False).cast(pl.Int64) * Memory.PROFILE_PAYROLL
            + (registry.get_column("party_type") == "organisation").fill_null(False).cast(pl.Int64)
            * Memory.PROFILE_ORGANISATION)
    phones = normalise_phones(registry.get_column("phone")).fill_null("")
    return list(zip(registry.get_column("account").to_list(), opened.to_list(), active.to_list(),
                    bits.to_list(), phones.to_list(), strict=True))


def _apply_registry(state: FeatureState, enc: EncodedEvents, registry: pl.DataFrame) -> None:
    """The registry's profiles into ``state``, and into ``enc.events`` the flags of the
    transactions that name another institution for a party than its entry's owner (as the
    live encoder sets them: ``Screener._foreign``)."""
    enc.events[:, EventCol.FLAGS] |= _foreign_flags(enc.frame, registry)
    accounts = {v: i for i, v in enumerate(enc.accounts.to_list())}
    phones = {v: i for i, v in enumerate(enc.phones.to_list())}
    for name, opened, active, bits, phone in registry_profiles(registry):
        idx = accounts.get(name)
        if idx is not None:  # an account with no events changes no decision
            state.set_account_profile(idx, opened_ms=opened, last_active_ms=active, profile=bits,
                                      phone=phones.get(phone, -1))


def _foreign_flags(frame: pl.DataFrame, registry: pl.DataFrame) -> np.ndarray:
    """``TxnFlag.PAYER_FOREIGN`` / ``PAYEE_FOREIGN`` per row of ``frame`` (0 for a call): the
    transaction names an institution for the party, and the registry's ``institution`` (the
    entry's owner) is another one."""
    owners = registry.select("account", pl.col("institution").alias("_owner"))
    is_txn = frame.get_column("kind") == KIND_TXN
    out = np.zeros(frame.height, dtype=np.int64)
    for side, flag in (("payer", int(TxnFlag.PAYER_FOREIGN)), ("payee", int(TxnFlag.PAYEE_FOREIGN))):
        named = (frame.select(pl.col(f"{side}_account").alias("account"),
                              pl.col(f"{side}_institution").fill_null("").alias("_named"))
                 .join(owners, on="account", how="left", maintain_order="left"))
        foreign = ((pl.col("_named") != "") & pl.col("_owner").is_not_null()
                   & (pl.col("_owner") != pl.col("_named")))
        hit = named.select(foreign.fill_null(False)).to_series() & is_txn
        out |= hit.to_numpy().astype(np.int64) * flag
    return out


def _reason_codes(low: np.ndarray, high: np.ndarray, is_call: np.ndarray, policy: Policy) -> pl.Series:
    """Reason codes per row; few distinct (reasons, kind) keys occur, so map those once."""
    keys = pl.DataFrame({"_lo": low, "_hi": high, "_call": is_call})
    uniq = keys.unique()
    codes = [[r.code for r in policy.fired(join_reasons(lo, hi), calls=call)]
             for lo, hi, call in uniq.iter_rows()]
    table = uniq.with_columns(pl.Series("reason_codes", codes, dtype=pl.List(pl.String)))
    return (keys.join(table, on=["_lo", "_hi", "_call"], how="left", maintain_order="left")
            .get_column("reason_codes"))


def replay(frame: pl.DataFrame, policy: Policy, settings: Settings, *, origin: str = "events",
           watchlist: pl.DataFrame | None = None, chunk_size: int = 1 << 16,
           progress: Callable[[int], None] | None = None,
           keep_features: bool = False, registry: pl.DataFrame | None = None) -> ReplayResult:
    """Validate, encode and decide every event; ``progress(n)`` is called after each chunk."""
    t0 = time.perf_counter()
    validated = validate_events(frame, settings, origin)
    enc = encode_events(validated, policy, settings)
    n = enc.events.shape[0]
    state = FeatureState.create(max(enc.n_accounts, 1), max(enc.n_phones, 1),
                                max(enc.n_devices, 1), pairs=1 << 16)
    gs = settings.graph
    graph = None
    if gs.enabled:
        graph = LiveGraph(nodes=3 * max(enc.n_accounts, enc.n_phones, enc.n_devices, 1),
                          edges=min(max(3 * n, 16), gs.initial_edges), max_edges=gs.max_edges)
        chunk_size = max(1, min(chunk_size, gs.max_edges // 8))
    # every id of the file is interned up front (``encode_events``), in the order of its codes
    core = Screener(state=state, graph=graph, graph_params=gs.params().array(),
                    graph_expiry_ms=gs.expiry_ms,
                    accounts=Interner.from_names(enc.accounts.to_list()),
                    phones=Interner.from_names(enc.phones.to_list()),
                    devices=Interner.from_names(enc.devices.to_list()))
    if watchlist is not None:
        _apply_watchlist(core, enc, watchlist)
    if registry is not None:
        _apply_registry(state, enc, registry)
    dec = np.zeros((n, DecisionCol.N), dtype=np.int64)
    feats = np.zeros((n, len(TXN_FEATURES)), dtype=np.float64) if keep_features else None
    kernel = graph_s = 0.0
    for start in range(0, n, chunk_size):
        chunk = enc.events[start:start + chunk_size]
        stop = start + chunk.shape[0]
        # the decision numbers are the event rows (the graph's edges refer to them)
        done = core.screen(chunk, np.arange(start, stop, dtype=np.int64), policy,
                           keep_features=keep_features, all_features=keep_features)
        dec[start:stop] = done.decisions
        if feats is not None:
            feats[start:stop] = done.features
        kernel += done.kernel_seconds
        graph_s += done.graph_seconds
        if progress is not None:
            progress(chunk.shape[0])
    decisions = _decisions_frame(enc, dec, policy)
    return ReplayResult(decisions, enc, kernel, time.perf_counter() - t0, graph=graph,
                        features=feats, graph_seconds=graph_s, state=state)


def _decisions_frame(enc: EncodedEvents, dec: np.ndarray, policy: Policy) -> pl.DataFrame:
    df = enc.frame
    is_call = df.get_column("kind") == KIND_CALL
    actions = pl.Series(dec[:, DecisionCol.ACTION])
    txn_names = actions.replace_strict(dict(ACTION_NAMES), default="?", return_dtype=pl.String)
    call_names = actions.replace_strict(dict(CALL_ACTION_NAMES), default="?", return_dtype=pl.String)
    flags = dec[:, DecisionCol.FLAGS]
    out = pl.DataFrame({
        "row": df.get_column("_row"),
        "event_id": df.get_column("event_id"),
        "kind": df.get_column("kind"),
        "event_time": df.get_column("event_time"),
        "action": pl.select(pl.when(is_call).then(call_names).otherwise(txn_names)).to_series(),
        "_bits": dec[:, DecisionCol.REASONS],
        "_is_call": is_call,
        "risk_score": dec[:, DecisionCol.SCORE].astype(np.int32),
        "large_value": (flags & 1) > 0,
        "suspicious": (flags & 2) > 0,
        "notify_police": (flags & 4) > 0,
        "duplicate": np.zeros(len(flags), dtype=bool),
        "amount_fen": np.where(is_call.to_numpy(), 0, enc.events[:, EventCol.AMOUNT]),
    })
    out = out.with_columns(
        _reason_codes(dec[:, DecisionCol.REASONS], dec[:, DecisionCol.REASONS_HIGH],
                      is_call.to_numpy(), policy),
        pl.col("_bits").alias("reason_bits"),
        pl.Series("reason_bits_high", dec[:, DecisionCol.REASONS_HIGH]),
        pl.lit(policy.version, dtype=pl.String).alias("policy_version"),
    ).drop("_bits", "_is_call")
    if enc.duplicates.height:
        dups = (enc.duplicates.rename({"_row": "row"}).join(out.drop("row"), on="event_id", how="left")
                .with_columns(pl.lit(True).alias("duplicate")))
        out = pl.concat([out, dups.select(out.columns)])
    return out.select(list(DECISION_SCHEMA)).cast(DECISION_SCHEMA)  # type: ignore[arg-type]



def replay_snapshot(result: ReplayResult, policy: Policy, settings: Settings,
                    watchlist: Sequence[WatchEntry] = ()) -> EngineSnapshot:
    """The state a replay ends with, as a checkpoint a server restores (start warm): features,
    graph, interned ids, the watchlist and the report ledger of the last [ledger] days; no
    idempotency memory and no calls (history is not screened again). Decisions the server
    makes after it are numbered after the replayed events, which the graph's edges and the
    ledger's rows refer to."""
    if result.state is None:
        raise ValueError("the replay kept no state")
    enc = result.encoded
    state = result.state
    rows = {"accounts": enc.n_accounts, "phones": enc.n_phones, "devices": enc.n_devices}
    arrays: dict[str, np.ndarray] = {}
    for name, arr in state.arrays().items():
        n = rows.get(name.partition(".")[0])
        arrays[f"features.{name}"] = np.ascontiguousarray(arr if n is None else arr[:n])
    width = settings.state.recent_decisions_per_account
    arrays["recent"] = np.full((enc.n_accounts, width), -1, dtype=np.int64)
    arrays["recent_pos"] = np.zeros(enc.n_accounts, dtype=np.int64)
    caps = {"accounts": state.accounts.capacity, "phones": state.phones.capacity,
            "devices": int(state.devices.shape[0]), "pairs": state.pair_capacity,
            "recent_width": width}
    graph = result.graph
    if graph is not None:
        used = min(graph.node_capacity, 3 * max(*rows.values(), 1))
        edges = graph.edge_count
        for name, arr in graph.arrays().items():
            n = used if name in ("n32", "watch") else None
            if name in ("e32", "e64", "ekind"):
                n = edges
            arrays[f"graph.{name}"] = np.ascontiguousarray(arr if n is None else arr[:n])
        caps.update(graph_nodes=graph.node_capacity, graph_edges=graph.edge_capacity)
    is_txn = np.flatnonzero(enc.events[:, EventCol.KIND] == Kind.TXN)
    txn_events = enc.events[is_txn].copy()
    txn_events[:, EventCol.KIND] = is_txn  # the decision numbers: event rows, as the graph's refs
    ledger = replayed(txn_events, enc.frame.filter(pl.col("kind") == KIND_TXN),
                      tz_offset_hours=policy.params.timezone_offset_hours,
                      days=settings.ledger.days)
    return EngineSnapshot(
        created_ms=time.time_ns() // 1_000_000,
        policy_version=policy.version,
        arrays=arrays,
        capacities=caps,
        accounts=enc.accounts.to_list(),
        phones=enc.phones.to_list(),
        devices=enc.devices.to_list(),
        decisions=[],
        next_seq=int(enc.events.shape[0]),
        calls=[],
        watch=list(watchlist),
        journal_seq=0,
        ledger=ledger,
    )
