"""The report ledger: the live engine's large-value rows equal the offline report's, days and
bounds behave as documented."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from screening.client import timestamp
from screening.config import Settings, load_settings
from screening.convert import Converter
from screening.engine import Engine
from screening.ledger import day_of, parse_day
from screening.model import Party, TxnInput
from screening.offline.reports import large_value_report, large_value_rows, thresholds_from_policy
from screening.offline.schema import CHANNELS, PARTY_TYPES
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb

POLICY = load_policy()
TH = thresholds_from_policy(POLICY)
LOCAL = dt.timezone(dt.timedelta(hours=8))
T0 = int(dt.datetime(2026, 11, 27, 10, 0, tzinfo=LOCAL).timestamp() * 1000)
DAY = 86_400_000
CNY = 100


def _settings(**ledger: int) -> Settings:
    return load_settings(overrides={"ledger": ledger, "server": {"latency_budget_ms": 1e9},
                                    "state": {"initial_accounts": 256}})


def _txn(tid: str, at: int, payer: str, payee: str, fen: int, *, inst: str = "B1",
         payee_inst: str = "B2", cash: bool = False, payee_type: int = 1) -> TxnInput:
    return TxnInput(tid, at, Party(payer, inst, 1, None), Party(payee, payee_inst, payee_type, None),
                    fen, "CNY", fen, 3 if cash else 1, cash, False, "", "", "")


def _report(engine: Engine, day: int) -> pl.DataFrame:
    view, name = engine.ledger_view(day)
    assert view.covered
    return large_value_rows(view.frame(name), TH, engine.settings)


def _proto(row: dict[str, object]) -> pb.Transaction:
    def party(side: str) -> pb.Party:
        return pb.Party(account_id=str(row[f"{side}_account"]),
                        institution=str(row[f"{side}_institution"] or ""),
                        party_type=PARTY_TYPES.index(str(row[f"{side}_party_type"])) + 1)  # type: ignore[arg-type]
    when = row["event_time"]
    assert isinstance(when, dt.datetime)
    return pb.Transaction(
        transaction_id=str(row["event_id"]), event_time=timestamp(when), payer=party("payer"),
        payee=party("payee"),
        amount=pb.Money(minor_units=int(row["amount_minor"]), currency=str(row["currency"])),  # type: ignore[call-overload]
        channel=CHANNELS.index(str(row["channel"])) + 1, cash=bool(row["cash"]),  # type: ignore[arg-type]
        cross_border=bool(row["cross_border"]))


def test_live_ledger_gives_the_offline_report_rows_for_a_synthetic_stream() -> None:
    """A labelled synthetic stream screened in batches: every day's ledger report equals the
    offline report of the same events, row for row (ids, totals, times, counterparties)."""
    stream = generate(SynthConfig(seed=11, n_persons=300, n_organisations=30, days=10,
                                  scenario_rate=0.1)).events
    settings = _settings(days=30)
    offline = large_value_report(stream, TH, settings)
    assert offline.height >= 5 and offline.get_column("n_txns").max() > 1  # type: ignore[operator]
    engine = Engine(settings, POLICY, clock_ms=lambda: 2**50)
    conv = Converter(settings, POLICY, engine.clock_ms)
    msgs = [_proto(r) for r in stream.filter(pl.col("kind") == "txn").iter_rows(named=True)]
    for lo in range(0, len(msgs), 97):
        engine.screen([conv.transaction(m) for m in msgs[lo:lo + 97]])
    horizon = engine.ledger.horizon()
    assert horizon is not None and engine.ledger.late == 0
    live = pl.concat([_report(engine, d) for d in range(horizon[0], horizon[1] + 1)])
    assert live.equals(offline)
    assert engine.ledger.rows == len(msgs)


def test_every_transaction_of_the_day_is_listed_not_only_the_crossing_one() -> None:
    """Three transfers of 200,000 CNY cross the person line at the third: all three are listed,
    on the payer's out row and the payee's in row; the next day starts from zero."""
    engine = Engine(_settings(), POLICY)
    engine.screen([_txn(f"t{i}", T0 + i * 60_000, "P1", "P2", 200_000 * CNY) for i in range(3)])
    engine.screen([_txn("t9", T0 + DAY, "P1", "P2", 200_000 * CNY)])
    rows = _report(engine, day_of(T0, 8))
    assert rows.select("account", "direction", "n_txns", "total_fen", "institution").rows() == [
        ("P1", "out", 3, 600_000 * CNY, "B1"), ("P2", "in", 3, 600_000 * CNY, "B2")]
    assert rows.get_column("event_ids").to_list() == [["t0", "t1", "t2"]] * 2
    assert _report(engine, day_of(T0, 8) + 1).height == 0


def test_local_midnight_splits_days_and_a_day_after_the_newest_is_empty() -> None:
    """23:59:59.999 and 00:00 local (UTC+8) go to two days; a later day has no rows yet."""
    midnight = int(dt.datetime(2026, 11, 28, tzinfo=LOCAL).timestamp() * 1000)
    engine = Engine(_settings(), POLICY)
    engine.screen([_txn("late", midnight - 1, "P1", "ATM1", 30_000 * CNY, cash=True, payee_type=3),
                   _txn("early", midnight, "P1", "ATM1", 30_000 * CNY, cash=True, payee_type=3)])
    day = day_of(midnight, 8)
    assert engine.ledger.horizon() == (day - 1, day)
    for d in (day - 1, day):
        view, _ = engine.ledger_view(d)
        assert view.n == 1
    later, _ = engine.ledger_view(day + 3)
    assert later.covered and later.n == 0


def test_days_leave_the_horizon_and_late_transactions_are_not_recorded() -> None:
    """With [ledger] days = 3: the fourth day drops the first; a transaction of a day before
    the horizon is counted as late, not recorded; the first day recorded starts the horizon."""
    engine = Engine(_settings(days=3), POLICY)
    first = day_of(T0, 8)
    for i in range(4):
        engine.screen([_txn(f"d{i}", T0 + i * DAY, "P1", "P2", 1_000)])
    assert engine.ledger.horizon() == (first + 1, first + 3)
    assert engine.ledger.rows == 3
    gone, _ = engine.ledger_view(first)
    assert not gone.covered and gone.n == 0
    engine.screen([_txn("old", T0 - 5 * DAY, "P1", "P2", 1_000)])
    assert engine.ledger.late == 1 and engine.ledger.rows == 3
    fresh = Engine(_settings(days=3), POLICY)
    fresh.screen([_txn("x", T0, "P1", "P2", 1_000)])
    assert fresh.ledger.horizon() == (first, first)
    before, _ = fresh.ledger_view(first - 1)
    assert not before.covered


def test_max_rows_drops_the_oldest_day_whole_and_the_horizon_starts_after_it() -> None:
    """A day that lost rows would give an incomplete report: it is dropped whole, never partly."""
    engine = Engine(_settings(days=7, max_rows=5), POLICY)
    first = day_of(T0, 8)
    engine.screen([_txn(f"a{i}", T0 + i, "P1", "P2", 1_000) for i in range(3)])
    engine.screen([_txn(f"b{i}", T0 + DAY + i, "P1", "P2", 1_000) for i in range(2)])
    assert engine.ledger.rows == 5 and engine.ledger.horizon() == (first, first + 1)
    engine.screen([_txn("c0", T0 + DAY + 9, "P1", "P2", 1_000)])
    assert engine.ledger.horizon() == (first + 1, first + 1) and engine.ledger.rows == 3
    # one day alone over max_rows cannot be complete either
    engine.screen([_txn(f"e{i}", T0 + 2 * DAY + i, "P1", "P2", 1_000) for i in range(6)])
    assert engine.ledger.horizon() == (first + 3, first + 2)  # nothing reportable yet
    assert engine.ledger.late == 6


def test_batches_spanning_days_and_chunks_keep_screening_order() -> None:
    """A batch over two days, more rows than a chunk: every id once, in screening order."""
    engine = Engine(_settings(), POLICY)
    n = 2_500
    engine.screen([_txn(f"t{i:05d}", T0 + (i % 2) * DAY + i, f"A{i % 7}", f"B{i % 5}", 100 + i)
                   for i in range(n)])
    for parity in (0, 1):
        view, name = engine.ledger_view(day_of(T0, 8) + parity)
        frame = view.frame(name)
        assert frame.get_column("event_id").to_list() == [f"t{i:05d}" for i in range(parity, n, 2)]
        assert frame.get_column("amount_fen").to_list() == [100 + i for i in range(parity, n, 2)]


def test_an_id_screened_again_after_the_idempotency_memory_forgot_it_counts_once() -> None:
    """Offline, a repeated event id counts once; so it does in the ledger's report."""
    engine = Engine(load_settings(overrides={"state": {"dedup_capacity": 2}}), POLICY)
    engine.screen([_txn("same", T0, "P1", "ATM1", 30_000 * CNY, cash=True, payee_type=3)])
    engine.screen([_txn(f"x{i}", T0 + i + 1, "P3", "P4", 10) for i in range(3)])
    engine.screen([_txn("same", T0 + 9, "P1", "ATM1", 30_000 * CNY, cash=True, payee_type=3)])
    assert engine.ledger.rows == 5
    assert _report(engine, day_of(T0, 8)).height == 0  # 30,000 once, under the cash line


@pytest.mark.parametrize(("text", "day"), [("1970-01-02", 1), ("2026-11-27", 20784),
                                           ("2026-13-01", None), ("2026-1-01", None), ("", None)])
def test_report_dates_parse_only_as_yyyy_mm_dd(text: str, day: int | None) -> None:
    assert parse_day(text) == day
