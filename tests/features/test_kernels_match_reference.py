"""The Numba feature kernels agree with their plain-Python twin in ``tests/reference.py``.

Random event streams (transactions and calls over a small id space, with ties, same-bucket
events, out-of-order events, day boundaries and long gaps), random watchlists, params and rule
tables go through ``FeatureState.process`` and ``ReferenceEngine.process``; every feature and
decision column must match, and so must ``snapshot`` of every account afterwards. Edge cases
are spelled out below with their expected values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import _kernels as k
from features.layout import ACCOUNT_FEATURES, CALL_FEATURES, TXN_FEATURES
from features.state import NO_TIME, SUM_MAX, FeatureState, RuleTable
from tests.reference import ReferenceEngine

MINUTE_MS = k.MINUTE_MS
HOUR_MS = 3_600_000
DAY_MS = k.DAY_MS
# 2024-01-01 00:00:00 at UTC+8, less 30 s: streams start next to a local midnight.
T0 = 1_704_038_400_000 - 30_000
TZ_CN = 8 * HOUR_MS
NO_RULES = RuleTable.build([])

# float features computed through log/exp/sqrt: compared with a tolerance, all others exactly
TXN_FLOAT = {k.F_PAYER_Z, k.F_PAYER_RATIO}
SNAPSHOT_FLOAT = {k.S_EWMA_MEAN_FEN}


# ================================================================= building events
def txn(ts: int, a: int, b: int, amount: int, *, flags: int = 0, phone: int = -1,
        device: int = -1, opened_a: int = NO_TIME, opened_b: int = NO_TIME,
        channel: int = 0, payee_phone: int = -1) -> list[int]:
    row = [0] * k.N_EV
    row[k.EV_KIND], row[k.EV_TS], row[k.EV_A], row[k.EV_B] = k.KIND_TXN, ts, a, b
    row[k.EV_C], row[k.EV_D], row[k.EV_AMOUNT], row[k.EV_FLAGS] = phone, device, amount, flags
    row[k.EV_AUX1], row[k.EV_AUX2], row[k.EV_AUX3] = opened_a, opened_b, channel
    row[k.EV_E] = payee_phone
    return row


def call(ts: int, a: int, b: int, duration: int = 30, *, flags: int = k.CF_NEW | k.CF_ENDED,
         cls: int = 1, outcome: int = k.OUT_LEGACY) -> list[int]:
    row = [0] * k.N_EV
    row[k.EV_KIND], row[k.EV_TS], row[k.EV_A], row[k.EV_B] = k.KIND_CALL, ts, a, b
    row[k.EV_C], row[k.EV_D], row[k.EV_AMOUNT], row[k.EV_FLAGS] = -1, -1, duration, flags
    row[k.EV_AUX1], row[k.EV_AUX2], row[k.EV_AUX3] = cls, NO_TIME, outcome
    row[k.EV_E] = -1
    return row


def make_params(*, tz: int = TZ_CN, short_call_s: int = 10, lookback_ms: int = HOUR_MS,
                mark: int = 2, alpha_ppm: int = 100_000, protect_ms: int = DAY_MS,
                mule_ms: int = 7 * DAY_MS, collector_ms: int = 7 * DAY_MS,
                risky_number_ms: int = DAY_MS, learn_ms: int = 0, dormant_ms: int = 30 * DAY_MS,
                mule_max_level: int = 2, hub_payers: int = 12,
                follow_ms: int = DAY_MS, protect_stop_ms: int = 2 * DAY_MS,
                test_transfer: int = 1_000) -> np.ndarray:
    p = np.zeros(k.N_PARAM, dtype=np.int64)
    p[k.P_TZ_MS] = tz
    p[k.P_SHORT_CALL_S], p[k.P_RISKY_LOOKBACK_MS] = short_call_s, lookback_ms
    p[k.P_MARK_MIN_CALL_ACTION], p[k.P_EWMA_ALPHA_PPM] = mark, alpha_ppm
    p[k.P_PROTECT_MS], p[k.P_MULE_MS], p[k.P_COLLECTOR_MS] = protect_ms, mule_ms, collector_ms
    p[k.P_RISKY_NUMBER_MS], p[k.P_LEARN_MS], p[k.P_DORMANT_MS] = risky_number_ms, learn_ms, dormant_ms
    p[k.P_MULE_MAX_LEVEL], p[k.P_HUB_PAYERS] = mule_max_level, hub_payers
    p[k.P_FOLLOW_MS] = follow_ms
    p[k.P_PROTECT_STOP_MS] = protect_stop_ms
    p[k.P_TEST_TRANSFER_MAX] = test_transfer
    return p


def as_matrix(events: Sequence[Sequence[int]]) -> np.ndarray:
    return np.array(events, dtype=np.int64).reshape(len(events), k.N_EV)


def tcol(name: str) -> int:
    return TXN_FEATURES.index(name)


def ccol(name: str) -> int:
    return CALL_FEATURES.index(name)


def scol(name: str) -> int:
    return ACCOUNT_FEATURES.index(name)


# ================================================================= running both engines
@dataclass
class Scenario:
    events: list[list[int]]
    params: np.ndarray = field(default_factory=make_params)
    txn_rules: RuleTable = NO_RULES
    call_rules: RuleTable = NO_RULES
    watches: list[tuple[str, int, int]] = field(default_factory=list)  # (entity, id, until)
    # registry profiles (account, opened, last active, profile bits, phone on file) and
    # decision-memory columns set from outside (feedback): (account, column, until)
    profiles: list[tuple[int, int | None, int | None, int, int]] = field(default_factory=list)
    memory: list[tuple[int, int, int]] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)  # process in chunks split at these rows
    snapshot_times: list[int] = field(default_factory=list)
    n_accounts: int = 8
    n_phones: int = 6
    n_devices: int = 4


@dataclass
class Outcome:
    features: np.ndarray
    decisions: np.ndarray
    state: FeatureState
    ref: ReferenceEngine


def _column_name(kind: int, j: int) -> str:
    if kind == k.KIND_CALL:
        return CALL_FEATURES[j] if j < k.N_CALL_FEATURE else f"call_padding_{j}"
    return TXN_FEATURES[j]


def _same(got: float, want: float, tolerant: bool) -> bool:
    if math.isnan(got) or math.isnan(want):  # an unknown age
        return math.isnan(got) and math.isnan(want)
    if tolerant:
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return got == want


def assert_rows_equal(events: np.ndarray, feat: np.ndarray, dec: np.ndarray,
                      ref_feat: list[list[float]], ref_dec: list[list[int]], first: int) -> None:
    assert feat.shape == (len(ref_feat), k.N_TXN_FEATURE)
    assert dec.shape == (len(ref_dec), k.N_DEC)
    bad = []
    for i in range(len(ref_feat)):
        kind = int(events[i, k.EV_KIND])
        for j in range(k.N_TXN_FEATURE):
            tolerant = kind == k.KIND_TXN and j in TXN_FLOAT
            got, want = float(feat[i, j]), ref_feat[i][j]
            if not _same(got, want, tolerant):
                bad.append(f"event {first + i} {_column_name(kind, j)}: kernel {got!r} "
                           f"reference {want!r}")
        if [int(x) for x in dec[i]] != ref_dec[i]:
            bad.append(f"event {first + i} decision: kernel {dec[i].tolist()} "
                       f"reference {ref_dec[i]}")
    assert not bad, "\n".join(bad[:20])


def assert_snapshots_equal(state: FeatureState, ref: ReferenceEngine, n_accounts: int,
                           times: Sequence[int], params: np.ndarray) -> None:
    bad = []
    for idx in range(n_accounts):
        assert state.account_seen(idx) == ref.account_seen(idx), f"account {idx} seen"
        for ts in times:
            got = state.snapshot(idx, ts, params)
            want = ref.snapshot(idx, ts, params)
            for j in range(k.N_SNAPSHOT):
                if not _same(float(got[j]), want[j], j in SNAPSHOT_FLOAT):
                    bad.append(f"account {idx} at {ts} {ACCOUNT_FEATURES[j]}: kernel "
                               f"{float(got[j])!r} reference {want[j]!r}")
    assert not bad, "\n".join(bad[:20])


def run_both(scn: Scenario) -> Outcome:
    """Process ``scn`` with the kernels and the reference, asserting that they agree."""
    state = FeatureState.create(accounts=scn.n_accounts, phones=scn.n_phones,
                                devices=scn.n_devices, pairs=4 * (len(scn.events) + 1))
    # the same stream computing only the features a rule reads must decide the same
    lean = FeatureState.create(accounts=scn.n_accounts, phones=scn.n_phones,
                               devices=scn.n_devices, pairs=4 * (len(scn.events) + 1))
    reads = scn.txn_rules.reads.astype(bool)
    ref = ReferenceEngine()
    for entity, idx, until in scn.watches:
        getattr(state, f"set_{entity}_watch")(idx, until)
        getattr(lean, f"set_{entity}_watch")(idx, until)
        getattr(ref, f"set_{entity}_watch")(idx, until)
    for engine in (state, lean, ref):
        for idx, opened, last_active, bits, phone in scn.profiles:
            engine.set_account_profile(idx, opened_ms=opened, last_active_ms=last_active,
                                       profile=bits, phone=phone)
        for idx, column, until in scn.memory:
            engine.set_account_memory(idx, column, until)
    events = as_matrix(scn.events)
    bounds = [0, *sorted(c for c in scn.cuts if 0 < c < len(events)), len(events)]
    feats, decs = [], []
    # features from outside the kernels (graph detectors): small integers, so rules hit them
    extra_all = np.random.default_rng(len(events)).integers(0, 3, (len(events), k.N_EXTRA))
    for lo, hi in itertools.pairwise(bounds):
        chunk = np.ascontiguousarray(events[lo:hi])
        extra = np.ascontiguousarray(extra_all[lo:hi], dtype=np.float64)
        feat, dec = state.process(chunk, scn.params, scn.txn_rules, scn.call_rules, extra=extra)
        ref_feat, ref_dec = ref.process(chunk, scn.params, scn.txn_rules, scn.call_rules,
                                        extra=extra.tolist())
        assert_rows_equal(chunk, feat, dec, ref_feat, ref_dec, lo)
        lean_feat, lean_dec = lean.process(chunk, scn.params, scn.txn_rules, scn.call_rules,
                                           extra=extra, all_features=False)
        np.testing.assert_array_equal(lean_dec, dec)
        is_txn = chunk[:, k.EV_KIND] == k.KIND_TXN
        np.testing.assert_array_equal(lean_feat[is_txn][:, reads], feat[is_txn][:, reads])
        feats.append(feat)
        decs.append(dec)
    assert state.pair_count == ref.pair_count
    times = list(scn.snapshot_times)
    if len(events):
        times += [int(events[-1, k.EV_TS]), int(events[:, k.EV_TS].max())]
    assert_snapshots_equal(state, ref, scn.n_accounts, times or [T0], scn.params)
    features = np.concatenate(feats) if feats else np.zeros((0, k.N_TXN_FEATURE))
    decisions = np.concatenate(decs) if decs else np.zeros((0, k.N_DEC), dtype=np.int64)
    return Outcome(features, decisions, state, ref)


# ================================================================= strategies
# Event time = a clock that only moves forward, less an occasional lateness (out-of-order events).
FORWARD = st.one_of(
    st.sampled_from([
        0, 0, 1, 999, 1_000, 9_999, 10_000, 59_999, 60_000, 600_000, HOUR_MS, 2 * HOUR_MS,
        DAY_MS - 1, DAY_MS, 7 * DAY_MS, 8 * DAY_MS, 10 * DAY_MS,
    ]),
    st.integers(0, 120_000),
    st.integers(0, 6 * HOUR_MS),
    st.integers(0, 2 * DAY_MS),
)
DENSE_FORWARD = st.one_of(  # fan-out streams: rings must fill within the windows
    st.sampled_from([0, 1, 999, 1_000, 10_000]),
    st.integers(0, 600_000),
    st.integers(0, 2 * HOUR_MS),
)
LATENESS = st.one_of(
    st.just(0), st.just(0), st.just(0),
    st.sampled_from([1, 10_000, HOUR_MS, DAY_MS, 6 * DAY_MS, 7 * DAY_MS, 8 * DAY_MS]),
    st.integers(0, 2 * DAY_MS),
)
OPENED = st.one_of(st.just(NO_TIME), st.just(NO_TIME),
                   st.integers(T0 - 400 * DAY_MS, T0 + DAY_MS))
WATCH_UNTIL = st.one_of(st.just(0), st.integers(T0 - 2 * DAY_MS, T0 + 3 * DAY_MS),
                        st.just(2**62))
CALL_CLASS = st.integers(0, 6)


@st.composite
def params_strategy(draw: st.DrawFn) -> np.ndarray:
    tz = draw(st.one_of(
        st.sampled_from([0, TZ_CN, -5 * HOUR_MS, 19_800_000, 14 * HOUR_MS, -12 * HOUR_MS]),
        st.integers(-56, 56).map(lambda q: q * 900_000),
    ))
    spans = st.one_of(st.sampled_from([0, MINUTE_MS, HOUR_MS, DAY_MS, 7 * DAY_MS]),
                      st.integers(0, 10 * DAY_MS))
    return make_params(
        tz=tz,
        protect_ms=draw(spans), mule_ms=draw(spans), collector_ms=draw(spans),
        risky_number_ms=draw(spans), learn_ms=draw(spans), dormant_ms=draw(spans),
        mule_max_level=draw(st.integers(0, 3)), hub_payers=draw(st.integers(0, 17)),
        follow_ms=draw(spans), protect_stop_ms=draw(spans),
        test_transfer=draw(st.sampled_from([0, 1, 1_000, 10_000, 10**12])),
        short_call_s=draw(st.integers(0, 60)),
        lookback_ms=draw(st.one_of(st.sampled_from([0, 60_000, HOUR_MS, DAY_MS]),
                                   st.integers(0, 2 * DAY_MS))),
        mark=draw(st.integers(1, 5)),
        alpha_ppm=draw(st.one_of(st.sampled_from([0, 1, 100_000, 500_000, 999_999, 1_000_000]),
                                 st.integers(0, 1_000_000))),
    )


@st.composite
def events_strategy(draw: st.DrawFn, params: np.ndarray, n_accounts: int, n_phones: int,
                    n_devices: int, max_events: int, fan_out: bool) -> list[list[int]]:
    """``fan_out``: one or two payers / callers reach the whole id space (rings saturate)."""
    short_s = int(params[k.P_SHORT_CALL_S])
    amounts = st.one_of(
        st.integers(1, 10**12),
        st.integers(1, 10_000),
        st.sampled_from([1, 2, 10**12, 4_500_000, 4_999_999]),
    )
    account = st.one_of(st.integers(0, min(2, n_accounts - 1)), st.integers(0, n_accounts - 1))
    phone = st.integers(0, n_phones - 1)
    payer, payee, caller = account, account, phone
    if fan_out:
        payer = caller = st.sampled_from([0, 0, 0, 1])
        payee = st.integers(0, n_accounts - 1)
    clock = T0 + draw(st.integers(-DAY_MS, DAY_MS))
    events = []
    for _ in range(draw(st.integers(0, max_events))):
        clock += draw(DENSE_FORWARD if fan_out else FORWARD)
        ts = clock - draw(LATENESS)
        if draw(st.integers(0, 9)) < 7:
            events.append(txn(
                ts, draw(payer), draw(payee), draw(amounts),
                flags=draw(st.integers(0, 2047)),
                phone=draw(st.integers(-1, n_phones - 1)),
                device=draw(st.integers(-1, n_devices - 1)),
                opened_a=draw(OPENED), opened_b=draw(OPENED),
                channel=draw(st.integers(0, 5)),
                payee_phone=draw(st.integers(-1, n_phones - 1)),
            ))
        else:
            row = call(ts, draw(caller), draw(phone),
                       draw(st.one_of(st.integers(0, 120), st.integers(0, 7_200),
                                      st.sampled_from([max(short_s - 1, 0), short_s]))),
                       flags=draw(st.integers(0, 3)), cls=draw(CALL_CLASS))
            row[k.EV_AUX2] = draw(st.integers(-5, 5))
            row[k.EV_AUX3] = draw(st.one_of(st.integers(0, 5), st.integers(-5, 7)))  # outcome
            events.append(row)
    return events


def _observed(ref_feat: list[list[float]], events: list[list[int]], kind: int,
              j: int) -> list[float]:
    return sorted({row[j] for row, ev in zip(ref_feat, events, strict=True)
                   if ev[k.EV_KIND] == kind})


@st.composite
def rules_strategy(draw: st.DrawFn, n_features: int,
                   observed: list[list[float]]) -> RuleTable:
    """Up to 6 rules of up to 3 conditions; thresholds often equal to a value seen in the data."""
    rules = []
    for _ in range(draw(st.integers(0, 6))):
        conds = []
        for _ in range(draw(st.integers(0, 3))):
            j = draw(st.one_of(st.integers(0, n_features - 1),
                               st.integers(0, k.N_TXN_FEATURE - 1)))
            fixed = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 100.0, 1e9])
            seen = observed[j]
            thr = draw(st.one_of(st.sampled_from(seen), st.sampled_from(seen), fixed)
                       if seen else fixed)
            conds.append((j, draw(st.integers(k.OP_GE, k.OP_NE)), thr))
        rules.append((conds, draw(st.integers(1, 5)), draw(st.integers(0, 100)),
                      draw(st.integers(0, 255)), draw(st.integers(0, 255))))
    return RuleTable.build(rules)


@st.composite
def scenarios(draw: st.DrawFn, n_accounts: int = 8, n_phones: int = 6, n_devices: int = 4,
              max_events: int = 40, fan_out: bool = False) -> Scenario:
    params = draw(params_strategy())
    events = draw(events_strategy(params, n_accounts, n_phones, n_devices, max_events, fan_out))
    watches = draw(st.lists(st.one_of(
        st.tuples(st.just("account"), st.integers(0, n_accounts - 1), WATCH_UNTIL),
        st.tuples(st.just("phone"), st.integers(0, n_phones - 1), WATCH_UNTIL),
        st.tuples(st.just("device"), st.integers(0, n_devices - 1), WATCH_UNTIL),
    ), max_size=6))
    times = st.one_of(st.just(0), st.integers(T0 - 2 * DAY_MS, T0 + 3 * DAY_MS))
    profiles = draw(st.lists(st.tuples(
        st.integers(0, n_accounts - 1), st.one_of(st.none(), st.integers(T0 - 400 * DAY_MS, T0)),
        st.one_of(st.none(), st.integers(T0 - 400 * DAY_MS, T0 + DAY_MS)),
        st.integers(0, 15), st.integers(-1, n_phones - 1)), max_size=4))
    memory = draw(st.lists(st.tuples(
        st.integers(0, n_accounts - 1),
        st.sampled_from([k.SC_VICTIM_UNTIL, k.SC_MULE_UNTIL, k.SC_COLLECTOR_UNTIL,
                         k.SC_CONFIRMED_UNTIL, k.SC_CLEARED_UNTIL]), times), max_size=4))
    # a rule-free pass of the reference gives feature values to use as exact thresholds
    probe = ReferenceEngine()
    for entity, idx, until in watches:
        getattr(probe, f"set_{entity}_watch")(idx, until)
    for idx, opened, last_active, bits, phone in profiles:
        probe.set_account_profile(idx, opened_ms=opened, last_active_ms=last_active,
                                  profile=bits, phone=phone)
    for idx, column, until in memory:
        probe.set_account_memory(idx, column, until)
    probe_feat, _ = probe.process(events, params, NO_RULES, NO_RULES)
    txn_seen = [_observed(probe_feat, events, k.KIND_TXN, j) for j in range(k.N_TXN_FEATURE)]
    call_seen = [_observed(probe_feat, events, k.KIND_CALL, j) for j in range(k.N_TXN_FEATURE)]
    last = events[-1][k.EV_TS] if events else T0
    return Scenario(
        events=events,
        params=params,
        txn_rules=draw(rules_strategy(k.N_TXN_FEATURE, txn_seen)),
        call_rules=draw(rules_strategy(k.N_CALL_FEATURE, call_seen)),
        watches=watches,
        profiles=profiles,
        memory=memory,
        cuts=draw(st.lists(st.integers(0, len(events)), max_size=2)),
        snapshot_times=[last + draw(FORWARD), last - draw(LATENESS), T0 - DAY_MS],
        n_accounts=n_accounts,
        n_phones=n_phones,
        n_devices=n_devices,
    )


# ================================================================= property tests
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_random_streams_give_the_same_features_decisions_and_snapshots(scn: Scenario) -> None:
    """Random mixed streams over a small id space: kernels and reference agree on everything."""
    run_both(scn)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(n_accounts=24, n_phones=24, n_devices=2, max_events=100, fan_out=True))
def test_random_streams_with_saturated_rings_agree(scn: Scenario) -> None:
    """Wider id spaces, where payers and callers exceed RING_K counterparties, agree too."""
    run_both(scn)


# ================================================================= edge cases
def test_empty_stream_gives_empty_outputs_and_untouched_state() -> None:
    """No events: zero rows out, and every snapshot equals the reference's fresh state."""
    out = run_both(Scenario(events=[], snapshot_times=[T0]))
    assert out.features.shape == (0, k.N_TXN_FEATURE)
    assert out.decisions.shape == (0, k.N_DEC)
    assert out.state.pair_count == 0


def test_one_transaction_counts_itself_in_every_window() -> None:
    """A single transfer: its own amount in every window sum, history empty, ratio 1."""
    out = run_both(Scenario(events=[txn(T0, 0, 1, 5_000)]))
    f = out.features[0]
    assert f[tcol("amount")] == 5_000
    assert f[tcol("first_time_payee")] == 1.0
    assert f[tcol("payer_history_count")] == 0.0
    assert f[tcol("payer_amount_ratio")] == 1.0
    assert f[tcol("payer_amount_zscore")] == 0.0
    for win in ("1m", "1h", "24h", "7d"):
        assert f[tcol(f"payer_out_count_{win}")] == 1.0
        assert f[tcol(f"payer_out_sum_{win}")] == 5_000
        assert f[tcol(f"payee_in_count_{win}")] == 1.0
        assert f[tcol(f"payer_in_count_{win}")] == 0.0
    for win in ("1h", "24h", "7d"):
        assert f[tcol(f"payer_out_distinct_{win}")] == 1.0
        assert f[tcol(f"payee_in_distinct_{win}")] == 1.0
    assert f[tcol("payer_pass_through_1h")] == 0.0  # nothing came in
    assert f[tcol("payer_day_transfer_out_sum")] == 5_000
    assert f[tcol("risky_call_minutes_ago")] == k.FAR_MINUTES
    assert out.decisions[0].tolist() == [k.ACTION_ALLOW, 0, 0, 0, 0, 0]


def test_a_tested_account_is_known_until_it_does_something_else() -> None:
    """A tiny person-to-person transfer as an account's first act starts its trial; people paying
    it in keep it; a payment out that is no test, or a wage from an organisation, ends it."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    hour = HOUR_MS
    out = run_both(Scenario(events=[
        txn(T0, 9, 1, 500, flags=p2p),                  # the gang tests account 1 (5 CNY)
        txn(T0 + hour, 2, 1, 400_000, flags=p2p),       # a victim pays it
        txn(T0 + 2 * hour, 3, 1, 90_000, flags=p2p),    # a second one
        txn(T0 + 3 * hour, 1, 8, 480_000, flags=p2p),   # it forwards the money
        txn(T0 + 4 * hour, 4, 1, 50_000, flags=p2p),    # ... and is a tested account no more
        txn(T0 + 5 * hour, 5, 6, 800, flags=p2p),       # 6's first act: a test too
        txn(T0 + 6 * hour, 7, 6, 300_000, flags=k.TF_PAYEE_PERSON),  # its wage (an organisation)
        txn(T0 + 7 * hour, 2, 6, 300_000, flags=p2p),
        txn(T0 + 8 * hour, 10, 11, 20_000, flags=p2p),  # an ordinary first payment: no test
        txn(T0 + 9 * hour, 2, 11, 90_000, flags=p2p),
    ], n_accounts=12))
    payee = [f[tcol("payee_days_since_test_transfer")] for f in out.features]
    payer = [f[tcol("payer_days_since_test_transfer")] for f in out.features]
    far = k.FAR_DAYS
    assert payee[:5] == [far, 1 / 24, 2 / 24, far, far]
    assert payer[3] == 3 / 24  # the forward sees the test it was
    assert payee[5:8] == [far, 1 / 24, far]
    assert payee[9] == far


def test_persons_paid_in_within_the_hour_leave_out_organisations() -> None:
    """What a payer received in the last hour from people, not from a firm: the boss paying the
    staff from a personal card after the company paid the card, or a victim paying a loan on,
    passes on an organisation's money; a mule passes on strangers'."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    out = run_both(Scenario(events=[
        txn(T0, 7, 1, 900_000, flags=k.TF_PAYEE_PERSON),           # the firm pays the boss's card
        txn(T0 + 60_000, 1, 8, 300_000, flags=p2p),                # the boss pays the staff
        txn(T0 + 120_000, 2, 1, 200_000, flags=p2p),               # a person pays the boss
        txn(T0 + 180_000, 1, 9, 300_000, flags=p2p),
        txn(T0 + 2 * HOUR_MS, 1, 10, 100_000, flags=p2p),          # an hour later: nobody
    ], n_accounts=12))
    persons = [f[tcol("payer_in_distinct_persons_1h")] for f in out.features]
    everyone = [f[tcol("payer_in_distinct_1h")] for f in out.features]
    assert persons[1] == 0 and everyone[1] == 1
    assert persons[3] == 1 and everyone[3] == 2
    assert persons[4] == 0
    day = [f[tcol("payer_in_distinct_persons_24h")] for f in out.features]
    assert day[4] == 1  # the person who paid two hours ago, still within the day


def test_the_weeks_inflow_over_the_payment_counts_every_payer_and_only_the_week() -> None:
    """A buyer pays a seller what the family and the employer sent in (the firm's wage counts:
    money is money); the week is seven local days, today's included: money that came in six days
    before counts, money of the day before those does not; a payment out is no inflow."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    buyer, mother, firm, seller, aunt = 1, 2, 3, 4, 5
    day = 24 * HOUR_MS
    # T0 is half a minute before a local midnight: every payment at about 04:00 local
    early = T0 + 4 * HOUR_MS
    out = run_both(Scenario(events=[
        txn(early, aunt, buyer, 900_000, flags=p2p),                  # day 0: outside the week below
        txn(early + day, mother, buyer, 600_000, flags=p2p),          # day 1: six days before day 7
        txn(early + 2 * day, firm, buyer, 200_000, flags=k.TF_PAYEE_PERSON),
        txn(early + 7 * day, buyer, seller, 1_600_000, flags=p2p),
        txn(early + 7 * day + MINUTE_MS, buyer, seller, 400_000, flags=p2p),
        txn(early + 16 * day, buyer, seller, 100_000, flags=p2p),
    ], n_accounts=8))
    cover = [f[tcol("payer_in_cover_7d")] for f in out.features]
    assert cover[3] == 0.5 and cover[4] == 2.0  # the aunt's day fell out; the payment out is no inflow
    assert cover[5] == 0.0


def test_relatives_who_paid_in_are_persons_but_no_strangers() -> None:
    """A family pools a down payment: the mother (who calls the buyer) pays in, then an account
    on the buyer's own phone (a gang runs several accounts from one phone: no relative) and a
    stranger; the buyer pays the seller. Phones are learned
    from each account's payments; a phone the registry gives wins, and a payee's learned phone
    is not 'known' to the payee-phone features."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    buyer, mother, own, stranger, seller = 1, 2, 3, 4, 5
    out = run_both(Scenario(events=[
        txn(T0, buyer, 9, 5_000, flags=p2p, phone=11),              # the buyer's phone: 11
        call(T0 + MINUTE_MS, 12, 11, 300),                          # the mother calls
        txn(T0 + 2 * MINUTE_MS, mother, buyer, 900_000, flags=p2p, phone=12),
        txn(T0 + 3 * MINUTE_MS, own, buyer, 500_000, flags=p2p, phone=11),
        txn(T0 + 4 * MINUTE_MS, stranger, buyer, 300_000, flags=p2p, phone=13),
        txn(T0 + 5 * MINUTE_MS, buyer, seller, 1_600_000, flags=p2p, phone=11),
        txn(T0 + 6 * MINUTE_MS, seller, buyer, 100, flags=p2p, phone=14),
    ], n_accounts=12, n_phones=16))
    last = out.features[5]
    assert last[tcol("payer_in_distinct_persons_1h")] == 3
    assert last[tcol("payer_in_strangers_1h")] == 2 and last[tcol("payer_in_strangers_24h")] == 2
    assert out.features[6][tcol("payee_phone_known")] == 0.0  # the buyer's phone was learned


def test_the_payer_talks_with_the_payee_by_any_phone_of_either() -> None:
    """A mother who calls her son pays his account: each phone learned from its account's own
    payments (none named on the payment itself), so only the learned phones say they talk; a
    stranger, a payee on the payer's own phone and a phone that only rang once at a third number
    do not."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    son, mother, stranger, twin = 1, 2, 3, 4
    out = run_both(Scenario(events=[
        txn(T0, son, 9, 5_000, flags=p2p, phone=11),                  # the son's phone: 11
        txn(T0 + MINUTE_MS, mother, 9, 5_000, flags=p2p, phone=12),   # the mother's: 12
        txn(T0 + 2 * MINUTE_MS, stranger, 9, 5_000, flags=p2p, phone=13),
        txn(T0 + 3 * MINUTE_MS, twin, 9, 5_000, flags=p2p, phone=12),  # on the mother's phone
        call(T0 + 4 * MINUTE_MS, 11, 12, 300),                        # the son calls his mother
        call(T0 + 5 * MINUTE_MS, 13, 14, 60),
        txn(T0 + 6 * MINUTE_MS, mother, son, 900_000, flags=p2p),     # no phone on the payment
        txn(T0 + 7 * MINUTE_MS, stranger, son, 900_000, flags=p2p),
        txn(T0 + 8 * MINUTE_MS, mother, twin, 900_000, flags=p2p),
        txn(T0 + 9 * MINUTE_MS, son, mother, 100_000, flags=p2p, phone=11),
        # a mule account whose phone card the gang calls from: its first call to the mother
        # makes no acquaintance of it; a second call (a relative's new phone) does
        txn(T0 + 10 * MINUTE_MS, 5, 9, 5_000, flags=p2p, phone=15),
        call(T0 + 11 * MINUTE_MS, 15, 12, 600),
        txn(T0 + 12 * MINUTE_MS, mother, 5, 900_000, flags=p2p, phone=12),
        call(T0 + 13 * MINUTE_MS, 15, 12, 600),
        txn(T0 + 14 * MINUTE_MS, mother, 5, 900_000, flags=p2p, phone=12),
    ], n_accounts=12, n_phones=16))
    talks = [f[tcol("payer_talks_with_payee")] for f in out.features]
    assert talks[6] == 1.0 and talks[9] == 1.0
    assert talks[7] == 0.0 and talks[8] == 0.0
    assert talks[12] == 0.0 and talks[14] == 1.0
    assert out.features[6][tcol("payee_phone_known_contact")] == 0.0  # learned phones only


def test_the_last_call_says_if_it_was_a_first_contact_and_if_the_payee_made_it() -> None:
    """A first call from a number (in the learning period too), a second from the same; the
    payee's phone learned from its own payment is the one that called."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    out = run_both(Scenario(events=[
        txn(T0, 2, 9, 5_000, flags=p2p, phone=3),                   # the son's account, phone 3
        call(T0 + MINUTE_MS, 3, 1, 300),                            # the son calls his mother
        txn(T0 + 10 * MINUTE_MS, 1, 2, 900_000, flags=p2p, phone=1),  # she pays him
        call(T0 + 20 * MINUTE_MS, 3, 1, 300),
        txn(T0 + 30 * MINUTE_MS, 1, 4, 900_000, flags=p2p, phone=1),  # and someone else
    ], n_accounts=12, n_phones=8))
    first = [f[tcol("payer_last_call_first_contact")] for f in out.features]
    caller = [f[tcol("payee_phone_is_last_caller")] for f in out.features]
    assert first[2] == 1.0 and first[4] == 0.0
    assert caller[2] == 1.0 and caller[4] == 0.0


def test_a_relative_returning_the_payers_call_is_someone_she_talks_with() -> None:
    """The mother called her son's number; he calls back (his first call to her: a first
    contact, as call rules count it), and her payment to him after it is a payment to someone
    she talks with: she dialled him before, so he is no fraudster met on this call."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    out = run_both(Scenario(events=[
        txn(T0, 2, 9, 5_000, flags=p2p, phone=3),                   # the son's account, phone 3
        call(T0 + MINUTE_MS, 1, 3, 120),                            # she calls him
        call(T0 + 60 * MINUTE_MS, 3, 1, 300),                       # he calls back
        txn(T0 + 70 * MINUTE_MS, 1, 2, 900_000, flags=p2p, phone=1),  # she pays him
        call(T0 + 80 * MINUTE_MS, 5, 1, 300),                       # a stranger's first call
    ], n_accounts=12, n_phones=8))
    assert out.features[1][ccol("first_contact")] == 1.0
    assert out.features[2][ccol("first_contact")] == 1.0
    assert out.features[4][ccol("first_contact")] == 1.0
    pay = out.features[3]
    assert pay[tcol("payer_last_call_first_contact")] == 1.0
    assert pay[tcol("payee_phone_is_last_caller")] == 1.0
    assert pay[tcol("payer_talks_with_payee")] == 1.0


@pytest.mark.parametrize(("after_s", "counted"), [(3_599, 1), (3_600, 0)])
def test_a_person_who_paid_in_counts_for_exactly_an_hour(after_s: int, counted: int) -> None:
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    out = run_both(Scenario(events=[
        txn(T0, 2, 1, 200_000, flags=p2p),
        txn(T0 + after_s * 1_000, 1, 9, 100_000, flags=p2p),
    ], n_accounts=12))
    assert out.features[1][tcol("payer_in_distinct_persons_1h")] == counted


def _hold_from(amount: int) -> RuleTable:
    """One rule: a payment of ``amount`` or more is held and protects its payer (a victim)."""
    ints = np.zeros((1, k.N_RULE_INT), dtype=np.int64)
    ints[0, [k.RI_NCOND, k.RI_ACTION, k.RI_MARKS]] = [1, k.ACTION_HOLD, k.MK_PAYER_VICTIM]
    ints[0, k.RI_COND:k.RI_COND + 2] = [tcol("amount"), k.OP_GE]
    thresholds = np.zeros((1, k.MAX_COND), dtype=np.float64)
    thresholds[0, 0] = amount
    reads = np.zeros(k.N_TXN_FEATURE, dtype=np.uint8)
    reads[tcol("amount")] = 1
    return RuleTable(ints=ints, thresholds=thresholds, reads=reads)


def test_minutes_since_intervention_count_from_the_latest_held_payment() -> None:
    """A protected payer's next payments see how long ago its latest payment was held (the
    scam goes on for minutes after an intervention); a payer never held, or cleared by
    feedback, has none (FAR_MINUTES)."""
    p2p = k.TF_PAYER_PERSON | k.TF_PAYEE_PERSON
    minute = 60_000
    out = run_both(Scenario(events=[
        txn(T0, 1, 5, 900_000, flags=p2p),                # held: 1 is protected
        txn(T0 + 5 * minute, 1, 6, 5_000, flags=p2p),     # five minutes later, a new payee
        txn(T0 + 9 * minute, 1, 7, 950_000, flags=p2p),   # held again
        txn(T0 + 30 * minute, 1, 8, 5_000, flags=p2p),    # counted from the latest hold
        txn(T0 + 31 * minute, 2, 8, 5_000, flags=p2p),    # never held
        txn(T0 + 40 * minute, 3, 8, 5_000, flags=p2p),    # cleared by feedback
    ], txn_rules=_hold_from(900_000), memory=[(3, k.SC_VICTIM_UNTIL, T0 + DAY_MS),
                                              (3, k.SC_CLEARED_UNTIL, T0 + DAY_MS)],
        n_accounts=12))
    since = [f[tcol("payer_minutes_since_intervention")] for f in out.features]
    assert [int(d[k.D_ACTION]) for d in out.decisions[:4]] == [
        k.ACTION_HOLD, k.ACTION_ALLOW, k.ACTION_HOLD, k.ACTION_ALLOW]
    assert since[0] == k.FAR_MINUTES  # not protected before its own payment
    assert since[1] == 5.0
    assert since[3] == 21.0
    assert since[4] == k.FAR_MINUTES
    assert since[5] == k.FAR_MINUTES


def test_two_events_in_the_same_bucket_add_up() -> None:
    """Two transfers 1 ms apart in one 10 s bucket: counts 2, sums add, second is not first-time."""
    out = run_both(Scenario(events=[txn(T0, 0, 1, 700), txn(T0 + 1, 0, 1, 300)]))
    f = out.features[1]
    assert f[tcol("payer_out_count_1m")] == 2.0
    assert f[tcol("payer_out_sum_1m")] == 1_000
    assert f[tcol("payer_out_distinct_1h")] == 1.0
    assert f[tcol("first_time_payee")] == 0.0
    assert f[tcol("payer_history_count")] == 1.0


def test_identical_timestamps_are_ties_not_reorderings() -> None:
    """Events with the same timestamp all count, in the order given."""
    events = [txn(T0, a, 1, 100 + a) for a in range(3)] + [txn(T0, 1, 0, 50)]
    out = run_both(Scenario(events=events))
    f = out.features[3]
    assert f[tcol("payer_in_count_1m")] == 3.0
    assert f[tcol("payer_in_sum_1m")] == 303
    assert f[tcol("payee_paid_payer_before")] == 1.0
    assert f[tcol("payer_payback_distinct_7d")] == 1.0


def test_the_payer_side_counts_the_investments_the_payer_took_in() -> None:
    """Paying out, an account's 'investment' receipts of the last 7 days count (older ones and
    other memos do not); the payee's own count is untouched by what its payer took in."""
    inv = k.TF_MEMO_INVEST
    events = [txn(T0, 2, 1, 1_000, flags=inv), txn(T0 + 8 * DAY_MS, 3, 1, 2_000, flags=inv),
              txn(T0 + 8 * DAY_MS + 1, 4, 1, 3_000, flags=inv), txn(T0 + 8 * DAY_MS + 2, 5, 1, 500),
              txn(T0 + 8 * DAY_MS + HOUR_MS, 1, 6, 5_000)]
    out = run_both(Scenario(events=events))
    assert out.features[2][tcol("payee_investment_in_count_7d")] == 2.0
    assert out.features[2][tcol("payer_investment_in_count_7d")] == 0.0
    paying = out.features[4]
    assert paying[tcol("payer_investment_in_count_7d")] == 2.0
    assert paying[tcol("payee_investment_in_count_7d")] == 0.0


def test_event_older_than_the_7d_ring_is_dropped_from_windows() -> None:
    """A late event 8 days behind the payer's newest bucket is counted in no window."""
    events = [txn(T0, 0, 1, 1_000), txn(T0 + 8 * DAY_MS, 0, 1, 2_000), txn(T0, 0, 1, 4_000)]
    out = run_both(Scenario(events=events, snapshot_times=[T0 + 8 * DAY_MS]))
    late = out.features[2]
    for win in ("1m", "1h", "24h", "7d"):
        assert late[tcol(f"payer_out_count_{win}")] == 0.0
        assert late[tcol(f"payee_in_sum_{win}")] == 0.0
    # an earlier day than the newest: its day sums are gone, the late event's own amount stays
    assert late[tcol("payer_day_transfer_out_sum")] == 4_000.0
    assert late[tcol("payer_day_cash_out_sum")] == 0.0
    assert late[tcol("payer_history_count")] == 2.0
    snap = out.state.snapshot(0, T0 + 8 * DAY_MS, make_params())
    assert snap[scol("out_count_7d")] == 1.0
    assert snap[scol("out_sum_7d")] == 2_000
    assert snap[scol("history_out_count")] == 3.0


def test_late_event_inside_7d_counts_only_in_windows_that_still_hold_it() -> None:
    """An event 3 days late lands in the 7d window but not in 24h or shorter ones."""
    events = [txn(T0, 0, 1, 1_000), txn(T0 + 3 * DAY_MS, 0, 1, 4_000)]
    late = T0 + 3 * DAY_MS - 3 * DAY_MS + HOUR_MS
    events.append(txn(late, 0, 2, 2_000))
    out = run_both(Scenario(events=events, snapshot_times=[T0 + 3 * DAY_MS]))
    snap = out.state.snapshot(0, T0 + 3 * DAY_MS, make_params())
    assert snap[scol("out_count_7d")] == 3.0
    assert snap[scol("out_sum_7d")] == 7_000
    assert snap[scol("out_count_24h")] == 1.0
    assert snap[scol("out_sum_24h")] == 4_000


def test_day_sums_follow_the_local_day_not_the_utc_day() -> None:
    """Sums reset at local midnight (UTC+8): 30 s before and after it are different days."""
    midnight = T0 + 30_000
    events = [txn(midnight - 1, 0, 1, 100, flags=k.TF_CASH),
              txn(midnight, 0, 1, 200, flags=k.TF_CASH | k.TF_XBORDER),
              txn(midnight + 1, 0, 1, 400)]
    out = run_both(Scenario(events=events))
    assert out.features[0][tcol("payer_day_cash_out_sum")] == 100
    assert out.features[1][tcol("payer_day_cash_out_sum")] == 200
    assert out.features[1][tcol("payer_day_cross_border_out_sum")] == 200
    assert out.features[2][tcol("payer_day_transfer_out_sum")] == 400
    assert out.features[2][tcol("payee_day_cash_in_sum")] == 200
    utc = run_both(Scenario(events=events, params=make_params(tz=0)))
    assert utc.features[2][tcol("payer_day_cash_out_sum")] == 300


def test_gap_longer_than_7_days_empties_every_window() -> None:
    """After a 10-day silence only the new event is in any window."""
    events = [txn(T0 + i * 1_000, 0, 1, 10) for i in range(5)]
    events.append(txn(T0 + 10 * DAY_MS, 0, 1, 20))
    f = run_both(Scenario(events=events)).features[5]
    assert f[tcol("payer_out_count_7d")] == 1.0
    assert f[tcol("payer_out_sum_7d")] == 20
    assert f[tcol("payer_out_distinct_7d")] == 1.0


def test_huge_amounts_sum_exactly() -> None:
    """100 transfers of 10**12 fen sum to exactly 10**14 in the 1h, 24h and 7d windows."""
    events = [txn(T0 + i * 10, 0, 1, 10**12) for i in range(100)]
    f = run_both(Scenario(events=events)).features[99]
    for win in ("1h", "24h", "7d"):
        assert f[tcol(f"payer_out_sum_{win}")] == 10**14
        assert f[tcol(f"payee_in_sum_{win}")] == 10**14
    assert f[tcol("payer_day_transfer_out_sum")] == 10**14


def test_17th_distinct_counterparty_saturates_the_ring_at_ring_k() -> None:
    """Paying 17 payees: distinct counts stop at RING_K and the stalest payee is forgotten."""
    events = [txn(T0 + i * 1_000, 0, 1 + i, 100) for i in range(k.RING_K + 1)]
    out = run_both(Scenario(events=events, n_accounts=k.RING_K + 2))
    assert out.features[k.RING_K - 1][tcol("payer_out_distinct_1h")] == k.RING_K
    assert out.features[k.RING_K][tcol("payer_out_distinct_1h")] == k.RING_K
    assert out.features[k.RING_K][tcol("payer_out_count_1h")] == k.RING_K + 1


def test_ring_ties_replace_the_first_slot_holding_the_oldest_time() -> None:
    """With 16 payees in one second, new payees replace slots in slot order; counts agree."""
    same_second = [txn(T0 + i, 0, 1 + i, 100) for i in range(k.RING_K)]
    later = [txn(T0 + 2, 0, 17, 100), txn(T0 + 3, 0, 18, 100),
             txn(T0 + 2 * HOUR_MS, 0, 2, 100), txn(T0 + 2 * HOUR_MS + 1_000, 0, 17, 100),
             txn(T0 + 2 * HOUR_MS + 2_000, 0, 19, 100)]
    out = run_both(Scenario(events=same_second + later, n_accounts=20))
    assert out.features[-1][tcol("payer_out_distinct_1h")] == 3.0
    assert out.features[-1][tcol("payer_out_distinct_24h")] == k.RING_K


def test_late_new_counterparty_does_not_evict_a_more_recent_one() -> None:
    """A full ring keeps its 16 most recent payees when a late event names an older 17th."""
    events = [txn(T0 + i * 1_000, 0, 1 + i, 100) for i in range(k.RING_K)]
    events.append(txn(T0 - 2 * DAY_MS, 0, 17, 100))
    events.append(txn(T0 + 20_000, 0, 2, 100))
    out = run_both(Scenario(events=events, n_accounts=18))
    assert out.features[-1][tcol("payer_out_distinct_1h")] == k.RING_K


def test_late_event_does_not_move_a_counterparty_back_in_time() -> None:
    """Seeing a known payee again at an older time keeps its newer last-seen second."""
    events = [txn(T0, 0, 1, 100), txn(T0 + 2 * HOUR_MS, 0, 1, 100),
              txn(T0 + HOUR_MS, 0, 1, 100), txn(T0 + 2 * HOUR_MS + 60_000, 0, 2, 100)]
    out = run_both(Scenario(events=events))
    assert out.features[-1][tcol("payer_out_distinct_1h")] == 2.0


def test_self_transfer_counts_as_both_payer_and_payee() -> None:
    """Account pays itself: out and in windows both move, rings and pairs stay consistent."""
    events = [txn(T0, 3, 3, 1_000), txn(T0 + 5, 3, 3, 1_000)]
    out = run_both(Scenario(events=events))
    f = out.features[1]
    assert f[tcol("payer_out_count_1m")] == 2.0
    assert f[tcol("payer_in_count_1m")] == 2.0
    assert f[tcol("payee_paid_payer_before")] == 1.0
    assert f[tcol("payer_pass_through_1h")] == 1.0


def test_duplicate_events_and_no_op_calls_agree() -> None:
    """Repeated identical events, a call to oneself and a call with no flags all agree."""
    e = txn(T0, 0, 1, 1_000, phone=2, device=1, opened_a=T0 - 30 * DAY_MS)
    events = [e, list(e), list(e), call(T0 + 1, 2, 2), call(T0 + 2, 2, 3, 5, flags=0),
              call(T0 + 3, 2, 3, 5, flags=k.CF_NEW), call(T0 + 4, 2, 3, 5, flags=k.CF_ENDED)]
    watches = [("device", 1, T0 + 1), ("device", 1, 0), ("phone", 2, T0 + 10)]
    out = run_both(Scenario(events=events, watches=watches))
    assert out.features[2][tcol("payer_out_count_1m")] == 3.0
    assert out.features[2][tcol("payer_account_age_days")] == 30.0
    assert out.features[2][tcol("device_watchlisted")] == 0.0  # the last watch setting wins
    calls = out.features[4:]
    assert calls[0][ccol("caller_calls_1m")] == 1.0  # flags 0: nothing counted
    assert calls[0][ccol("ringing")] == 1.0
    assert calls[1][ccol("caller_calls_1m")] == 2.0
    assert calls[2][ccol("caller_short_calls_1h")] == 1.0
    assert calls[2][ccol("first_contact")] == 0.0


def test_rules_combine_strongest_action_noisy_or_score_and_flags() -> None:
    """Three rules fire at 10% each: score 27 (1 - 0.9**3, rounded), max action, OR flags."""
    amount = float(5_000)
    rules = RuleTable.build([
        ([(k.F_AMOUNT, k.OP_EQ, amount)], 2, 10, 1, 0),
        ([(k.F_AMOUNT, k.OP_GE, amount)], 3, 10, 2, 0),
        ([(k.F_AMOUNT, k.OP_LE, amount)], 2, 10, 4, 0),
        ([(k.F_AMOUNT, k.OP_GT, amount)], 4, 90, 8, 0),
        ([(k.F_AMOUNT, k.OP_NE, amount)], 4, 90, 16, 0),
        ([(k.F_AMOUNT, k.OP_LT, amount)], 4, 90, 32, 0),
    ])
    out = run_both(Scenario(events=[txn(T0, 0, 1, 5_000)], txn_rules=rules))
    assert out.decisions[0].tolist() == [3, 0b111, 27, 7, 0, 0]


def test_all_rules_firing_set_every_reason_bit_of_both_words() -> None:
    """MAX_RULES unconditional rules: all 63 bits of both reason words set, score rounds to 100;
    one rule past the first word sets only the high word's first bit."""
    word = (1 << k.REASON_WORD) - 1
    rules = RuleTable.build([([], 2, 50, 0, 0)] * k.MAX_RULES)
    out = run_both(Scenario(events=[txn(T0, 0, 1, 1)], txn_rules=rules))
    assert out.decisions[0].tolist() == [2, word, 100, 0, 0, word]
    never = [([(k.F_AMOUNT, k.OP_LT, 0.0)], 4, 90, 0, 0)] * k.REASON_WORD
    rules = RuleTable.build([*never, ([], 3, 50, 1, 0)])
    out = run_both(Scenario(events=[txn(T0, 0, 1, 1)], txn_rules=rules))
    assert out.decisions[0].tolist() == [3, 0, 50, 1, 0, 1]


def test_risky_call_marks_the_callee_phone_for_later_transactions() -> None:
    """A call decided at the mark action marks the callee; the payer using that phone sees it."""
    call_rules = RuleTable.build([([(k.CF_FIRST_CONTACT, k.OP_EQ, 1.0)], 2, 80, 0, 0)])
    events = [call(T0, 0, 1, 600), txn(T0 + 6 * MINUTE_MS, 0, 1, 10_000, phone=1),
              txn(T0 + 2 * HOUR_MS, 0, 1, 10_000, phone=1), call(T0 + 3 * HOUR_MS, 0, 1, 5),
              txn(T0 + 3 * HOUR_MS + MINUTE_MS, 0, 1, 1, phone=1)]
    out = run_both(Scenario(events=events, call_rules=call_rules,
                            watches=[("phone", 0, T0 + DAY_MS)]))
    f = out.features[1]
    assert f[tcol("risky_call_recent")] == 1.0
    assert f[tcol("risky_call_minutes_ago")] == 6.0
    assert f[tcol("risky_call_score")] == 80.0
    assert f[tcol("risky_call_caller_watchlisted")] == 1.0
    assert out.features[2][tcol("risky_call_recent")] == 0.0  # beyond the 1 h lookback
    assert out.features[2][tcol("risky_call_minutes_ago")] == 120.0
    assert out.features[4][tcol("risky_call_minutes_ago")] == 181.0  # 2nd call not first contact


def test_risky_contact_mark_marks_the_callee_of_an_allowed_call() -> None:
    """An ALLOW call rule marking risky_contact marks the callee as a warned call would; the
    same rule without the mark leaves the payer's later payment unaware of the call."""
    events = [call(T0, 0, 1, 600), txn(T0 + 6 * MINUTE_MS, 0, 1, 10_000, phone=1)]
    for marks, recent in ((k.MK_RISKY_CONTACT, 1.0), (0, 0.0)):
        rules = RuleTable.build([([(k.CF_FIRST_CONTACT, k.OP_EQ, 1.0)], 1, 50, 0, marks)])
        out = run_both(Scenario(events=events, call_rules=rules))
        assert out.decisions[0][k.D_ACTION] == k.ACTION_ALLOW
        assert out.features[1][tcol("risky_call_recent")] == recent
        if recent:
            assert out.features[1][tcol("risky_call_score")] == 50.0


def test_snapshot_of_a_never_seen_account_reports_age_from_the_sentinel() -> None:
    """Known quirk, kept equal on purpose: an unseen account's age counts from NO_TIME."""
    out = run_both(Scenario(events=[txn(T0, 0, 1, 10)]))
    age = out.state.snapshot(5, T0, make_params())[scol("account_age_days")]
    assert age == float(T0 - NO_TIME) / DAY_MS


def test_chunked_processing_equals_one_batch() -> None:
    """Splitting a stream into process() calls changes nothing (state carries over)."""
    events = [txn(T0 + i * 7_777, i % 3, (i * 5) % 4, 1_000 + i) for i in range(30)]
    whole = run_both(Scenario(events=events))
    parts = run_both(Scenario(events=events, cuts=[1, 13, 29]))
    assert np.array_equal(whole.features, parts.features)
    assert np.array_equal(whole.decisions, parts.decisions)



def test_pair_table_growth_and_expiry_keep_relationships() -> None:
    """Growing the relationship table mid-stream (rehash) changes no feature; expiry drops old pairs."""
    rng = np.random.default_rng(3)
    n = 3_000
    events = np.stack([txn(T0 + i * 60_000, int(rng.integers(0, 300)), int(rng.integers(300, 600)),
                           int(rng.integers(1, 10**6))) for i in range(n)])
    params = make_params()
    big = FeatureState.create(accounts=600, phones=1, devices=1, pairs=4 * n)
    want, _ = big.process(events, params, NO_RULES, NO_RULES)
    small = FeatureState.create(accounts=600, phones=1, devices=1, pairs=16)
    got = []
    for lo in range(0, n, 100):
        small.ensure(600, 1, 1, new_pairs=100)
        feat, _ = small.process(np.ascontiguousarray(events[lo:lo + 100]), params, NO_RULES, NO_RULES)
        got.append(feat)
    assert small.pair_capacity > 16 and small.pair_count == big.pair_count
    assert np.array_equal(np.concatenate(got), want)
    cutoff = int(events[n // 2, k.EV_TS])
    small.rehash_pairs(small.pair_capacity, min_ts=cutoff)
    assert 0 < small.pair_count < big.pair_count


def test_sums_of_huge_amounts_saturate_and_come_back_when_buckets_leave() -> None:
    """Sums past int64 stop at SUM_MAX (they wrapped negative); once the buckets that filled
    them leave the window, the total is the exact sum of those still in it."""
    big = 2**61
    events = [txn(T0 + i, 0, 1, big) for i in range(5)] + [txn(T0 + 2 * HOUR_MS, 2, 1, 7)]
    out = run_both(Scenario(events=events, snapshot_times=[T0 + 2 * HOUR_MS]))
    assert out.features[4][tcol("payee_in_sum_24h")] == float(SUM_MAX)
    assert out.features[4][tcol("payee_day_transfer_in_sum")] == float(SUM_MAX)
    later = out.features[5]
    assert later[tcol("payee_in_sum_24h")] == float(SUM_MAX)
    assert later[tcol("payee_in_sum_1h")] == 7.0  # the hour of the huge ones has left
