"""Bulk screening over Arrow Flight beside ScreenBatch (columnar reply), in one run.

    python -m bench.flight [--txns 100000] [--out bench/results/flight.json]

A ``screening serve`` process with ``--flight-port`` (graph on, then a second one with graph
off) screens unique transactions: through Flight at 1,000 and 10,000 rows per record batch,
then ScreenBatch at 1,000 per message with pre-serialized requests (``columnar`` reply). Each
phase sends the next slice of one stream (event times keep moving forward). Reported per
phase: transactions/s at the client, the server process's CPU per transaction (from
/proc/PID/stat), the share of degraded decisions. Both clients keep 2 requests in flight. The
client shares the 2 cores with the server: these are floors of what the server can do.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pyarrow as pa

from bench._inproc import stamp
from screening.flight_client import FlightScreeningClient, event_batches
from screening.offline.messages import to_requests
from screening.offline.schema import EVENT_SCHEMA
from screening.v1 import screening_pb2 as pb

__all__ = ["main", "synthetic_stream"]

_DAY_MS = 86_400_000
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def synthetic_stream(n: int, accounts: int = 50_000, seed: int = 7) -> pl.DataFrame:
    """``n`` unique transactions between ``accounts`` accounts in the event schema, in time order
    over the 20 days before now (times strictly increasing)."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000) - 60_000
    times = now - 20 * _DAY_MS + np.sort(rng.choice(20 * _DAY_MS, size=n, replace=False))
    payer = rng.integers(0, accounts, n)
    payee = (payer + rng.integers(1, accounts, n)) % accounts
    channels = np.array(["mobile_app", "online_banking", "counter", "atm", "qr"])
    frame = pl.DataFrame({
        "event_id": [f"f{i:09d}" for i in range(n)],
        "kind": "txn",
        "event_time": pl.Series(times).cast(pl.Datetime("ms", "UTC")),
        "payer_account": [f"A{x:07d}" for x in payer],
        "payer_institution": "BANK01",
        "payer_party_type": "person",
        "payee_account": [f"A{x:07d}" for x in payee],
        "payee_institution": "BANK01",
        "payee_party_type": np.where(rng.random(n) < 0.1, "organisation", "person"),
        "amount_minor": rng.lognormal(10, 1.5, n).astype(np.int64) + 1,
        "currency": "CNY",
        "channel": channels[rng.integers(0, len(channels), n)],
        "cash": rng.random(n) < 0.02,
        "cross_border": rng.random(n) < 0.01,
    })
    return frame.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in EVENT_SCHEMA.items()
                              if name not in frame.columns).select(list(EVENT_SCHEMA))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


class _Server:
    """A ``screening serve`` process with Flight, auth off, on loopback."""

    def __init__(self, graph: bool, log: Path) -> None:
        self.port, self.flight_port = _free_port(), _free_port()
        env = dict(os.environ, SCREENING_GRAPH__ENABLED=str(graph).lower(),
                   SCREENING_GRAPH__MAX_EDGES=str(1 << 23),
                   SCREENING_STATE__INITIAL_ACCOUNTS=str(1 << 17))
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "screening", "serve", "--no-auth", "--host", "127.0.0.1",
             "--port", str(self.port), "--flight-port", str(self.flight_port),
             "--log-level", "warning"], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.port}",
            options=[("grpc.max_receive_message_length", 64 << 20),
                     ("grpc.max_send_message_length", 64 << 20)])
        grpc.channel_ready_future(self.channel).result(timeout=300)
        health = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # SERVING: b"\x08\x01"
            try:
                if health(b"", timeout=5) == b"\x08\x01":
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        self.channel.close()
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _flight_phase(srv: _Server, frame: pl.DataFrame, rows: int) -> dict[str, Any]:
    batches = list(event_batches(frame, rows))
    n = sum(b.num_rows for b in batches)
    cpu0, t0 = _cpu_s(srv.proc.pid), time.perf_counter()
    with FlightScreeningClient(f"grpc://127.0.0.1:{srv.flight_port}") as client:
        replies = list(client.screen(batches))
    wall, cpu = time.perf_counter() - t0, _cpu_s(srv.proc.pid) - cpu0
    table = pa.Table.from_batches(replies)
    assert table.num_rows == n and not any(table.column("duplicate").to_pylist())
    return {"endpoint": "flight", "rows_per_batch": rows, "transactions": n,
            "seconds": round(wall, 3), "txn_per_s": round(n / wall),
            "server_cpu_us_per_txn": round(cpu / n * 1e6, 2),
            "degraded_share": round(sum(table.column("degraded").to_pylist()) / n, 4),
            "not_allowed": sum(a != "ALLOW" for a in table.column("action").to_pylist())}


def _requests(frame: pl.DataFrame, rows: int) -> Iterator[bytes]:
    msgs = [m for m in to_requests(frame) if isinstance(m, pb.Transaction)]
    for i in range(0, len(msgs), rows):
        yield pb.TransactionBatch(transactions=msgs[i:i + rows], columnar=True).SerializeToString()


def _batch_phase(srv: _Server, frame: pl.DataFrame, rows: int) -> dict[str, Any]:
    bodies = list(_requests(frame, rows))
    call = srv.channel.unary_unary("/screening.v1.Screening/ScreenBatch",
                                   request_serializer=lambda b: b,
                                   response_deserializer=pb.DecisionBatch.FromString)
    cpu0, t0 = _cpu_s(srv.proc.pid), time.perf_counter()
    inflight: list[Any] = []  # grpc futures
    replies = []
    for body in bodies:
        inflight.append(call.future(body, timeout=60))
        if len(inflight) >= 2:
            replies.append(inflight.pop(0).result())
    replies.extend(f.result() for f in inflight)
    wall, cpu = time.perf_counter() - t0, _cpu_s(srv.proc.pid) - cpu0
    n = frame.height
    assert sum(len(r.columns.actions) for r in replies) == n
    degraded = sum(sum(r.columns.degraded) for r in replies)
    return {"endpoint": "ScreenBatch columnar", "rows_per_batch": rows, "transactions": n,
            "seconds": round(wall, 3), "txn_per_s": round(n / wall),
            "server_cpu_us_per_txn": round(cpu / n * 1e6, 2),
            "degraded_share": round(degraded / n, 4),
            "not_allowed": sum(a != pb.ACTION_ALLOW for r in replies for a in r.columns.actions)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.flight", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txns", type=int, default=100_000, help="transactions per phase")
    ap.add_argument("--out", type=Path, default=Path("bench/results/flight.json"))
    args = ap.parse_args(argv)
    phases = [("flight", 1_000), ("flight", 10_000), ("batch", 1_000)]
    stream = synthetic_stream(args.txns * len(phases))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for graph in (True, False):
            srv = _Server(graph, Path(tmp) / f"server-{graph}.log")
            try:
                for k, (kind, rows) in enumerate(phases):
                    part = stream.slice(k * args.txns, args.txns)
                    fig = (_flight_phase(srv, part, rows) if kind == "flight"
                           else _batch_phase(srv, part, rows))
                    fig["graph"] = graph
                    print(json.dumps(fig), flush=True)
                    runs.append(fig)
            finally:
                srv.stop()
    out = stamp({"bench": "flight", "target_txn_per_s": 1_000_000, "auth": "off (--no-auth)",
                 "runs": runs})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
