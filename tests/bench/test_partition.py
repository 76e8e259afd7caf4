"""The partitioning simulation (bench/partition.py) on a tiny stream: invariants that can fail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.partition import (
    Placement,
    cross_share,
    partition_of,
    simulate,
    stable_hash,
    trace_graph,
)
from features.layout import EventCol, Kind
from graph.live import LiveGraph
from screening.config import Settings, load_settings
from screening.offline.events import EncodedEvents, encode_events, validate_events
from screening.offline.synth import SynthConfig, generate
from screening.policy import Policy, load_policy


@pytest.fixture(scope="module")
def tiny() -> tuple[EncodedEvents, Policy, Settings]:
    synth = generate(SynthConfig(seed=5, events_target=4_000, scenario_rate=0.04,
                                 lookalike_rate=0.04))
    settings = load_settings(None, {}, {})
    policy = load_policy()
    return encode_events(validate_events(synth.events, settings, "synth"), policy, settings), policy, settings


@pytest.fixture(scope="module")
def figures(tiny: tuple[EncodedEvents, Policy, Settings]) -> dict[str, Any]:
    enc, policy, settings = tiny
    return simulate(enc, policy, settings, [1, 4, 16, 64], graph_sample=0.5, seed=1)


def test_one_partition_crosses_nothing(figures: dict[str, Any]) -> None:
    """With a single partition no transaction, call, graph search or read crosses."""
    for layout in figures["partitions"]["1"].values():
        assert layout["txn_cross_share"] == layout["call_cross_share"] == 0.0
        assert layout["txn_any_feature_read_remote_share"] == 0.0
        assert layout["graph"]["transfers_with_remote_scan_share"] == 0.0
        assert layout["decision"]["bytes"]["max"] == 0.0
        assert layout["decision"]["round_trips_sequential_with_flag_reads"]["max"] == 0.0


def test_crossing_rises_with_partitions_and_costs_bytes(figures: dict[str, Any]) -> None:
    """More partitions, more crossing; a decision that crosses exchanges bytes and round trips."""
    shares = [figures["partitions"][p]["hashed"]["txn_cross_share"] for p in ("1", "4", "16", "64")]
    assert shares == sorted(shares) and shares[-1] > 0.5
    for p in ("4", "16", "64"):
        layout = figures["partitions"][p]["hashed"]
        assert layout["graph"]["transfers_traced"] > 0
        assert layout["decision"]["bytes"]["mean"] > 0
        assert layout["decision"]["round_trips_sequential"]["mean"] >= \
            layout["decision"]["round_trips_pipelined"]["mean"] > 0


def test_colocated_phones_never_cross_more_than_hashed(figures: dict[str, Any]) -> None:
    """A phone placed with its account is read remotely no more often than one hashed apart."""
    for p in ("4", "16", "64"):
        hashed, colocated = figures["partitions"][p]["hashed"], figures["partitions"][p]["colocated"]
        assert colocated["payer_phone_remote_share"] <= hashed["payer_phone_remote_share"]
        assert colocated["decision"]["round_trips_sequential"]["mean"] <= \
            hashed["decision"]["round_trips_sequential"]["mean"]


def test_colocated_phone_lives_with_the_first_account_using_it(
        tiny: tuple[EncodedEvents, Policy, Settings]) -> None:
    """Co-location puts every phone a payer used first in that payer's partition."""
    enc = tiny[0]
    acc, ph, _ = Placement.of(enc).parts(16, colocate=True)
    ev = enc.events
    txn = (ev[:, EventCol.KIND] == Kind.TXN) & (ev[:, EventCol.C] >= 0)
    phones, first = np.unique(ev[txn, EventCol.C], return_index=True)
    assert phones.size > 0
    assert (ph[phones] == acc[ev[txn, EventCol.A][first]]).all()


def test_cross_share_approaches_one_minus_one_over_p_for_uniform_payees() -> None:
    """Uniformly random distinct payer and payee: a share of 1 - 1/P of pairs crosses."""
    rng = np.random.default_rng(3)
    hashes = stable_hash([f"6222{i:012d}" for i in range(20_000)])
    payer = rng.integers(0, 20_000, 60_000)
    payee = (payer + rng.integers(1, 20_000, 60_000)) % 20_000
    for p in (1, 2, 4, 16, 64):
        part = partition_of(hashes, p)
        assert cross_share(part[payer], part[payee]) == pytest.approx(1 - 1 / p, abs=0.01)


def test_stable_hash_is_the_same_in_every_run() -> None:
    """Partitions must not depend on the process (Python's own str hash is salted)."""
    assert stable_hash(["a", "b"]).tolist() == stable_hash(["a", "b"]).tolist()
    assert int(stable_hash(["6222000000000001"])[0]) == int.from_bytes(
        __import__("hashlib").blake2b(b"6222000000000001", digest_size=8).digest(), "little")


def test_traced_walks_compute_what_the_kernels_compute(
        tiny: tuple[EncodedEvents, Policy, Settings]) -> None:
    """The traced twin answers every traced transfer as the live graph kernels do, so the walks
    it records are the kernels' walks."""
    enc, _, settings = tiny
    ev = enc.events
    gp = settings.graph.params().array()
    sample = ev[:, EventCol.KIND] == Kind.TXN
    traced = trace_graph(ev, gp, sample)
    graph = LiveGraph(nodes=3 * max(enc.n_accounts, enc.n_phones, enc.n_devices, 1), edges=4 * len(ev))
    graph.ensure(enc.n_accounts, enc.n_phones, enc.n_devices, 3 * len(ev))
    live = graph.process(ev, np.arange(len(ev), dtype=np.int64), gp)
    assert len(traced.traced) == int(sample.sum())
    np.testing.assert_array_equal(np.asarray(traced.features), live[np.asarray(traced.traced)])
    assert len(traced.node) > 0


def test_forward_gap_is_the_time_since_the_payer_last_received() -> None:
    """Account 1 receives at 0 s and pays on at 0.5 s and 30 s: gaps 0.5 s and 30 s; a payer
    that never received has none."""
    from bench.partition import forward_gaps
    from features.state import empty_events

    ev = empty_events(4)
    rows = [(0, 0, 1), (500, 1, 2), (30_000, 1, 3), (40_000, 4, 2)]  # (time ms, payer, payee)
    for i, (t, a, b) in enumerate(rows):
        ev[i, EventCol.KIND], ev[i, EventCol.TS] = Kind.TXN, 1_700_000_000_000 + t
        ev[i, EventCol.A], ev[i, EventCol.B], ev[i, EventCol.AMOUNT] = a, b, 100
    got = forward_gaps(ev)
    assert got["after_money_in_24h"] == 2
    assert got["share_of_transfers_paid_out"]["under_1s"] == 0.25
    assert got["share_of_transfers_paid_out"]["under_60s"] == 0.5


def test_last_caller_is_the_newest_call_to_the_payers_phone_within_the_lookback() -> None:
    """Phone 5 is called by 7 then by 8; a payment from it 10 min later names 8, one 3 h later
    none (lookback 2 h); a payment without a phone names none."""
    from bench.partition import last_callers
    from features.state import empty_events

    ev = empty_events(5)
    minute = 60_000
    rows = [(Kind.CALL, 0, 7, 5, -1), (Kind.CALL, 5 * minute, 8, 5, -1),
            (Kind.TXN, 15 * minute, 0, 1, 5), (Kind.TXN, 185 * minute, 0, 1, 5),
            (Kind.TXN, 16 * minute, 2, 1, -1)]
    for i, (kind, t, a, b, phone) in enumerate(rows):
        ev[i, EventCol.KIND], ev[i, EventCol.TS] = kind, 1_700_000_000_000 + t
        ev[i, EventCol.A], ev[i, EventCol.B], ev[i, EventCol.C] = a, b, phone
        ev[i, EventCol.AMOUNT] = 100
    assert last_callers(ev, 120 * minute).tolist() == [-1, -1, 8, -1, -1]


def test_scale_out_doc_shows_the_committed_figures() -> None:
    """docs/scale-out.md carries the tables `python -m bench.partition --table` prints for the
    committed bench/results/partition-1.json, so the doc and the result cannot drift apart."""
    import json
    from pathlib import Path

    from bench.partition import format_detectors, format_table

    root = Path(__file__).resolve().parents[2]
    fig = json.loads((root / "bench/results/partition-1.json").read_text(encoding="utf-8"))
    doc = (root / "docs/scale-out.md").read_text(encoding="utf-8")
    assert format_table(fig) in doc
    assert format_detectors(fig) in doc
