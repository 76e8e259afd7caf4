"""Replay (graph pass, then features pass, per chunk) decides exactly as the live engine does.

The same labelled synthetic stream goes through ``replay`` and, event by event, through the
``Engine`` (the gRPC servicer's path: proto message -> Converter -> Engine), with the same
watchlist. Two extra always-true rules make every graph feature a driver of every decision, so
the live decisions carry all graph features and can be compared with replay's kept features.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from features import _kernels as fk
from features.layout import GRAPH_FEATURES, TXN_FEATURES
from screening.client import call_event, transaction
from screening.config import load_settings
from screening.convert import Converter
from screening.engine import Engine
from screening.model import NEVER, WatchEntry
from screening.offline.replay import replay
from screening.offline.schema import CALL_OUTCOMES, CHANNELS, NUMBER_CLASSES, PARTY_TYPES
from screening.offline.synth import SynthConfig, generate
from screening.policy import ACTION_NAMES, default_policy_text, parse_policy

# as few probe rules as the conditions per rule allow: the default policy leaves few rule slots
PROBES = -(-len(GRAPH_FEATURES) // fk.MAX_COND)
ALWAYS = "".join(
    f'\n[[rule]]\ncode = "GRAPH_PROBE_{i}"\nmessage = "probe"\naction = "ALLOW"\nwhen = ['
    + ", ".join(f'"{name} >= 0"' for name in GRAPH_FEATURES[i * fk.MAX_COND:(i + 1) * fk.MAX_COND]) + "]\n"
    for i in range(PROBES))


def _with_room(text: str, rules: int) -> str:
    """The default policy less its first large-value reporting rules, so that ``rules`` more fit
    (report-only rules: what this test compares does not depend on them)."""
    head, *blocks = text.split("\n[[rule]]\n")
    room = rules - (fk.MAX_RULES - len(blocks))
    drop = [b for b in blocks if b.startswith('code = "LARGE_')][:max(room, 0)]
    return "\n[[rule]]\n".join([head] + [b for b in blocks if b not in drop])


def _proto(row: dict[str, object]):
    when = row["event_time"]
    assert isinstance(when, dt.datetime)
    if row["kind"] == "call":
        outcome = row.get("call_outcome")
        return call_event(str(row["event_id"]), when, str(row["caller_number"]),
                          str(row["callee_number"]), duration_seconds=int(row["duration_seconds"]),
                          caller_class=NUMBER_CLASSES.index(str(row["caller_class"])) + 1,
                          outcome=CALL_OUTCOMES.index(str(outcome)) + 1 if outcome else 0)

    def opened(d: object) -> str:
        return d.isoformat() if isinstance(d, dt.date) else ""

    return transaction(
        str(row["event_id"]), when, str(row["payer_account"]), str(row["payee_account"]),
        int(row["amount_minor"]), currency=str(row["currency"]),
        channel=CHANNELS.index(str(row["channel"])) + 1,
        payer_type=PARTY_TYPES.index(str(row["payer_party_type"])) + 1,
        payee_type=PARTY_TYPES.index(str(row["payee_party_type"])) + 1,
        payer_opened=opened(row["payer_opened_date"]), payee_opened=opened(row["payee_opened_date"]),
        institution=str(row["payer_institution"] or "X"), cash=bool(row["cash"]),
        cross_border=bool(row["cross_border"]), device_id=str(row["device_id"] or ""),
        payer_phone=str(row["payer_phone"] or ""), memo=str(row["memo"] or ""),
        payee_phone=str(row.get("payee_phone") or ""))


@pytest.fixture(scope="module")
def stream() -> pl.DataFrame:
    return generate(SynthConfig(seed=11, n_persons=200, n_organisations=20, days=12,
                                scenario_rate=0.15)).events


def test_replay_equals_live_engine_including_graph_features(stream: pl.DataFrame) -> None:
    """Actions, reasons and all graph features agree for every transaction of the stream."""
    policy = parse_policy(_with_room(default_policy_text(), PROBES) + ALWAYS, "probe.toml")
    settings = load_settings(overrides={"server": {"latency_budget_ms": 1e9},
                                        "graph": {"hub_degree": 8, "max_work": 400}})
    listed = stream.filter(pl.col("kind") == "txn").get_column("payee_account").unique().sort()[:5]
    result = replay(stream, policy, settings, keep_features=True,
                    watchlist=pl.DataFrame({"kind": ["account"] * listed.len(), "value": listed}))
    assert result.features is not None
    engine = Engine(settings, policy, clock_ms=lambda: 2**50)
    conv = Converter(settings, policy, engine.clock_ms)
    engine.update_watchlist([WatchEntry(1, v, "case", "police", NEVER) for v in listed], [])
    rows = result.encoded.frame.to_dicts()
    decisions = result.decisions.head(len(rows)).to_dicts()
    bad: list[str] = []
    nonzero = dict.fromkeys(GRAPH_FEATURES, 0)
    for i, (row, want) in enumerate(zip(rows, decisions, strict=True)):
        msg = _proto(row)
        if row["kind"] == "call":
            engine.report_call(conv.call(msg))
            continue
        (rec, _), = engine.screen([conv.transaction(msg)])
        assert not rec.degraded
        replayed = want["reason_bits"] | want["reason_bits_high"] << fk.REASON_WORD
        if (ACTION_NAMES[rec.action], rec.reason_bits) != (want["action"], replayed):
            bad.append(f"row {i}: live {ACTION_NAMES[rec.action]} {rec.reason_bits:#x}, "
                       f"replay {want['action']} {replayed:#x}")
        live = dict(rec.features)
        for x, name in enumerate(GRAPH_FEATURES):
            got = float(result.features[i, fk.F_EXTRA_BASE + x])
            nonzero[name] += got != 0
            if live[name] != got:
                bad.append(f"row {i} {name}: live {live[name]} replay {got}")
    assert not bad, "\n".join(bad[:15])
    assert TXN_FEATURES[fk.F_EXTRA_BASE] == GRAPH_FEATURES[0]
    seen = {n for n, c in nonzero.items() if c}
    assert {"graph_payee_fan_in", "graph_chain_hops", "graph_payee_watch_hops",
            "graph_hub_cuts", "graph_ponzi_repaid", "graph_fee_same_amount_payers"} <= seen, nonzero
