"""Large-value reports from the live report ledger, through real servers on free ports:
GetLargeValueReport, `screening report large-value --server/--checkpoint`, restarts."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import polars as pl
import pytest

from screening.cli import main
from screening.client import ScreeningClient, transaction
from screening.config import Settings, load_settings
from screening.convert import large_value_frame
from screening.offline.events import conform
from screening.offline.reports import large_value_report, load_thresholds
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, _start, _stop, uid

LOCAL = dt.timezone(dt.timedelta(hours=8))
CNY = 100
# two local days in the past (event times may not lie in the future)
D1 = dt.datetime.now(LOCAL).date() - dt.timedelta(days=2)
D2 = D1 + dt.timedelta(days=1)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=LOCAL)


def _send(client: ScreeningClient, msgs: list[pb.Transaction]) -> list[pb.Decision]:
    return [client.screen(m) for m in msgs]


def _events(msgs: list[pb.Transaction]) -> pl.DataFrame:
    """The same transactions as an event file, for the offline report."""
    parties = {pb.PARTY_TYPE_PERSON: "person", pb.PARTY_TYPE_ORGANISATION: "organisation",
               pb.PARTY_TYPE_CASH_TERMINAL: "cash_terminal"}
    return conform(pl.DataFrame([{
        "event_id": m.transaction_id, "kind": "txn",
        "event_time": m.event_time.ToDatetime(tzinfo=dt.UTC),
        "payer_account": m.payer.account_id, "payer_institution": m.payer.institution,
        "payer_party_type": parties[m.payer.party_type],
        "payee_account": m.payee.account_id, "payee_institution": m.payee.institution,
        "payee_party_type": parties[m.payee.party_type],
        "amount_minor": m.amount.minor_units, "currency": m.amount.currency,
        "channel": "mobile_app", "cash": m.cash, "cross_border": m.cross_border} for m in msgs]),
        "sent")


def _day_of_transfers(payer: str, payee: str, other: str) -> list[pb.Transaction]:
    """On D1: three transfers of 200,000 CNY from payer (BANK01) to payee (BANK02) — the third
    takes the day over the 500,000 CNY person line — and 1,000 CNY to another payee."""
    return [
        *(transaction(uid("t"), at(D1, 9 + i), payer, payee, 200_000 * CNY,
                      payee_institution="BANK02") for i in range(3)),
        transaction(uid("t"), at(D1, 15), payer, other, 1_000 * CNY, payee_institution="BANK02"),
    ]


@pytest.fixture()
def ledger_server() -> Iterator[Live]:
    """A server of its own: its ledger's first day is the first day a test sends."""
    srv = _start(load_settings(overrides={"log": {"level": "debug"},
                                          "state": {"initial_accounts": 256}}))
    yield srv
    _stop(srv)


def _rows(report: pb.LargeValueReport) -> dict[tuple[str, str], pb.LargeValueRow]:
    return {(r.account, r.direction): r for r in report.rows}


def test_report_lists_every_transaction_of_the_day_not_only_the_crossing_one(
        ledger_server: Live) -> None:
    """The live flag marks the third transfer only; the report lists all four payments of the
    payer's day (601,000 CNY) and the payee's three receipts; the next day is reported apart."""
    live = ledger_server
    payer, payee, other = uid("payer"), uid("payee"), uid("other")
    day1 = _day_of_transfers(payer, payee, other)
    decisions = _send(live.bank, day1)
    assert [d.reports.large_value for d in decisions[:3]] == [False, False, True]
    day2 = [transaction(uid("t"), at(D2, 10 + i), payer, payee, 300_000 * CNY,
                        payee_institution="BANK02") for i in range(2)]
    _send(live.bank, day2)

    report = live.police.large_value_report(D1.isoformat())
    assert report.report_date == D1.isoformat() and not report.identifiers_masked
    assert (report.horizon_start, report.horizon_end) == (D1.isoformat(), D2.isoformat())
    assert report.timezone_offset_hours == 8 and "[thresholds]" in report.thresholds_source
    rows = _rows(report)
    assert set(rows) == {(payer, "out"), (payee, "in")}
    out = rows[(payer, "out")]
    assert list(out.transaction_ids) == [m.transaction_id for m in day1]
    assert (out.total_fen, out.line_fen, out.n_txns, out.n_counterparties) == (
        601_000 * CNY, 500_000 * CNY, 4, 2)
    assert (out.institution, out.party_type, out.category, out.basis, list(out.currencies)) == (
        "BANK01", "person", "person_domestic_transfer", "CNY", ["CNY"])
    assert out.first_time.ToDatetime(tzinfo=dt.UTC) == at(D1, 9)
    assert out.last_time.ToDatetime(tzinfo=dt.UTC) == at(D1, 15)
    into = rows[(payee, "in")]
    assert list(into.transaction_ids) == [m.transaction_id for m in day1[:3]]
    assert (into.total_fen, into.institution) == (600_000 * CNY, "BANK02")

    second = _rows(live.police.large_value_report(D2.isoformat()))
    assert list(second[(payer, "out")].transaction_ids) == [m.transaction_id for m in day2]
    assert second[(payer, "out")].total_fen == 600_000 * CNY

    # the same rows as the offline report of the same events
    offline = large_value_report(_events(day1 + day2), load_thresholds(), load_settings())
    got = pl.concat([large_value_frame(live.police.large_value_report(d.isoformat()))
                     for d in (D1, D2)])
    assert got.equals(offline)

    # a day with nothing (yet): empty; a day before the ledger's first day: OUT_OF_RANGE
    assert list(live.police.large_value_report((D2 + dt.timedelta(days=1)).isoformat()).rows) == []
    with pytest.raises(grpc.RpcError) as info:
        live.police.large_value_report((D1 - dt.timedelta(days=1)).isoformat())
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert (info.value.details() or "").startswith("report_date: ")
    assert f"horizon {D1.isoformat()} to {D2.isoformat()}" in (info.value.details() or "")


def test_identifiers_by_role_and_each_bank_sees_its_own_customers(live: Live) -> None:
    """Police clear, regulators masked, a bank its own institution's customers in clear;
    telecom, a payment token bound to no institution, or a bank asking for another
    institution are PERMISSION_DENIED."""
    payer, payee, other = uid("payer"), uid("payee"), uid("other")
    _send(live.bank, _day_of_transfers(payer, payee, other))
    day = D1.isoformat()
    police = live.police.large_value_report(day)
    mine = [r for r in police.rows if r.account in (payer, payee)]
    assert {r.account for r in mine} == {payer, payee}

    regulator = live.client("regulator").large_value_report(day)
    assert regulator.identifiers_masked
    masked = [r for r in regulator.rows if r.transaction_ids[0] == mine[0].transaction_ids[0]]
    assert masked and all(re.fullmatch(r"…\w{4}#[0-9a-f]{8}", r.account) for r in masked)
    assert payer not in str(regulator) and payee not in str(regulator)

    bank = live.bank.large_value_report(day)  # the bank's token reports for BANK01
    assert not bank.identifiers_masked
    assert {r.institution for r in bank.rows} == {"BANK01"}
    assert {r.account for r in bank.rows} >= {payer} and payee not in {r.account for r in bank.rows}
    assert live.bank.large_value_report(day, institutions=["BANK01"]).rows == bank.rows

    only = live.police.large_value_report(day, institutions=["BANK02"])
    assert {r.institution for r in only.rows} == {"BANK02"}
    assert payee in {r.account for r in only.rows}

    for client, match in ((live.bank, "'BANK02' is not this caller's institution"),
                          (live.client("payment"), "not bound to an institution"),
                          (live.telecom, "may not call GetLargeValueReport")):
        with pytest.raises(grpc.RpcError) as info:
            client.large_value_report(day, institutions=["BANK02"])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert match in (info.value.details() or "")


@pytest.mark.parametrize("bad", ["", "yesterday", "2026-13-01", "2026-1-1"])
def test_bad_report_date_is_invalid_argument_naming_the_field(live: Live, bad: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        live.police.large_value_report(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("report_date: ")


def _file_settings(tmp_path: Path) -> Settings:
    return load_settings(overrides={"state": {"initial_accounts": 256},
                                    "storage": {"backend": "file", "path": str(tmp_path / "state"),
                                                "checkpoint_interval_s": 3600.0}})


def test_ledger_survives_a_restart_and_reads_back_through_the_cli(tmp_path: Path) -> None:
    """File store: the report after a graceful restart is the one before, screening appends to
    the same day after it; `report large-value --server` and `--checkpoint` write the same
    files as the offline report of the same events (CSV times UTC with Z)."""
    settings = _file_settings(tmp_path)
    payer, payee, other = uid("payer"), uid("payee"), uid("other")
    day1 = _day_of_transfers(payer, payee, other)
    live = _start(settings)
    try:
        _send(live.bank, day1)
        before = live.police.large_value_report(D1.isoformat())
    finally:
        _stop(live)
    again = _start(settings)
    try:
        after = again.police.large_value_report(D1.isoformat())
        assert after == before and len(after.rows) == 2
        late = transaction(uid("t"), at(D1, 20), payer, payee, 50_000 * CNY,
                           payee_institution="BANK02")
        _send(again.bank, [late])
        rows = _rows(again.police.large_value_report(D1.isoformat()))
        assert list(rows[(payee, "in")].transaction_ids)[-1] == late.transaction_id
        assert main(["report", "large-value", "--server", again.server.address, "--token",
                     "test-token-police", "--date", D1.isoformat(),
                     "--out", str(tmp_path / "server")]) == 0
    finally:
        _stop(again)
    (tmp_path / "ckpt").mkdir()
    assert main(["report", "large-value", "--checkpoint", str(tmp_path / "state"), "--date",
                 D1.isoformat(), "--out", str(tmp_path / "ckpt")]) == 0
    assert main(["report", "large-value", "--checkpoint", str(tmp_path / "state" / "checkpoint.ckpt"),
                 "--date", D1.isoformat(), "--formats", "csv", "--out", str(tmp_path / "file")]) == 0
    offline = large_value_report(_events([*day1, late]), load_thresholds(), load_settings())
    events_file = tmp_path / "events.parquet"
    _events([*day1, late]).write_parquet(events_file)
    assert main(["report", "large-value", str(events_file), "--out", str(tmp_path / "offline")]) == 0
    server_csv = (tmp_path / "server.csv").read_text()
    assert server_csv == (tmp_path / f"ckpt/large_value_{D1.isoformat()}.csv").read_text()
    assert server_csv == (tmp_path / "file.csv").read_text() == (tmp_path / "offline.csv").read_text()
    assert pl.read_parquet(tmp_path / "server.parquet").equals(offline)
    assert re.search(r",\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", server_csv)


def test_cli_report_errors_exit_with_one_line(ledger_server: Live, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A refused call, a day before the horizon or a missing --date: one line, non-zero exit."""
    _send(ledger_server.bank, _day_of_transfers(uid("p"), uid("q"), uid("r")))
    args = ["report", "large-value", "--server", ledger_server.server.address, "--out",
            str(tmp_path / "x")]
    assert main([*args, "--token", "test-token-telecom", "--date", D1.isoformat()]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main([*args, "--token", "test-token-police", "--date", "2001-01-01"]) == 1
    assert "OUT_OF_RANGE: report_date: 2001-01-01 is before" in capsys.readouterr().err
    assert main([*args, "--token", "test-token-police"]) == 2
    assert "--date" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
