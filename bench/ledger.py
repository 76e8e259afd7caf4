"""What the report ledger adds to a decision, and what a day's report costs.

    python -m bench.ledger [--txns 200000] [--accounts 100000] [--out bench/results/ledger.json]

Screens ``--txns`` transactions (random persons and a few organisations of ``--accounts``, six
institutions, 1 % in USD, 2 % cash, event times spread over 7 local days in order) through
``Engine.screen`` one at a time (as ScreenTransaction does) and 1,000 per call (as ScreenBatch
does), timing ``Ledger.append`` where the engine calls it (the clock reads around it included),
and the whole ``Engine.screen`` call beside it, in thread CPU time (what other processes on a
shared machine take is not counted; the clock reads themselves are subtracted) and wall time.
Survivors are frozen every ~2,000 decisions, as the server's gc-freezer thread does once a
second, so full collections stay out of the timings. Then builds the report of the busiest day
from the ledger (the view taken under the lock; reading, naming and grouping off it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from screening.config import load_settings
from screening.engine import Engine
from screening.ledger import Ledger
from screening.model import Party, TxnInput
from screening.offline.reports import large_value_rows, thresholds_from_policy
from screening.policy import load_policy

__all__ = ["ab", "main", "measure"]

DAY = 86_400_000
T0 = 1_767_196_800_000  # 2026-01-01 00:00 local (UTC+8)


def _transactions(n: int, accounts: int, seed: int) -> list[TxnInput]:
    rng = np.random.default_rng(seed)
    payer = rng.integers(0, accounts, n)
    payee = (payer + 1 + rng.integers(0, accounts - 1, n)) % accounts
    fen = rng.lognormal(9, 2, n).astype(np.int64) + 1
    ts = T0 + np.sort(rng.integers(0, 7 * DAY, n))
    inst = rng.integers(0, 6, (n, 2))
    usd = rng.random(n) < 0.01
    cash = rng.random(n) < 0.02
    out = []
    for i in range(n):
        org = (payer[i] % 50 == 0, payee[i] % 50 == 0)
        out.append(TxnInput(
            f"txn-{seed}-{i:09d}", int(ts[i]),
            Party(f"acct{payer[i]:08d}", f"BANK{inst[i, 0]}", 2 if org[0] else 1, None),
            Party(f"acct{payee[i]:08d}", f"BANK{inst[i, 1]}", 2 if org[1] else 1, None),
            int(fen[i]), "USD" if usd[i] else "CNY", int(fen[i]) * (7 if usd[i] else 1),
            3 if cash[i] else 1, bool(cash[i]), False, "", "", ""))
    return out


def measure(txns: Sequence[TxnInput], batch: int) -> dict[str, Any]:
    """Screen ``txns`` in calls of ``batch``; ns per transaction of the append and of screen."""
    settings = load_settings(overrides={"state": {"initial_accounts": 1 << 18},
                                        "server": {"latency_budget_ms": 1e9}})
    engine = Engine(settings, load_policy())
    engine.warm_up()
    append_ns: list[int] = []
    append_cpu_ns: list[int] = []
    original = engine.ledger.append
    wall, cpu = time.perf_counter_ns, time.thread_time_ns

    def timed(ev: np.ndarray, seq0: int, rows: Sequence[TxnInput]) -> None:
        c0, t0 = cpu(), wall()
        original(ev, seq0, rows)
        t1, c1 = wall(), cpu()
        append_ns.append(t1 - t0)
        append_cpu_ns.append(c1 - c0)

    # what the two clock pairs alone cost, subtracted from the CPU times
    clock = []
    for _ in range(20_000):
        c0, t0 = cpu(), wall()
        t1, c1 = wall(), cpu()
        clock.append(c1 - c0)
    clock_ns = statistics.median(clock)

    engine.ledger.append = timed  # type: ignore[method-assign,assignment]
    screen_ns: list[int] = []
    screen_cpu_ns: list[int] = []
    # as the server's gc-freezer thread does once a second: young collections, survivors frozen,
    # so no full collection lands inside a timed call
    gc.collect()
    gc.freeze()
    for lo in range(0, len(txns), batch):
        chunk = txns[lo:lo + batch]
        c0, t0 = cpu(), wall()
        engine.screen(chunk)
        t1, c1 = wall(), cpu()
        screen_ns.append(t1 - t0)
        screen_cpu_ns.append(c1 - c0)
        if len(screen_ns) % max(1, 2000 // batch) == 0:
            gc.collect(1)
            gc.freeze()
    ledger: Ledger = engine.ledger
    horizon = ledger.horizon()
    assert horizon is not None and ledger.rows == len(txns)
    busiest = max(range(horizon[0], horizon[1] + 1), key=lambda d: ledger.view(d).n)
    r0 = time.perf_counter()
    view, name = engine.ledger_view(busiest)
    r1 = time.perf_counter()
    report = large_value_rows(view.frame(name), thresholds_from_policy(engine.policy), settings)
    r2 = time.perf_counter()
    per = batch
    skip = max(1, len(append_ns) // 20)  # the first calls warm caches and allocate chunks
    cpu_append = [c - clock_ns for c in append_cpu_ns[skip:]]
    return {
        "batch": batch,
        "transactions": len(txns),
        "append_cpu_ns_per_txn_median": statistics.median(cpu_append) / per,
        "append_cpu_ns_per_txn_mean": sum(cpu_append) / len(cpu_append) / per,
        "append_cpu_ns_per_txn_p99": float(np.percentile(cpu_append, 99)) / per,
        "append_wall_ns_per_txn_median": statistics.median(append_ns[skip:]) / per,
        "append_wall_ns_per_txn_p99": float(np.percentile(append_ns[skip:], 99)) / per,
        "screen_cpu_ns_per_txn_median": statistics.median(screen_cpu_ns[skip:]) / per,
        "screen_wall_ns_per_txn_median": statistics.median(screen_ns[skip:]) / per,
        "append_share_of_screen_cpu": statistics.median(cpu_append) / statistics.median(
            screen_cpu_ns[skip:]),
        "clock_pair_ns": clock_ns,
        "ledger_rows": ledger.rows,
        "ledger_bytes_per_row": ledger.nbytes() / ledger.rows,
        "report_day_rows": view.n,
        "report_view_under_lock_ms": (r1 - r0) * 1000,
        "report_off_lock_ms": (r2 - r1) * 1000,
        "report_rows": report.height,
    }


def ab(txns: Sequence[TxnInput], block: int = 500) -> dict[str, Any]:
    """What the ledger adds to a decision, A/B: two engines screen the same transactions one at
    a time, in alternating blocks (which runs first alternates too), one with ``Ledger.append``
    replaced by a no-op; the added
    thread CPU time per decision is the median over blocks of (with - without)."""
    settings = load_settings(overrides={"state": {"initial_accounts": 1 << 18},
                                        "server": {"latency_budget_ms": 1e9}})
    engines = [Engine(settings, load_policy()) for _ in range(2)]
    for e in engines:
        e.warm_up()
    engines[1].ledger.append = lambda *_: None  # type: ignore[method-assign]
    diffs: list[float] = []
    per_decision: list[float] = []
    gc.collect()
    gc.freeze()
    for lo in range(0, len(txns) - block + 1, block):
        chunk = txns[lo:lo + block]
        spent = [0.0, 0.0]
        order = (0, 1) if lo // block % 2 == 0 else (1, 0)  # no engine always runs first
        for which in order:
            e = engines[which]
            c0 = time.thread_time_ns()
            for t in chunk:
                e.screen([t])
            spent[which] = (time.thread_time_ns() - c0) / block
        diffs.append(spent[0] - spent[1])
        per_decision.append(spent[1])
        gc.collect(1)
        gc.freeze()
    skip = max(1, len(diffs) // 10)
    return {"blocks": len(diffs) - skip, "block": block,
            "added_cpu_ns_per_decision_median": statistics.median(diffs[skip:]),
            "added_cpu_ns_per_decision_range": [min(diffs[skip:]), max(diffs[skip:])],
            "screen_cpu_ns_per_decision_without_median": statistics.median(per_decision[skip:])}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txns", type=int, default=200_000)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    txns = _transactions(args.txns, args.accounts, seed=1)
    results = []
    for batch in (1, 1000):
        r = measure(txns if batch > 1 else txns[: args.txns // 4], batch)
        results.append(r)
        print(f"batch {batch:>5}: append {r['append_cpu_ns_per_txn_median']:6.0f} ns/txn CPU "
              f"median (mean {r['append_cpu_ns_per_txn_mean']:.0f}, p99 "
              f"{r['append_cpu_ns_per_txn_p99']:.0f}; wall median "
              f"{r['append_wall_ns_per_txn_median']:.0f}); Engine.screen "
              f"{r['screen_cpu_ns_per_txn_median']:7.0f} ns/txn CPU "
              f"({100 * r['append_share_of_screen_cpu']:.1f} %); "
              f"{r['ledger_bytes_per_row']:.0f} B/row; report of {r['report_day_rows']:,} rows: "
              f"{r['report_view_under_lock_ms']:.3f} ms under the lock, "
              f"{r['report_off_lock_ms']:.0f} ms off it")
    paired = ab(txns[: args.txns // 4])
    print(f"A/B, one decision per call: the ledger adds "
          f"{paired['added_cpu_ns_per_decision_median']:.0f} ns CPU per decision (median of "
          f"{paired['blocks']} blocks of {paired['block']}) to Engine.screen's "
          f"{paired['screen_cpu_ns_per_decision_without_median']:.0f} ns")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "argv": sys.argv[1:], "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count(), "load_average_after": os.getloadavg(), "results": results,
            "ab": paired}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
