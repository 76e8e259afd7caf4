"""SIGTERM ends a real `screening serve` process within grace_seconds plus a bound, whatever the
clients did, and the final checkpoint is written."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from screening.client import ScreeningClient, transaction
from screening.v1 import screening_pb2 as pb
from tests.conftest import free_port, reap, recent, server_env, uid

GRACE_S = 1.0
# what shutdown may take beyond the grace: the drain bound (5 s) and a small checkpoint
BOUND_S = 10.0


def _serve(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = server_env()
    env.update(SCREENING_STORAGE__BACKEND="file", SCREENING_STORAGE__PATH=str(tmp_path / "state"),
               SCREENING_SERVER__GRACE_SECONDS=str(GRACE_S))
    return subprocess.Popen([sys.executable, "-m", "screening", "serve", "--no-auth", "--port",
                             str(port)], env=env, stderr=subprocess.PIPE, text=True)


def _idle(outbox: queue.Queue[bytes | None]) -> Iterator[bytes]:
    while (item := outbox.get()) is not None:
        yield item


def test_sigterm_after_malformed_stream_messages_and_idle_streams_stops_in_time(tmp_path: Path) -> None:
    """10 malformed stream messages, 5 idle streams, one half-sent: exit 0 in time, checkpoint saved."""
    port = free_port()
    proc = _serve(tmp_path, port)
    held: list[queue.Queue[bytes | None]] = []
    try:
        with ScreeningClient(f"127.0.0.1:{port}") as client:
            client.wait_ready(120)
            deadline = time.monotonic() + 120
            while not client.is_serving():
                assert time.monotonic() < deadline and proc.poll() is None, "not SERVING"
                time.sleep(0.1)
            client.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
            raw = client.channel.stream_stream("/screening.v1.Screening/ScreenStream",
                                               request_serializer=None, response_deserializer=None)
            for _ in range(10):  # malformed messages, each ending its stream
                try:
                    list(raw(iter([b"\xff\xff\xff\x07garbage"]), timeout=10))
                except grpc.RpcError as exc:
                    assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED
            calls = []
            for _ in range(5):  # idle streams, open until the server goes
                outbox: queue.Queue[bytes | None] = queue.Queue()
                held.append(outbox)
                calls.append(raw(_idle(outbox)))
            good = transaction(uid("t"), recent(), uid("a"), uid("b"), 100).SerializeToString()
            held[0].put(good)
            assert pb.Decision.FromString(next(calls[0])).action == pb.ACTION_ALLOW
            held[1].put(good[: len(good) // 2])  # half a message, never finished
            time.sleep(0.5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=GRACE_S + BOUND_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                raise AssertionError(f"no exit {GRACE_S + BOUND_S} s after SIGTERM:\n{err[-3000:]}") from None
            took = time.monotonic() - t0
    finally:
        for outbox in held:
            outbox.put(None)
        reap(proc)
    assert proc.returncode == 0, err[-3000:]
    assert took < GRACE_S + BOUND_S
    assert (tmp_path / "state" / "checkpoint.ckpt").exists()
    assert '"checkpoint_saved"' in err and '"why": "shutdown"' in err
