"""The unary floor: a threaded grpcio server against a ``grpc.aio`` one, and the service.

Issue: should the service move to ``grpc.aio``? This measures the question where it is decided,
on the bare servers (``bench._echo``, threaded and ``--aio``: no work, the same reply bytes),
with a C load generator (h2load) so that the generator's own Python does not cap the figure:

- capacity: closed loop, 2 connections x 16 calls in flight, as fast as answered;
- server CPU per call (from /proc, the server process only) at capacity and at each paced rate;
- latency p50 / p99 / p99.9 at paced rates (h2load ``--rps``): the round trip as h2load sees it.

The shipped service (threaded) is run beside them with the same generator. h2load replays one
serialized request, so every call after the first takes the service's duplicate path (auth,
decode, validation, idempotency lookup, reply): its gRPC shell, not a screening. Rounds
alternate the servers' order and each figure is the median over rounds.

    python -m bench.unary_floor [--rounds 3] [--duration 4] [--rates 500,1000,2000]

Needs h2load (Debian package nghttp2-client); says so and exits 2 without it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import _h2load
from bench._inproc import publish
from bench._inproc import stamp as stamp_result
from bench._servers import ServerProcess, start_echo, start_service

__all__ = ["main", "measure"]

SERVERS = ("threaded", "aio", "service")
CLIENTS, IN_FLIGHT = 2, 16


def _one(server: ServerProcess, method: str, body: bytes, token: str, duration: float,
         rate: float | None) -> dict[str, Any]:
    cpu0 = server.cpu_seconds()
    r = _h2load.capacity(server.address, method, body, token, duration_s=duration,
                         clients=CLIENTS, in_flight=IN_FLIGHT, rate_per_s=rate)
    cpu = server.cpu_seconds() - cpu0
    done = r.get("succeeded") or 0
    r["server_cpu_us_per_call"] = round(cpu * 1e6 / done, 1) if done else None
    return r


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(xs), 3) if xs else None


def measure(rounds: int, duration: float, rates: Sequence[float],
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the three servers, run ``rounds`` rounds, return medians and every run."""
    from bench._mix import MixConfig, builtin_pool
    from bench._mix import stamp as stamp_txns

    pool = builtin_pool(MixConfig(pool_size=100))
    body = stamp_txns(pool.templates, 0, [f"floor-{time.time_ns()}"],
                      [int(time.time() * 1000)])[0]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {"capacity": [], **{f"rate_{r:g}": [] for r in rates}} for s in SERVERS}
    with tempfile.TemporaryDirectory(prefix="unary-floor-") as tmp:
        work = Path(tmp)
        reply = {"unary": 96.0}  # about a quiet decision's bytes
        servers: dict[str, ServerProcess] = {}
        token = ""
        try:
            servers["threaded"] = start_echo(work / "threaded", reply)
            servers["aio"] = start_echo(work / "aio", reply, aio=True)
            servers["service"], token = start_service(work / "service")
            methods = {"threaded": "/bench.v1.Echo/Unary", "aio": "/bench.v1.Echo/Unary",
                       "service": "/screening.v1.Screening/ScreenTransaction"}
            for k in range(rounds):
                order = SERVERS[k % 3:] + SERVERS[:k % 3]
                for name in order:
                    tok = token if name == "service" else ""
                    r = _one(servers[name], methods[name], body, tok, duration, None)
                    runs[name]["capacity"].append(r)
                    progress(f"round {k + 1}/{rounds} {name:8s} capacity "
                             f"{r.get('requests_per_s') or 0:>8,.0f}/s  "
                             f"cpu {r.get('server_cpu_us_per_call') or 0:6.1f} µs/call  "
                             f"p99 {r.get('p99_ms', 0):.2f} ms")
                for rate in rates:
                    for name in order:
                        tok = token if name == "service" else ""
                        r = _one(servers[name], methods[name], body, tok, duration, rate)
                        runs[name][f"rate_{rate:g}"].append(r)
                        progress(f"round {k + 1}/{rounds} {name:8s} {rate:>6g}/s  "
                                 f"done {r.get('requests_per_s') or 0:>8,.0f}/s  "
                                 f"p50 {r.get('p50_ms', 0):.2f}  p99 {r.get('p99_ms', 0):.2f} ms  "
                                 f"cpu {r.get('server_cpu_us_per_call') or 0:6.1f} µs/call")
        finally:
            for s in servers.values():
                s.stop()
    summary: dict[str, Any] = {}
    for name in SERVERS:
        row: dict[str, Any] = {}
        for step, rs in runs[name].items():
            row[step] = {k: _median(rs, k) for k in ("requests_per_s", "p50_ms", "p99_ms",
                                                      "p99_9_ms", "server_cpu_us_per_call")}
            row[step]["failed"] = sum((r.get("failed") or 0) + (r.get("errored") or 0)
                                      + (r.get("timeouts") or 0) for r in rs)
        summary[name] = row
    t, a = summary["threaded"]["capacity"], summary["aio"]["capacity"]
    ratios = {
        "aio_to_threaded_capacity": _ratio(a["requests_per_s"], t["requests_per_s"]),
        "aio_to_threaded_cpu_per_call": _ratio(a["server_cpu_us_per_call"],
                                               t["server_cpu_us_per_call"]),
        "service_to_threaded_capacity": _ratio(summary["service"]["capacity"]["requests_per_s"],
                                               t["requests_per_s"]),
    }
    return {"rounds": rounds, "duration_s": duration, "rates": list(rates),
            "clients": CLIENTS, "in_flight_per_client": IN_FLIGHT,
            "caveat": "h2load replays one request: the service answers every call after the "
                      "first on its duplicate path (its gRPC shell, not a screening)",
            "summary": summary, "ratios": ratios, "runs": runs}


def _ratio(x: float | None, y: float | None) -> float | None:
    return round(x / y, 3) if x and y else None


def lines(r: dict[str, Any]) -> list[str]:
    """A markdown table of the medians."""
    out = ["| server | step | calls/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/call |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for name in SERVERS:
        for step, m in r["summary"][name].items():
            label = "capacity (closed loop)" if step == "capacity" else \
                f"paced {step.removeprefix('rate_')}/s"
            out.append(f"| {name} | {label} | {m['requests_per_s'] or 0:,.0f} | "
                       f"{m['p50_ms'] or 0:.2f} | {m['p99_ms'] or 0:.2f} | "
                       f"{m['p99_9_ms'] or 0:.2f} | {m['server_cpu_us_per_call'] or 0:.0f} |")
    rt = r["ratios"]
    out += ["", f"aio / threaded: capacity x{rt['aio_to_threaded_capacity']}, CPU per call "
                f"x{rt['aio_to_threaded_cpu_per_call']}; service (duplicate path) / threaded "
                f"capacity x{rt['service_to_threaded_capacity']}"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.unary_floor", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds, servers in rotated order")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per step")
    ap.add_argument("--rates", default="500,1000,2000",
                    help="paced rates in calls per second, comma-separated")
    ap.add_argument("--json", type=Path, default=Path("bench/results/unary-floor.json"),
                    help="where the figures go")
    args = ap.parse_args(argv)
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--rates: numbers separated by commas, got {args.rates!r}")
    if args.rounds < 1 or args.duration <= 0 or any(r <= 0 for r in rates):
        ap.error("--rounds, --duration and every rate must be positive")
    if not _h2load.available():
        print("h2load is not on PATH (Debian package nghttp2-client): nothing measured",
              file=sys.stderr)
        return 2
    r = stamp_result(measure(args.rounds, args.duration, rates,
                             lambda s: print(s, file=sys.stderr, flush=True)))
    publish(r, lines(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
