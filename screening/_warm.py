"""Kernel warm-up at start: every kernel loaded (or compiled) before the server says SERVING.

A start loads the kernels from numba's on-disk cache (``cache=True``, about a second). The first
start on a machine finds no cache and compiles them, which numba does on one core: so when
kernels are missing, the steps in ``OFFLOADED`` compile in one worker process (a new interpreter,
``python -c``: not forked, the parent may already run grpc threads, and not multiprocessing's
spawn, which re-runs the parent's main script) while this process compiles the feature kernels,
the largest, itself. The worker writes what it compiled into the same on-disk cache; this process
then runs the offloaded steps too, and they load from that cache instead of compiling. Whatever
happens to the worker, those steps still run here afterwards, so a failed worker costs time,
never a kernel: the worker only fills the cache.

Each step calls the real drivers on a small scratch state (never the live one) with the same
argument types as live traffic, so it compiles (or loads) exactly the signatures requests use.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features import _kernels as fk
from features.layout import EventCol, Kind
from features.state import FeatureState, RuleTable, decide_rows, empty_events
from graph import _kernels as gk
from graph.live import LiveGraph

__all__ = ["OFFLOADED", "STEPS", "KernelInputs", "Step", "Worker", "cold_steps", "run_steps",
           "warm_up"]


@dataclass(frozen=True)
class KernelInputs:
    """What the steps pass to the kernels (only their types matter; all picklable)."""

    params: np.ndarray
    txn_table: RuleTable
    call_table: RuleTable
    graph_params: np.ndarray | None  # None: the graph is off, its kernels are not needed


@dataclass(frozen=True)
class Step:
    name: str
    label: str  # what the progress line says
    run: Callable[[KernelInputs], None]
    # the kernels it calls from Python: all cached means nothing to compile (a cached kernel
    # holds the kernels it calls, which then never load by themselves)
    kernels: tuple[Any, ...]
    graph: bool = False  # needed only when the graph is on


def _events() -> np.ndarray:
    ev = empty_events(2)
    ev[0, [EventCol.KIND, EventCol.TS, EventCol.A, EventCol.B, EventCol.AMOUNT]] = [
        Kind.TXN, 1_700_000_000_000, 0, 1, 100]
    ev[1, [EventCol.KIND, EventCol.TS, EventCol.A, EventCol.B, EventCol.AMOUNT]] = [
        Kind.CALL, 1_700_000_000_000, 0, 1, 10]
    return ev


def _features(inp: KernelInputs) -> None:
    scratch = FeatureState.create(4, 4, 4, 16)
    feat, _ = scratch.process(_events(), inp.params, inp.txn_table, inp.call_table)
    decide_rows(inp.txn_table, feat)  # shadow policies


def _upkeep(inp: KernelInputs) -> None:
    scratch = FeatureState.create(4, 4, 4, 16)
    scratch.snapshot(0, 1_700_000_000_000, inp.params)
    scratch.release_pair(0, 1)
    scratch.forget("accounts", np.array([1], dtype=np.int64))  # eviction's kernels too
    scratch.rehash_pairs(64, min_ts=0)


def _graph_detectors(inp: KernelInputs) -> None:
    assert inp.graph_params is not None
    g = LiveGraph(nodes=12, edges=64)
    g.process(_events(), np.arange(2, dtype=np.int64), inp.graph_params)


def _graph_queries(inp: KernelInputs) -> None:
    g = LiveGraph(nodes=12, edges=64)
    hood = g.neighbourhood([0], hops=2, lo_ms=0, hi_ms=2**62, max_nodes=8, hub_degree=4,
                           max_work=100)
    g.edges_among(hood, lo_ms=0, hi_ms=2**62, max_edges=8)
    g.set_watch_node(0, 1)
    g.forget(np.array([3], dtype=np.int64))
    g.compact(0)


STEPS = (
    Step("features", "feature kernels (transactions, calls, policy)", _features,
         (fk._process, fk._first_bad_id, fk._decide_rows)),
    Step("upkeep", "account snapshot and state upkeep", _upkeep,
         (fk._snapshot, fk._pair_forget, fk._forget_pairs, fk._pair_rehash)),
    Step("graph-detectors", "graph detectors", _graph_detectors,
         (gk._process,), graph=True),
    Step("graph-queries", "graph queries and upkeep", _graph_queries,
         (gk._neighbourhood, gk._edges_among, gk._set_watch, gk._drop_nodes, gk._compact),
         graph=True),
)
# compiled by the worker on a first start; "features" (the largest) stays here. Measured on a
# fresh cache, the two halves take about as long each (see the README's first-start figures).
OFFLOADED = frozenset({"upkeep", "graph-detectors", "graph-queries"})


def _cached(kernel: Any) -> bool:
    """Whether numba's on-disk cache holds a compiled version of ``kernel`` for this source
    (an index that is missing, or stale after an edit, reads as empty)."""
    # numba internals, read defensively: none when caching is off, and a numba that keeps its
    # index another way reads as "not cached" (a worker more, never a kernel less)
    load_index = getattr(getattr(kernel._cache, "_cache_file", None), "_load_index", None)
    return load_index is not None and bool(load_index())


def cold_steps(steps: Sequence[Step]) -> list[Step]:
    """The steps that would compile something (a kernel with nothing in the cache)."""
    return [s for s in steps if not all(_cached(k) for k in s.kernels)]


def run_steps(names: Sequence[str], inputs: KernelInputs) -> None:
    """Run the named steps here."""
    for step in STEPS:
        if step.name in names:
            step.run(inputs)


def _worker() -> None:
    """The worker's entry point: the step names and inputs arrive pickled on stdin."""
    names, inputs = pickle.load(sys.stdin.buffer)
    run_steps(names, inputs)


class Worker:
    """A process that runs the named steps (filling the on-disk cache) and exits. It inherits
    this environment (``NUMBA_CACHE_DIR``) and interpreter; its stderr goes to a temporary
    file, read when it failed."""

    def __init__(self, names: Sequence[str], inputs: KernelInputs) -> None:
        self._err = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from screening._warm import _worker; _worker()"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)
        except OSError:
            self._err.close()
            raise
        assert self._proc.stdin is not None
        try:
            with self._proc.stdin:
                self._proc.stdin.write(pickle.dumps((list(names), inputs)))
        except BrokenPipeError:
            pass  # it exited before reading its work: wait() says how it failed

    def wait(self) -> str | None:
        """Wait for it to finish; None when it succeeded, else what went wrong."""
        if self._proc.wait() == 0:
            return None
        self._err.seek(0)
        lines = self._err.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self._proc.returncode}"

    def close(self) -> None:
        """Stop it if it still runs (this process failed first: its work is moot)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._err.close()


def warm_up(inputs: KernelInputs, progress: Callable[[str], None] | None = None, *,
            parallel: bool = True) -> float:
    """Load (or compile) every kernel the configuration uses; returns seconds taken.

    ``progress`` hears the label of each step as it starts. With ``parallel`` and kernels
    missing from the cache on both sides, the ``OFFLOADED`` steps compile in a worker process
    meanwhile (see the module docstring).
    """
    say = progress or (lambda step: None)
    t0 = time.perf_counter()
    steps = [s for s in STEPS if inputs.graph_params is not None or not s.graph]
    here = [s for s in steps if s.name not in OFFLOADED]
    away = [s for s in steps if s.name in OFFLOADED]
    cold = {s.name for s in cold_steps(steps)} if parallel else set()
    worker: Worker | None = None
    if any(s.name in cold for s in here) and any(s.name in cold for s in away):
        try:
            worker = Worker([s.name for s in away if s.name in cold], inputs)
        except OSError as err:
            say(f"no second process ({err}); compiling here")
    try:
        for step in here:
            say(step.label + (" (the rest compiles in a second process meanwhile)"
                              if worker is not None and step is here[-1] else ""))
            step.run(inputs)
        if worker is not None:
            say("waiting for the second process")
            failed = worker.wait()
            if failed is not None:
                say(f"the second process failed ({failed}); compiling here")
    finally:
        if worker is not None:
            worker.close()
    for step in away:
        say(step.label)
        step.run(inputs)
    return time.perf_counter() - t0
