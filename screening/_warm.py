"""Kernel warm-up at start: every kernel loaded (or compiled) before the server says SERVING.

A start loads the kernels from numba's on-disk cache (``cache=True``, about a second). The first
start on a machine finds no cache and compiles them, which numba does on one core: so when the
feature kernels are missing, a worker process (a new interpreter, ``python -c``: not forked, the
parent may already run grpc threads, and not multiprocessing's spawn, which re-runs the parent's
main script) compiles meanwhile the calls' kernel (``CALLS``, which the feature step would
otherwise compile here after the transactions' one) and then the steps in ``OFFLOADED``, while
this process compiles the transactions' kernel and the loop around both. Whichever side is free
first takes the next step no one has started: the worker from the front of the list, this
process from the back, each claiming a step by creating a file of its name (``O_EXCL``, so a
step is compiled once). The worker writes what it compiled into the same on-disk cache; this
process then runs the worker's steps too, and they load from that cache instead of compiling.
Whatever happens to the worker, those steps still run here afterwards, so a failed worker costs
time, never a kernel: the worker only fills the cache.

Each step calls the real drivers on a small scratch state (never the live one) with the same
argument types as live traffic, so it compiles (or loads) exactly the signatures requests use.
"""

from __future__ import annotations

import os
import pickle
import shutil
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
from screening import wire

__all__ = ["CALLS", "OFFLOADED", "STEPS", "KernelInputs", "Step", "Worker", "claim", "cold_steps",
           "run_steps", "warm_up"]


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


def _calls(inp: KernelInputs) -> None:
    """The calls' kernel alone, with the argument types ``_process`` calls it with (``i`` and
    the feature row are int64 there as here), so that ``_process`` then loads it."""
    scratch = FeatureState.create(4, 4, 4, 16)
    p = scratch.phones
    feat = np.zeros((1, fk.N_TXN_FEATURE), dtype=np.float64)
    fk._call(_events(), 1, p.cnt, p.amt, p.tag, p.head, p.ring, p.sc, scratch.pairs,
             scratch.meta, inp.params, feat, 0)


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


def _wire(inp: KernelInputs) -> None:
    wire.read_batch(b"\x0a\x0a\x0a\x01t\x1a\x05\x0a\x01a\x18\x01")  # ScreenBatch's reader


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
    Step("wire", "ScreenBatch's reader of request bytes", _wire, wire.KERNELS),
)
# compiled by the worker only (this process never needs it: the feature step loads or compiles
# it), first, so that it is in the cache when the feature step here comes to it
CALLS = Step("calls", "the calls' kernel", _calls, (fk._call,))
# compiled by the worker on a first start, in this order, unless this process, done with the
# feature step, takes them first from the back; "features" (the largest) stays here
OFFLOADED = ("graph-detectors", "graph-queries", "upkeep", "wire")


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


def run_steps(names: Sequence[str], inputs: KernelInputs, claims: str | None = None) -> None:
    """Run the named steps here, in the order named; with ``claims`` (a folder) only those
    no other process has claimed there first."""
    by_name = {s.name: s for s in (*STEPS, CALLS)}
    for name in names:
        if claims is None or claim(claims, name):
            by_name[name].run(inputs)


def claim(folder: str, name: str) -> bool:
    """Take the step ``name`` for this process: True once, for the first process to ask."""
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _worker() -> None:
    """The worker's entry point: the step names, inputs and claims folder arrive pickled on
    stdin."""
    names, inputs, claims = pickle.load(sys.stdin.buffer)
    run_steps(names, inputs, claims)


class Worker:
    """A process that runs the named steps (filling the on-disk cache) and exits. It inherits
    this environment (``NUMBA_CACHE_DIR``) and interpreter; its stderr goes to a temporary
    file, read when it failed."""

    def __init__(self, names: Sequence[str], inputs: KernelInputs,
                 claims: str | None = None) -> None:
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
                self._proc.stdin.write(pickle.dumps((list(names), inputs, claims)))
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

    ``progress`` hears the label of each step as it starts. With ``parallel`` and the feature
    kernels missing from the cache, a worker process compiles meanwhile the calls' kernel and
    the cold ``OFFLOADED`` steps this process does not take first (see the module docstring).
    """
    say = progress or (lambda step: None)
    t0 = time.perf_counter()
    steps = [s for s in STEPS if inputs.graph_params is not None or not s.graph]
    here = [s for s in steps if s.name not in OFFLOADED]
    away = sorted((s for s in steps if s.name in OFFLOADED), key=lambda s: OFFLOADED.index(s.name))
    cold = {s.name for s in cold_steps(steps)} if parallel else set()
    worker: Worker | None = None
    claims: str | None = None
    done: set[str] = set()
    if any(s.name in cold for s in here):
        claims = tempfile.mkdtemp(prefix="screening-warm-")
        try:
            worker = Worker([CALLS.name, *(s.name for s in away if s.name in cold)], inputs,
                            claims)
        except OSError as err:
            say(f"no second process ({err}); compiling here")
    try:
        for step in here:
            say(step.label + (" (the rest compiles in a second process meanwhile)"
                              if worker is not None and step is here[-1] else ""))
            step.run(inputs)
        if worker is not None and claims is not None:
            for step in reversed(away):  # what the worker has not started yet, from the back
                if step.name in cold and claim(claims, step.name):
                    say(step.label)
                    step.run(inputs)
                    done.add(step.name)
            say("waiting for the second process")
            failed = worker.wait()
            if failed is not None:
                say(f"the second process failed ({failed}); compiling here")
    finally:
        if worker is not None:
            worker.close()
        if claims is not None:
            shutil.rmtree(claims, ignore_errors=True)
    for step in away:
        if step.name not in done:
            say(step.label)
            step.run(inputs)
    return time.perf_counter() - t0
