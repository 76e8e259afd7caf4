"""What a first start compiles: every kernel the warm-up steps compile on an empty numba cache,
with its signatures and its compile time (wall and CPU), step by step, in one process.

Run: ``python -m bench.compile`` (a markdown table on stdout; ``--out FILE`` writes it too). The
measurement runs in a child process with a new, empty ``NUMBA_CACHE_DIR``, so nothing is loaded
from a cache; the steps run one after another (no worker process: ``screening._warm`` splits them
between two processes on a real first start). A kernel's time includes the kernels it calls that
compile with it (their own rows are indented under it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main"]


@dataclass
class _Compile:
    step: str
    kernel: str
    depth: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    dispatcher: Any = None


def _measure() -> str:
    from numba.core import event

    from screening import _warm
    from screening.config import Settings
    from screening.policy import load_policy

    rows: list[_Compile] = []
    open_: list[tuple[_Compile, float, float]] = []
    step = [""]

    class _Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            d = ev.data["dispatcher"]
            row = _Compile(step[0], f"{d.py_func.__module__}.{d.py_func.__name__}", len(open_),
                           dispatcher=d)
            rows.append(row)
            open_.append((row, time.perf_counter(), time.thread_time()))

        def on_end(self, ev: Any) -> None:
            row, t0, c0 = open_.pop()
            row.wall_s = time.perf_counter() - t0
            row.cpu_s = time.thread_time() - c0

    event.register("numba:compile", _Listener())
    settings = Settings()
    p = load_policy(settings.policy.file)
    inputs = _warm.KernelInputs(p.params_array, p.txn_table, p.call_table,
                                settings.graph.params().array())
    lines = ["| step | kernel | signatures | compile wall s | compile CPU s |", "|---|---|---:|---:|---:|"]
    total_wall = total_cpu = 0.0
    for s in _warm.STEPS:
        step[0] = s.name
        t0, c0 = time.perf_counter(), time.process_time()
        s.run(inputs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        total_wall += wall
        total_cpu += cpu
        for r in rows:
            if r.step == s.name and not r.kernel.startswith("numba."):
                # (the event's own dispatcher: a module may keep the plain function under the
                # name and its compiled twin under another, as screening.wire does)
                d = r.dispatcher
                name = "&nbsp;&nbsp;" * r.depth + r.kernel
                lines.append(f"| {s.name} | {name} | {len(d.signatures) if d is not None else '?'} | "
                             f"{r.wall_s:.1f} | {r.cpu_s:.1f} |")
        lines.append(f"| {s.name} | **step total** | | {wall:.1f} | {cpu:.1f} |")
    lines.append(f"| all | **total** | | {total_wall:.1f} | {total_cpu:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="also write the table here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(_measure())
        return 0
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, "-m", "bench.compile", "--child"], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "NUMBA_CACHE_DIR": cache}).stdout
    text = f"{out.rstrip()}\n\n(empty numba cache; load average {load:.2f} at start)\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
