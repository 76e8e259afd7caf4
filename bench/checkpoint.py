"""Checkpoint size and speed: `python -m bench.checkpoint --accounts 100000 1000000`.

For each size, an engine (shipped policy, graph on) screens one transaction per account
through ``Engine.screen`` (every account active, half the payments with the payer's phone, a
tenth with a device), sees a call per 20 accounts and holds 1,000 watchlist entries; its
idempotency memory holds every decision (up to ``[state] dedup_capacity``). Then, per backend,
it measures a checkpoint (the lock-held copy, serialisation with checksums, the write) and a
restore into a fresh engine (read, verify, load, apply), and reports bytes per account.

The file backend writes to ``--dir`` (default: a temp dir); the Redis backend uses
``--redis-url`` or starts its own ``redis-server`` (no persistence) on a free port. Writes
``bench/results/checkpoint.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "measure"]

RESULTS = Path(__file__).resolve().parent / "results" / "checkpoint.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: pass --redis-url or --backends file")
    work = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _engine(n: int, seed: int = 0) -> Any:
    from screening.config import load_settings
    from screening.engine import Engine
    from screening.model import NEVER, CallInput, Party, TxnInput, WatchEntry
    from screening.policy import load_policy

    settings = load_settings(overrides={
        "state": {"initial_accounts": n, "initial_phones": max(n // 2, 16),
                  "initial_devices": max(n // 10, 16), "initial_pairs": 2 * n},
        "graph": {"initial_edges": 4 * n}})
    engine = Engine(settings, load_policy())
    rng = np.random.default_rng(seed)
    payees = rng.integers(0, n, n)
    now = int(time.time() * 1000) - 3_600_000
    times = now - 7 * 86_400_000 + np.sort(rng.integers(0, 7 * 86_400_000, n))
    amounts = rng.integers(100, 2_000_000, n)
    batch = 10_000
    for start in range(0, n, batch):
        txns = []
        for i in range(start, min(n, start + batch)):
            txns.append(TxnInput(
                f"T{i:010d}", int(times[i]), Party(f"62220{i:011d}", "B1", 1, None),
                Party(f"62220{int(payees[i]):011d}", "B1", 1, None), int(amounts[i]), "CNY",
                int(amounts[i]), 1, False, False, f"dev{i % (n // 10 + 1):08d}" if i % 10 == 0 else "",
                f"+86138{i // 2:08d}" if i % 2 else "", ""))
        engine.screen(txns)
    for j in range(0, n, 20):
        engine.report_call(CallInput(f"C{j:010d}", f"+86170{j:08d}", f"+86138{j // 2:08d}",
                                     int(times[j]), 60, 1))
    engine.update_watchlist([WatchEntry(1, f"62220{k * 97 % n:011d}", "case", "police", NEVER)
                             for k in range(1000)], [])
    return engine


def measure(n: int, backends: Sequence[str], directory: Path, redis_url: str | None) -> dict[str, Any]:
    """Build an engine of ``n`` accounts; checkpoint and restore it with each backend."""
    from screening.engine import Engine
    from screening.store import FileStore, RedisStore, Store, restore_engine, save_checkpoint

    t0 = time.perf_counter()
    engine = _engine(n)
    built_s = time.perf_counter() - t0
    out: dict[str, Any] = {"accounts": n, "build_s": round(built_s, 1), "stats": engine.stats(),
                           "backends": {}}
    for backend in backends:
        with _redis(redis_url) if backend == "redis" else _nothing() as url:
            store: Store = (FileStore(directory / f"file-{n}") if backend == "file"
                            else RedisStore(url, f"bench{n}:"))
            gc.collect()
            stats = save_checkpoint(engine, store)
            gc.collect()
            fresh = Engine(engine.settings, engine.policy)
            t1 = time.perf_counter()
            report = restore_engine(fresh, store)
            restore_s = time.perf_counter() - t1
            assert report.header is not None and report.header.counts == stats.counts
            assert len(fresh.accounts) == len(engine.accounts)
            del fresh
            store.close()
        out["backends"][backend] = {
            "bytes": stats.bytes,
            "bytes_per_account": round(stats.bytes / n, 1),
            "save_s": round(stats.seconds, 2),
            "snapshot_s": round(stats.snapshot_s, 2),
            "lock_s": round(stats.lock_s, 3),
            "encode_s": round(stats.encode_s, 2),
            "write_s": round(stats.write_s, 2),
            "restore_s": round(restore_s, 2),
            "counts": stats.counts,
        }
        gc.collect()
    return out


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", choices=("file", "redis"), default=["file", "redis"])
    parser.add_argument("--dir", type=Path, default=None, help="file backend directory (default: temp)")
    parser.add_argument("--redis-url", default=None, help="default: start a redis-server of its own")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    results = []
    try:
        for n in args.accounts:
            r = measure(n, args.backends, directory, args.redis_url)
            results.append(r)
            for backend, b in r["backends"].items():
                print(f"{n:>10,} accounts  {backend:<5}  {b['bytes'] / 1e6:9.1f} MB  "
                      f"{b['bytes_per_account']:7.1f} B/account  save {b['save_s']:6.2f} s "
                      f"(copy {b['snapshot_s']:.2f} s of which lock {b['lock_s']:.3f} s, encode "
                      f"{b['encode_s']:.2f} s, write {b['write_s']:.2f} s)  "
                      f"restore {b['restore_s']:6.2f} s", flush=True)
            gc.collect()
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "results": results}, indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
