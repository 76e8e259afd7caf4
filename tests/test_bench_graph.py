"""The documented graph benchmark commands run (on tiny inputs) and say what they measure."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import amlsim, graph_latency, graph_synth
from screening.policy import default_policy_text, parse_policy


def test_latency_benchmark_runs_on_a_small_graph(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench.graph_latency` builds the graph and prints both timing rows."""
    assert graph_latency.main(["--edges", "20000", "--accounts", "4000", "--queries", "50"]) == 0
    out = capsys.readouterr().out
    assert "41 B per edge slot" in out and "detectors on" in out and "edges only" in out


def test_synth_benchmark_compares_with_the_graph_rules_removed() -> None:
    """The 'without' policy is the default policy less exactly its GRAPH_ rules."""
    full = parse_policy(default_policy_text(), "full")
    bare = parse_policy(graph_synth.without_graph_rules(default_policy_text()), "bare")
    graph_codes = {r.code for r in full.txn_rules if r.code.startswith("GRAPH_")}
    assert len(graph_codes) == 7
    assert {r.code for r in bare.txn_rules} == {r.code for r in full.txn_rules} - graph_codes
    assert len(bare.call_rules) == len(full.call_rules)


def test_amlsim_benchmark_explains_missing_data(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without the data the AMLSim benchmark exits 2 and says where the data goes."""
    assert amlsim.main(["--data", str(tmp_path)]) == 2
    assert "no AMLSim data" in capsys.readouterr().err
