"""Column mappings: the language on small files written here, its errors, and `mapping check`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from screening.cli import main
from screening.errors import InputFileError
from screening.offline.events import read_events
from screening.offline.mapping import (
    apply_mapping,
    check_mapping,
    format_report,
    load_mapping,
    parse_mapping,
    read_mapped_registry,
)
from screening.offline.synth import SynthConfig, generate, write

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


T0 = dt.datetime(2026, 11, 3, 1, 15, tzinfo=dt.UTC)
# opened at 01:00 Shanghai on 6 March: still 5 March in UTC
OPENED = dt.datetime(2020, 3, 6, 1, 0, tzinfo=SHANGHAI)
HEADER = ("record_type,record_id,event_time_ms,from_account,from_bank,from_type,from_opened_ms,"
          "to_account,to_bank,to_type,to_opened_ms,amount,currency,channel,terminal_id,"
          "cross_border,from_phone,to_phone,remark,caller,callee,caller_class,call_result,"
          "duration_s\n")


def _bank_file(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _good_rows() -> list[str]:
    t = [_ms(T0 + dt.timedelta(minutes=i)) for i in range(6)]
    return [
        # a transfer from a person's phone
        f"TRX,t1,{t[0]},6222001,ICBC,person,{_ms(OPENED)},6222002,CCB,organisation,,125000,CNY,"
        "mobile_app,DEV-9,N,13800000001,,rent,,,,,",
        # a deposit at an ATM of the customer's own bank: no payer, the ATM in terminal_id
        f"TRX,t2,{t[1]},,,,,6222001,ICBC,person,{_ms(OPENED)},50000,CNY,atm,ATM-0372-0041,N,,,,,,,,",
        # a withdrawal at a counter of another bank (the id carries the bank)
        f"TRX,t3,{t[2]},6222001,ICBC,person,{_ms(OPENED)},,,,,3000000,CNY,branch,CTR-ABC-0372-007,"
        "N,,,,,,,,",
        # a call record in the same file
        f"CALL,c1,{t[3]},,,,,,,,,,,,,,,,,+8613900000009,13800000001,SPOOF,ANSWERED,95",
        f"CALL,c2,{t[4]},,,,,,,,,,,,,,,,,+8613900000009,13800000002,MOB,NO_ANSWER,0",
        # USD abroad, amounts in cents
        f"TRX,t4,{t[5]},6222001,ICBC,person,{_ms(OPENED)},OS0001,HSBC,person,,1999,USD,online,,Y,"
        ",,,,,,,",
    ]


def test_bank_export_maps_cash_terminals_kinds_values_and_opening_times(tmp_path: Path) -> None:
    """The shipped bank export mapping: both kinds in one file, value maps, epoch times, opening
    dates on the bank's calendar, and cash legs with an empty side become terminal parties."""
    ev = read_events(_bank_file(tmp_path / "bank.csv", _good_rows()), load_mapping("bank_export"))
    rows = {r["event_id"]: r for r in ev.to_dicts()}
    assert [r["kind"] for r in ev.to_dicts()] == ["txn", "txn", "txn", "call", "call", "txn"]
    t1, deposit, withdrawal, c1, c2, usd = (rows[k] for k in ("t1", "t2", "t3", "c1", "c2", "t4"))
    assert t1["event_time"] == T0
    assert (t1["channel"], t1["payee_party_type"], t1["cash"], t1["device_id"]) == (
        "mobile_app", "organisation", False, "DEV-9")
    assert t1["payer_opened_date"] == dt.date(2020, 3, 6)  # Shanghai's day, not UTC's 5 March
    assert t1["payee_opened_date"] is None
    # the ATM id names no bank: the customer's own (the other side's)
    assert (deposit["payer_account"], deposit["payer_party_type"], deposit["payer_institution"],
            deposit["payer_opened_date"], deposit["cash"], deposit["device_id"]) == (
        "ATM-0372-0041", "cash_terminal", "ICBC", None, True, None)
    assert deposit["channel"] == "atm"
    # the counter id carries its bank
    assert (withdrawal["payee_account"], withdrawal["payee_party_type"],
            withdrawal["payee_institution"], withdrawal["cash"], withdrawal["channel"]) == (
        "CTR-ABC-0372-007", "cash_terminal", "ABC", True, "counter")
    assert (c1["caller_class"], c1["call_outcome"], c1["duration_seconds"]) == (
        "spoofed_suspect", "answered", 95)
    assert (c2["caller_class"], c2["call_outcome"]) == ("mobile", "unanswered")
    assert c1["cash"] is None and c1["cross_border"] is None  # transaction columns stay empty
    assert (usd["amount_minor"], usd["currency"], usd["cross_border"], usd["channel"]) == (
        1999, "USD", True, "online_banking")


@pytest.mark.parametrize(("kind", "unit", "value"), [
    ("epoch", "s", "1793668500"),
    ("epoch", "ms", "1793668500000"),
    ("epoch", "us", "1793668500000000"),
    ("iso", "", "2026-11-03T01:15:00Z"),
    ("iso", "", "2026-11-03T09:15:00+08:00"),
    ("iso", "", "2026-11-03 09:15:00"),  # no offset: a wall time of [source] time_zone
])
def test_time_columns_in_epoch_units_and_iso_text_are_the_same_instant(
        tmp_path: Path, kind: str, unit: str, value: str) -> None:
    """Epoch seconds, milliseconds, microseconds and ISO text (with an offset, or a wall time
    of the mapping's zone) all read as 2026-11-03 01:15 UTC."""
    assert _ms(T0) == 1793668500000
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[source]\ntime_zone = "Asia/Shanghai"\n[columns]\nevent_id = "id"\n'
        f'[times.event_time]\ncolumn = "ts"\nkind = "{kind}"\n' + (f'unit = "{unit}"\n' if unit else ""))
    data = tmp_path / "e.csv"
    data.write_text(f"id,ts\nx1,{value}\n")
    ev = read_events(data, load_mapping(str(mapping)))
    assert ev.get_column("event_time").to_list() == [T0]


def test_amounts_in_major_units_use_each_currencys_decimals_exactly(tmp_path: Path) -> None:
    """Decimal text becomes minor units of the row's currency (JPY has none; RMB is the bank's
    word for CNY) without float; a digit past the currency's decimals is a problem, not rounded
    away."""
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nevent_id = "id"\nevent_time = "ts"\ncurrency = "ccy"\n'
                       '[values.currency]\nRMB = "CNY"\nJPY = "JPY"\nUSD = "USD"\n'
                       '[amount]\ncolumn = "amt"\nunit = "major"\ndecimals = 2\n'
                       'decimals_by_currency = { JPY = 0 }\n')
    data = tmp_path / "e.csv"
    data.write_text("id,ts,ccy,amt\na,2026-11-03T01:15:00Z,RMB,945.46\nb,2026-11-03T01:15:00Z,JPY,"
                    "12000\nc,2026-11-03T01:15:00Z,USD,0.1\nd,2026-11-03T01:15:00Z,RMB,"
                    "90071992547409.93\n")
    m = load_mapping(str(mapping))
    ev = read_events(data, m)
    assert ev.get_column("amount_minor").to_list() == [94546, 12000, 10, 9007199254740993]
    assert ev.get_column("currency").to_list() == ["CNY", "JPY", "USD", "CNY"]  # the bank's RMB
    data.write_text("id,ts,ccy,amt\na,2026-11-03T01:15:00Z,JPY,12000.5\n")
    with pytest.raises(InputFileError, match=r"amount_minor.*1 more decimals than the currency "
                                             r"has: '12000.5' x1"):
        read_events(data, m)


def test_optional_columns_and_defaults(tmp_path: Path) -> None:
    """An optional column the file lacks is empty; a default fills empty cells; a column the
    mapping needs and the file lacks is named."""
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nevent_id = "id"\nevent_time = "ts"\n'
                       'memo = { column = "remark", optional = true }\n'
                       'currency = { column = "ccy", default = "CNY" }\n')
    data = tmp_path / "e.csv"
    data.write_text("id,ts,ccy\na,2026-11-03T01:15:00Z,\nb,2026-11-03T01:15:00Z,USD\n")
    ev = read_events(data, load_mapping(str(mapping)))
    assert ev.get_column("currency").to_list() == ["CNY", "USD"]
    assert ev.get_column("memo").to_list() == [None, None]
    data.write_text("id,ts\na,2026-11-03T01:15:00Z\n")
    with pytest.raises(InputFileError, match="wants source column 'ccy' for currency"):
        read_events(data, load_mapping(str(mapping)))


def test_one_source_column_serves_a_transaction_column_and_a_call_column(tmp_path: Path) -> None:
    """``from`` is the payer account on transactions and the caller on calls: each kind gets its
    own, the other stays empty."""
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nevent_id = "id"\nevent_time = "ts"\nkind = "k"\n'
                       'payer_account = "from"\ncaller_number = "from"\n'
                       '[values.kind]\nT = "txn"\nV = "call"\n')
    data = tmp_path / "e.csv"
    data.write_text("id,ts,k,from\na,2026-11-03T01:15:00Z,T,6222001\n"
                    "b,2026-11-03T01:16:00Z,V,13800000001\n")
    ev = read_events(data, load_mapping(str(mapping)))
    assert ev.get_column("payer_account").to_list() == ["6222001", None]
    assert ev.get_column("caller_number").to_list() == [None, "13800000001"]


def test_registry_file_read_through_the_mapping(tmp_path: Path) -> None:
    """The bank export's accounts file: opening and last-active times become the bank's dates,
    Y/N the payroll flag, and the frame passes the registry checks."""
    data = tmp_path / "accounts.csv"
    active = dt.datetime(2026, 10, 1, 23, 30, tzinfo=SHANGHAI)
    data.write_text("account_no,bank,holder_type,opened_ms,last_active_ms,mcc,payroll,mobile\n"
                    f"6222001,ICBC,person,{_ms(OPENED)},{_ms(active)},,N,13800000001\n"
                    f"6222002,CCB,organisation,{_ms(OPENED)},,5812,Y,\n")
    reg = read_mapped_registry(data, load_mapping("bank_export"))
    assert reg.to_dicts() == [
        {"account": "6222001", "institution": "ICBC", "party_type": "person",
         "opened_date": dt.date(2020, 3, 6), "last_active_date": dt.date(2026, 10, 1),
         "merchant_category": None, "payroll": False, "phone": "13800000001"},
        {"account": "6222002", "institution": "CCB", "party_type": "organisation",
         "opened_date": dt.date(2020, 3, 6), "last_active_date": None,
         "merchant_category": "5812", "payroll": True, "phone": None}]


def test_synth_mapping_reads_synth_csv_and_parquet_as_the_native_reader_does(tmp_path: Path) -> None:
    """`screening synth` output (CSV or Parquet) through the shipped synth mapping equals the
    generated frames (events and registry)."""
    result = generate(SynthConfig(seed=3, n_persons=60, n_organisations=10, days=7,
                                  scenario_rate=0.2))
    write(result, tmp_path, csv=True)
    m = load_mapping("synth")
    native = read_events(tmp_path / "events.parquet")
    assert native.equals(result.events)
    for name in ("events.csv", "events.parquet"):
        assert read_events(tmp_path / name, m).equals(native), name
    assert read_mapped_registry(tmp_path / "registry.csv", m).equals(result.registry)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("text", "line", "message"), [
    ('[source]\nformat = "csv"\n[colums]\nevent_id = "x"\n', 3,
     r"unknown section \[colums\] \(did you mean 'columns'\?\)"),
    ('[columns]\nevent_id = "id"\nchanel = "ch"\n', 3,
     r"\[columns\] chanel: not a column of the event schema \(did you mean 'channel'\?\)"),
    ('[columns]\nchannel = "ch"\n\n[values.channel]\nmobile = "mobile_app"\nweb = "online"\n', 6,
     r"'online' is not a channel value .*did you mean 'online_banking'"),
    ('[columns]\nevent_id = "id"\n[values.caller_class]\nM = "mobile"\n', 3,
     r"caller_class is not mapped from a column"),
    ('[times.event_time]\ncolumn = "ts"\nkind = "epoch"\nunit = "millis"\n', 4,
     r"unit of epoch times must be one of s, ms, us"),
    ('[source]\ntime_zone = "Asia/Shangai"\n', 2, r"not a time zone"),
    ('[terminals]\ncolumn = "t"\npattern = "ATM-("\n', 3, r"\[terminals\] pattern"),
    ('[amount]\ncolumn = "a"\nunit = "minor"\ndecimals = 2\n', 4, r"decimals are for unit"),
    ('[registry.columns]\naccount = "a"\npayroll = { column = "p", default = "yes" }\n', 3,
     r"payroll takes true or false"),
])
def test_mapping_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    """Each mistake is reported at its line of the mapping file, with a suggestion where a name
    is close to a known one."""
    with pytest.raises(InputFileError, match=rf"^m\.toml:{line}: .*{message}"):
        parse_mapping(text, "m.toml")


def test_unmapped_values_stop_the_read_with_counts(tmp_path: Path) -> None:
    """A channel the value map does not list is never passed through: the read stops naming the
    column, the value and how often it occurs."""
    rows = _good_rows()
    rows[0] = rows[0].replace("mobile_app", "wechat")
    data = _bank_file(tmp_path / "bank.csv", rows)
    with pytest.raises(InputFileError, match=r"column channel \(from channel\): 1 unmapped value: "
                                             r"'wechat' x1"):
        apply_mapping(data, load_mapping("bank_export"))


def test_mapping_check_reports_every_column_and_exits_non_zero_on_problems(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`screening mapping check` prints a line per column; unmapped values with counts, bad
    times and empty required cells are listed and the exit status is 1; a clean file is 0."""
    good = _bank_file(tmp_path / "good.csv", _good_rows())
    assert main(["mapping", "check", "bank_export", "--events", str(good)]) == 0
    out = capsys.readouterr().out
    assert "6 rows (4 transactions, 2 calls)" in out and "OK: every column maps" in out
    assert "1 cash-terminal payers derived" in out and "1 cash-terminal payees derived" in out

    rows = _good_rows()
    rows[0] = rows[0].replace("mobile_app", "wechat").replace("6222001", "", 1)
    rows[5] = rows[5].replace("online", "wechat")
    rows[3] = rows[3].replace("CALL,c1,", "CALL,c1,").replace(",SPOOF,", ",ROBOT,")
    rows[4] = rows[4].replace(str(_ms(T0 + dt.timedelta(minutes=4))), "2026-11-03")
    bad = _bank_file(tmp_path / "bad.csv", rows)
    assert main(["mapping", "check", "bank_export", "--events", str(bad)]) == 1
    table = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "2 unmapped value: 'wechat' x2" in table["channel"]
    assert "1 unmapped value: 'ROBOT' x1" in table["caller_class"]
    assert "1 bad time (not an integer): '2026-11-03' x1" in table["event_time"]
    # an empty payer with no terminal id is a missing account, not a cash leg
    assert "1 empty on transactions (required)" in table["payer_account"]
    assert table["PROBLEMS:"].startswith("PROBLEMS: event_time (1), payer_account (1), channel (1)")
    assert table["amount_minor"].endswith(" ok")


def test_mapping_check_runs_the_replay_checks_after_mapping(tmp_path: Path) -> None:
    """Every column maps but a value breaks a replay rule (a zero amount): reported after the
    table, and the check fails."""
    rows = _good_rows()
    rows[0] = rows[0].replace(",125000,", ",0,")
    report, = check_mapping(_bank_file(tmp_path / "z.csv", rows), load_mapping("bank_export"))
    assert not report.ok
    assert any("amount_minor: must be > 0" in a for a in report.after)
    assert "after mapping:" in format_report(report)


def test_mapping_check_of_a_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--registry checks the registry file through the mapping's [registry] tables too."""
    good = _bank_file(tmp_path / "good.csv", _good_rows())
    reg = tmp_path / "accounts.csv"
    reg.write_text("account_no,bank,holder_type,opened_ms,last_active_ms,mcc,payroll,mobile\n"
                   f"6222001,ICBC,personal,{_ms(OPENED)},,,N,\n")
    assert main(["mapping", "check", "bank_export", "--events", str(good),
                 "--registry", str(reg)]) == 1
    out = capsys.readouterr().out
    assert "1 unmapped value: 'personal' x1" in out
    assert out.count("OK: every column maps") == 1  # the events are fine, the registry is not



def test_replay_command_reads_events_and_registry_through_the_mapping(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`screening replay FILE --mapping bank_export --registry ACCOUNTS` needs no code: the
    registry is read through the mapping's [registry] tables and the decisions are written."""
    events = _bank_file(tmp_path / "bank.csv", _good_rows())
    reg = tmp_path / "accounts.csv"
    reg.write_text("account_no,bank,holder_type,opened_ms,last_active_ms,mcc,payroll,mobile\n"
                   f"6222001,ICBC,person,{_ms(OPENED)},,,N,13800000001\n")
    out = tmp_path / "decisions.csv"
    assert main(["replay", str(events), "--mapping", "bank_export", "--registry", str(reg),
                 "--out", str(out), "--no-progress"]) == 0
    assert "account registry: 1 accounts" in capsys.readouterr().out
    decisions = pl.read_csv(out)
    assert sorted(decisions.get_column("event_id").to_list()) == ["c1", "c2", "t1", "t2", "t3", "t4"]
