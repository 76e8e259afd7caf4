"""Pauses while state grows: `python -m bench.growth --accounts 2000000`.

A flood of new customers: every transaction is from a never-seen account to another never-seen
account, sent through ``Engine.screen`` in batches (default 100 transactions, 200 new accounts
each), with the shipped policy and the graph on, on the settings a server would start with (the
caps derived from this machine's memory unless ``--max-accounts`` says otherwise; rows written
ahead of use on a background thread as the server does, unless ``--no-prefill``). Each call is
timed; a call much slower than the median is a pause (the state grew, or the coldest accounts
were evicted). It reports the peak call time, the percentiles, how far the peak is above the
median, the slowest calls with what changed during them (capacity, evictions), resident memory,
and ``Engine.stats()`` at the end. Writes one JSON object (``--out`` to keep it).

Run in a fresh process: resident memory is the state's own.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "measure"]


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(accounts: int, batch: int = 100, max_accounts: int | None = None,
            graph: bool = True, prefill: bool = True, top: int = 8) -> dict[str, Any]:
    """Screen ``accounts // 2`` transactions between new accounts; time every call.

    ``prefill``: rows are written ahead of use on a background thread, as the server does."""
    from screening.config import load_settings
    from screening.engine import Engine
    from screening.model import Party, TxnInput
    from screening.policy import load_policy

    state: dict[str, Any] = {}
    if max_accounts is not None:
        state.update(max_accounts=max_accounts, max_phones=max_accounts, max_devices=max_accounts)
    settings = load_settings(overrides={"state": state, "graph": {"enabled": graph}})
    t_build = time.perf_counter()
    engine = Engine(settings, load_policy())
    build_s = time.perf_counter() - t_build
    engine.warm_up()
    evictions: list[Any] = []
    engine.on_evict = evictions.append
    if prefill:
        engine.start_prefill()
    gc.collect()
    gc.freeze()  # as the server does: no full collections over the long-lived state
    rss0 = _rss()
    n_txn = accounts // 2
    ts0 = int(time.time() * 1000) - 86_400_000
    rng = np.random.default_rng(7)
    amounts = rng.integers(100, 2_000_000, n_txn)
    times: list[int] = []
    grew: list[tuple[int, int, int, int]] = []  # (call, capacity before, after, evicted)
    t0 = time.perf_counter()
    for start in range(0, n_txn, batch):
        stop = min(n_txn, start + batch)
        txns = [TxnInput(f"G{i:010d}", ts0 + i * 10, Party(f"P{2 * i:012d}", "B1", 1, None),
                         Party(f"P{2 * i + 1:012d}", "B1", 1, None), int(amounts[i]), "CNY",
                         int(amounts[i]), 1, False, False, "", "", "")
                for i in range(start, stop)]
        cap = engine.state.accounts.capacity
        evicted = engine.stats().get("accounts_evicted", 0)
        c0 = time.perf_counter_ns()
        engine.screen(txns)
        times.append(time.perf_counter_ns() - c0)
        after = engine.state.accounts.capacity
        ev_after = engine.stats().get("accounts_evicted", 0)
        if after != cap or ev_after != evicted:
            grew.append((len(times) - 1, cap, after, ev_after - evicted))
        if len(times) % 200 == 0:
            gc.collect(0)
    wall = time.perf_counter() - t0
    engine.stop_prefill()
    ms = np.array(times, dtype=np.float64) / 1e6
    evict_ms = np.array([e.seconds * 1000 for e in evictions if e.kind == "accounts"])
    median = float(np.median(ms))
    slow = np.argsort(ms)[::-1][:top]
    changes = {c: (b, a, e) for c, b, a, e in grew}
    return {
        "accounts": accounts,
        "transactions": n_txn,
        "batch": batch,
        "graph": graph,
        "prefill": prefill,
        "memory_plan": engine.memory.log_fields(),
        "engine_build_s": round(build_s, 3),
        "wall_s": round(wall, 1),
        "calls": len(times),
        "call_ms": {"p50": round(median, 2), "p99": round(float(np.percentile(ms, 99)), 2),
                    "p99.9": round(float(np.percentile(ms, 99.9)), 2),
                    "max": round(float(ms.max()), 2)},
        "peak_pause_ms": round(float(ms.max()) - median, 1),
        "slowest_calls": [
            {"call": int(i), "ms": round(float(ms[i]), 1),
             "capacity_before": changes[int(i)][0] if int(i) in changes else None,
             "capacity_after": changes[int(i)][1] if int(i) in changes else None,
             "evicted": changes[int(i)][2] if int(i) in changes else 0}
            for i in slow],
        "growth_or_eviction_calls": len(grew),
        "evictions": {"batches": int(evict_ms.size),
                      "accounts": int(sum(e.count for e in evictions if e.kind == "accounts")),
                      "batch_ms_p50": round(float(np.median(evict_ms)), 1) if evict_ms.size else None,
                      "batch_ms_max": round(float(evict_ms.max()), 1) if evict_ms.size else None},
        "rss_growth_bytes": _rss() - rss0,
        "stats": engine.stats(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2_000_000,
                        help="new accounts to create (two per transaction)")
    parser.add_argument("--batch", type=int, default=100, help="transactions per Engine.screen call")
    parser.add_argument("--max-accounts", type=int, default=None,
                        help="[state] max_accounts (default: what the server would use)")
    parser.add_argument("--no-graph", action="store_true", help="[graph] enabled = false")
    parser.add_argument("--no-prefill", action="store_true",
                        help="no background thread writing rows ahead of use")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    out = measure(args.accounts, args.batch, args.max_accounts, graph=not args.no_graph,
                  prefill=not args.no_prefill)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
