"""What a graph detector pays per list entry, by edge layout: the lever for the graph stage.

    python -m bench.graph_layout [--nodes 300000] [--edges 6000000] [--walks 200000] [--steps 20]
                                 [--json PATH]

The live graph (``graph/_kernels.py``) keeps each node's edges as a singly linked list through
edges stored in arrival order, in three column arrays (ends and links, time and amount, kind).
A detector's scan follows ``next`` from entry to entry: each step is a load whose address the
previous load gave, so on a graph larger than the cache every entry costs a memory round trip.
This bench builds random edges in arrival order and walks the newest ``--steps`` entries of
``--walks`` random nodes' lists three ways, reading the same fields and summing the same
values (the checksums must agree):

* ``linked, columns``: as the store keeps them;
* ``linked, one row per edge``: the same lists, every field of an edge in one 64-byte row;
* ``side by side``: each node's edges in consecutive rows, newest first (what chunked
  per-node blocks would give), so the walk reads memory in order.

Numba kernels, best of five runs, nanoseconds per list entry walked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from bench._inproc import stamp

__all__ = ["main", "measure"]

_TS, _AMOUNT, _DST, _NEXT, _KIND = 0, 1, 2, 3, 4  # columns of a row (8 int64: 64 bytes)
_ROW = 8


@njit(cache=True)
def _chain(src: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each node's out-list, newest first: head per node, next per edge (-1: end)."""
    head = np.full(n_nodes, -1, np.int64)
    nxt = np.empty(src.shape[0], np.int64)
    for e in range(src.shape[0]):
        nxt[e] = head[src[e]]
        head[src[e]] = e
    return head, nxt


@njit(cache=True)
def _walk_columns(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, head: np.ndarray,
                  starts: np.ndarray, lo: int, steps: int) -> int:
    total = 0
    for u in starts:
        e = head[u]
        k = 0
        while e >= 0 and k < steps:
            if e64[e, 0] < lo:
                break
            if ekind[e] == 1:
                total += e32[e, 1]
            e = e32[e, 2]
            k += 1
    return total


@njit(cache=True)
def _walk_rows(rows: np.ndarray, head: np.ndarray, starts: np.ndarray, lo: int,
               steps: int) -> int:
    total = 0
    for u in starts:
        e = head[u]
        k = 0
        while e >= 0 and k < steps:
            if rows[e, _TS] < lo:
                break
            if rows[e, _KIND] == 1:
                total += rows[e, _DST]
            e = rows[e, _NEXT]
            k += 1
    return total


@njit(cache=True)
def _walk_blocks(rows: np.ndarray, first: np.ndarray, starts: np.ndarray, lo: int,
                 steps: int) -> int:
    total = 0
    for u in starts:
        for e in range(first[u], min(first[u + 1], first[u] + steps)):
            if rows[e, _TS] < lo:
                break
            if rows[e, _KIND] == 1:
                total += rows[e, _DST]
    return total


def _aligned_rows(n: int) -> np.ndarray:
    """Zeroed int64[n, 8] whose rows each fill one 64-byte cache line (numpy aligns to 16)."""
    raw = np.zeros(n * _ROW + _ROW, np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + n * _ROW].reshape(n, _ROW)


def _best(fn: Callable[..., int], args: tuple[Any, ...], repeat: int) -> tuple[float, int]:
    checksum = fn(*args)  # compiled (or loaded from the cache) outside the timing
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        checksum = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, checksum


def measure(nodes: int = 300_000, edges: int = 6_000_000, walks: int = 200_000, steps: int = 20,
            seed: int = 1, repeat: int = 5) -> dict[str, Any]:
    """Nanoseconds per list entry for each layout, with the entries walked and checksums."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, nodes, edges)
    dst = rng.integers(0, nodes, edges)
    ts = np.arange(edges, dtype=np.int64)
    amount = rng.integers(1, 10**6, edges)
    kind = (rng.random(edges) < 0.8).astype(np.uint8)
    head, nxt = _chain(src, nodes)
    e32 = np.stack([src, dst, nxt, nxt], axis=1).astype(np.int32)
    e64 = np.stack([ts, amount, ts], axis=1)
    rows = _aligned_rows(edges)
    rows[:, _TS], rows[:, _AMOUNT], rows[:, _DST], rows[:, _NEXT], rows[:, _KIND] = (
        ts, amount, dst, nxt, kind)
    order = np.lexsort((-ts, src))  # by node, newest first
    blocks = _aligned_rows(edges)
    blocks[:] = rows[order]
    first = np.zeros(nodes + 1, np.int64)
    np.add.at(first, src + 1, 1)
    first = np.cumsum(first)
    starts = rng.integers(0, nodes, walks)
    # entries actually walked: every node's list holds min(steps, its length)
    walked = int(np.minimum(np.diff(first)[starts], steps).sum())
    out: dict[str, Any] = {"nodes": nodes, "edges": edges, "walks": walks, "steps": steps,
                           "entries_walked": walked, "ns_per_entry": {}, "checksum": {}}
    for name, fn, args in (
            ("linked, columns", _walk_columns, (e32, e64, kind, head, starts, 0, steps)),
            ("linked, one row per edge", _walk_rows, (rows, head, starts, 0, steps)),
            ("side by side", _walk_blocks, (blocks, first, starts, 0, steps))):
        seconds, checksum = _best(fn, args, repeat)
        out["ns_per_entry"][name] = round(seconds / max(walked, 1) * 1e9, 2)
        out["checksum"][name] = int(checksum)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.graph_layout",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--nodes", type=int, default=300_000)
    p.add_argument("--edges", type=int, default=6_000_000)
    p.add_argument("--walks", type=int, default=200_000, help="lists walked (random nodes)")
    p.add_argument("--steps", type=int, default=20, help="newest entries walked per list")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)
    r = measure(args.nodes, args.edges, args.walks, args.steps)
    print(f"{r['edges']:,} edges over {r['nodes']:,} nodes; {r['entries_walked']:,} list "
          "entries walked per run (best of 5):")
    base = r["ns_per_entry"]["linked, columns"]
    for name, ns in r["ns_per_entry"].items():
        print(f"  {name:26s} {ns:7.1f} ns per entry  ({base / ns:4.1f}x)")
    if len(set(r["checksum"].values())) != 1:
        print("the walks disagree:", r["checksum"], file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(stamp(r), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
