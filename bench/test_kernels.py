"""Kernel microbenchmarks, each beside its plain-Python reference (pytest-benchmark).

Run: ``python -m pytest bench/test_kernels.py --benchmark-enable`` (``python -m bench`` runs them
and copies the figures into its JSON). Nothing here asserts a time: these are measurements.

* feature update per event, one event per call (``FeatureState.process`` with 1 event: what the
  unary path pays) and 1,000 events per call (the batch path), on states of 10 k and 1 M accounts;
* policy evaluation: the rule kernel on one feature row;
* the same through ``tests/reference.py`` (``ReferenceEngine`` and its rule evaluation), skipped
  with the reason when that module is not on this branch;
* graph checks: a named place for when ``graph/`` has pattern kernels;
* the request fingerprint every screened transaction gets (idempotency).
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from features import _kernels as k
from features.layout import EventCol, Kind, TxnFlag
from features.state import FeatureState, empty_events
from screening.policy import Policy, load_policy


def _reference() -> ModuleType | None:
    try:
        return importlib.import_module("tests.reference")
    except ImportError:
        return None


REFERENCE = _reference()
needs_reference = pytest.mark.skipif(
    REFERENCE is None,
    reason="tests/reference.py (ReferenceEngine, the plain-Python twins) is not on this branch")

STATE_SIZES = (10_000, 1_000_000)
STREAM = 200_000  # events per prepared stream (cycled)
BATCH = 1_000


def events(n: int, accounts: int, seed: int = 3) -> np.ndarray:
    """``n`` transactions in time order: repeat payers, phones and devices on some, a few memos."""
    rng = np.random.default_rng(seed)
    ev = empty_events(n)
    ev[:, EventCol.KIND] = Kind.TXN
    ev[:, EventCol.TS] = 1_760_000_000_000 + np.cumsum(rng.integers(0, 400, n))
    payer = (rng.zipf(1.2, n) * 7_919) % accounts
    usual = (payer * 31 + rng.integers(0, 4, n) * 104_729 + 1) % accounts
    payee = np.where(rng.random(n) < 0.4, usual, rng.integers(0, accounts, n))
    payee = np.where(payee == payer, (payee + 1) % accounts, payee)
    ev[:, EventCol.A] = payer
    ev[:, EventCol.B] = payee
    ev[:, EventCol.C] = np.where(rng.random(n) < 0.7, payer % 1_000, -1)
    ev[:, EventCol.D] = np.where(rng.random(n) < 0.5, payer % 1_000, -1)
    ev[:, EventCol.AMOUNT] = rng.lognormal(np.log(20_000), 1.4, n).astype(np.int64) + 1
    flags = TxnFlag.PAYER_PERSON | TxnFlag.PAYEE_PERSON
    ev[:, EventCol.FLAGS] = np.where(rng.random(n) < 0.01, flags | TxnFlag.MEMO_INVESTMENT, flags)
    ev[:, EventCol.AUX3] = 1
    return ev


@dataclass
class Prepared:
    state: FeatureState
    policy: Policy
    ev: np.ndarray


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


_prepared: dict[int, Prepared] = {}


def prepared(accounts: int, policy: Policy) -> Prepared:
    """A state of ``accounts`` accounts, all pages resident and the kernels compiled."""
    if accounts not in _prepared:
        _prepared.clear()  # one large state at a time
        state = FeatureState.create(accounts, 1_024, 1_024, 4 * STREAM)
        for arr in (state.accounts.cnt, state.accounts.amt, state.accounts.fl):
            arr.fill(0)  # np.zeros pages are not resident until written: touch them now
        ev = events(STREAM, accounts)
        state.process(ev[:BATCH], policy.params_array, policy.txn_table, policy.call_table)
        _prepared[accounts] = Prepared(state, policy, ev)
    return _prepared[accounts]


def _rows(p: Prepared, size: int) -> itertools.cycle[np.ndarray]:
    n = (p.ev.shape[0] // size) * size
    return itertools.cycle([p.ev[i:i + size] for i in range(0, n, size)])


@pytest.mark.parametrize("accounts", STATE_SIZES, ids=lambda n: f"{n // 1000}k")
@pytest.mark.parametrize("per_call", [1, BATCH], ids=["single", "batch1000"])
def test_feature_update(benchmark: Any, policy: Policy, accounts: int, per_call: int) -> None:
    """FeatureState.process: features and decision per event (numba), 1 or 1,000 events a call."""
    p = prepared(accounts, policy)
    rows = _rows(p, per_call)
    params, tt, ct = policy.params_array, policy.txn_table, policy.call_table
    benchmark.extra_info.update(what="feature_update", impl="numba", events_per_call=per_call,
                                accounts=accounts)
    benchmark(lambda: p.state.process(next(rows), params, tt, ct))


@needs_reference
@pytest.mark.parametrize("per_call", [1, BATCH], ids=["single", "batch1000"])
def test_feature_update_reference(benchmark: Any, policy: Policy, per_call: int) -> None:
    """ReferenceEngine.process, the plain-Python twin, on the same events (10 k accounts)."""
    assert REFERENCE is not None
    engine = REFERENCE.ReferenceEngine()
    ev = events(20 * BATCH, STATE_SIZES[0])
    params, tt, ct = policy.params_array, policy.txn_table, policy.call_table
    engine.process(ev[:BATCH].tolist(), params, tt, ct)
    rows = itertools.cycle([ev[i:i + per_call].tolist() for i in range(0, ev.shape[0], per_call)])
    benchmark.extra_info.update(what="feature_update", impl="reference", events_per_call=per_call,
                                accounts=STATE_SIZES[0])
    benchmark(lambda: engine.process(next(rows), params, tt, ct))


def _feature_rows(policy: Policy) -> np.ndarray:
    p = prepared(STATE_SIZES[0], policy)
    feat, _ = p.state.process(p.ev[BATCH:2 * BATCH], policy.params_array, policy.txn_table,
                              policy.call_table)
    return feat


def test_policy_evaluation(benchmark: Any, policy: Policy) -> None:
    """The rule kernel (all transaction rules of the default policy) on one feature row."""
    feat = _feature_rows(policy)
    rows = itertools.cycle(range(feat.shape[0]))
    dec = np.zeros((1, k.N_DEC), dtype=np.int64)
    ri, rf = policy.txn_table.ints, policy.txn_table.thresholds
    benchmark.extra_info.update(what="policy_evaluation", impl="numba", events_per_call=1,
                                rules=len(policy.txn_rules))
    benchmark(lambda: k._eval_rules(ri, rf, feat, next(rows), dec, 0))


@needs_reference
def test_policy_evaluation_reference(benchmark: Any, policy: Policy) -> None:
    """The reference rule evaluation on the same rows (rules read once, as the engine would)."""
    assert REFERENCE is not None
    decide = getattr(REFERENCE, "_decide", None)
    read_rules = getattr(REFERENCE, "read_rules", None)
    if decide is None or read_rules is None:
        pytest.skip("tests/reference.py has no read_rules/_decide rule evaluation")
    rules = read_rules(policy.txn_table)
    rows = itertools.cycle([r.tolist() for r in _feature_rows(policy)])
    benchmark.extra_info.update(what="policy_evaluation", impl="reference", events_per_call=1,
                                rules=len(policy.txn_rules))
    benchmark(lambda: decide(rules, next(rows)))


@dataclass
class _GraphSetup:
    graph: Any  # graph.live.LiveGraph, prefilled
    ref: Any  # tests.graph.reference.RefGraph with the same edges, or None
    params: np.ndarray
    probes: np.ndarray  # transfers after the prefill, one per benchmark call


def _graph_events(n: int, accounts: int, start_ms: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = empty_events(n)
    ev[:, EventCol.KIND] = Kind.TXN
    ev[:, EventCol.TS] = start_ms + np.arange(n, dtype=np.int64) * 5_000
    ev[:, EventCol.A] = rng.integers(0, accounts, n)
    ev[:, EventCol.B] = (ev[:, EventCol.A] + 1 + rng.integers(0, accounts - 1, n)) % accounts
    ev[:, EventCol.AMOUNT] = rng.integers(1_000, 5_000_000, n)
    return ev


@pytest.fixture(scope="module")
def graph_setup() -> _GraphSetup:
    """20 k accounts with 60 k transfers over ~3.5 days, then 2 k probe transfers."""
    from graph.live import LiveGraph
    from screening.config import load_settings

    params = load_settings().graph.params().array()
    accounts, n = 20_000, 60_000
    prefill = _graph_events(n, accounts, 1_700_000_000_000, 11)
    probes = _graph_events(2_000, accounts, int(prefill[-1, EventCol.TS]) + 5_000, 12)
    g = LiveGraph(nodes=3 * accounts, edges=8 * (n + 2_000))
    g.ensure(accounts, 1, 1, 3 * (n + 2_000))
    g.process(prefill, np.arange(n, dtype=np.int64), params, detect=False)
    try:
        ref_mod = importlib.import_module("tests.graph.reference")
    except ImportError:
        ref = None
    else:
        ref = ref_mod.RefGraph()
        ref.process(prefill.tolist(), list(range(n)), params.tolist(), detect=False)
    return _GraphSetup(g, ref, params, probes)


def test_graph_checks(benchmark: Any, graph_setup: _GraphSetup) -> None:
    """Graph stage per transfer: add its edges and run every detector (Numba)."""
    s = graph_setup
    rows = itertools.cycle(range(s.probes.shape[0]))
    refs = np.zeros(1, dtype=np.int64)

    def one() -> None:
        i = next(rows)
        s.graph.process(s.probes[i:i + 1], refs, s.params, detect=True)

    benchmark.extra_info.update(what="graph_checks", impl="numba", events_per_call=1,
                                edges=s.graph.edge_count)
    benchmark(one)


def test_graph_checks_reference(benchmark: Any, graph_setup: _GraphSetup) -> None:
    """The same graph stage in the plain-Python twin of the detectors."""
    s = graph_setup
    if s.ref is None:
        pytest.skip("tests/graph/reference.py is not importable")
    rows = itertools.cycle(s.probes.tolist())
    gp = s.params.tolist()
    benchmark.extra_info.update(what="graph_checks", impl="reference", events_per_call=1)
    benchmark(lambda: s.ref.process([next(rows)], [0], gp, detect=True))


def test_request_fingerprint(benchmark: Any) -> None:
    """The idempotency fingerprint of one transaction (``screening.idempotency``), computed for
    every screened transaction before the engine's lock."""
    from screening.idempotency import fingerprint
    from screening.model import Party, TxnInput

    txn = TxnInput("t-000001", 1_700_000_000_000,
                   Party("6222000011112222", "ICBC-Beijing", 1, 1_400_000_000_000),
                   Party("6217000033334444", "CCB", 2, None), 1_234_567, "CNY", 1_234_567, 3,
                   False, True, "dev-abc-123", "+8613800001111", "salary for december")
    benchmark(fingerprint, txn)
