"""Replay: same decisions as the live server, clear errors on bad files, labelled backtests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from screening.config import load_settings
from screening.convert import normalise_phone
from screening.errors import InputFileError
from screening.offline.backtest import BacktestMetrics, backtest, format_duration, format_metrics
from screening.offline.events import normalise_phones, read_events, write_frame
from screening.offline.mapping import load_mapping
from screening.offline.messages import to_requests
from screening.offline.replay import DECISION_SCHEMA, replay
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live

SETTINGS = load_settings()
POLICY = load_policy()


@pytest.fixture(scope="module")
def stream() -> pl.DataFrame:
    """A small labelled stream with every scenario planted."""
    return generate(SynthConfig(seed=7, n_persons=150, n_organisations=15, days=8,
                                scenario_rate=0.2)).events


def test_replay_equals_live_decisions_for_the_same_stream(stream: pl.DataFrame, fresh: Live) -> None:
    """Every event sent through a real server gets the action, reasons and risk replay computes."""
    offline = replay(stream, POLICY, SETTINGS).decisions
    live_rows = []
    for req in to_requests(stream):
        if isinstance(req, pb.Transaction):
            d = fresh.client("admin").screen(req)
            codes = [r.code for r in d.reasons]
            live_rows.append((d.transaction_id, pb.Action.Name(d.action).removeprefix("ACTION_"),
                              codes, d.risk_score, d.reports.suspicious))
        else:
            c = fresh.client("admin").report_call(req)
            live_rows.append((c.call_id, pb.CallAction.Name(c.action).removeprefix("CALL_ACTION_"),
                              [r.code for r in c.reasons], c.risk_score, False))
    live = pl.DataFrame(live_rows, schema=["event_id", "action", "reason_codes", "risk_score",
                                           "suspicious"], orient="row")
    joined = offline.join(live, on="event_id", suffix="_live")
    assert joined.height == stream.height
    for col in ("action", "reason_codes", "risk_score"):
        diff = joined.filter(pl.col(col) != pl.col(f"{col}_live"))
        assert diff.height == 0, diff.head(5)
    assert joined.filter(pl.col("action") != "ALLOW").height > 10  # the comparison is not vacuous


def test_replay_output_schema_and_order(stream: pl.DataFrame) -> None:
    """Decisions come one per event, in event-time order, with the documented columns."""
    d = replay(stream, POLICY, SETTINGS).decisions
    assert d.schema == pl.Schema(DECISION_SCHEMA)
    assert d.height == stream.height
    assert d.get_column("event_time").is_sorted()


def test_file_order_does_not_matter_beyond_ties(stream: pl.DataFrame) -> None:
    """A shuffled file is put in time order (ties in file order): the same decisions as the
    same rows given already sorted, which skips the sort."""
    shuffled = stream.sample(fraction=1.0, shuffle=True, seed=3)
    assert not shuffled.get_column("event_time").is_sorted()
    presorted = shuffled.sort("event_time", maintain_order=True)
    a = replay(shuffled, POLICY, SETTINGS).decisions.drop("row")
    b = replay(presorted, POLICY, SETTINGS).decisions.drop("row")
    assert a.equals(b)
    assert a.get_column("event_time").is_sorted()


def test_duplicate_event_ids_are_decided_once(stream: pl.DataFrame) -> None:
    """A repeated event id is counted once and repeats the first decision, marked duplicate."""
    doubled = pl.concat([stream, stream.head(20)])
    d = replay(doubled, POLICY, SETTINGS).decisions
    assert d.height == doubled.height
    assert d.filter(pl.col("duplicate")).height == 20
    first = d.filter(~pl.col("duplicate")).select("event_id", "action")
    again = d.filter(pl.col("duplicate")).select("event_id", "action")
    assert again.join(first, on="event_id", suffix="_1").filter(
        pl.col("action") != pl.col("action_1")).height == 0
    single = replay(stream, POLICY, SETTINGS).decisions
    assert single.drop("row").equals(d.filter(~pl.col("duplicate")).drop("row"))


def test_backtest_reports_every_planted_scenario(stream: pl.DataFrame) -> None:
    """Labels in the stream give per-scenario recall, precision and ordinary alert rates."""
    d = replay(stream, POLICY, SETTINGS).decisions
    m = backtest(stream, d)
    scenarios = set(m.per_scenario.get_column("scenario"))
    assert {"telecom_fraud", "illegal_fundraising", "structuring"} <= scenarios
    assert 0.0 <= m.overall["ordinary_account_alert_rate"] <= 1.0
    text = format_metrics({"default": m, "again": m})
    assert "telecom_fraud" in text and "ordinary_account_alert_rate" in text


def test_backtest_table_shows_time_to_stop_in_minutes_hours_or_days() -> None:
    """The median time to stop reads as people say it: minutes under an hour, hours under a
    day, days beyond (95 min is 1.6 h, 4,300 min 3.0 d), never a raw count of minutes."""
    per_scenario = pl.DataFrame({
        "scenario": ["fast", "hours", "days", "never"], "cases": [3, 4, 5, 6],
        "cases_stopped": [1, 2, 3, 0], "account_recall": [0.5, 1.0, 0.25, None],
        "event_recall": [0.1, 0.2, 0.3, None], "median_minutes_to_stop": [12.5, 95.0, 4300.0, None],
        "money_stopped_fen": [100, 200, 300, 0], "money_lost_fen": [1, 2, 3, 4]})
    overall = dict.fromkeys(("event_precision", "account_precision", "account_recall",
                             "ordinary_account_alert_rate", "ordinary_event_alert_rate",
                             "lookalike_account_alert_rate"), 0.5)
    text = format_metrics({"default": BacktestMetrics(per_scenario, overall, pl.DataFrame())})
    rows = {line.split()[0]: line for line in text.splitlines()[3:7]}
    assert rows["fast"].endswith(" 12.5 min") and rows["hours"].endswith(" 1.6 h")
    assert rows["days"].endswith(" 3.0 d") and rows["never"].endswith(" -")
    assert "4300" not in text and "95.0" not in text
    assert [format_duration(m) for m in (59.9, 60.0, 1439.0, 1440.0, 100_000.0)] == [
        "59.9 min", "1.0 h", "24.0 h", "1.0 d", "69.4 d"]


def test_backtest_columns_line_up_under_the_longest_scenario_name() -> None:
    """`lookalike_dormant_reactivation *` is longer than the 22 characters the column had: the
    column widens, so every row's first bar is where the header's is."""
    per_scenario = pl.DataFrame({
        "scenario": ["lookalike_dormant_reactivation", "robocall"], "cases": [3, 4],
        "cases_stopped": [0, 2], "account_recall": [0.1, 0.5], "event_recall": [0.1, 0.2],
        "median_minutes_to_stop": [None, 30.0], "money_stopped_fen": [0, 10],
        "money_lost_fen": [0, 1]})
    overall = dict.fromkeys(("event_precision", "account_precision", "account_recall",
                             "ordinary_account_alert_rate", "ordinary_event_alert_rate",
                             "lookalike_account_alert_rate"), 0.5)
    text = format_metrics({"a": BacktestMetrics(per_scenario, overall, pl.DataFrame()),
                           "b": BacktestMetrics(per_scenario, overall, pl.DataFrame())})
    lines = text.splitlines()
    bars = {tuple(i for i, ch in enumerate(line) if ch == "|") for line in lines[:2] + lines[3:5]}
    assert len(bars) == 1 and len(next(iter(bars))) == 2
    assert lines[3].startswith("lookalike_dormant_reactivation * |")


def test_progress_lines_every_interval_and_at_the_end_when_not_a_terminal() -> None:
    """Where stderr is a file or pipe, progress is a line every interval (events done, share,
    rate) and one at the end, not a bar that tqdm would leave blank."""
    import io

    from screening.offline.progress import ProgressLines, progress

    now = [100.0]
    out = io.StringIO()
    with ProgressLines(1_000_000, "policy-x", out, every_s=10.0, clock=lambda: now[0]) as p:
        for step in (2.0, 5.0, 4.0, 9.0, 12.0):  # 102, 107, 111 (line), 120, 132 (line)
            now[0] += step
            p.update(100_000)
        now[0] += 1.0
    assert out.getvalue().splitlines() == [
        "policy-x: 300,000 / 1,000,000 events (30 %), 27,273 events/s",
        "policy-x: 500,000 / 1,000,000 events (50 %), 15,625 events/s",
        "policy-x: 500,000 / 1,000,000 events (50 %), 15,152 events/s in 33.0 s",
    ]
    assert isinstance(progress(10, "x", io.StringIO()), ProgressLines)


def test_phone_normalisation_is_the_same_offline_and_live() -> None:
    """The column twin of normalise_phone gives identical results on tricky forms."""
    forms = ["13800138000", "+86 138 0013 8000", "0086-138-0013-8000", "010-12345678",
             "+44 20 7946 0958", "12", "abc", "", "+", "00", "(021) 6888-8888", "1" * 25]
    col = normalise_phones(pl.Series(forms)).to_list()
    assert col == [normalise_phone(f) for f in forms]


def test_phone_normalisation_of_repeated_numbers_normalises_each_distinct_one_once() -> None:
    """A column of few distinct numbers (the join-back path) equals one value at a time."""
    forms = ["13800138000", "+86 138 0013 8000", None, "abc", "", "+44 20 7946 0958", "12"] * 40
    col = normalise_phones(pl.Series(forms, dtype=pl.String)).to_list()
    assert col == [normalise_phone(f) if f is not None else None for f in forms]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda df: df.drop("amount_minor"), "column amount_minor: missing value"),
    (lambda df: df.with_columns(pl.lit(-5, pl.Int64).alias("amount_minor")),
     "column amount_minor: must be > 0"),
    (lambda df: df.with_columns(pl.lit("ZZZ").alias("currency")), "column currency: unknown currency"),
    (lambda df: df.with_columns(pl.lit("teleport").alias("channel")), "column channel: must be one of"),
    (lambda df: df.with_columns(pl.lit("robot").alias("kind")), "column kind: must be"),
])
def test_bad_event_values_name_the_column_and_row(stream: pl.DataFrame, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    """Invalid values stop the job with the column, the row and the event id."""
    txns = stream.filter(pl.col("kind") == "txn").head(50)
    bad = mutate(txns)
    with pytest.raises(InputFileError, match=message):
        replay(bad if "amount_minor" in bad.columns else bad.with_columns(
            pl.lit(None, pl.Int64).alias("amount_minor")), POLICY, SETTINGS)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    """Wrong types, missing columns and unknown formats name the file and column."""
    csv = tmp_path / "e.csv"
    csv.write_text("event_id,event_time,payer_account,payee_account,amount_minor\n"
                   "t1,2026-01-01T00:00:00Z,a,b,12.50\n")
    with pytest.raises(InputFileError, match=r"column amount_minor: .*not an integer"):
        read_events(csv)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputFileError, match=r"expected \.parquet or \.csv"):
        read_events(tmp_path / "x.json")
    no_time = tmp_path / "n.csv"
    no_time.write_text("event_id,payer_account\nt1,a\n")
    with pytest.raises(InputFileError, match="missing column event_time"):
        read_events(no_time)
    with pytest.raises(InputFileError, match="no such file"):
        read_events(tmp_path / "missing.parquet")


def test_csv_and_parquet_replay_alike(stream: pl.DataFrame, tmp_path: Path) -> None:
    """The same events from CSV and from Parquet give the same decisions."""
    pq, csv = tmp_path / "e.parquet", tmp_path / "e.csv"
    stream.write_parquet(pq)
    stream.write_csv(csv, datetime_format="%Y-%m-%dT%H:%M:%S%.3fZ", date_format="%Y-%m-%d")
    a = replay(read_events(pq), POLICY, SETTINGS).decisions
    b = replay(read_events(csv), POLICY, SETTINGS).decisions
    assert a.drop("row").equals(b.drop("row"))


def test_decisions_csv_times_are_utc_with_z(stream: pl.DataFrame, tmp_path: Path) -> None:
    """``replay --out x.csv`` writes times as the case files and reports do, and reads back."""
    d = replay(stream.head(200), POLICY, SETTINGS).decisions
    out = tmp_path / "d.csv"
    write_frame(d, out)
    text = out.read_text()
    assert "+0000" not in text
    first = text.splitlines()[1].split(",")[3]
    assert first.endswith("Z") and len(first) == len("2026-11-27T02:00:00.000Z")
    back = pl.read_csv(out, try_parse_dates=True).get_column("event_time")
    assert back.dt.replace_time_zone(None).to_list() == (
        d.get_column("event_time").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        .to_list())


def test_mapping_reads_amlsim_style_files_with_exact_amounts(tmp_path: Path) -> None:
    """Decimal amounts become exact fen, day steps become times, decoys are not labelled."""
    src = tmp_path / "aml.csv"
    src.write_text(
        "tran_id,step,orig_acct,bene_acct,amount,alert_type_fixed,alert_id_fixed,is_sar_fixed\n"
        "1,0,10,20,945.46,fan_in,3,1\n"
        "2,1,11,20,100.1,,-1,0\n"
        "3,2,12,21,0.07,cycle,9,0\n")
    ev = read_events(src, load_mapping("amlsim"))
    assert ev.get_column("amount_minor").to_list() == [94546, 10010, 7]
    assert ev.get_column("scenario").to_list() == ["fan_in", "", ""]
    assert ev.get_column("scenario_id").to_list() == [3, -1, -1]
    start = dt.datetime(2016, 12, 31, 16, tzinfo=dt.UTC)
    assert ev.get_column("event_time").to_list()[1] == start + dt.timedelta(days=1)
    d = replay(ev, POLICY, SETTINGS).decisions
    assert d.height == 3


def test_unknown_mapping_is_a_clear_error(tmp_path: Path) -> None:
    """A mapping name or file that does not exist says so; a bad section is named."""
    with pytest.raises(InputFileError, match="mapping file not found"):
        load_mapping(str(tmp_path / "nope.toml"))
    bad = tmp_path / "m.toml"
    bad.write_text("[colums]\nevent_id='x'\n")
    with pytest.raises(InputFileError, match=r"unknown section \[colums\]"):
        load_mapping(str(bad))


def test_backtest_marks_rows_that_are_not_fraud_and_counts_them_as_false_alarms() -> None:
    """Genuine large-value activity and look-alikes are marked `*` with a footnote saying their
    columns are false alarms, not recall; an alert on them lowers precision, not raises recall."""
    per_scenario = pl.DataFrame({
        "scenario": ["large_value_genuine", "lookalike_salary_run", "telecom_fraud"],
        "cases": [3, 4, 5], "cases_stopped": [0, 0, 3], "account_recall": [0.5, 0.0, 1.0],
        "event_recall": [0.1, 0.0, 0.9], "median_minutes_to_stop": [None, None, 5.0],
        "money_stopped_fen": [0, 0, 300], "money_lost_fen": [0, 0, 3]})
    overall = dict.fromkeys(("event_precision", "account_precision", "account_recall",
                             "ordinary_account_alert_rate", "ordinary_event_alert_rate",
                             "lookalike_account_alert_rate"), 0.5)
    text = format_metrics({"default": BacktestMetrics(per_scenario, overall, pl.DataFrame())})
    rows = text.splitlines()[3:6]
    assert rows[0].startswith("large_value_genuine *") and rows[1].startswith("lookalike_salary_run *")
    assert rows[2].startswith("telecom_fraud ") and "*" not in rows[2]
    assert "* not fraud" in text and "false alarms" in text

    stream = pl.DataFrame({
        "event_id": [1, 2], "kind": ["txn", "txn"],
        "event_time": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 2,
        "payer_account": ["a", "c"], "payee_account": ["b", "d"],
        "payer_party_type": ["person"] * 2, "payee_party_type": ["person"] * 2,
        "scenario": ["large_value_genuine", "telecom_fraud"], "scenario_id": [0, 1]})
    decisions = pl.DataFrame({
        "event_id": [1, 2], "duplicate": [False, False], "action": ["WARN", "ALLOW"],
        "suspicious": [False, False], "amount_fen": [60_000_000, 100],
        "reason_codes": [["LARGE_TRANSFER_PERSON"], []]})
    m = backtest(stream, decisions)
    assert m.overall["event_precision"] == 0.0  # the one alert was on genuine activity
    assert m.overall["event_recall"] == 0.0  # the one fraud transfer was not alerted
