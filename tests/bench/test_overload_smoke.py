"""`python -m bench.overload --smoke`: the overload benchmark at tiny sizes, so it cannot rot.

Asserts the shape of the result and which status codes came back, never a time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from screening.protogen import ROOT

# RESOURCE_EXHAUSTED: a lane was full; DEADLINE_EXCEEDED: refused or late; CANCELLED: the
# generator gave up on calls it could not read back in time (a saturated client)
SHED_CODES = {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED"}
STEP_KEYS = {"multiplier", "offered_rate", "capacity", "sent", "admitted_ok", "admitted_rate",
             "refused_share", "codes", "admitted_ms", "refused_ms", "send_lag_ms",
             "generator_limited", "server_cpu_cores", "probe"}


def test_overload_smoke_run_reports_capacity_streams_and_shedding(tmp_path: Path) -> None:
    """Capacity, unary latency with and without idle streams, 2x and 5x steps, degraded probe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.overload", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "overload-smoke.json").read_text())
    assert result["capacity"]["rate"] > 0
    streams = result["idle_streams"]
    assert streams["without"]["idle_streams_open"] == 0
    assert streams["with"]["idle_streams_open"] == 5  # below [server] max_streams: none refused
    assert streams["with"]["admitted_ok"] > 0
    assert [s["multiplier"] for s in result["steps"]] == [2.0, 5.0]
    for step in result["steps"]:
        assert step.keys() >= STEP_KEYS
        assert step["admitted_ok"] > 0
        assert set(step["codes"]) <= SHED_CODES, step["codes"]
        assert {"p50", "p99", "p99_9", "max"} <= step["admitted_ms"].keys()
        assert step["degraded_after_overload"]["seconds"] is not None
        assert set(step["probe"]["payment_codes"]) <= SHED_CODES
    assert result["service_exit"] == 0


H2LOAD_STEP_KEYS = {"multiplier", "offered_rate", "achieved_rate", "answered_rate",
                    "unanswered_at_end", "generator_limited", "h2load", "server", "admitted_rate",
                    "refused_share", "server_cpu_cores", "generator_cpu_cores", "probe",
                    "degraded_after_overload"}


@pytest.mark.skipif(shutil.which("h2load") is None,
                    reason="h2load is not on PATH (Debian package nghttp2-client)")
def test_overload_smoke_with_h2load_reports_counters_and_probe(tmp_path: Path) -> None:
    """--generator h2load: capacity, 0.5x/2x/5x steps with the service's counters and the probe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.overload", "--generator", "h2load",
                           "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "overload-h2load-smoke.json").read_text())
    assert result["capacity"]["rate"] > 0
    assert [s["multiplier"] for s in result["steps"]] == [0.5, 2.0, 5.0]
    for step in result["steps"]:
        assert step.keys() >= H2LOAD_STEP_KEYS
        assert step["h2load"]["exit_code"] == 0
        assert step["h2load"]["started"] > 0
        assert step["server"]["decisions"] > 0
        assert set(step["server"]["refused"]) <= {"screen/full", "screen/deadline"}
        assert set(step["probe"]["payment_codes"]) <= SHED_CODES
        assert step["degraded_after_overload"]["seconds"] is not None
    assert result["service_exit"] == 0
