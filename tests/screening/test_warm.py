"""Kernel warm-up at start (screening/_warm.py): the worker process that compiles part of the
kernels on a first start fills a cache this process then loads without compiling."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from screening import _warm
from screening.config import Settings
from screening.policy import load_policy

# run in a new interpreter: numba reads NUMBA_CACHE_DIR when the kernels are defined
_LOAD_UPKEEP = """
import json
from screening import _warm
from screening.config import Settings
from screening.policy import load_policy
cold_before = [s.name for s in _warm.cold_steps(_warm.STEPS)]
p = load_policy(Settings().policy.file)
_warm.run_steps(["upkeep"], _warm.KernelInputs(p.params_array, p.txn_table, p.call_table, None))
step = next(s for s in _warm.STEPS if s.name == "upkeep")
print(json.dumps({
    "cold_before": cold_before,
    "misses": sum(sum(k.stats.cache_misses.values()) for k in step.kernels),
    "hits": sum(sum(k.stats.cache_hits.values()) for k in step.kernels),
}))
"""


def _inputs(graph: bool = True) -> _warm.KernelInputs:
    settings = Settings()
    p = load_policy(settings.policy.file)
    return _warm.KernelInputs(p.params_array, p.txn_table, p.call_table,
                              settings.graph.params().array() if graph else None)


def test_the_worker_fills_a_cache_a_new_process_loads_without_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker runs a step on an empty cache; a new process then finds that step warm, the
    others cold, and runs it with cache hits only (the same signatures, nothing compiled)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    worker = _warm.Worker(["upkeep"], _inputs(graph=False))
    try:
        assert worker.wait() is None
    finally:
        worker.close()
    assert any(tmp_path.rglob("*.nbi"))
    out = subprocess.run([sys.executable, "-c", _LOAD_UPKEEP], capture_output=True, text=True,
                         check=True, timeout=600)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "upkeep" not in seen["cold_before"]
    assert {"features", "graph-detectors", "graph-queries"} <= set(seen["cold_before"])
    assert seen["misses"] == 0
    assert seen["hits"] >= len(next(s for s in _warm.STEPS if s.name == "upkeep").kernels)


_LOAD_FEATURES = """
import json
from features import _kernels as fk
from screening import _warm
from screening.config import Settings
from screening.policy import load_policy
p = load_policy(Settings().policy.file)
_warm.run_steps(["features"], _warm.KernelInputs(p.params_array, p.txn_table, p.call_table, None))
print(json.dumps({"misses": sum(fk._call.stats.cache_misses.values()),
                  "hits": sum(fk._call.stats.cache_hits.values())}))
"""


def test_the_calls_kernel_compiled_apart_is_the_one_the_feature_step_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker compiles the calls' kernel by itself; the feature step of a new process then
    loads that very signature from the cache (a different argument type would miss and compile
    it again, and the worker's time would be wasted)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    worker = _warm.Worker([_warm.CALLS.name], _inputs(graph=False))
    try:
        assert worker.wait() is None
    finally:
        worker.close()
    out = subprocess.run([sys.executable, "-c", _LOAD_FEATURES], capture_output=True, text=True,
                         check=True, timeout=600)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"misses": 0, "hits": 1}


def test_a_claimed_step_is_run_by_one_process_only(tmp_path: Path) -> None:
    """The worker and this process share the offloaded steps by claiming each once."""
    assert _warm.claim(str(tmp_path), "upkeep")
    assert not _warm.claim(str(tmp_path), "upkeep")
    ran: list[str] = []
    steps = {s.name: s for s in _warm.STEPS}
    monkey = {name: dataclasses.replace(s, run=lambda inp, n=name: ran.append(n))
              for name, s in steps.items()}
    original = _warm.STEPS
    try:
        _warm.STEPS = tuple(monkey.values())
        _warm.run_steps(["graph-detectors", "upkeep"], _inputs(), str(tmp_path))
    finally:
        _warm.STEPS = original
    assert ran == ["graph-detectors"]


def test_each_step_lists_the_kernels_it_loads() -> None:
    """After a step runs, every kernel it lists has a compiled version (the list is what
    ``cold_steps`` checks against the cache, so a stale list would hide a compile)."""
    inputs = _inputs()
    for step in (*_warm.STEPS, _warm.CALLS):
        step.run(inputs)
        assert all(k.signatures for k in step.kernels), step.name


def test_a_failed_worker_costs_time_not_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the second process fails, warm-up says so and runs its steps here: every kernel is
    still loaded before it returns."""
    monkeypatch.setattr(_warm, "cold_steps", lambda steps: list(steps))  # pretend all is cold
    monkeypatch.setattr(sys, "executable", "/bin/false")
    said: list[str] = []
    seconds = _warm.warm_up(_inputs(), said.append)
    assert seconds >= 0
    assert any("second process failed" in s for s in said)
    # the worker claimed nothing: this process took every offloaded step, from the back
    by_name = {s.name: s for s in _warm.STEPS}
    assert [s for s in said if not s.startswith(("waiting", "the second"))] == [
        _warm.STEPS[0].label + " (the rest compiles in a second process meanwhile)",
        *(by_name[name].label for name in reversed(_warm.OFFLOADED))]
    assert all(k.signatures for s in _warm.STEPS for k in s.kernels)


def test_without_the_graph_its_kernels_are_not_loaded() -> None:
    """The graph's steps run only when the graph is on (the running configuration's kernels)."""
    said: list[str] = []
    _warm.warm_up(_inputs(graph=False), said.append, parallel=False)
    assert said == [s.label for s in _warm.STEPS if not s.graph]
    assert np.all([not s.graph for s in _warm.STEPS if s.label in said])


def test_a_worker_that_exits_before_reading_its_work_is_a_failure_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker died before taking its input (more than a pipe holds): the write's broken pipe
    is not raised (nor the process left unwaited); wait() reports the failure."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    worker = _warm.Worker(["x" * 1000] * 1000, _inputs())
    try:
        assert worker.wait() == "exit status 1"
    finally:
        worker.close()
