"""Sequential ScreenTransaction latency: `python -m bench.sequential [--calls 5000]`.

One client, one call at a time, against `screening serve` in its own process (token auth, the
shipped policy, graph on): the time per call a single bank connection sees, and the server-side
time the service reports in `Decision.server_latency_us`. The open-loop sweeps of `python -m
bench` are the figures under load; this is the unloaded floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from screening.auth import add_token
from screening.client import ScreeningClient, transaction

__all__ = ["main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--accounts", type=int, default=5_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-seq-"))
    token = add_token(work / "tokens.toml", "bank", "bench-sequential")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "screening", "serve", "--port", str(port), "--tokens",
         str(work / "tokens.toml")], stderr=(work / "server.log").open("w"))
    try:
        client = ScreeningClient(f"127.0.0.1:{port}", token)
        deadline = time.time() + 120
        while True:
            try:
                if client.is_serving():
                    break
            except Exception:
                pass
            if time.time() > deadline:
                print("server did not start; see", work / "server.log", file=sys.stderr)
                return 1
            time.sleep(0.2)
        rng = np.random.default_rng(0)
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        n = args.warmup + args.calls
        payers = rng.integers(0, args.accounts, n)
        payees = rng.integers(0, args.accounts, n)
        amounts = rng.integers(100, 10**7, n)
        msgs = [transaction(f"seq-{i}", when, f"62220000{payers[i]:06d}", f"62170000{payees[i]:06d}",
                            int(amounts[i]), payer_phone="13800000000", payer_opened="2015-03-01",
                            memo="transfer") for i in range(n)]
        for m in msgs[:args.warmup]:
            client.screen(m)
        rtt, srv = [], []
        for m in msgs[args.warmup:]:
            t0 = time.perf_counter_ns()
            d = client.screen(m)
            rtt.append((time.perf_counter_ns() - t0) / 1000)
            srv.append(d.server_latency_us)
        r, s = np.array(rtt), np.array(srv)
        print(f"ScreenTransaction, {args.calls:,} sequential calls after {args.warmup:,} warm-up:")
        print(f"  round trip: p50 {np.percentile(r, 50) / 1000:.2f} ms, p99 "
              f"{np.percentile(r, 99) / 1000:.2f} ms, p99.9 {np.percentile(r, 99.9) / 1000:.2f} ms, "
              f"max {r.max() / 1000:.2f} ms")
        print(f"  server-side: p50 {np.percentile(s, 50):.0f} us, p99 {np.percentile(s, 99):.0f} us")
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
