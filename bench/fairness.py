"""Live payments beside a bulk load: how long a single ScreenTransaction waits while another
client sends 10,000-transaction ScreenBatch requests back to back.

    python -m bench.fairness [--duration 20] [--rate 50] [--batch 10000]
                             [--out bench/results/fairness.json]

A ``screening serve`` process (``bench._servers.start_service``: token auth, the shipped
policy, graph on) is loaded by two clients on channels of their own:

- bulk: pre-serialized ``TransactionBatch`` requests of ``--batch`` unique transactions
  (columnar reply), one at a time, back to back, for ``--duration`` seconds;
- live: single ``ScreenTransaction`` calls, open loop at ``--rate`` per second (a call is sent
  on schedule whether or not the previous one was answered, so a stall shows in full).

Reported: the live calls' round trip (send to answer) p50 / p99 / max, first alone for a few
seconds and then beside the bulk load, the part of it spent in the service's handler
(``Decision.server_latency_us``: waiting for the engine's lock included), and the bulk client's
transactions per second. Every
request is built before the server starts; the clients still share the machine's cores with
the server, so compare runs made side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl

from bench._inproc import publish, stamp
from bench._servers import start_service
from bench.flight import synthetic_stream
from screening.offline.messages import to_requests
from screening.v1 import screening_pb2 as pb

__all__ = ["main", "measure"]

_BATCH = "/screening.v1.Screening/ScreenBatch"
_SCREEN = "/screening.v1.Screening/ScreenTransaction"
_ALONE_S = 5.0  # live calls alone, before the bulk load starts
_BULK_CEILING = 50_000  # bulk transactions built per second of load
_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)]


def _bodies(frame: pl.DataFrame, rows: int, prefix: str) -> list[bytes]:
    """The frame's transactions as serialized requests: ``TransactionBatch`` of ``rows``
    (columnar reply), or single ``Transaction`` when ``rows`` is 1; ids get ``prefix``."""
    out = []
    for i in range(0, frame.height, rows):  # a slice at a time: only the bytes are kept
        msgs = [m for m in to_requests(frame.slice(i, rows)) if isinstance(m, pb.Transaction)]
        for m in msgs:
            m.transaction_id = prefix + m.transaction_id
        if rows == 1:
            out.append(msgs[0].SerializeToString())
        else:
            out.append(pb.TransactionBatch(transactions=msgs, columnar=True).SerializeToString())
    return out


def _percentiles(waits_s: Sequence[float]) -> dict[str, Any]:
    if not waits_s:
        return {"calls": 0}
    ms = np.asarray(waits_s) * 1e3
    return {"calls": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


class _Live:
    """Single ScreenTransaction calls sent open loop at ``rate`` per second; each call's round
    trip kept by the phase it was sent in."""

    def __init__(self, channel: grpc.Channel, token: str, bodies: list[bytes], rate: float) -> None:
        self._call = channel.unary_unary(_SCREEN, request_serializer=lambda b: b,
                                         response_deserializer=pb.Decision.FromString)
        self._md = (("authorization", f"Bearer {token}"),)
        self._bodies = bodies
        self._period = 1.0 / rate
        self.phase = "alone"
        self.waits: dict[str, list[float]] = {"alone": [], "beside bulk": []}
        # the part of each wait inside the service's handler (Decision.server_latency_us)
        self.inside: dict[str, list[float]] = {"alone": [], "beside bulk": []}
        self.failed = 0
        self._stop = threading.Event()
        self._outstanding: list[grpc.Future] = []  # type: ignore[type-arg]
        self._thread = threading.Thread(target=self._run, name="live-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for fut in self._outstanding:  # each has a 30 s deadline
            with contextlib.suppress(grpc.RpcError):
                fut.result(timeout=60)

    def _run(self) -> None:
        next_at = time.perf_counter()
        for body in self._bodies:
            if self._stop.is_set():
                return
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_at += self._period
            sent, phase = time.perf_counter(), self.phase
            fut = self._call.future(body, metadata=self._md, timeout=30)
            fut.add_done_callback(functools.partial(self._done, sent=sent, phase=phase))
            self._outstanding.append(fut)

    def _done(self, fut: grpc.Future, *, sent: float, phase: str) -> None:  # type: ignore[type-arg]
        if fut.exception() is None:
            self.waits[phase].append(time.perf_counter() - sent)
            self.inside[phase].append(fut.result().server_latency_us / 1e6)
        else:
            self.failed += 1


def _bulk(channel: grpc.Channel, token: str, bodies: list[bytes], rows: int,
          until: float) -> dict[str, Any]:
    """Send ``bodies`` one at a time until ``until`` (perf_counter); transactions per second."""
    call = channel.unary_unary(_BATCH, request_serializer=lambda b: b,
                               response_deserializer=pb.DecisionBatch.FromString)
    md = (("authorization", f"Bearer {token}"),)
    t0, done, degraded = time.perf_counter(), 0, 0
    for body in bodies:
        if time.perf_counter() >= until:
            break
        reply = call(body, metadata=md, timeout=120)
        done += len(reply.columns.actions)
        degraded += sum(reply.columns.degraded)
    wall = time.perf_counter() - t0
    return {"batches": done // rows, "transactions": done, "seconds": round(wall, 2),
            "txn_per_s": round(done / wall) if wall else 0,
            "degraded_share": round(degraded / done, 4) if done else 0.0,
            "ran_out_of_batches": done == len(bodies) * rows}


def measure(duration: float, rate: float, rows: int) -> dict[str, Any]:
    """Build the requests, start a server, run both phases; the figures."""
    # more than the server takes (ran_out_of_batches says when it took them all)
    bulk_txns = rows * max(1, int(duration * _BULK_CEILING / rows))
    live_txns = int((duration + _ALONE_S + 5) * rate)
    stream = synthetic_stream(bulk_txns + live_txns)
    bulk_bodies = _bodies(stream.slice(0, bulk_txns), rows, "bulk-")
    live_bodies = _bodies(stream.slice(bulk_txns, live_txns), 1, "live-")
    env = {"SCREENING_GRAPH__MAX_EDGES": str(1 << 23),
           "SCREENING_STATE__INITIAL_ACCOUNTS": str(1 << 17)}
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        server, token = start_service(Path(tmp), env={**os.environ, **env})
        bulk_ch = grpc.insecure_channel(server.address, options=_OPTIONS)
        live_ch = grpc.insecure_channel(server.address, options=_OPTIONS)
        try:
            live = _Live(live_ch, token, live_bodies, rate)
            live.start()
            time.sleep(_ALONE_S)
            live.phase = "beside bulk"
            bulk = _bulk(bulk_ch, token, bulk_bodies, rows, time.perf_counter() + duration)
            live.stop()
        finally:
            bulk_ch.close()
            live_ch.close()
            server.stop()
    return {"bench": "fairness", "batch_rows": rows, "live_rate_per_s": rate,
            "duration_s": duration, "bulk": bulk, "live_failed": live.failed,
            "live": {phase: _percentiles(w) for phase, w in live.waits.items()},
            "live_in_handler": {phase: _percentiles(w) for phase, w in live.inside.items()}}


def _table(fig: dict[str, Any]) -> list[str]:
    lines = [f"{'live ScreenTransaction':<24} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'max ms':>8}"]
    for what, key in (("", "live"), (" (in handler)", "live_in_handler")):
        for phase, r in fig[key].items():
            lines.append(f"{phase + what:<24} {r['calls']:>6} {r.get('p50_ms', 0):>8.2f} "
                         f"{r.get('p99_ms', 0):>8.2f} {r.get('max_ms', 0):>8.2f}")
    b = fig["bulk"]
    lines.append(f"bulk ScreenBatch of {fig['batch_rows']}: {b['transactions']} txn in "
                 f"{b['seconds']} s = {b['txn_per_s']} txn/s (degraded {b['degraded_share']})")
    if fig["live_failed"]:
        lines.append(f"live calls failed: {fig['live_failed']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of bulk load")
    ap.add_argument("--rate", type=float, default=50.0, help="live calls per second")
    ap.add_argument("--batch", type=int, default=10_000, help="transactions per ScreenBatch")
    ap.add_argument("--out", type=Path, default=Path("bench/results/fairness.json"))
    args = ap.parse_args(argv)
    fig = stamp(measure(args.duration, args.rate, args.batch))
    publish(fig, _table(fig), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
