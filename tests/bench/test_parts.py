"""The suite's parts that need no server: histogram, traffic templates, SLA bookkeeping."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from bench._hist import LatencyHistogram
from bench._mix import MixConfig, builtin_pool, frame_pool, stamp, stamp_batch
from bench._suite import ratios, sustained_rate
from screening.offline.schema import EVENT_SCHEMA
from screening.v1 import screening_pb2 as pb


def test_histogram_percentiles_are_within_the_stated_precision() -> None:
    """Percentiles are never below the exact value and at most 2^-7 above it; max is exact."""
    values = np.random.default_rng(1).lognormal(13, 1.2, 200_000).astype(np.int64)
    h = LatencyHistogram().record(values)
    for q in (50, 90, 99, 99.9):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        got = h.percentile(q)
        assert exact <= got <= exact * (1 + h.relative_precision)
    assert h.percentile(100) == h.max_value == values.max()


def test_histograms_merge_like_one_recording() -> None:
    """Two halves merged give the same counts as recording everything at once."""
    values = np.arange(0, 5_000_000, 37, dtype=np.int64)
    whole = LatencyHistogram().record(values)
    merged = LatencyHistogram().record(values[::2]).merge(LatencyHistogram().record(values[1::2]))
    assert (merged.counts == whole.counts).all() and merged.total == whole.total
    assert LatencyHistogram.from_json(whole.to_json()).percentile(99) == whole.percentile(99)


def test_stamped_requests_are_canonical_transactions_with_unique_ids() -> None:
    """Stamping gives the exact bytes protobuf would write, each with its own id and time."""
    pool = builtin_pool(MixConfig(pool_size=300))
    ids = [f"t-{i}" for i in range(500)]
    times = [1_760_000_000_000 + 1_234 * i for i in range(500)]
    raw = stamp(pool.templates, 7, ids, times)
    for i, body in enumerate(raw):
        msg = pb.Transaction.FromString(body)
        assert msg.SerializeToString() == body
        assert msg.transaction_id == ids[i] and msg.event_time.ToMilliseconds() == times[i]
        assert msg.amount.minor_units > 0 and msg.payer.account_id != msg.payee.account_id
    batch = pb.TransactionBatch.FromString(stamp_batch(pool.templates, 0, ids[:100], times[:100]))
    assert [t.transaction_id for t in batch.transactions] == ids[:100]


def test_builtin_mix_has_repeat_payers_phones_and_memos() -> None:
    """Many accounts, some paying often, most with phones, some memos, merchants as payees."""
    txns = [pb.Transaction.FromString(t) for t in builtin_pool(MixConfig(pool_size=3_000)).templates]
    payers = [t.payer.account_id for t in txns]
    assert len(set(payers)) > 1_000
    assert len(set(payers)) < len(payers)  # repeat payers
    assert 0.5 < sum(bool(t.payer_phone) for t in txns) / len(txns) < 0.9
    assert any(t.memo for t in txns)
    assert any(t.payee.party_type == pb.PARTY_TYPE_ORGANISATION for t in txns)


def test_scenario_frames_become_templates() -> None:
    """The scenario-generator hook: rows of EVENT_SCHEMA (transactions only) become templates."""
    when = dt.datetime(2026, 3, 3, 9, tzinfo=dt.UTC)
    row: dict[str, Any] = dict.fromkeys(EVENT_SCHEMA)
    row.update(event_id="t00000000001", kind="txn", event_time=when, payer_account="A1",
               payer_institution="ICBC", payer_party_type="person",
               payer_opened_date=dt.date(2020, 1, 2), payee_account="B2",
               payee_institution="CCB", payee_party_type="organisation", amount_minor=12_345,
               currency="CNY", channel="qr", cash=False, cross_border=False, memo="分红")
    call = dict.fromkeys(EVENT_SCHEMA)
    call.update(event_id="c00000000002", kind="call", event_time=when, caller_number="+8613800000000",
                callee_number="+8613900000000", duration_seconds=0, caller_class="mobile")
    frame = pl.DataFrame([row, call], schema=EVENT_SCHEMA)
    pool = frame_pool(frame)
    assert len(pool) == 1 and pool.accounts == 2
    t = pb.Transaction.FromString(pool.templates[0])
    assert t.payee.party_type == pb.PARTY_TYPE_ORGANISATION and t.channel == pb.CHANNEL_QR
    assert t.payer.account_opened_date == "2020-01-02" and t.memo == "分红"


def _pt(rate: float, ok: bool, p50: float = 1.0, p99: float = 2.0) -> dict[str, Any]:
    return {"rate": rate, "meets_sla": ok, "p50_ms": p50, "p99_ms": p99, "p99_9_ms": p99,
            "max_ms": p99, "server_cpu_us_per_request": 100.0}


def test_sustained_rate_is_the_last_rate_before_the_first_miss() -> None:
    """A miss ends the sustained range even if a higher rate passes again."""
    s = sustained_rate([_pt(100, True), _pt(200, True), _pt(400, False), _pt(800, True)])
    assert s == {"rate": 200, "first_failing_rate": 400, "limit_reached": True,
                 "highest_passing_rate": 800}
    assert sustained_rate([_pt(100, False)])["rate"] == 0
    assert not sustained_rate([_pt(100, True)])["limit_reached"]


def test_ratios_pair_points_at_the_same_rate() -> None:
    """Ratios are taken only where both targets were measured at that rate."""
    rows = ratios([_pt(100, True, 2, 6), _pt(200, False, 4, 40)], [_pt(100, True, 1, 2)])
    assert rows == [{"rate": 100, "p50": 2.0, "p99": 3.0, "p99_9": 3.0, "max": 3.0,
                     "server_cpu_us_per_request": 1.0, "both_meet_sla": True}]
