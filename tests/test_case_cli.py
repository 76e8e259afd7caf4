"""`screening case export` as a user runs it: against a running server and from an event file."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import polars as pl
import pytest

from screening.cli import main
from screening.client import transaction
from screening.offline.synth import SynthConfig, generate, write
from tests.conftest import Live, recent, uid


def test_export_from_a_server_writes_the_files(live: Live, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With a police token the files land in --out and the summary names the centre."""
    a, b = uid("a"), uid("b")
    live.bank.screen(transaction(uid("t"), recent(5), a, b, 12_345))
    code = main(["case", "export", "--server", live.server.address, "--token",
                 "test-token-police", "--account", a, "--hops", "1", "--format", "graphml",
                 "--format", "csv", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.graphml", "edges.csv", "nodes.csv"]
    assert f"case graph around {a}: 2 nodes, 1 edges" in out
    g = nx.read_graphml(tmp_path / "case.graphml")
    assert g.edges[f"account:{a}", f"account:{b}"]["amount"] == 12_345


def test_export_from_a_server_reports_status_errors(live: Live, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A bank token is refused; an unknown account is NOT_FOUND; exit status 1, nothing written."""
    base = ["case", "export", "--server", live.server.address, "--account", "nobody-at-all",
            "--out", str(tmp_path / "out")]
    assert main([*base, "--token", "test-token-bank"]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main([*base, "--token", "test-token-police"]) == 1
    assert "NOT_FOUND: account_id: no such account" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_from_an_event_file_finds_the_fundraising_collector(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Offline: the planted collector's case shows its investors as victims and the Ponzi finding."""
    result = generate(SynthConfig(seed=4, n_persons=150, n_organisations=15, days=21,
                                  scenario_rate=0.12, scenario_weights=(0, 1, 0, 0, 0, 0)))
    write(result, tmp_path / "data")
    labels = result.accounts
    collector = labels.filter(pl.col("role") == "collector").get_column("account")[0]
    investors = set(labels.filter(pl.col("role") == "investor").get_column("account"))
    out = tmp_path / "case"
    code = main(["case", "export", "--events", str(tmp_path / "data" / "events.parquet"),
                 "--account", collector, "--hops", "1", "--format", "json", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "ponzi:" in text
    g = nx.node_link_graph(json.loads((out / "case.json").read_text()), edges="edges")
    victims = {g.nodes[n]["label"] for n in g if g.nodes[n]["role"] == "victim"}
    assert victims and victims <= investors
    masked = main(["case", "export", "--events", str(tmp_path / "data" / "events.parquet"),
                   "--account", collector, "--mask", "--format", "csv", "--out", str(out)])
    assert masked == 0 and collector not in (out / "nodes.csv").read_text(encoding="utf-8-sig")
    assert main(["case", "export", "--events", str(tmp_path / "data" / "events.parquet"),
                 "--account", "nobody", "--out", str(out)]) == 1
    assert "account_id: no such account in the event file" in capsys.readouterr().err
