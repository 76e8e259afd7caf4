"""``python -m bench.overload``: how the service sheds load it cannot take.

Starts ``screening serve`` as shipped (own process, bearer tokens) and measures, in order:

1. its unary capacity: closed loop, ``--in-flight`` ScreenTransaction calls always outstanding,
   answers per second;
2. open streams: unary latency at half that capacity (open loop) without streams, then with
   ``--idle-streams`` ScreenStreams held open and idle, health checked meanwhile;
3. overload: open-loop load at multiples of the capacity (default 2x and 5x): the admitted
   calls' latency (p50 / p99 / p99.9 from the scheduled send time), the share refused and by
   which code (RESOURCE_EXHAUSTED when a lane is full, DEADLINE_EXCEEDED when a call's deadline
   cannot be met), how fast refusals came back, and the generator's own send lag (a Python
   generator on the same 2 cores may not reach 5x; the lag says so). Meanwhile a probe from
   this process sends a health check and a payment every 100 ms: its timings are the server's
   as a client that is not itself saturated sees them;
4. after the overload: one payment every 100 ms until a decision is no longer ``degraded``
   (graph detectors back on): how long degraded mode outlasts the overload.

With ``--generator h2load`` the open-loop load comes from h2load (C, ``bench._h2load``), which
costs far less CPU per call than the Python generator, so 5x is offered for real. h2load replays
ONE serialized request, so every call after the first takes the service's duplicate path
(auth, decode, validation, idempotency lookup, reply), and it cannot see gRPC status codes
(trailers). So in that mode the capacity is measured with h2load too (closed loop, the same
path as the load), a 0.5x step gives the baseline, each call carries the ``--deadline`` as
``grpc-timeout``, and the split between admitted and refused comes from the service's own
Prometheus counters (``[metrics] port``, read before and after each step); the probe's payments
(unique ids, screened for real) are what "admitted latency" means for a caller. No idle-stream
step in that mode.

Writes ``<out>/overload.json`` (``--smoke``: ``overload-smoke.json``; ``--generator h2load``:
``overload-h2load.json`` / ``overload-h2load-smoke.json``). Figures drift 1.5-3x between runs
on a shared machine; read them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import queue
import resource
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np

from bench import _h2load
from bench._hist import LatencyHistogram
from bench._loadgen import StepResult, StepSpec, init_worker, run_step
from bench._mix import pool_for, stamp
from bench._servers import ServerProcess, start_service
from screening.client import ScreeningClient, transaction
from screening.v1 import screening_pb2 as pb

__all__ = ["build_parser", "main", "run"]

METHOD = "/screening.v1.Screening/ScreenTransaction"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
ALLOWED_CODES = {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.splitlines()[0])
    p.add_argument("--multipliers", default="2,5",
                   help="offered load as multiples of the measured capacity (default 2,5)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per step")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds sent, not counted, per step")
    p.add_argument("--capacity-seconds", type=float, default=5.0,
                   help="seconds of the closed-loop capacity measurement")
    p.add_argument("--in-flight", type=int, default=16, help="calls outstanding while measuring capacity")
    p.add_argument("--capacity", type=float, default=None,
                   help="use this capacity (calls/s) instead of measuring it")
    p.add_argument("--deadline", type=float, default=1.0, help="client deadline per call, s")
    p.add_argument("--idle-streams", type=int, default=60,
                   help="ScreenStreams held open while unary latency is measured again")
    p.add_argument("--workers", type=int, default=None, help="[server] max_workers of the service")
    p.add_argument("--queue", type=int, default=None, help="[server] max_queue of the service")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the service only, repeatable (e.g. "
                        "SCREENING_GRAPH__ENABLED=false, or PYTHONPATH=<an older checkout>)")
    p.add_argument("--generator", choices=("python", "h2load"), default="python",
                   help="open-loop load from the Python generator (unique ids, screened) or from "
                        "h2load (C, one request replayed: the duplicate path; see above)")
    p.add_argument("--h2load-clients", type=int, default=4,
                   help="[h2load] connections of the open-loop steps")
    p.add_argument("--h2load-in-flight", type=int, default=2048,
                   help="[h2load] streams outstanding per connection at most (open-loop steps; "
                        "the default x 4 connections covers 5x capacity x a 1 s deadline)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for overload.json")
    p.add_argument("--smoke", action="store_true",
                   help="seconds in all: tiny durations (CI checks the result's shape)")
    return p


async def _closed_loop(address: str, token: str, seconds: float, in_flight: int) -> dict[str, Any]:
    """``in_flight`` callers back to back for ``seconds``: the calls answered per second."""
    from bench import _loadgen

    templates = _loadgen._templates
    md = (("authorization", f"Bearer {token}"),)
    prefix = f"cap{os.getpid()}-{time.time_ns()}"
    ok = refused = other = 0
    lat: list[int] = []
    row = 0
    async with grpc.aio.insecure_channel(address) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        call = ch.unary_unary(METHOD, None, None)
        stop = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            nonlocal ok, refused, other, row
            n = 0
            while time.perf_counter() < stop:
                body = stamp(templates, row, [f"{prefix}-{k}-{n}"], [int(time.time() * 1000)])[0]
                row += 1
                n += 1
                t0 = time.perf_counter_ns()
                try:
                    await call(body, metadata=md, timeout=10)
                    ok += 1
                    lat.append(time.perf_counter_ns() - t0)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        refused += 1
                    else:
                        other += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(in_flight)))
        elapsed = time.perf_counter() - t0
    summary = LatencyHistogram().record(np.asarray(lat, dtype=np.int64)).summary_ms()
    return {"rate": round(ok / elapsed, 1), "ok": ok, "refused": refused, "errors": other,
            "in_flight": in_flight, "seconds": round(elapsed, 2), "latency_ms": summary}


def measure_capacity(address: str, token: str, seconds: float, in_flight: int) -> dict[str, Any]:
    """Run in the load-generator process (it holds the templates)."""
    return asyncio.run(_closed_loop(address, token, seconds, in_flight))


def _summary_ms(seconds: list[float]) -> dict[str, Any]:
    lat = sorted(seconds)
    if not lat:
        return {"n": 0}
    return {"n": len(lat), "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 2)}


class Probe:
    """From this process while a step runs, every 100 ms: a health check (2 s deadline) and a
    payment (1 s deadline), each timed by a client that is never saturated itself, so its
    figures are the server's even when the load generator falls behind."""

    def __init__(self, address: str, token: str) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._client = ScreeningClient(address, token, timeout=1.0)
        self._health = health_pb2_grpc.HealthStub(self._client.channel)
        self._request = health_pb2.HealthCheckRequest()
        self._stop = threading.Event()
        self.health: list[float] = []
        self.health_failed = 0
        self.admitted: list[float] = []
        self.refused: list[float] = []
        self.codes: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.1):
            t0 = time.perf_counter()
            try:
                self._health.Check(self._request, timeout=2.0)
                self.health.append(time.perf_counter() - t0)
            except grpc.RpcError:
                self.health_failed += 1
            n += 1
            txn = transaction(f"probe-{os.getpid()}-{time.time_ns()}", dt.datetime.now(dt.UTC),
                              f"probe-a{n % 11}", f"probe-b{n % 13}", 1_000 + n)
            t0 = time.perf_counter()
            try:
                self._client.screen(txn)
                self.admitted.append(time.perf_counter() - t0)
            except grpc.RpcError as exc:
                name = exc.code().name
                self.codes[name] = self.codes.get(name, 0) + 1
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.refused.append(time.perf_counter() - t0)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    def summary(self) -> dict[str, Any]:
        return {"health": {**_summary_ms(self.health), "failed": self.health_failed},
                "payments_admitted": _summary_ms(self.admitted),
                "payments_refused": _summary_ms(self.refused), "payment_codes": self.codes}


class IdleStreams:
    """``n`` ScreenStreams held open (each answered one message, then idle) from this process."""

    def __init__(self, address: str, token: str, n: int) -> None:
        self.client = ScreeningClient(address, token)
        self._outboxes: list[queue.Queue[pb.Transaction | None]] = []
        self.calls: list[Any] = []
        self.open = 0
        self.refused: dict[str, int] = {}
        when = dt.datetime.now(dt.UTC)
        for k in range(n):
            box: queue.Queue[pb.Transaction | None] = queue.Queue()
            self._outboxes.append(box)
            call = self.client.stub.ScreenStream(_drain(box), metadata=self.client.metadata)
            self.calls.append(call)
            box.put(transaction(f"idle-{os.getpid()}-{time.time_ns()}-{k}", when, f"idle-a{k}",
                                f"idle-b{k}", 100))
            first: queue.Queue[str] = queue.Queue()
            threading.Thread(target=_first_answer, args=(call, first), daemon=True).start()
            try:
                outcome = first.get(timeout=5.0)
            except queue.Empty:
                outcome = "UNANSWERED"  # the server has no thread left for it
            if outcome == "OK":
                self.open += 1
            else:
                self.refused[outcome] = self.refused.get(outcome, 0) + 1

    def close(self) -> None:
        for box, call in zip(self._outboxes, self.calls, strict=True):
            box.put(None)
            call.cancel()
        self.client.close()


def _first_answer(call: Any, out: queue.Queue[str]) -> None:
    try:
        next(call)
        out.put("OK")
    except grpc.RpcError as exc:
        out.put(exc.code().name)


def _drain(box: queue.Queue[pb.Transaction | None]) -> Any:
    while (item := box.get()) is not None:
        yield item


def _write(result: dict[str, Any], args: argparse.Namespace, name: str) -> Path:
    """The run's JSON in ``--out`` (``NAME-smoke.json`` for a smoke run); returns its path."""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (f"{name}-smoke.json" if args.smoke else f"{name}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def degraded_after(address: str, token: str, limit_s: float = 30.0) -> dict[str, Any]:
    """One payment every 100 ms until a decision is not degraded: seconds, decisions."""
    with ScreeningClient(address, token, timeout=5.0) as c:
        t0 = time.monotonic()
        n = 0
        while True:
            n += 1
            d = c.screen(transaction(f"deg-{os.getpid()}-{time.time_ns()}", dt.datetime.now(dt.UTC),
                                     f"deg-a{n % 7}", f"deg-b{n % 5}", 1_000 + n))
            if not d.degraded:
                return {"seconds": round(time.monotonic() - t0, 2), "degraded_decisions": n - 1}
            if time.monotonic() - t0 > limit_s:
                return {"seconds": None, "degraded_decisions": n, "gave_up_after_s": limit_s}
            time.sleep(0.1)


def _step_json(res: StepResult, multiplier: float, capacity: float,
               probe: dict[str, Any]) -> dict[str, Any]:
    j = res.to_json()
    sent = max(res.sent, 1)
    refused = sum(n for code, n in res.error_codes.items() if code in ALLOWED_CODES)
    lag = j["send_lag_ms"]
    return {
        "multiplier": multiplier,
        "offered_rate": round(res.spec.rate, 1),
        "capacity": capacity,
        "sent": res.sent,
        "admitted_ok": res.ok,
        "admitted_rate": round(res.achieved_rate, 1),
        "refused_share": round(refused / sent, 4),
        "other_failures": res.sent - res.ok - refused,
        "codes": res.error_codes,
        "admitted_ms": j["summary_ms"],
        "refused_ms": LatencyHistogram.from_json(res.refused_latency).summary_ms(),
        "send_lag_ms": lag,
        "generator_limited": lag["p99"] > 50.0,
        "server_cpu_cores": round(res.server_cpu_s / max(res.window_s, 1e-9), 2),
        "probe": probe,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    multipliers = [float(x) for x in args.multipliers.split(",") if x.strip()]
    if args.smoke:
        args.duration, args.warmup, args.capacity_seconds = 1.0, 0.3, 1.0
        args.idle_streams = min(args.idle_streams, 5)
    env = {"SCREENING_STATE__INITIAL_ACCOUNTS": "262144"}
    if args.workers is not None:
        env["SCREENING_SERVER__MAX_WORKERS"] = str(args.workers)
    if args.queue is not None:
        env["SCREENING_SERVER__MAX_QUEUE"] = str(args.queue)
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    if args.generator == "h2load":
        if not _h2load.available():
            raise SystemExit("--generator h2load: h2load is not on PATH (Debian package "
                             "nghttp2-client)")
        return _run_h2load(args, multipliers, env)
    pool = pool_for("builtin", 2_000 if args.smoke else 50_000)
    result = _run_header(args, env)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp, \
            ProcessPoolExecutor(1, mp_context=ctx, initializer=init_worker,
                                initargs=(pool.templates,)) as workers:
        service: ServerProcess
        service, token = start_service(Path(tmp), env=env)
        try:
            print(f"service up on {service.address} (pid {service.pid})", flush=True)
            workers.submit(measure_capacity, service.address, token, 1.0, 4).result()  # warm
            if args.capacity:
                cap = {"rate": args.capacity, "given": True}
            else:
                cap = workers.submit(measure_capacity, service.address, token,
                                     args.capacity_seconds, args.in_flight).result()
            result["capacity"] = cap
            capacity = float(cap["rate"])
            print(f"capacity {capacity:,.0f} calls/s (closed loop, {args.in_flight} in flight)",
                  flush=True)
            row = 0

            def unary_step(rate: float, tag: str) -> tuple[StepSpec, StepResult, dict[str, Any]]:
                """One open-loop step with the probe running; (spec, result, probe summary)."""
                nonlocal row
                spec = StepSpec(target="service", address=service.address, kind="unary",
                                method=METHOD, rate=max(1.0, rate), duration_s=args.duration,
                                warmup_s=args.warmup, deadline_s=args.deadline, first_row=row,
                                id_prefix=f"ov{os.getpid()}-{tag}", token=token,
                                server_pid=service.pid)
                row += int((args.duration + args.warmup) * spec.rate) + 1
                with Probe(service.address, token) as probe:
                    res: StepResult = workers.submit(run_step, spec).result()
                time.sleep(1.0)  # let the server drain before the next step
                return spec, res, probe.summary()

            streams: dict[str, Any] = {"rate": round(capacity / 2, 1)}
            plan = [("without", 0)] + ([("with", args.idle_streams)] if args.idle_streams else [])
            for label, n in plan:
                held = IdleStreams(service.address, token, n) if n else None
                try:
                    _, res, probe = unary_step(capacity / 2, f"s{n}")
                finally:
                    if held is not None:
                        held.close()
                streams[label] = {"idle_streams_open": held.open if held else 0,
                                  "idle_streams_refused": held.refused if held else {},
                                  **_step_json(res, 0.5, capacity, probe)}
                print(f"{label} {n} idle streams (open {streams[label]['idle_streams_open']}): "
                      f"unary at {capacity / 2:,.0f}/s p50 {streams[label]['admitted_ms']['p50']:.1f} "
                      f"p99 {streams[label]['admitted_ms']['p99']:.1f} ms; probe {probe}",
                      flush=True)
            result["idle_streams"] = streams
            steps = []
            for i, m in enumerate(multipliers):
                spec, res, probe = unary_step(m * capacity, str(i))
                step = _step_json(res, m, capacity, probe)
                step["degraded_after_overload"] = degraded_after(service.address, token)
                steps.append(step)
                a = step["admitted_ms"]
                print(f"{m:g}x ({spec.rate:,.0f}/s offered): admitted {step['admitted_rate']:,.0f}/s "
                      f"p50 {a['p50']:.1f} p99 {a['p99']:.1f} p99.9 {a['p99_9']:.1f} ms; refused "
                      f"{step['refused_share']:.1%} {step['codes']}; refusals p99 "
                      f"{step['refused_ms']['p99']:.1f} ms; probe {step['probe']}; send lag "
                      f"p99 {step['send_lag_ms']['p99']:.1f} ms; degraded after it "
                      f"{step['degraded_after_overload']}", flush=True)
            result["steps"] = steps
        finally:
            result["service_exit"] = service.stop()
    print(f"-> {_write(result, args, 'overload')}")
    return result


# ---------------------------------------------------------------------- --generator h2load
H2_CAPACITY_CLIENTS, H2_CAPACITY_IN_FLIGHT = 2, 16  # as bench.unary_floor
BASELINE = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, Any]:
    """The service's counters that tell an admitted call from a refused one, and its handler-time
    histogram for ScreenTransaction: ``{"decisions": n, "duplicates": n, "refused": {reason: n},
    "errors": {code: n}, "latency_buckets": {le: n}}``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, Any] = {"decisions": 0.0, "duplicates": 0.0, "refused": {}, "errors": {},
                           "latency_buckets": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if labels.get("rpc", "ScreenTransaction") != "ScreenTransaction":
                continue
            if name == "screening_decisions_total":
                out["decisions"] += value
            elif name == "screening_duplicate_requests_total":
                out["duplicates"] += value
            elif name == "screening_refused_total":
                key = f"{labels['lane']}/{labels['reason']}"
                out["refused"][key] = out["refused"].get(key, 0.0) + value
            elif name == "screening_errors_total":
                out["errors"][labels["code"]] = out["errors"].get(labels["code"], 0.0) + value
            elif name == "screening_rpc_latency_seconds_bucket":
                out["latency_buckets"][labels["le"]] = value
    return out


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    def sub(a: dict[str, float], b: dict[str, float]) -> dict[str, int]:
        return {k: int(v - b.get(k, 0.0)) for k, v in a.items() if v - b.get(k, 0.0)}

    return {"decisions": int(after["decisions"] - before["decisions"]),
            "duplicates": int(after["duplicates"] - before["duplicates"]),
            "refused": sub(after["refused"], before["refused"]),
            "errors": sub(after["errors"], before["errors"]),
            "latency_buckets": sub(after["latency_buckets"], before["latency_buckets"])}


def _bucket_quantile(buckets: dict[str, int], q: float) -> str | None:
    """The histogram bucket holding quantile ``q``, as ``"<= X ms"`` (cumulative buckets)."""
    if not buckets:
        return None
    rows = sorted(((float(le), n) for le, n in buckets.items()), key=lambda r: r[0])
    total = rows[-1][1]
    for le, n in rows:
        if n >= q * total:
            return "> 10 s" if le == float("inf") else f"<= {le * 1000:g} ms"
    return None


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _h2load_step(service: ServerProcess, token: str, body: bytes, metrics_port: int, *,
                 rate: float | None, duration: float, clients: int, in_flight: int,
                 deadline_s: float, probe: bool) -> dict[str, Any]:
    """One h2load run (paced at ``rate``, or closed loop when None), with the service's counters,
    its CPU, h2load's own CPU and, with ``probe``, the in-process probe beside it."""
    before = _scrape(metrics_port)
    cpu0, gen0, t0 = service.cpu_seconds(), _children_cpu_s(), time.perf_counter()
    headers = [f"grpc-timeout: {max(1, round(deadline_s * 1000))}m"]
    late_ms = 0.95 * deadline_s * 1000  # answered at the deadline: DEADLINE_EXCEEDED, likely
    probe_summary: dict[str, Any] | None = None
    if probe:
        with Probe(service.address, token) as p:
            h2 = _h2load.capacity(service.address, METHOD, body, token, duration_s=duration,
                                  clients=clients, in_flight=in_flight, rate_per_s=rate,
                                  headers=headers, late_ms=late_ms)
        probe_summary = p.summary()
    else:
        h2 = _h2load.capacity(service.address, METHOD, body, token, duration_s=duration,
                              clients=clients, in_flight=in_flight, rate_per_s=rate,
                              headers=headers, late_ms=late_ms)
    window = time.perf_counter() - t0
    cpu, gen = service.cpu_seconds() - cpu0, _children_cpu_s() - gen0
    time.sleep(deadline_s + 0.5)  # calls h2load left unanswered end, one way or another
    server = _diff(_scrape(metrics_port), before)
    total = h2.get("started") or 0
    refused = sum(server["refused"].values())
    errors = sum(server["errors"].values())
    buckets = server.pop("latency_buckets")
    server["handler_ms"] = {"p50": _bucket_quantile(buckets, 0.5),
                            "p99": _bucket_quantile(buckets, 0.99)}
    # sent but never seen by the service's code: answered by grpc itself (its overall cap, or a
    # deadline that expired in its queue), or cancelled when h2load stopped
    server["unaccounted"] = max(0, total - server["decisions"] - refused - errors)
    return {"h2load": h2, "server": server, "window_s": round(window, 2),
            "server_cpu_cores": round(cpu / max(window, 1e-9), 2),
            "generator_cpu_cores": round(gen / max(window, 1e-9), 2),
            "admitted_rate": round(server["decisions"] / duration, 1),
            "refused_share": round(refused / total, 4) if total else None,
            "probe": probe_summary}


def _run_header(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """What every run's JSON starts with: how it was run, on what, and under what load."""
    return {
        "command": " ".join(["python", "-m", "bench.overload", *sys.argv[1:]]),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "server_env": env,
        "deadline_s": args.deadline,
    }


def _run_h2load(args: argparse.Namespace, multipliers: list[float],
                env: dict[str, str]) -> dict[str, Any]:
    from bench._mix import MixConfig, builtin_pool

    metrics_port = _free_port()
    env = {**env, "SCREENING_METRICS__PORT": str(metrics_port)}
    templates = builtin_pool(MixConfig(pool_size=100)).templates
    body = stamp(templates, 0, [f"h2ov-{time.time_ns()}"], [int(time.time() * 1000)])[0]
    clients, in_flight = args.h2load_clients, args.h2load_in_flight
    result = _run_header(args, env)
    result.update({
        "generator": f"h2load (C), {clients} connections x {in_flight} streams at most, paced "
                     "with --rps; capacity closed loop "
                     f"{H2_CAPACITY_CLIENTS} x {H2_CAPACITY_IN_FLIGHT}",
        "caveat": "h2load replays one request: every call after the first is answered on the "
                  "service's duplicate path (auth, decode, validation, idempotency lookup, reply), "
                  "not screened; capacity is measured on the same path. h2load cannot see gRPC "
                  "status: admitted/refused come from the service's counters, admitted latency "
                  "for a caller from the probe (unique payments, screened). h2load's latency "
                  "mixes admitted and refused answers; its max bounds both.",
    })
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        service, token = start_service(Path(tmp), env=env)
        try:
            print(f"service up on {service.address} (pid {service.pid}), metrics on "
                  f"{metrics_port}", flush=True)
            common = {"deadline_s": args.deadline}
            _h2load_step(service, token, body, metrics_port, rate=None, duration=1.0,
                         clients=H2_CAPACITY_CLIENTS, in_flight=4, probe=False, **common)  # warm
            if args.capacity:
                cap: dict[str, Any] = {"rate": args.capacity, "given": True}
            else:
                c = _h2load_step(service, token, body, metrics_port, rate=None,
                                 duration=args.capacity_seconds, clients=H2_CAPACITY_CLIENTS,
                                 in_flight=H2_CAPACITY_IN_FLIGHT, probe=False, **common)
                cap = {"rate": c["admitted_rate"], **c}
            result["capacity"] = cap
            capacity = float(cap["rate"])
            print(f"capacity {capacity:,.0f} calls/s (h2load closed loop, duplicate path)",
                  flush=True)
            steps = []
            for m in [BASELINE, *multipliers]:
                time.sleep(1.0)  # let the server drain before the step
                st = _h2load_step(service, token, body, metrics_port, rate=m * capacity,
                                  duration=args.duration, clients=clients, in_flight=in_flight,
                                  probe=True, **common)
                h2 = st["h2load"]
                achieved = (h2.get("started") or 0) / args.duration
                step = {"multiplier": m, "offered_rate": round(m * capacity, 1),
                        "achieved_rate": round(achieved, 1),
                        "answered_rate": round((h2.get("done") or 0) / args.duration, 1),
                        "unanswered_at_end": (h2.get("started") or 0) - (h2.get("done") or 0),
                        "generator_limited": achieved < 0.9 * m * capacity, **st}
                time.sleep(0.5)
                step["degraded_after_overload"] = degraded_after(service.address, token)
                steps.append(step)
                print(_step_line(step), flush=True)
            result["steps"] = steps
        finally:
            result["service_exit"] = service.stop()
    path = _write(result, args, "overload-h2load")
    for line in h2load_lines(result):
        print(line)
    print(f"-> {path}")
    return result


def _step_line(step: dict[str, Any]) -> str:
    h2, sv, pr = step["h2load"], step["server"], step["probe"] or {}
    pa = pr.get("payments_admitted", {})
    return (f"{step['multiplier']:g}x ({step['offered_rate']:,.0f}/s offered, "
            f"{step['achieved_rate']:,.0f}/s sent, {step['unanswered_at_end']} unanswered at the end): "
            f"admitted {step['admitted_rate']:,.0f}/s, "
            f"refused {step['refused_share'] or 0:.1%} {sv['refused']} errors {sv['errors']} "
            f"unaccounted {sv['unaccounted']} (at the deadline {h2.get('late')}); h2load all "
            f"answers p50 {h2.get('p50_ms')} "
            f"p99 {h2.get('p99_ms')} max {h2.get('max_ms')} ms; probe payments p50 "
            f"{pa.get('p50_ms')} p99 {pa.get('p99_ms')} max {pa.get('max_ms')} ms "
            f"codes {pr.get('payment_codes')}; server CPU {step['server_cpu_cores']} cores, "
            f"h2load {step['generator_cpu_cores']}")


def h2load_lines(r: dict[str, Any]) -> list[str]:
    """A markdown table of one ``--generator h2load`` run."""
    out = [f"capacity (h2load closed loop, duplicate path): {r['capacity']['rate']:,.0f} calls/s",
           "",
           "| load | offered /s | sent /s | admitted /s | refused by the service | not seen by the service "
           "(answered at the deadline) | h2load p50 / p99 / max ms (all answers) | probe payment p50 / "
           "p99 / max ms | probe refused | server CPU |",
           "|---|---:|---:|---:|---:|---:|---|---|---|---:|"]
    for s in r["steps"]:
        h2, pr = s["h2load"], s["probe"] or {}
        pa = pr.get("payments_admitted", {})
        pr_ref = pr.get("payments_refused", {})
        codes = pr.get("payment_codes") or {}
        refused = (f"{sum(codes.values())} of {sum(codes.values()) + pa.get('n', 0)}"
                   + (f", in {pr_ref['p50_ms']} ms p50" if pr_ref.get("n") else ""))
        total = h2.get("started") or 1
        out.append(f"| {s['multiplier']:g}x | {s['offered_rate']:,.0f} | {s['achieved_rate']:,.0f} "
                   f"| {s['admitted_rate']:,.0f} | {s['refused_share'] or 0:.1%} | "
                   f"{s['server']['unaccounted'] / total:.1%} ({(h2.get('late') or 0) / total:.1%}) | "
                   f"{h2.get('p50_ms')} / {h2.get('p99_ms')} / {h2.get('max_ms')} | "
                   f"{pa.get('p50_ms')} / {pa.get('p99_ms')} / {pa.get('max_ms')} | {refused} | "
                   f"{s['server_cpu_cores']} |")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
