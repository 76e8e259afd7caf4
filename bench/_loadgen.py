"""The open-loop load generator (grpc.aio), run in a process of its own.

Open loop: request ``i`` is due at ``t0 + i / rate``, fixed before the step starts, whatever the
server does. Latency is measured from that *scheduled* time to the arrival of the answer, so a
stalled server (or a generator that fell behind) shows up as latency instead of as fewer
requests: no coordinated omission. How late the generator itself sent each request ("send lag")
is recorded beside it, so a reader can tell a slow server from a saturated generator.

Requests are pre-serialized bytes (stamped from the mix templates before the step starts) and
answers are not parsed, so the generator spends the same on the service and on the echo baseline.
The first ``warmup_s`` seconds of each step are sent but not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import grpc.aio
import numpy as np

from bench._hist import LatencyHistogram
from bench._mix import stamp, stamp_batch
from bench._servers import machine_cpu, process_cpu

__all__ = ["STATUS_OK", "StepResult", "StepSpec", "init_worker", "probe_sizes", "run_step"]

STATUS_OK = 0
_UNSET = -1
_LATE = 1000  # stream answers later than the deadline (a stream has no per-message deadline)

_templates: tuple[bytes, ...] = ()


def init_worker(templates: Sequence[bytes]) -> None:
    """Process-pool initializer: keep the mix templates in the worker."""
    global _templates
    _templates = tuple(templates)


@dataclass(frozen=True, kw_only=True)
class StepSpec:
    """One measured step: one target, one kind of request, one offered rate."""

    target: str  # "service" | "baseline"
    address: str
    kind: str  # "unary" | "stream" | "batch100" | "batch1000" (+ "c": the columnar reply)
    method: str
    rate: float  # messages per second offered (open loop); for batches: concurrency-bound
    duration_s: float
    warmup_s: float = 0.5
    deadline_s: float = 1.0
    first_row: int = 0
    id_prefix: str = "bench"
    token: str = ""
    connections: int = 2
    streams: int = 2
    batch_size: int = 0
    batch_concurrency: int = 2
    prepare_s: float = 3.0  # at most this long stamping unique batches before a batch step
    server_pid: int = 0  # read its CPU time over the measured window


@dataclass
class StepResult:
    spec: StepSpec
    sent: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)
    send_lag: dict[str, Any] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    request_bytes: float = 0.0
    reply_bytes: float = 0.0
    transactions_per_s: float = 0.0
    sent_total: int = 0  # including the warm-up
    rows_used: int = 0  # pool templates a batch step took, warm-up included (0: rate steps)
    # latency of the calls refused RESOURCE_EXHAUSTED (how fast the server sheds load)
    refused_latency: dict[str, Any] = field(default_factory=dict)
    server_cpu_s: float = 0.0  # over the same window as client_cpu_s (warm-up included)
    machine_busy_s: float = 0.0  # all CPUs, all processes, same window
    window_s: float = 0.0  # wall time of that window
    notes: list[str] = field(default_factory=list)

    def histogram(self) -> LatencyHistogram:
        return LatencyHistogram.from_json(self.latency)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary_ms"] = self.histogram().summary_ms()
        out["send_lag_ms"] = LatencyHistogram.from_json(self.send_lag).summary_ms()
        return out


def _channel(address: str, index: int) -> grpc.aio.Channel:
    # A local subchannel pool per channel: each channel is its own TCP connection.
    return grpc.aio.insecure_channel(address, options=[
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.max_send_message_length", 32 * 1024 * 1024),
        ("bench.channel", index),
    ])


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(n)]


def _times_ms(n: int, rate: float, lead_s: float) -> list[int]:
    wall0 = time.time() + lead_s
    return [int((wall0 + i / rate) * 1000) for i in range(n)]


def _code_name(code: int) -> str:
    if code == _LATE:
        return "LATE"
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return str(c.name)
    return str(code)


def _finish(spec: StepSpec, lat: np.ndarray, lag: np.ndarray, status: np.ndarray, counted: np.ndarray,
            elapsed: float, req_bytes: float, reply_bytes: list[int]) -> StepResult:
    res = StepResult(spec)
    res.sent = int(counted.sum())
    res.sent_total = int(status.size)
    ok = counted & (status == STATUS_OK)
    res.ok = int(ok.sum())
    bad = counted & (status != STATUS_OK)
    codes, counts = np.unique(status[bad], return_counts=True)
    res.error_codes = {_code_name(int(c)): int(k) for c, k in zip(codes, counts, strict=True)}
    res.timeouts = res.error_codes.get("DEADLINE_EXCEEDED", 0) + res.error_codes.get("LATE", 0)
    res.timeouts += res.error_codes.get("UNANSWERED", 0)
    res.errors = int(bad.sum()) - res.timeouts
    res.elapsed_s = elapsed
    measured_s = max(spec.duration_s, 1e-9)
    res.achieved_rate = res.ok / measured_s
    res.latency = LatencyHistogram().record(lat[ok]).to_json()
    refused = counted & (status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    res.refused_latency = LatencyHistogram().record(lat[refused]).to_json()
    res.send_lag = LatencyHistogram().record(np.maximum(lag[counted], 0)).to_json()
    res.request_bytes = req_bytes
    res.reply_bytes = float(np.mean(reply_bytes)) if reply_bytes else 0.0
    return res


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Window:
    """CPU of this process, of the server and of the whole machine over the measured window."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.own, self.server, self.busy = _cpu(), process_cpu(server_pid), machine_cpu()[0]
        self.wall = time.perf_counter()

    def close(self, res: StepResult) -> StepResult:
        res.client_cpu_s = _cpu() - self.own
        res.server_cpu_s = process_cpu(self.pid) - self.server if self.pid else 0.0
        res.machine_busy_s = machine_cpu()[0] - self.busy
        res.window_s = time.perf_counter() - self.wall
        return res


async def _prepare(spec: StepSpec) -> tuple[int, float, list[bytes], Any, list[Any]]:
    """Requests of one step (stamped ids and times), auth metadata and ready channels."""
    n = max(1, int((spec.warmup_s + spec.duration_s) * spec.rate))
    lead = 0.2
    payload = stamp(_templates, spec.first_row, _ids(spec.id_prefix, n), _times_ms(n, spec.rate, lead))
    md = (("authorization", f"Bearer {spec.token}"),) if spec.token else None
    channels = [_channel(spec.address, i) for i in range(spec.connections)]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    return n, lead, payload, md, channels


async def _unary(spec: StepSpec) -> StepResult:
    n, lead, payload, md, channels = await _prepare(spec)
    calls = [ch.unary_unary(spec.method, None, None) for ch in channels]
    lat = np.zeros(n, dtype=np.int64)
    lag = np.zeros(n, dtype=np.int64)
    status = np.full(n, _UNSET, dtype=np.int64)
    replies: list[int] = []
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter_ns() + int(lead * 1e9)
    sched = t0 + (np.arange(n, dtype=np.float64) * (1e9 / spec.rate)).astype(np.int64)
    counted = sched >= t0 + int(spec.warmup_s * 1e9)

    async def one(i: int) -> None:
        try:
            reply = await calls[i % len(calls)](payload[i], metadata=md, timeout=spec.deadline_s)
            status[i] = STATUS_OK
            if i % 64 == 0:
                replies.append(len(reply))
        except grpc.aio.AioRpcError as exc:
            status[i] = exc.code().value[0]
        lat[i] = time.perf_counter_ns() - sched[i]

    loop = asyncio.get_running_loop()
    tasks = set()
    window = _Window(spec.server_pid)
    i = 0
    sched_list = sched.tolist()
    while i < n:
        now = time.perf_counter_ns()
        due = sched_list[i]
        if due > now:
            await asyncio.sleep((due - now) / 1e9)
            now = time.perf_counter_ns()
        while i < n and sched_list[i] <= now:
            lag[i] = now - sched_list[i]
            task = loop.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=spec.deadline_s + 5)
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    for ch in channels:
        await ch.close(None)
    gc.unfreeze()
    status[status == _UNSET] = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    return window.close(_finish(spec, lat, lag, status, counted, elapsed,
                                float(np.mean([len(p) for p in payload[:256]])), replies))


async def _stream(spec: StepSpec) -> StepResult:
    """``streams`` bidi streams; message i goes on stream i % streams, answers come in order."""
    n, lead, payload, md, channels = await _prepare(spec)
    k = max(1, spec.streams)
    lat = np.zeros(n, dtype=np.int64)
    lag = np.zeros(n, dtype=np.int64)
    status = np.full(n, _UNSET, dtype=np.int64)
    replies: list[int] = []
    calls = [channels[s % len(channels)].stream_stream(spec.method, None, None)(None, metadata=md)
             for s in range(k)]
    pending: list[deque[int]] = [deque() for _ in range(k)]
    deadline_ns = int(spec.deadline_s * 1e9)
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter_ns() + int(lead * 1e9)
    sched = t0 + (np.arange(n, dtype=np.float64) * (1e9 / spec.rate)).astype(np.int64)
    sched_list = sched.tolist()
    counted = sched >= t0 + int(spec.warmup_s * 1e9)

    async def reader(s: int) -> None:
        call = calls[s]
        try:
            async for reply in call:
                i = pending[s].popleft()
                latency = time.perf_counter_ns() - sched_list[i]
                lat[i] = latency
                status[i] = STATUS_OK if latency <= deadline_ns else _LATE
                if i % 64 == 0:
                    replies.append(len(reply))
        except grpc.aio.AioRpcError as exc:
            for i in pending[s]:
                status[i] = exc.code().value[0]

    readers = [asyncio.create_task(reader(s)) for s in range(k)]
    window = _Window(spec.server_pid)
    i = 0
    while i < n:
        now = time.perf_counter_ns()
        due = sched_list[i]
        if due > now:
            await asyncio.sleep((due - now) / 1e9)
            now = time.perf_counter_ns()
        while i < n and sched_list[i] <= now:
            lag[i] = now - sched_list[i]
            s = i % k
            pending[s].append(i)
            await calls[s].write(payload[i])
            i += 1
            now = time.perf_counter_ns()
    for call in calls:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await call.done_writing()
    _done, late = await asyncio.wait(readers, timeout=spec.deadline_s + 5)
    for task in late:
        task.cancel()
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    for call in calls:
        call.cancel()
    for ch in channels:
        await ch.close(None)
    gc.unfreeze()
    status[status == _UNSET] = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    return window.close(_finish(spec, lat, lag, status, counted, elapsed,
                                float(np.mean([len(p) for p in payload[:256]])), replies))


async def _batch(spec: StepSpec) -> StepResult:
    """Closed loop: ``batch_concurrency`` batches in flight for ``duration_s``; txn/s is the figure.

    Every batch sent to the service holds fresh transaction ids; preparing them is bounded to a
    few seconds, and running out is noted in the result. The echo baseline
    does not read its requests, so it cycles through the prepared batches.
    """
    size = spec.batch_size
    md = (("authorization", f"Bearer {spec.token}"),) if spec.token else None
    now_ms = int(time.time() * 1000)
    payload: list[bytes] = []
    row = spec.first_row
    prepared_at = time.perf_counter()
    wanted = 8 if spec.target == "baseline" else 100_000
    while len(payload) < wanted and time.perf_counter() - prepared_at < spec.prepare_s:
        ids = _ids(f"{spec.id_prefix}-{len(payload)}", size)
        payload.append(stamp_batch(_templates, row, ids, [now_ms + j for j in range(size)],
                                   columnar=spec.kind.endswith("c")))
        row += size
    cycle = spec.target == "baseline"
    channels = [_channel(spec.address, i) for i in range(spec.connections)]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    calls = [ch.unary_unary(spec.method, None, None) for ch in channels]
    lat: list[int] = []
    status_l: list[int] = []
    replies: list[int] = []
    next_batch = 0
    ran_out = False
    timeout = max(spec.deadline_s, 30.0)
    gc.collect()
    gc.freeze()
    start = time.perf_counter_ns()
    stop_at = start + int((spec.warmup_s + spec.duration_s) * 1e9)
    warm_end = start + int(spec.warmup_s * 1e9)
    measured_t0 = 0
    window = _Window(spec.server_pid)

    async def worker(w: int) -> None:
        nonlocal next_batch, measured_t0, ran_out
        while time.perf_counter_ns() < stop_at:
            if next_batch >= len(payload) and not cycle:
                ran_out = True
                return
            body = payload[next_batch % len(payload)]
            next_batch += 1
            t = time.perf_counter_ns()
            try:
                reply = await calls[w % len(calls)](body, metadata=md, timeout=timeout)
                code = STATUS_OK
                if len(replies) < 64:
                    replies.append(len(reply))
            except grpc.aio.AioRpcError as exc:
                code = exc.code().value[0]
            if t >= warm_end:
                if measured_t0 == 0:
                    measured_t0 = t
                lat.append(time.perf_counter_ns() - t)
                status_l.append(code)

    await asyncio.gather(*(worker(w) for w in range(spec.batch_concurrency)))
    end = time.perf_counter_ns()
    for ch in channels:
        await ch.close(None)
    gc.unfreeze()
    m = len(lat)
    res = _finish(spec, np.asarray(lat, dtype=np.int64), np.zeros(m, dtype=np.int64),
                  np.asarray(status_l, dtype=np.int64), np.ones(m, dtype=bool),
                  (end - start) / 1e9, float(np.mean([len(p) for p in payload[:8]])), replies)
    span = (end - measured_t0) / 1e9 if measured_t0 else 0.0
    res.achieved_rate = res.ok / span if span > 0 else 0.0
    res.transactions_per_s = res.achieved_rate * size
    # templates this step took (warm-up included): the next step starts after them
    res.rows_used = min(next_batch, len(payload)) * size
    if ran_out:
        res.notes.append("ran out of prepared batches before the end of the step")
    return window.close(res)


def run_step(spec: StepSpec) -> StepResult:
    """Run one step in this (worker) process and return its figures."""
    if spec.kind == "unary":
        return asyncio.run(_unary(spec))
    if spec.kind == "stream":
        return asyncio.run(_stream(spec))
    if spec.kind.startswith("batch"):
        return asyncio.run(_batch(spec))
    raise ValueError(f"unknown kind {spec.kind!r}")


async def _bounded(call: Any, bodies: Sequence[bytes], md: Any, at_once: int) -> list[bytes]:
    """``call`` on every body, at most ``at_once`` outstanding; the replies in order."""
    room = asyncio.Semaphore(at_once)

    async def one(body: bytes) -> bytes:
        async with room:
            reply: bytes = await call(body, metadata=md, timeout=10)
            return reply

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def probe_sizes(address: str, methods: dict[str, str], token: str, batch_sizes: dict[str, int],
                id_prefix: str) -> dict[str, float]:
    """Mean reply size in bytes of each method, from a few real requests (warms the server too)."""

    async def probe() -> dict[str, float]:
        md = (("authorization", f"Bearer {token}"),) if token else None
        out: dict[str, float] = {}
        async with _channel(address, 0) as ch:
            await asyncio.wait_for(ch.channel_ready(), 10)
            row = 0
            for kind, method in methods.items():
                sizes = []
                if kind in batch_sizes:
                    n = batch_sizes[kind]
                    for r in range(3):
                        now = int(time.time() * 1000)
                        body = stamp_batch(_templates, row, _ids(f"{id_prefix}-{kind}{r}", n),
                                           [now] * n, columnar=kind.endswith("c"))
                        row += n
                        reply = await ch.unary_unary(method, None, None)(body, metadata=md, timeout=30)
                        sizes.append(len(reply))
                elif kind == "stream":
                    n = 200
                    now = int(time.time() * 1000)
                    bodies = stamp(_templates, row, _ids(f"{id_prefix}-s", n), [now] * n)
                    row += n
                    call = ch.stream_stream(method, None, None)(iter(bodies), metadata=md)
                    sizes = [len(r) async for r in call]
                else:
                    n = 400
                    now = int(time.time() * 1000)
                    bodies = stamp(_templates, row, _ids(f"{id_prefix}-u", n), [now] * n)
                    row += n
                    # a few at a time: the service refuses (RESOURCE_EXHAUSTED) calls beyond its
                    # [server] max_workers + max_queue
                    replies = await _bounded(ch.unary_unary(method, None, None), bodies, md, 8)
                    sizes = [len(r) for r in replies]
                out[kind] = float(np.mean(sizes))
        return out

    return asyncio.run(probe())
