"""`python -m bench --smoke`: the whole suite at tiny rates, so it cannot rot unnoticed.

Asserts the shape of the result (every figure present, the plot written), never a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from screening.protogen import ROOT

POINT_KEYS = {"rate", "sent", "ok", "errors", "timeouts", "p50_ms", "p99_ms", "p99_9_ms", "max_ms",
              "meets_sla", "achieved_rate", "send_lag_p99_ms", "server_cpu_us_per_request",
              "other_processes_cpu_cores", "disturbed", "histogram"}
SWEEP_KEYS = {"service", "baseline", "max_sustained_rate", "ratio_to_baseline"}
RATIO_KEYS = {"rate", "p50", "p99", "p99_9", "max"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "smoke.json").read_text()), out


def test_help_lists_the_modes() -> None:
    """--help names the quick and full modes, the output folder and the SLA."""
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--quick", "--full", "--out", "--sla-ms", "--duration", "--rates"):
        assert flag in out.stdout


def test_smoke_run_writes_every_figure(smoke: tuple[dict[str, Any], Path]) -> None:
    """The JSON holds machine info, both sweeps with ratios, batches, kernels, memory, summary."""
    result, _ = smoke
    assert {"machine", "config", "mix", "unary", "stream", "batch", "kernels", "memory", "graph",
            "summary", "sla_ms", "command"} <= result.keys()
    machine = result["machine"]
    assert machine["cpu_count"] >= 1
    assert {"numba", "grpcio", "numpy"} <= machine["versions"].keys()
    assert len(machine["git_commit"]) in (0, 40)
    for kind in ("unary", "stream"):
        sweep = result[kind]
        assert sweep.keys() >= SWEEP_KEYS
        for target in ("service", "baseline"):
            assert sweep[target], f"no {kind} {target} points"
            for point in sweep[target]:
                assert point.keys() >= POINT_KEYS
                assert point["ok"] > 0
            assert {"rate", "limit_reached"} <= sweep["max_sustained_rate"][target].keys()
        assert sweep["ratio_to_baseline"]
        for row in sweep["ratio_to_baseline"]:
            assert row.keys() >= RATIO_KEYS
    for size in ("100", "1000"):
        batch = result["batch"][size]
        assert batch["service"]["transactions_per_s"] > 0
        assert batch["baseline"]["transactions_per_s"] > 0
        assert batch["ratio_to_baseline"]["transactions_per_s"] is not None


def test_smoke_run_has_kernel_and_memory_figures(smoke: tuple[dict[str, Any], Path]) -> None:
    """Kernel µs per event (single and batched), policy evaluation, and bytes per account."""
    result, _ = smoke
    kernels = result["kernels"]["summary"]
    assert kernels["feature_update_single_us_per_event"]["10k"] > 0
    assert kernels["feature_update_batch1000_us_per_event"]["10k"] > 0
    assert kernels["policy_evaluation_us"] > 0
    measured = result["memory"]["measured"][0]
    assert measured["measured"] and measured["feature_bytes_per_account"] > 0
    assert measured["bytes_per_pair_slot"] == 16
    assert result["memory"]["extrapolated"][0]["accounts"] == 10_000_000


def test_smoke_run_measures_the_audit_trail_on_against_off(
        smoke: tuple[dict[str, Any], Path]) -> None:
    """Every decision of the audited servicer is in its trail; both costs and the ratio are there
    for unary calls and batches, in the JSON, its summary and the Markdown."""
    result, out = smoke
    audit = result["audit"]
    assert audit["decisions_recorded"] == 400 + 2 * 1_000
    for kind in ("unary", "batch1000"):
        figures = audit[kind]
        assert figures["handler_cpu_ns_without_median"] > 0
        assert figures["writer_cpu_ns_per_record"] > 0
        assert figures["ratio_with_to_without"] > 0
    assert result["summary"]["audit_cost_per_decision"]["unary"]["ratio_with_to_without"] > 0
    assert "| audit trail, CPU per decision |" in (out / "smoke.md").read_text()


def test_smoke_run_draws_the_plot(smoke: tuple[dict[str, Any], Path]) -> None:
    """A PNG is written beside the JSON."""
    _, out = smoke
    png = out / "smoke.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
