"""Partitioning by account, simulated on the synthetic stream: `python -m bench.partition`.

Generates a labelled stream with ``screening synth`` (``--events``, default about 1 M), assigns
every account to one of P partitions by a hash of its id (phone numbers and devices by a hash
of their own id, or co-located with the account that uses them), and counts, per event, what a
decision made in the payer's partition would need from other partitions:

* the payee's few state fields the policy reads (and the payee's half of the update: a second
  message), the payer's and the payee's phone call state, the risky mark of the number that
  last called the payer, the callee's half of a call;
* the graph detectors' walks, traced on the plain-Python twin of ``graph._kernels``
  (``tests/graph/reference.py``, held equal to the kernels by the graph tests) built from the
  same events: every adjacency list a detector reads, the node it belongs to, the entries read
  and the search level it was reached at; a sample of transfers (``--graph-sample``) is traced,
  every event's edges are added;
* decision memory: where a new suspected mule's money went in the day before (the accounts its
  suspicion follows to) and whether they live elsewhere, from the decisions of a replay of the
  same stream through the shipped policy (``--no-replay`` skips it);
* bytes exchanged per decision, and the round trips that adds, sequential (one per remote read)
  and pipelined (one per search level that has a remote read), priced at a Redis round trip
  measured in the same run (a ``redis-server`` started on a free port: GET, MGET, pipelines).

Beside them: what one full replica of the graph costs (edges added with the detectors off), and
how soon after money arrives accounts pay out (the log lag the payee's half may have).

Pure computation plus the Redis timing; run from the repository root (the twin is imported from
``tests/``). Figures to ``bench/results/partition-<seed>.json``; ``--table`` prints the markdown
tables of ``docs/scale-out.md`` from such a file::

    python -m bench.partition --seed 1 --events 1000000 --partitions 4,16,64
    python -m bench.partition --table bench/results/partition-1.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench._inproc import git_commit, git_dirty
from features.layout import CALL_FEATURES, REASON_WORD, TXN_FEATURES, EventCol, Kind, Mark
from graph import _kernels as gk
from screening.config import Settings, load_settings
from screening.offline.events import EncodedEvents, encode_events, validate_events
from screening.offline.memory import for_batch_jobs
from screening.offline.progress import progress
from screening.offline.synth import SynthConfig, generate
from screening.policy import Policy, load_policy

__all__ = [
    "ENTRY_BYTES",
    "FIELD_BYTES",
    "KEY_BYTES",
    "UPDATE_BYTES",
    "Placement",
    "Trace",
    "classify_reads",
    "cross_share",
    "edge_ingest",
    "format_detectors",
    "format_table",
    "forward_gaps",
    "last_callers",
    "main",
    "measure_redis",
    "partition_of",
    "simulate",
    "stable_hash",
    "trace_graph",
]

RESULTS = Path(__file__).resolve().parent / "results"

# Sizes on the wire, stated once (the doc repeats them): a key is a dense int64 id; a field a
# state cell (int64 or float64; a window read is one sum computed where the buckets are); a
# graph list entry the other end (int32), time and amount (int64 each) and the edge kind (int8);
# the payee's half of an event is the kernel's event row (N_EV int64) plus the decision's marks.
KEY_BYTES = 8
FIELD_BYTES = 8
ENTRY_BYTES = 4 + 8 + 8 + 1
UPDATE_BYTES = 8 * EventCol.N + 8

# Where the state behind each feature the policy may read lives, when events go to the payer's
# partition. Everything not named here is the payer's own row, the event itself, a pair kept
# at the payer (relationships recorded at both ends), the replicated watchlist or the graph.
_EVENT = {"amount", "is_cash", "is_cross_border", "channel", "memo_investment", "memo_fraud_words",
          "payer_is_person", "payee_is_person", "payer_is_terminal", "payee_is_terminal",
          "near_reporting_line"}
_REPLICATED = {"payer_watchlisted", "payee_watchlisted", "device_watchlisted",
               "payer_phone_watchlisted", "observed_days"}
_PAIR = {"first_time_payee", "payee_paid_payer_before", "payee_stopped_for_payer",
         "payee_warned_for_payer"}
_PAYER_PHONE = {"risky_call_recent", "risky_call_minutes_ago", "risky_call_caller_watchlisted",
                "risky_call_score", "payer_on_call", "payer_on_call_unknown_caller",
                "payer_on_call_risky", "payer_last_caller_risky", "payer_last_call_ended_minutes",
                "payer_last_call_talk_seconds", "payer_last_call_risky", "payee_phone_known_contact",
                "payer_talks_with_payee"}
_PAYEE_PHONE = {"payee_phone_risky"}
# what decision memory reads of the payee to mark it (``_mule_ok``, ``_cleared``), whatever the
# rules read
_PAYEE_MEMORY = {"payee_in_distinct_7d", "payee_is_merchant", "payee_cleared"}
_CALLEE = {"callee_calls_in_24h"}

DETECTORS = ("fan", "scatter_gather", "gather_scatter", "cycle", "ponzi", "fee_tree", "chain",
             "proximity")
_DET = {name: i for i, name in enumerate(DETECTORS)}
# which detector computes each graph feature (a detector no rule reads could be skipped)
_GRAPH_FEATURE_DETECTOR = {
    "graph_payer_fan_out": "fan", "graph_payer_fan_in": "fan", "graph_payee_fan_in": "fan",
    "graph_payee_fan_out": "fan", "graph_scatter_gather": "scatter_gather",
    "graph_gather_scatter": "gather_scatter", "graph_cycle_length": "cycle",
    "graph_cycle_kept_ratio": "cycle", "graph_chain_hops": "chain",
    "graph_ponzi_small_payers": "ponzi", "graph_ponzi_repaid": "ponzi",
    "graph_ponzi_unrelated_repaid": "ponzi", "graph_payer_watch_hops": "proximity",
    "graph_payee_watch_hops": "proximity", "graph_fee_same_amount_payers": "fee_tree",
    "graph_fee_payee_paid_same": "fee_tree", "graph_fee_upline_share": "fee_tree",
}


# ----------------------------------------------------------------------------- placement
def stable_hash(ids: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each id that every process and every run agree on (BLAKE2b, 8 bytes)."""
    out = np.empty(len(ids), dtype=np.uint64)
    for i, s in enumerate(ids):
        out[i] = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
    return out


def partition_of(hashes: np.ndarray, partitions: int) -> np.ndarray:
    """Partition (0..partitions-1) of each hashed id."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (hashes % np.uint64(partitions)).astype(np.int64)


@dataclass(frozen=True)
class Placement:
    """Hashes of the three id spaces and, for co-location, the account each phone or device
    follows (-1: none seen using it; then its own hash places it)."""

    accounts: np.ndarray
    phones: np.ndarray
    devices: np.ndarray
    phone_owner: np.ndarray
    device_owner: np.ndarray

    @classmethod
    def of(cls, enc: EncodedEvents) -> Placement:
        ev = enc.events
        txn = ev[:, EventCol.KIND] == Kind.TXN
        return cls(stable_hash(enc.accounts.to_list()), stable_hash(enc.phones.to_list()),
                   stable_hash(enc.devices.to_list()),
                   _first_user(ev[txn, EventCol.C], ev[txn, EventCol.A], enc.n_phones),
                   _first_user(ev[txn, EventCol.D], ev[txn, EventCol.A], enc.n_devices))

    def parts(self, partitions: int, colocate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(account, phone, device) -> partition; with ``colocate`` a phone or device goes to the
        partition of the first account seen using it."""
        acc, ph, dv = (partition_of(_one_at_least(h), partitions)
                       for h in (self.accounts, self.phones, self.devices))
        if colocate:
            for table, owner in ((ph, self.phone_owner), (dv, self.device_owner)):
                m = owner >= 0
                table[:owner.size][m] = acc[owner[m]]
        return acc, ph, dv


def _one_at_least(hashes: np.ndarray) -> np.ndarray:
    """Hashes, or one dummy when there are none (index 0 stays valid for masked-out rows)."""
    return hashes if hashes.size else np.zeros(1, dtype=np.uint64)


def _first_user(ids: np.ndarray, users: np.ndarray, n: int) -> np.ndarray:
    owner = np.full(n, -1, dtype=np.int64)
    seen = ids >= 0
    uniq, first = np.unique(ids[seen], return_index=True)
    owner[uniq] = users[seen][first]
    return owner


def cross_share(payer_part: np.ndarray, payee_part: np.ndarray) -> float:
    """Share of pairs whose two ends are in different partitions (0 for no pairs)."""
    if payer_part.size == 0:
        return 0.0
    return float(np.mean(payer_part != payee_part))


def classify_reads(policy: Policy) -> dict[str, list[str]]:
    """The features the policy reads, by where their state lives when events are routed to the
    payer's partition (``payee``: the payee's row; ``payer_phone`` / ``payee_phone``: those
    numbers' call state; ``graph``; ``local``: payer row, event, pairs, replicated watchlist)."""
    reads = [TXN_FEATURES[i] for i in np.flatnonzero(policy.txn_table.reads)]
    out: dict[str, list[str]] = {"payee": [], "payer_phone": [], "payee_phone": [], "graph": [],
                                 "local": [], "callee": []}
    for name in reads:
        if name.startswith("graph_"):
            out["graph"].append(name)
        elif name in _PAYER_PHONE:
            out["payer_phone"].append(name)
        elif name in _PAYEE_PHONE:
            out["payee_phone"].append(name)
        elif name in _EVENT or name in _REPLICATED or name in _PAIR:
            out["local"].append(name)
        elif name.startswith("payee_"):
            out["payee"].append(name)
        else:
            out["local"].append(name)
    for name in sorted(_PAYEE_MEMORY - set(out["payee"])):
        out["payee"].append(name)  # decision memory reads these to mark the payee
    call_reads = [CALL_FEATURES[i] for i in np.flatnonzero(policy.call_table.reads)]
    out["callee"] = [n for n in call_reads if n in _CALLEE]
    return out


# ----------------------------------------------------------------------------- graph walks
@dataclass
class Trace:
    """Every adjacency-list read of the traced transfers, as columns: the transfer (index into
    the events), detector, node, list entries read, search level (0: payer or payee), and
    whether it was a flag read (the proximity search's "near a listed node" count) rather than
    a list scan."""

    event: list[int] = field(default_factory=list)
    detector: list[int] = field(default_factory=list)
    node: list[int] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)
    level: list[int] = field(default_factory=list)
    flag: list[int] = field(default_factory=list)
    traced: list[int] = field(default_factory=list)  # every traced transfer, reads or none
    features: list[list[float]] = field(default_factory=list)  # the detectors' answers to each

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.int64)
                for name in ("event", "detector", "node", "entries", "level", "flag", "traced")}


def _traced_graph_class() -> type:
    """A subclass of the twin that records its walks; lists are kept oldest first and walked
    from the end (newest first, as in the kernels) so that appending is O(1)."""
    ref = importlib.import_module("tests.graph.reference")
    base: type = ref.RefGraph
    edge: type = ref.Edge

    class TracedGraph(base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.trace: Trace | None = None
            self.event = -1
            self.det = 0
            self.level: dict[int, int] = {}

        def add(self, src: int, dst: int, ts: int, amount: int, kind: int, ref_: int) -> Any:
            e = edge(src, dst, ts, amount, kind, ref_)
            for lst in (self.out.setdefault(src, []), self.inn.setdefault(dst, [])):
                lst.append(e)  # ascending time, ties: later arrival later
                i = len(lst) - 1
                while i > 0 and lst[i - 1].ts > ts:
                    lst[i - 1], lst[i] = lst[i], lst[i - 1]
                    i -= 1
            return e

        def walk(self, u: int, side: int, lo: int, hi: int, bud: Any) -> Iterator[Any]:
            lst = (self.out if side == 0 else self.inn).get(u, ())
            det, lvl, n = self.det, self.level.get(u, 0), 0
            level = self.level
            try:
                for j in range(len(lst) - 1, -1, -1):
                    if not bud.spend():
                        return
                    n += 1
                    e = lst[j]
                    if e.ts < lo:
                        return
                    if e.ts <= hi:
                        v = e.dst if side == 0 else e.src
                        if v not in level:
                            level[v] = lvl + 1
                        yield e
            finally:
                self._record(det, u, n, lvl, 0)

        def _record(self, det: int, u: int, n: int, lvl: int, flag: int) -> None:
            t = self.trace
            if t is not None:
                t.event.append(self.event)
                t.detector.append(det)
                t.node.append(u)
                t.entries.append(n)
                t.level.append(lvl)
                t.flag.append(flag)

        def near_listed(self, u: int) -> bool:
            self._record(self.det, u, 1, self.level.get(u, 0), 1)
            return bool(self.watch) and bool(super().near_listed(u))  # no list: same answer

        def detect(self, a: int, b: int, t: int, x: int, gp: list[int]) -> list[float]:
            self.level = {a: 0, b: 0}
            self.det = _DET["fan"]
            return list(super().detect(a, b, t, x, gp))

        def scatter_gather(self, *args: Any) -> Any:
            self.det = _DET["scatter_gather"]
            try:
                return super().scatter_gather(*args)
            finally:
                self.det = _DET["gather_scatter"]  # detect's next collects are gather-scatter

        def cycle(self, *args: Any) -> Any:
            self.det = _DET["cycle"]
            return super().cycle(*args)

        def ponzi(self, *args: Any) -> Any:
            self.det = _DET["ponzi"]
            return super().ponzi(*args)

        def fee_tree(self, *args: Any) -> Any:
            self.det = _DET["fee_tree"]
            return super().fee_tree(*args)

        def chain(self, *args: Any) -> Any:
            self.det = _DET["chain"]
            return super().chain(*args)

        def proximity(self, *args: Any) -> Any:
            self.det = _DET["proximity"]
            return super().proximity(*args)

    return TracedGraph


def trace_graph(events: np.ndarray, gp: np.ndarray, sample: np.ndarray, *,
                tick: Callable[[int], None] | None = None) -> Trace:
    """Add every event's edges to the traced twin in order and run the detectors on the
    transfers where ``sample`` (bool per event) is set, recording their walks."""
    g = _traced_graph_class()()
    params = [int(v) for v in gp]
    trace = Trace()
    rows = events.tolist()
    for i, row in enumerate(rows):
        ts = row[gk.EV_TS]
        if row[gk.EV_KIND] == gk.KIND_TXN:
            a = row[gk.EV_A] * 3 + gk.NK_ACCOUNT
            b = row[gk.EV_B] * 3 + gk.NK_ACCOUNT
            g.name_parties(a, b, row[gk.EV_FLAGS])
            g.add(a, b, ts, row[gk.EV_AMOUNT], gk.K_TRANSFER, i)
            if row[gk.EV_C] >= 0:
                g.link(a, row[gk.EV_C] * 3 + gk.NK_PHONE, ts, gk.K_LINK_PHONE,
                       params[gk.G_LINK_REFRESH], i)
            if row[gk.EV_D] >= 0:
                g.link(a, row[gk.EV_D] * 3 + gk.NK_DEVICE, ts, gk.K_LINK_DEVICE,
                       params[gk.G_LINK_REFRESH], i)
            if sample[i]:
                g.trace, g.event = trace, i
                trace.traced.append(i)
                trace.features.append(g.detect(a, b, ts, row[gk.EV_AMOUNT], params))
                g.trace = None
        elif row[gk.EV_KIND] == gk.KIND_CALL and row[gk.EV_FLAGS] & gk.CF_NEW:
            g.add(row[gk.EV_A] * 3 + gk.NK_PHONE, row[gk.EV_B] * 3 + gk.NK_PHONE, ts,
                  row[gk.EV_AMOUNT], gk.K_CALL, i)
        if tick is not None and (i + 1) % 65_536 == 0:
            tick(65_536)
    if tick is not None:
        tick(len(rows) % 65_536)
    return trace


# ----------------------------------------------------------------------------- counting
def _node_parts(nodes: np.ndarray, acc: np.ndarray, ph: np.ndarray, dv: np.ndarray) -> np.ndarray:
    kind = nodes % 3
    idx = nodes // 3
    out = np.empty(nodes.shape, dtype=np.int64)
    for k, table in ((gk.NK_ACCOUNT, acc), (gk.NK_PHONE, ph), (gk.NK_DEVICE, dv)):
        m = kind == k
        out[m] = table[idx[m]]
    return out


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return {"mean": round(float(values.mean()), 4), "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max())}


def _graph_counts(tr: dict[str, np.ndarray], events: np.ndarray, acc: np.ndarray, ph: np.ndarray,
                  dv: np.ndarray) -> dict[str, Any]:
    """Per traced transfer: lists scanned, the remote ones (a list read twice in one decision is
    fetched once, with the most entries either read needed), remote flag reads, and the search
    levels holding a remote scan (or flag read); per detector the share of its searches that
    scan a list on another partition."""
    traced = tr["traced"]
    n = traced.size
    pos = np.searchsorted(traced, tr["event"])  # row of each read among the traced transfers
    home = acc[events[traced, EventCol.A]]
    remote = _node_parts(tr["node"], acc, ph, dv) != home[pos]
    scan = tr["flag"] == 0
    width = int(tr["node"].max(initial=0)) + 1
    key = pos * width + tr["node"]

    def distinct(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per transfer: distinct nodes under ``mask``, and the most entries read of each."""
        uniq, inv = np.unique(key[mask], return_inverse=True)
        most = np.zeros(uniq.size, dtype=np.int64)
        np.maximum.at(most, inv, tr["entries"][mask])
        owner = uniq // width
        return (np.bincount(owner, minlength=n),
                np.bincount(owner, weights=most, minlength=n).astype(np.int64))

    def levels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lv = np.unique(pos[mask] * 64 + np.minimum(tr["level"][mask], 63))
        at0 = np.zeros(n, dtype=bool)
        at0[lv[lv % 64 == 0] // 64] = True
        return np.bincount(lv // 64, minlength=n), at0

    lists, _ = distinct(scan)
    remote_scans, remote_entries = distinct(scan & remote)
    remote_flags, _ = distinct(~scan & remote)
    scan_levels, scan_at0 = levels(scan & remote)
    all_levels, all_at0 = levels(remote)
    per_detector: dict[str, Any] = {}
    for name, d in _DET.items():
        m = tr["detector"] == d
        searched = np.unique(pos[m])
        size = max(searched.size, 1)
        per_detector[name] = {
            "searches": int(searched.size),
            "crossing_share": round(np.unique(pos[m & scan & remote]).size / size, 4),
            "crossing_share_with_flag_reads": round(np.unique(pos[m & remote]).size / size, 4),
            "remote_scans_per_search": round(float((m & scan & remote).sum()) / size, 3),
            "remote_flag_reads_per_search": round(float((m & ~scan & remote).sum()) / size, 3),
        }
    return {
        "lists_read": lists, "remote_scans": remote_scans, "remote_entries": remote_entries,
        "remote_flags": remote_flags, "scan_levels": scan_levels, "scan_at0": scan_at0,
        "all_levels": all_levels, "all_at0": all_at0,
        "nodes_touched_remote_share": round(float((scan & remote).sum()) / max(int(scan.sum()), 1), 4),
        "per_detector": per_detector,
    }


def _follow_targets(events: np.ndarray, marked: np.ndarray, mule: np.ndarray,
                    follow_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """For each decision index in ``marked`` whose ``mule`` became a suspect: the distinct
    accounts the mule paid in the ``follow_ms`` before (at most 16: the kernel's ring). Returns
    (decision index per target, target account)."""
    txn = np.flatnonzero(events[:, EventCol.KIND] == Kind.TXN)
    payer = events[txn, EventCol.A]
    order = np.lexsort((events[txn, EventCol.TS], payer))
    payer_s, ts_s, payee_s = payer[order], events[txn, EventCol.TS][order], events[txn, EventCol.B][order]
    owners: list[int] = []
    targets: list[int] = []
    for i, m in zip(marked.tolist(), mule.tolist(), strict=True):
        t = int(events[i, EventCol.TS])
        lo, hi = np.searchsorted(payer_s, m, "left"), np.searchsorted(payer_s, m, "right")
        w = slice(lo + np.searchsorted(ts_s[lo:hi], t - follow_ms, "left"),
                  lo + np.searchsorted(ts_s[lo:hi], t, "right"))
        got = [int(v) for v in dict.fromkeys(payee_s[w][::-1].tolist()) if v != m][:16]
        owners += [i] * len(got)
        targets += got
    return np.asarray(owners, dtype=np.int64), np.asarray(targets, dtype=np.int64)


def last_callers(events: np.ndarray, lookback_ms: int) -> np.ndarray:
    """Per transaction, the number that last called the payer's phone within ``lookback_ms``
    before it (-1: none): ``payer_last_caller_risky`` reads that number's risky mark, which
    lives with the caller."""
    n = events.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    call = np.flatnonzero(events[:, EventCol.KIND] == Kind.CALL)
    txn = np.flatnonzero((events[:, EventCol.KIND] == Kind.TXN) & (events[:, EventCol.C] >= 0))
    if call.size == 0 or txn.size == 0:
        return out
    t0 = int(events[:, EventCol.TS].min())
    if int(events[:, EventCol.TS].max()) - t0 >= 1 << 42:
        return out
    callee = events[call, EventCol.B]
    keys = (callee << 42) | (events[call, EventCol.TS] - t0)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    want = (events[txn, EventCol.C] << 42) | (events[txn, EventCol.TS] - t0)
    j = np.searchsorted(keys, want, "right") - 1
    ok = j >= 0
    hit = keys[np.maximum(j, 0)]
    ok &= ((hit >> 42) == events[txn, EventCol.C]) & ((want - hit) <= lookback_ms)
    out[txn[ok]] = events[call[order[j[ok]]], EventCol.A]
    return out


def simulate(enc: EncodedEvents, policy: Policy, settings: Settings, partitions: Sequence[int], *,
             graph_sample: float = 0.1, seed: int = 0, decisions: pl.DataFrame | None = None,
             rtt_us: dict[str, float] | None = None, trace: Trace | None = None,
             tick: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Count what decisions made in the payer's partition need from the others (module
    docstring), for each number of partitions and both phone placements."""
    ev = enc.events
    n = ev.shape[0]
    txn = ev[:, EventCol.KIND] == Kind.TXN
    call = ev[:, EventCol.KIND] == Kind.CALL
    if trace is None:
        rng = np.random.default_rng(seed)
        sample = txn & (rng.random(n) < graph_sample)
        trace = trace_graph(ev, settings.graph.params().array(), sample, tick=tick)
    tr = trace.arrays()
    reads = classify_reads(policy)
    n_payee, n_pphone, n_qphone = (len(reads[k]) for k in ("payee", "payer_phone", "payee_phone"))
    place = Placement.of(enc)
    callers = last_callers(ev, policy.params.risky_call_lookback_minutes * 60_000)
    marks = _memory_marks(ev, decisions, policy, settings) if decisions is not None else None
    out: dict[str, Any] = {}
    for p in partitions:
        for colocate in (False, True):
            acc, ph, dv = place.parts(p, colocate)
            out.setdefault(str(p), {})["colocated" if colocate else "hashed"] = _one_layout(
                ev, txn, call, acc, ph, dv, tr, (n_payee, n_pphone, n_qphone), marks, rtt_us,
                callers)
    return {"reads": reads, "graph_traced_transfers": int(tr["traced"].size),
            "graph_list_reads_traced": int(tr["node"].size), "partitions": out}


def _memory_marks(ev: np.ndarray, decisions: pl.DataFrame, policy: Policy,
                  settings: Settings) -> dict[str, np.ndarray]:
    """Decisions that made a suspected mule (payee or payer), and where its money went."""
    n = ev.shape[0]
    words = (decisions.get_column("reason_bits").to_numpy()[:n],
             decisions.get_column("reason_bits_high").to_numpy()[:n])
    is_call = ev[:, EventCol.KIND] == Kind.CALL
    rule_marks = np.array([r.marks for r in policy.txn_rules] + [0], dtype=np.int64)
    marks = np.zeros(n, dtype=np.int64)
    for j in range(len(policy.txn_rules)):
        bit = (words[j // REASON_WORD] >> (j % REASON_WORD)) & 1
        marks |= np.where(~is_call & bit.astype(bool), rule_marks[j], 0)
    payee_mule = np.flatnonzero(marks & Mark.PAYEE_MULE)
    payer_mule = np.flatnonzero(marks & Mark.PAYER_MULE)
    follow_ms = policy.params.mule_follow_hours * 3_600_000
    idx = np.concatenate([payee_mule, payer_mule])
    mule = np.concatenate([ev[payee_mule, EventCol.B], ev[payer_mule, EventCol.A]])
    owner, target = _follow_targets(ev, idx, mule, follow_ms)
    mule_of = dict(zip(idx.tolist(), mule.tolist(), strict=True))
    return {"any_marks": marks != 0, "mule_decisions": idx, "mule": mule,
            "follow_owner": owner, "follow_target": target,
            "follow_mule": np.asarray([mule_of[i] for i in owner.tolist()], dtype=np.int64)}


def _one_layout(ev: np.ndarray, txn: np.ndarray, call: np.ndarray, acc: np.ndarray,
                ph: np.ndarray, dv: np.ndarray, tr: dict[str, np.ndarray],
                fields: tuple[int, int, int], marks: dict[str, np.ndarray] | None,
                rtt_us: dict[str, float] | None, callers: np.ndarray) -> dict[str, Any]:
    n_payee, n_pphone, n_qphone = fields
    a, b = ev[:, EventCol.A], ev[:, EventCol.B]
    c, e = ev[:, EventCol.C], ev[:, EventCol.E]
    home = np.where(txn, acc[np.where(txn, a, 0)], ph[np.where(call, a, 0)])
    payee_remote = txn & (acc[np.where(txn, b, 0)] != home)
    pphone_remote = txn & (c >= 0) & (ph[np.maximum(c, 0)] != home)
    qphone_remote = txn & (e >= 0) & (ph[np.maximum(e, 0)] != home)
    callee_remote = call & (ph[np.where(call, b, 0)] != home)
    # the risky mark of the number that last called the payer lives with that number
    caller_remote = txn & (callers >= 0) & (ph[np.maximum(callers, 0)] != home)
    # reads (key out, fields back) and the payee's / callee's half of the update
    read_bytes = (payee_remote * (KEY_BYTES + FIELD_BYTES * n_payee)
                  + pphone_remote * (KEY_BYTES + FIELD_BYTES * n_pphone)
                  + qphone_remote * (KEY_BYTES + FIELD_BYTES * n_qphone)
                  + caller_remote * (KEY_BYTES + FIELD_BYTES))
    update_bytes = (payee_remote | callee_remote) * UPDATE_BYTES
    feature_rounds = (payee_remote.astype(np.int64) + pphone_remote + qphone_remote
                      + caller_remote)
    t_idx = np.flatnonzero(txn)
    res: dict[str, Any] = {
        "transactions": int(t_idx.size),
        "calls": int(call.sum()),
        "txn_cross_share": round(cross_share(home[txn], acc[b[txn]]), 4),
        "call_cross_share": round(cross_share(home[call], ph[b[call]]), 4),
        "payer_phone_remote_share": round(float(pphone_remote[txn].mean()), 4) if t_idx.size else 0.0,
        "payee_phone_remote_share": round(float(qphone_remote[txn].mean()), 4) if t_idx.size else 0.0,
        "last_caller_known_share": round(float((callers[txn] >= 0).mean()), 4) if t_idx.size else 0.0,
        "last_caller_remote_share": round(float(caller_remote[txn].mean()), 4) if t_idx.size else 0.0,
        "txn_any_feature_read_remote_share": round(float((feature_rounds[txn] > 0).mean()), 4)
        if t_idx.size else 0.0,
        "feature_read_bytes_per_txn": round(float(read_bytes[txn].mean()), 2) if t_idx.size else 0.0,
        "update_bytes_per_event": round(float(update_bytes.mean()), 2) if ev.shape[0] else 0.0,
    }
    # graph, on the traced transfers; joined with their feature reads for whole decisions.
    # Two designs: the proximity search's "near a listed node" count read where the neighbour
    # lives (flag reads), or pushed to the neighbours' partitions when it changes (no flag reads)
    g = _graph_counts(tr, ev, acc, ph, dv)
    traced = tr["traced"]
    graph_bytes = g["remote_scans"] * (KEY_BYTES + 16) + g["remote_entries"] * ENTRY_BYTES
    f_rounds = feature_rounds[traced]
    first = f_rounds > 0
    seq = f_rounds + g["remote_scans"]
    seq_flags = seq + g["remote_flags"]
    # pipelined: one round per search level with a remote read; the feature reads go in the
    # first round, with the level-0 lists (the payee's, on the payee's partition)
    pip = g["scan_levels"] + (first & ~g["scan_at0"])
    pip_flags = g["all_levels"] + (first & ~g["all_at0"])
    total_bytes = read_bytes[traced] + update_bytes[traced] + graph_bytes
    res["graph"] = {
        "transfers_traced": int(traced.size),
        "transfers_with_remote_scan_share": round(float((g["remote_scans"] > 0).mean()), 4)
        if traced.size else 0.0,
        "lists_scanned_per_transfer": _stats(g["lists_read"]),
        "remote_scans_per_transfer": _stats(g["remote_scans"]),
        "remote_flag_reads_per_transfer": _stats(g["remote_flags"]),
        "remote_entries_per_transfer": _stats(g["remote_entries"]),
        "nodes_scanned_remote_share": g["nodes_touched_remote_share"],
        "bytes_per_transfer": _stats(graph_bytes),
        "per_detector": g["per_detector"],
    }
    res["decision"] = {
        "bytes": _stats(total_bytes + g["remote_flags"] * (KEY_BYTES + 1)),
        "bytes_near_bits_pushed": _stats(total_bytes),
        "round_trips_sequential": _stats(seq),
        "round_trips_sequential_with_flag_reads": _stats(seq_flags),
        "round_trips_pipelined": _stats(pip),
        "round_trips_pipelined_with_flag_reads": _stats(pip_flags),
        "round_trips_without_graph_sequential": _stats(f_rounds),
        "round_trips_without_graph_pipelined": _stats(first.astype(np.int64)),
    }
    if rtt_us is not None:
        res["decision"]["added_latency_us"] = {
            "sequential_mean": round(float(seq.mean()) * rtt_us["get_p50"], 1) if seq.size else 0.0,
            "sequential_p99": round(float(np.percentile(seq, 99)) * rtt_us["get_p50"], 1)
            if seq.size else 0.0,
            "pipelined_mean": round(float(pip.mean()) * rtt_us["pipeline8_p50"], 1)
            if pip.size else 0.0,
            "pipelined_p99_rounds_at_p99_rtt": round(
                float(np.percentile(pip, 99)) * rtt_us["pipeline8_p99"], 1) if pip.size else 0.0,
            "pipelined_p99": round(float(np.percentile(pip, 99)) * rtt_us["pipeline8_p50"], 1)
            if pip.size else 0.0,
            "without_graph_pipelined_mean": round(float(first.mean()) * rtt_us["mget8_p50"], 1)
            if first.size else 0.0,
        }
    if marks is not None:
        mule_home = acc[marks["mule"]]
        dec_home = home[marks["mule_decisions"]]
        follow_remote = acc[marks["follow_target"]] != acc[marks["follow_mule"]]
        res["decision_memory"] = {
            "decisions_with_marks": int(marks["any_marks"].sum()),
            "mule_marking_decisions": int(marks["mule_decisions"].size),
            "mule_elsewhere_than_decision_share": round(float(np.mean(mule_home != dec_home)), 4)
            if mule_home.size else 0.0,
            "follow_money_targets": int(marks["follow_target"].size),
            "follow_money_remote_share": round(float(follow_remote.mean()), 4)
            if follow_remote.size else 0.0,
            "follow_money_remote_messages_per_mule": round(
                float(follow_remote.sum()) / max(int(marks["mule_decisions"].size), 1), 3),
        }
    return res


def forward_gaps(events: np.ndarray) -> dict[str, Any]:
    """How soon after money arrives an account pays out: for each transfer, the time since the
    payer last received a transfer (within 24 h). The payer's incoming money reaches its
    partition as the payee half of another partition's event, so a log lag longer than this gap
    hides it from the payer's features (pass-through, mule forwarding)."""
    txn = np.flatnonzero(events[:, EventCol.KIND] == Kind.TXN)
    ts = events[txn, EventCol.TS] - int(events[txn, EventCol.TS].min(initial=0))
    if txn.size == 0 or int(ts.max()) >= 1 << 42 or int(events[txn, EventCol.B].max()) >= 1 << 20:
        return {"transfers": int(txn.size)}
    incoming = np.sort((events[txn, EventCol.B] << 42) | ts)
    out = (events[txn, EventCol.A] << 42) | ts
    j = np.searchsorted(incoming, out, "left") - 1  # strictly earlier arrival, same account
    ok = j >= 0
    prev = np.where(ok, incoming[np.maximum(j, 0)], 0)
    ok &= (prev >> 42) == events[txn, EventCol.A]
    gap = np.where(ok, ts - (prev & ((1 << 42) - 1)), -1)
    within = gap[(gap >= 0) & (gap <= 86_400_000)]
    share = {f"under_{label}": round(float((within < ms).sum()) / txn.size, 6)
             for label, ms in (("100ms", 100), ("1s", 1_000), ("10s", 10_000), ("60s", 60_000),
                               ("10min", 600_000))}
    return {"transfers": int(txn.size), "after_money_in_24h": int(within.size),
            "share_of_transfers_paid_out": share,
            "gap_ms_p10": float(np.percentile(within, 10)) if within.size else None,
            "gap_ms_p50": float(np.percentile(within, 50)) if within.size else None}


def edge_ingest(enc: EncodedEvents, settings: Settings, *, chunk: int = 1 << 16) -> dict[str, Any]:
    """What one full replica of the live graph costs: every event's edges added by the graph
    kernels with the detectors off (``LiveGraph.process(detect=False)``), in chunks as a log
    consumer would, on one core; events per second and bytes per account at the end."""
    from graph.live import BYTES_PER_EDGE, LiveGraph

    ev = enc.events
    gs = settings.graph
    graph = LiveGraph(nodes=3 * max(enc.n_accounts, enc.n_phones, enc.n_devices, 1),
                      edges=min(max(3 * ev.shape[0], 16), gs.initial_edges), max_edges=gs.max_edges)
    params = gs.params().array()
    warm = LiveGraph(nodes=graph.node_capacity, edges=1024)  # load the kernel outside the timing
    warm.process(ev[:100], np.arange(min(100, ev.shape[0]), dtype=np.int64), params, detect=False)
    busy = 0.0
    for start in range(0, ev.shape[0], chunk):
        part = ev[start:start + chunk]
        graph.ensure(enc.n_accounts, enc.n_phones, enc.n_devices, 3 * part.shape[0], gs.expiry_ms)
        t0 = time.perf_counter()
        graph.process(part, np.arange(start, start + part.shape[0], dtype=np.int64), params,
                      detect=False)
        busy += time.perf_counter() - t0
    return {"events": int(ev.shape[0]), "edges": graph.edge_count, "seconds": round(busy, 3),
            "events_per_second": round(ev.shape[0] / busy) if busy > 0 else None,
            "graph_bytes": graph.nbytes(),
            "graph_bytes_per_account": round(graph.nbytes() / max(enc.n_accounts, 1), 1),
            "edge_bytes_per_account": round(graph.edge_count * BYTES_PER_EDGE / max(enc.n_accounts, 1), 1)}


# ----------------------------------------------------------------------------- redis
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_redis(*, value_bytes: int = 128, repeats: int = 2000,
                  publish_batches: int = 20) -> dict[str, Any]:
    """Start a redis-server on a free loopback port (no persistence), time round trips from
    redis-py (hiredis when installed): GET, MGET of 8 keys, pipelines of 8 and 64 GETs; and how
    many transfers per second one client publishes to a read model (both parties' fields and
    both ends of the edge, pipelined by 1,000 transfers)."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not on PATH (Debian package redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            keys = [f"acct:{i}" for i in range(1024)]
            blob = bytes(value_bytes)
            client.mset(dict.fromkeys(keys, blob))
            rng = np.random.default_rng(0)

            def pipe(ks: list[str]) -> Any:
                p = client.pipeline(transaction=False)
                for k_ in ks:
                    p.get(k_)
                return p.execute()

            ops: dict[str, tuple[Callable[[list[str]], Any], int]] = {
                "get": (lambda ks: client.get(ks[0]), 1),
                "mget8": (lambda ks: client.mget(ks), 8),
                "pipeline8": (pipe, 8),
                "pipeline64": (pipe, 64),
            }
            # interleaved, one of each in turn, so that load from other processes falls on all alike
            got = {name: np.empty(repeats) for name in ops}
            for r in range(repeats + 200):
                for name, (op, width) in ops.items():
                    ks = [keys[j] for j in rng.integers(0, len(keys), size=width)]
                    t0 = time.perf_counter_ns()
                    op(ks)
                    if r >= 200:
                        got[name][r - 200] = (time.perf_counter_ns() - t0) / 1000
            # the read model's write-behind: per transfer both parties' packed fields (SET,
            # 14 x 8 bytes) and the edge at both ends of the adjacency (RPUSH, 21 bytes), 1,000
            # transfers per pipeline
            fields, entry = bytes(FIELD_BYTES * 14), bytes(ENTRY_BYTES)
            publish = np.empty(publish_batches)
            for r in range(publish_batches):
                acct = rng.integers(0, 1 << 20, size=2000)
                t0 = time.perf_counter_ns()
                p = client.pipeline(transaction=False)
                for a_ in acct.tolist():
                    p.set(f"f:{a_}", fields)
                    p.rpush(f"adj:{a_}", entry)
                p.execute()
                publish[r] = 1000 / ((time.perf_counter_ns() - t0) / 1e9)
            info = client.info("server")
            client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    out: dict[str, Any] = {"redis_version": info.get("redis_version"), "value_bytes": value_bytes,
                           "repeats": repeats, "port": port}
    for name, us in got.items():
        out[f"{name}_p50"] = round(float(np.percentile(us, 50)), 1)
        out[f"{name}_p99"] = round(float(np.percentile(us, 99)), 1)
    out["publish_transfers_per_s_median"] = round(float(np.median(publish)))
    out["publish_transfers_per_s_range"] = [round(float(publish.min())), round(float(publish.max()))]
    try:
        import hiredis  # noqa: F401

        out["hiredis"] = True
    except ImportError:
        out["hiredis"] = False
    return out


# ----------------------------------------------------------------------------- command

def measure(*, seed: int, events: int, partitions: Sequence[int], graph_sample: float,
            replay_decisions: bool, redis_rtt: bool, show: bool = True) -> dict[str, Any]:
    """Generate, (replay,) trace and count; the figures and what produced them."""
    for_batch_jobs()
    t0 = time.perf_counter()
    synth = generate(SynthConfig(seed=seed, events_target=events, scenario_rate=0.04,
                                 lookalike_rate=0.04))
    settings = load_settings(None, {}, {})
    policy = load_policy()
    t1 = time.perf_counter()
    decisions = None
    if replay_decisions:
        from screening.offline.replay import replay

        result = replay(synth.events, policy, settings)
        enc = result.encoded
        decisions = result.decisions
    else:
        enc = encode_events(validate_events(synth.events, settings, "synth"), policy, settings)
    t2 = time.perf_counter()
    rtt = measure_redis() if redis_rtt else None
    ingest = edge_ingest(enc, settings)
    gaps = forward_gaps(enc.events)
    t3 = time.perf_counter()
    with progress(enc.events.shape[0], "graph walks", sys.stderr, enabled=show) as bar:
        figures = simulate(enc, policy, settings, partitions, graph_sample=graph_sample, seed=seed,
                           decisions=decisions, rtt_us=rtt, tick=bar.update)
    t4 = time.perf_counter()
    figures["redis"] = rtt
    figures["graph_replica"] = ingest
    figures["forward_gaps"] = gaps
    figures["sizes"] = {"key_bytes": KEY_BYTES, "field_bytes": FIELD_BYTES,
                        "graph_entry_bytes": ENTRY_BYTES, "graph_request_bytes": KEY_BYTES + 16,
                        "update_bytes": UPDATE_BYTES}
    figures["run"] = {
        "seed": seed, "events": int(enc.events.shape[0]), "accounts": enc.n_accounts,
        "phones": enc.n_phones, "devices": enc.n_devices, "graph_sample": graph_sample,
        "partitions": list(partitions), "replay": replay_decisions,
        "commit": git_commit(10), "dirty": git_dirty(),
        "policy_version": policy.version,
        "seconds": {"generate": round(t1 - t0, 1), "replay_or_encode": round(t2 - t1, 1),
                    "redis": round(t3 - t2, 1), "simulate": round(t4 - t3, 1)},
    }
    return figures


def format_table(fig: dict[str, Any]) -> str:
    """A markdown table of the headline figures, one row per partition count and placement."""
    rtt = fig.get("redis")
    head = ("| partitions | phones | txn cross | call cross | decisions with a remote feature read "
            "| transfers scanning a remote list | remote lists scanned / transfer (mean, p99) "
            "| bytes / decision (mean, p99) | round trips seq. (mean, p99) "
            "| round trips pipelined (mean, p99) | added latency pipelined (mean, p99) |")
    lines = [head, "|" + "---|" * 11]
    for p, layouts in fig["partitions"].items():
        for name, r in layouts.items():
            d, g = r["decision"], r["graph"]
            scans = g["remote_scans_per_transfer"]
            lat = d.get("added_latency_us")
            lat_s = (f"{lat['pipelined_mean'] / 1000:.2f} / {lat['pipelined_p99'] / 1000:.2f} ms"
                     if lat and rtt else "-")
            lines.append(
                f"| {p} | {name} | {100 * r['txn_cross_share']:.1f} % | {100 * r['call_cross_share']:.1f} % "
                f"| {100 * r['txn_any_feature_read_remote_share']:.1f} % "
                f"| {100 * g['transfers_with_remote_scan_share']:.1f} % "
                f"| {scans['mean']:.2f}, {scans['p99']:.0f} "
                f"| {d['bytes_near_bits_pushed']['mean']:,.0f}, {d['bytes_near_bits_pushed']['p99']:,.0f} "
                f"| {d['round_trips_sequential']['mean']:.2f}, {d['round_trips_sequential']['p99']:.0f} "
                f"| {d['round_trips_pipelined']['mean']:.2f}, {d['round_trips_pipelined']['p99']:.0f} "
                f"| {lat_s} |")
    return "\n".join(lines)


def format_detectors(fig: dict[str, Any]) -> str:
    """Per detector: the share of its searches that scan a list on another partition (phones
    hashed), at each partition count; with the proximity search's flag reads in brackets."""
    parts = list(fig["partitions"])
    reads = set(fig["reads"]["graph"])
    used = {_GRAPH_FEATURE_DETECTOR[n] for n in reads}
    lines = ["| detector | a rule reads it | " + " | ".join(f"{p} partitions" for p in parts) + " |",
             "|---|---|" + "---:|" * len(parts)]
    for name in DETECTORS:
        cells = []
        for p in parts:
            d = fig["partitions"][p]["hashed"]["graph"]["per_detector"][name]
            cell = f"{100 * d['crossing_share']:.1f} %"
            if d["crossing_share_with_flag_reads"] != d["crossing_share"]:
                cell += f" ({100 * d['crossing_share_with_flag_reads']:.1f} % with flag reads)"
            cells.append(cell)
        lines.append(f"| {name} | {'yes' if name in used else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="about this many events (default 1,000,000)")
    parser.add_argument("--partitions", default="4,16,64",
                        help="comma-separated partition counts (default 4,16,64)")
    parser.add_argument("--graph-sample", type=float, default=0.1,
                        help="share of transfers whose detector walks are traced (default 0.1)")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip the replay (no decision-memory figures)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis round-trip timing")
    parser.add_argument("--json", type=Path, default=None,
                        help="where the figures go (default bench/results/partition-<seed>.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--table", type=Path, default=None, metavar="JSON",
                        help="print the tables of an earlier run's figures instead of running")
    args = parser.parse_args(argv)
    if args.table is not None:
        fig = json.loads(args.table.read_text(encoding="utf-8"))
        print(format_table(fig) + "\n\n" + format_detectors(fig))
        return 0
    parts = [int(p) for p in args.partitions.split(",") if p.strip()]
    if not parts or min(parts) < 1:
        parser.error("--partitions: give counts >= 1, e.g. 4,16,64")
    if not 0.0 <= args.graph_sample <= 1.0:
        parser.error("--graph-sample: a share in 0..1")
    fig = measure(seed=args.seed, events=args.events, partitions=parts,
                  graph_sample=args.graph_sample, replay_decisions=not args.no_replay,
                  redis_rtt=not args.no_redis, show=not args.quiet)
    fig["command"] = "python -m bench.partition " + " ".join(argv if argv is not None else sys.argv[1:])
    run = fig["run"]
    print(f"{run['events']:,} events, {run['accounts']:,} accounts, {run['phones']:,} phones, seed "
          f"{run['seed']}; {fig['graph_traced_transfers']:,} transfers traced; {run['seconds']}")
    if fig["redis"]:
        r = fig["redis"]
        print(f"Redis {r['redis_version']} loopback round trip (µs, p50/p99): GET {r['get_p50']}/"
              f"{r['get_p99']}, MGET 8 {r['mget8_p50']}/{r['mget8_p99']}, pipeline 8 "
              f"{r['pipeline8_p50']}/{r['pipeline8_p99']}, pipeline 64 {r['pipeline64_p50']}/"
              f"{r['pipeline64_p99']}; one client publishes {r['publish_transfers_per_s_median']:,} "
              "transfers/s to a read model")
    print(format_table(fig) + "\n\n" + format_detectors(fig))
    path = args.json or RESULTS / f"partition-{args.seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fig, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    print(f"figures -> {path}")
    return 0


def _jsonable(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
