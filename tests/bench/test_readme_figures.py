"""The README's bench figures are generated from the committed result and cannot drift from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import readme
from screening.protogen import ROOT


def test_readme_figures_are_those_of_the_committed_result() -> None:
    """README.md's block equals what `python -m bench.readme` renders from bench/results/quick.json."""
    assert readme.main(["--check"]) == 0


def test_check_fails_when_the_result_changes(tmp_path: Path) -> None:
    """A new bench result not copied into the README is caught; regenerating fixes it."""
    result = json.loads((ROOT / "bench" / "results" / "quick.json").read_text(encoding="utf-8"))
    result["created"] = "2099-01-01T00:00:00+00:00"
    (tmp_path / "results").mkdir()
    res = tmp_path / "results" / "quick.json"
    res.write_text(json.dumps(result), encoding="utf-8")
    md = tmp_path / "README.md"
    md.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    argv = ["--result", str(res), "--readme", str(md),
            "--protection", str(ROOT / "bench" / "results")]
    assert readme.main([*argv, "--check"]) == 1
    assert readme.main(argv) == 0
    assert "2099-01-01T00:00:00+00:00" in md.read_text(encoding="utf-8")
    assert readme.main([*argv, "--check"]) == 0


def test_a_readme_without_the_markers_is_refused(tmp_path: Path) -> None:
    """No silent no-op: a README without the block is an error naming the markers."""
    with pytest.raises(ValueError, match="bench figures block"):
        readme.replace_block("# no block here\n", "x")


def test_the_protection_figures_are_of_the_shipped_policy() -> None:
    """Every seed's committed protection result was measured under the shipped default policy,
    this very text (the version names its hash): a policy edit without a new measurement fails
    here, not in a reader's hands."""
    from screening.policy import load_policy

    shipped = load_policy(None).version
    for seed, _note, name in readme.PROTECTION_SEEDS:
        path = ROOT / "bench" / "results" / (name or f"protection-{seed}.json")
        measured = json.loads(path.read_text(encoding="utf-8"))["run"]["policy_version"]
        assert measured == shipped, (path.name, measured, shipped)


def test_check_fails_when_a_protection_result_changes(tmp_path: Path) -> None:
    """A protection result not copied into the README is caught too, naming where to look."""
    results = tmp_path / "results"
    results.mkdir()
    for seed, _note, name in readme.PROTECTION_SEEDS:
        file = name or f"protection-{seed}.json"
        data = json.loads((ROOT / "bench" / "results" / file).read_text(encoding="utf-8"))
        if seed == 211:
            data["alerts"]["ordinary_alerted_share"] = 0.0001
        (results / file).write_text(json.dumps(data), encoding="utf-8")
    for quick in ("quick.json", "quick.png"):  # the other block, beside this README
        (results / quick).write_bytes((ROOT / "bench" / "results" / quick).read_bytes())
    md = tmp_path / "README.md"
    md.write_text((ROOT / "README.md").read_text(encoding="utf-8").replace(
        "bench/results/quick.png", "results/quick.png"), encoding="utf-8")
    argv = ["--protection", str(results), "--result", str(results / "quick.json"),
            "--readme", str(md)]
    assert readme.main([*argv, "--check"]) == 1
    assert readme.main(argv) == 0
    assert "| 0.01 % |" in md.read_text(encoding="utf-8")
    assert readme.main([*argv, "--check"]) == 0


def test_a_protection_row_says_what_its_result_holds() -> None:
    """One row worked by hand: 2 scenarios' victims and mules added up, the stoppable share
    weighted by mules stopped, the worst family by its accounts, couriers by numbers."""
    result = {
        "info": {"events": 1_234_567},
        "run": {"policy_version": "default-9+abc"},
        "per_scenario": [
            {"victims": 10, "intervened_first": 9, "repeats_after_intervention": 0, "mules": 4,
             "mules_stopped": 2, "stoppable_mean": 0.5},
            {"victims": 10, "intervened_first": 10, "repeats_after_intervention": 1, "mules": 6,
             "mules_stopped": 6, "stoppable_mean": 1.0}],
        "alerts": {"ordinary_alerted_share": 0.004567},
        "lookalikes": [
            {"family": "lookalike_home_purchase", "accounts": 90, "alerted_share": 0.0333,
             "callers_warned_share": None},
            {"family": "lookalike_courier", "accounts": 0, "alerted_share": None,
             "callers_warned_share": 0.0425},
            {"family": "lookalike_family_call", "accounts": 90, "alerted_share": 0.0111,
             "callers_warned_share": 0.15}],
        "large_value": {"offline_daily_report_recall": 1.0},
    }
    row, version = readme._protection_row(7, "held-out", result)
    assert version == "default-9+abc"
    # shares a target bounds from below are rounded down, from above up: never flattered
    assert row == ("| 7 (held-out) | 1.23 M | 19/20 (95.0 %) | 1 | 8/10 (80.0 %) | 87 % | 0.46 % "
                   "| 3.4 % (home purchase) | 4.3 % | 15.0 % | 100.0 % |")
    result["per_scenario"][1]["victims"] = 329  # 322 of 339: 94.99 %
    result["per_scenario"][1]["intervened_first"] = 313
    row, _version = readme._protection_row(7, "held-out", result)
    assert "| 322/339 (94.9 %) |" in row
