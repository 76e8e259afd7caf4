"""`python -m bench.growth` at a smoke size: the shape of its report, never a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from screening.protogen import ROOT


def test_growth_bench_reports_pauses_growth_and_evictions() -> None:
    """4,000 new accounts through a cap of 1,000: every call timed, the slowest named, the
    evictions counted, the live accounts within the cap."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.growth", "--accounts", "4000",
                           "--batch", "50", "--max-accounts", "1000"],
                          capture_output=True, text=True, env=env, timeout=600, check=True)
    out = json.loads(proc.stdout)
    assert out["calls"] == 40 and out["transactions"] == 2_000 and out["prefill"] is True
    assert set(out["call_ms"]) == {"p50", "p99", "p99.9", "max"} and out["peak_pause_ms"] >= 0
    assert len(out["slowest_calls"]) == 8
    assert out["memory_plan"]["max_accounts"] == 1_000 and out["memory_plan"]["derived"] == []
    stats = out["stats"]
    assert stats["accounts"] <= 1_000 and stats["accounts_evicted"] == 4_000 - stats["accounts"]
    assert out["evictions"]["accounts"] == stats["accounts_evicted"]
    assert out["evictions"]["batches"] >= 3 and out["evictions"]["batch_ms_max"] >= 0
