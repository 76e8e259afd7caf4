"""The screening core: one batch of event columns in, decision columns out, however it is cut."""

from __future__ import annotations

import numpy as np
import pytest

from features.layout import GRAPH_FEATURES, TXN_FEATURES, EventCol, Kind
from features.state import FeatureState, RowTable
from graph.live import LiveGraph
from screening.config import load_settings
from screening.core import Interner, Screener
from screening.offline.events import EncodedEvents, encode_events, validate_events
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy

SETTINGS = load_settings()
POLICY = load_policy()
_GRAPH = [TXN_FEATURES.index(name) for name in GRAPH_FEATURES]


@pytest.fixture(scope="module")
def encoded() -> EncodedEvents:
    """A small labelled stream with every scenario planted, transactions and calls mixed."""
    frame = generate(SynthConfig(seed=11, n_persons=120, n_organisations=12, days=7,
                                 scenario_rate=0.2)).events
    return encode_events(validate_events(frame, SETTINGS, "stream"), POLICY, SETTINGS)


def _screener(enc: EncodedEvents) -> Screener:
    gs = SETTINGS.graph
    return Screener(state=FeatureState.create(4, 4, 4, 16), graph=LiveGraph(nodes=12, edges=64),
                    graph_params=gs.params().array(), graph_expiry_ms=gs.expiry_ms,
                    accounts=Interner.from_names(enc.accounts.to_list()),
                    phones=Interner.from_names(enc.phones.to_list()),
                    devices=Interner.from_names(enc.devices.to_list()))


class _Refuse:
    """A gate that admits every other chunk of two."""

    chunk = 2

    def __init__(self) -> None:
        self.asked = 0
        self.done_rows = 0

    def admit(self, rows: int) -> bool:
        self.asked += 1
        return self.asked % 2 == 1

    def done(self, rows: int) -> None:
        self.done_rows += rows


def test_one_event_at_a_time_decides_as_one_batch(encoded: EncodedEvents) -> None:
    """Screening the stream event by event gives the decisions and features of one batch."""
    ev = encoded.events
    refs = np.arange(ev.shape[0], dtype=np.int64)
    whole = _screener(encoded).screen(ev, refs, POLICY)
    one = _screener(encoded)
    rows = [one.screen(ev[i:i + 1], refs[i:i + 1], POLICY) for i in range(ev.shape[0])]
    assert (ev[:, EventCol.KIND] == Kind.CALL).any() and (ev[:, EventCol.KIND] == Kind.TXN).any()
    np.testing.assert_array_equal(np.concatenate([r.decisions for r in rows]), whole.decisions)
    np.testing.assert_array_equal(np.concatenate([r.features for r in rows]), whole.features)
    assert not whole.degraded.any()
    assert whole.features[:, _GRAPH].any()  # the graph pass ran and found something


def test_a_gate_that_holds_the_detectors_back_marks_those_rows_degraded(
        encoded: EncodedEvents) -> None:
    """Chunks the gate refuses get their edges but no graph features, and are marked degraded;
    the others are decided as without a gate."""
    ev = encoded.events[:40]
    refs = np.arange(ev.shape[0], dtype=np.int64)
    gate = _Refuse()
    gated = _screener(encoded).screen(ev, refs, POLICY, gate=gate)
    free = _screener(encoded).screen(ev, refs, POLICY)
    refused = np.repeat(np.arange(20) % 2 == 1, 2)
    np.testing.assert_array_equal(gated.degraded, refused)
    assert gate.asked == 20 and gate.done_rows == 20
    assert not gated.features[refused][:, _GRAPH].any()
    np.testing.assert_array_equal(gated.features[~refused], free.features[~refused])


def test_remember_writes_each_transaction_into_both_accounts_rings(
        encoded: EncodedEvents) -> None:
    """With recent rings, ``remember`` puts each transaction's ref in its payer's, then its
    payee's ring (the oldest overwritten); calls are not remembered."""
    ev = encoded.events[:3000]
    refs = np.arange(1000, 1000 + ev.shape[0], dtype=np.int64)
    width = 4
    core = _screener(encoded)
    core.bind_recent(RowTable({"recent": np.full(width, -1, dtype=np.int64),
                               "recent_pos": np.zeros((), dtype=np.int64)}, 1, None))
    core.screen(ev, refs, POLICY, remember=True)
    n = len(core.accounts)
    ring = np.full((n, width), -1, dtype=np.int64)  # the naive twin
    pos = np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(ev[:, EventCol.KIND] == Kind.TXN).tolist():
        for account in (int(ev[i, EventCol.A]), int(ev[i, EventCol.B])):
            ring[account, pos[account] % width] = refs[i]
            pos[account] += 1
    np.testing.assert_array_equal(core.recent[:n], ring)
    np.testing.assert_array_equal(core.recent_pos[:n], pos)
    assert (pos > width).any()  # some ring went round


def test_remember_one_event_at_a_time_equals_one_batch(encoded: EncodedEvents) -> None:
    """The recent rings come out the same whether written row by row (small calls) or with
    the batch's numpy pass (accounts repeated within it, rings going round)."""
    ev = encoded.events[:600]
    refs = np.arange(ev.shape[0], dtype=np.int64)
    width = 3
    cores = []
    for step in (1, ev.shape[0]):
        core = _screener(encoded)
        core.bind_recent(RowTable({"recent": np.full(width, -1, dtype=np.int64),
                                   "recent_pos": np.zeros((), dtype=np.int64)}, 1, None))
        for start in range(0, ev.shape[0], step):
            core.screen(ev[start:start + step], refs[start:start + step], POLICY, remember=True)
        cores.append(core)
    n = len(cores[0].accounts)
    np.testing.assert_array_equal(cores[0].recent[:n], cores[1].recent[:n])
    np.testing.assert_array_equal(cores[0].recent_pos[:n], cores[1].recent_pos[:n])
    assert (cores[0].recent_pos[:n] > width).any()
