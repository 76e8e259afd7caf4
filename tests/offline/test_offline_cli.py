"""The offline commands as a risk analyst runs them: synth -> replay -> reports, on real files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import polars as pl
import pytest

from screening.cli import main
from screening.config import load_settings
from screening.offline.events import read_events
from screening.offline.reports import large_value_report, load_thresholds
from screening.policy import default_policy_text


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled stream written by `screening synth`."""
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(out), "--events", "20000", "--days", "10",
                 "--scenario-rate", "0.05", "--lookalike-rate", "0.02", "--seed", "5", "--csv"]) == 0
    return out


def test_synth_writes_parquet_and_csv(synth_dir: Path) -> None:
    """Events, account labels and the account registry in both formats."""
    for name in ("events.parquet", "events.csv", "accounts.parquet", "accounts.csv",
                 "registry.parquet", "registry.csv"):
        assert (synth_dir / name).stat().st_size > 0
    labels = pl.read_parquet(synth_dir / "accounts.parquet")["scenario"]
    assert labels.str.starts_with("lookalike_").any()


def test_replay_writes_decisions_and_compares_two_policies(synth_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Decisions file, metrics JSON per policy, and a side-by-side table."""
    stricter = tmp_path / "strict.toml"
    strict_text = re.sub(r'^version = ".*"$', 'version = "strict"', default_policy_text(), count=1,
                         flags=re.MULTILINE)
    assert 'version = "strict"' in strict_text
    stricter.write_text(strict_text.replace("call_then_transfer_stop = 500_000",
                                            "call_then_transfer_stop = 100_000"))
    out, metrics = tmp_path / "d.parquet", tmp_path / "m.json"
    assert main(["replay", str(synth_dir / "events.parquet"), "--out", str(out), "--metrics",
                 str(metrics), "--compare", str(stricter), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "M events/s" in text and "telecom_fraud" in text
    decisions = pl.read_parquet(out)
    assert decisions.height == pl.read_parquet(synth_dir / "events.parquet").height
    m = json.loads(metrics.read_text())
    assert len(m) == 2 and all("per_scenario" in v for v in m.values())


def test_replay_logs_progress_lines_when_stderr_is_not_a_terminal(
        synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With stderr a file or pipe (no bar to draw), replay still says how far it got: a line
    per interval and a last one with the count, the share and the rate; --no-progress: none."""
    events = synth_dir / "events.parquet"
    n = pl.read_parquet(events).height
    assert main(["replay", str(events)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines and re.fullmatch(rf".+: {n:,} / {n:,} events \(100 %\), [\d,.]+ (M )?events/s "
                                  r"in \d+\.\d s", lines[-1]), lines
    assert main(["replay", str(events), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_reports_from_events_and_from_decisions(synth_dir: Path, tmp_path: Path) -> None:
    """Large-value and suspicious reports land as CSV and Parquet with the same rows."""
    assert main(["report", "large-value", str(synth_dir / "events.parquet"),
                 "--out", str(tmp_path / "lvr")]) == 0
    lvr = pl.read_parquet(tmp_path / "lvr.parquet")
    assert lvr.height > 0 and pl.read_csv(tmp_path / "lvr.csv").height == lvr.height
    assert main(["report", "suspicious", str(synth_dir / "events.csv"),
                 "--out", str(tmp_path / "str")]) == 0
    cases = pl.read_parquet(tmp_path / "str.parquet")
    assert cases.height > 0 and cases.get_column("narrative").str.contains("CNY").all()


def test_bad_input_file_exits_2_naming_the_column(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV with a float amount stops with status 2 and the column name, no output written."""
    bad = tmp_path / "bad.csv"
    bad.write_text("event_id,event_time,payer_account,payee_account,amount_minor\n"
                   "t1,2026-01-01T00:00:00Z,a,b,1.5\n")
    out = tmp_path / "d.parquet"
    assert main(["replay", str(bad), "--out", str(out), "--no-progress"]) == 2
    assert "column amount_minor" in capsys.readouterr().err
    assert not out.exists()


def test_warm_start_checkpoint_holds_the_report_ledger_of_the_last_days(
        synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`replay --checkpoint-out` fills the report ledger: each of the last [ledger] days (7)
    read from the checkpoint gives the offline report's rows of that day; an earlier day is
    refused naming the horizon."""
    events = synth_dir / "events.parquet"
    assert main(["replay", str(events), "--checkpoint-out", str(tmp_path / "state"),
                 "--no-progress"]) == 0
    frame = read_events(events)
    offline = large_value_report(frame, load_thresholds(), load_settings())
    local = pl.col("event_time").dt.offset_by("8h").dt.date()
    newest = frame.select(local.max()).item()
    horizon = [newest - dt.timedelta(days=d) for d in range(6, -1, -1)]
    assert offline.filter(pl.col("report_date").is_in(horizon)).height > 0
    for day in horizon:
        out = tmp_path / f"ckpt-{day}"
        assert main(["report", "large-value", "--checkpoint", str(tmp_path / "state"), "--date",
                     day.isoformat(), "--formats", "parquet", "--out", str(out)]) == 0
        want = offline.filter(pl.col("report_date") == day)
        assert pl.read_parquet(out.with_suffix(".parquet")).equals(want), day
    capsys.readouterr()
    early = horizon[0] - dt.timedelta(days=1)
    assert main(["report", "large-value", "--checkpoint", str(tmp_path / "state"), "--date",
                 early.isoformat(), "--out", str(tmp_path / "early")]) == 2
    assert f"horizon {horizon[0].isoformat()} to {newest.isoformat()}" in capsys.readouterr().err
