"""Nothing accepted is lost: `screening serve` killed with SIGKILL under load, restarted on its
store, holds the same state as a server that was never interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from screening.client import ScreeningClient, call_event, transaction
from screening.v1 import screening_pb2 as pb
from tests.conftest import RedisProcess, free_port, recent, server_env, uid

OLD = "2015-01-05"
THREADS = 4
PER_THREAD = 200  # requests per client thread; the server is killed part way, after a checkpoint


@contextmanager
def _serve(env_extra: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], ScreeningClient]]:
    """`screening serve --no-auth` as a process of its own; SIGTERM at the end unless killed."""
    env = server_env()
    env.update(SCREENING_SERVER__LATENCY_BUDGET_MS="1000", **env_extra)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "screening", "serve", "--no-auth", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with ScreeningClient(f"127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if client.is_serving():
                        break
                except grpc.RpcError:
                    pass
                assert proc.poll() is None, f"server exited {proc.returncode} before SERVING"
                assert time.monotonic() < deadline, "server did not become SERVING"
                time.sleep(0.1)
            yield proc, client
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@dataclass
class _Lane:
    """One client thread's requests (its own accounts and phones), in the order sent."""

    n: int
    requests: list[Any] = field(default_factory=list)
    answered: list[tuple[Any, Any]] = field(default_factory=list)  # (request, reply)
    in_flight: Any = None

    @property
    def accounts(self) -> list[str]:
        return [f"j{self.n}-acct-{i}" for i in range(8)]


def _lanes(tag: str) -> list[_Lane]:
    lanes = []
    for n in range(THREADS):
        lane = _Lane(n)
        acc = [f"{tag}{a}" for a in lane.accounts]
        phones = [f"+86139{n:02d}{i:05d}" for i in range(4)]
        for k in range(PER_THREAD):
            # a minute apart, all in the past (a request in the future is refused, and a lane
            # that got that far before the kill would resend it to the restarted server)
            when = recent(PER_THREAD + 20 - k)
            if k % 10 == 3:
                lane.requests.append(call_event(f"{tag}c{n}-{k}", when, f"+8529100{n}{k:03d}",
                                                phones[k % 4], caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
                continue
            txns = [transaction(f"{tag}t{n}-{k}-{j}", when, acc[(k + j) % 8],
                                acc[(3 * k + j + 1) % 8], 50_000 + 7_919 * k + j,
                                payer_opened=OLD, payee_opened=OLD, payer_phone=phones[(k + j) % 4])
                    for j in range(5 if k % 4 == 1 else 1)]
            lane.requests.append(txns if k % 4 == 1 else txns[0])
        lanes.append(lane)
    return lanes


def _send(client: ScreeningClient, req: Any) -> Any:
    if isinstance(req, list):
        return client.screen_batch(req)
    if isinstance(req, pb.CallEvent):
        return client.report_call(req)
    return client.screen(req)


def _key(reply: Any) -> Any:
    """What a decision says (not its latency)."""
    if isinstance(reply, pb.DecisionBatch):
        return [_key(d) for d in reply.decisions]
    return (reply.action, [r.code for r in reply.reasons], reply.risk_score, dict(reply.features))


def _state(client: ScreeningClient, tag: str) -> dict[str, Any]:
    out = {}
    for lane in _lanes(tag):
        for a in lane.accounts:
            r = client.query_account(tag + a, limit=50)
            out[a] = (r.known, dict(r.features), r.first_seen.ToMilliseconds(),
                      r.last_seen.ToMilliseconds(), r.risk_score,
                      [(d.transaction_id, *_key(d)) for d in r.recent_decisions])
    return out


def _probes(client: ScreeningClient, tag: str, when: Any) -> list[Any]:
    """Decisions of further payments after the load: each account pays the next."""
    accs = [tag + a for lane in _lanes(tag) for a in lane.accounts]
    return [_key(client.screen(transaction(f"{tag}probe-{i}", when, a, accs[(i + 1) % len(accs)],
                                           2_000_000, payer_opened=OLD, payee_opened=OLD)))
            for i, a in enumerate(accs)]


def _load_and_kill(env: dict[str, str], tag: str, checkpointed: Callable[[], bool]) -> list[_Lane]:
    lanes = _lanes(tag)
    with _serve(env) as (proc, client):
        stop = threading.Event()

        def run(lane: _Lane) -> None:
            for req in lane.requests:
                if stop.is_set():
                    return
                lane.in_flight = req
                try:
                    reply = _send(client, req)
                except grpc.RpcError:
                    return  # the server is gone: this request may or may not have been accepted
                lane.answered.append((req, reply))
                lane.in_flight = None
                time.sleep(0.005)  # the load lasts past the first checkpoint

        threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
        for t in threads:
            t.start()
        half = THREADS * PER_THREAD // 4
        deadline = time.monotonic() + 120
        while ((sum(len(lane.answered) for lane in lanes) < half or not checkpointed())
               and time.monotonic() < deadline):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(60)
    done = sum(len(lane.answered) for lane in lanes)
    assert half <= done < THREADS * PER_THREAD, "killed before the load, or after it"
    return lanes


def _kill_restart_compare(env: dict[str, str], checkpointed: Callable[[], bool]) -> None:
    tag = uid("k") + "-"
    probe_at = recent(1)
    lanes = _load_and_kill(env, tag, checkpointed)
    with _serve(env) as (_, client):
        # every answer given before the kill is kept: the same request is a duplicate, same decision
        for lane in lanes:
            for req, reply in lane.answered:
                again = _send(client, req)
                if isinstance(again, pb.DecisionBatch):
                    assert all(d.duplicate for d in again.decisions), req
                elif isinstance(again, pb.Decision):
                    assert again.duplicate, req.transaction_id
                assert _key(again) == _key(reply)
            if lane.in_flight is not None:  # accepted or not before the kill: it is now
                _send(client, lane.in_flight)
        restarted = _state(client, tag), _probes(client, tag, probe_at)
    # the same accepted requests, each lane in its order, on a server never interrupted
    reference_env = {k: v for k, v in env.items() if not k.startswith("SCREENING_STORAGE__")}
    with _serve(reference_env) as (_, client):
        for lane in lanes:
            for req in [r for r, _ in lane.answered] + ([lane.in_flight] if lane.in_flight else []):
                _send(client, req)
        reference = _state(client, tag), _probes(client, tag, probe_at)
    assert restarted[0] == reference[0]
    assert restarted[1] == reference[1]


def test_killed_file_store_server_loses_no_accepted_event(tmp_path: Path) -> None:
    """SIGKILL under load from 4 clients (unary, batches, calls) with a checkpoint every second:
    after a restart every answered request is a duplicate with its decision, and features and
    further decisions equal those of a server that was never interrupted."""
    state = tmp_path / "state"
    _kill_restart_compare({"SCREENING_STORAGE__BACKEND": "file",
                           "SCREENING_STORAGE__PATH": str(state),
                           "SCREENING_STORAGE__CHECKPOINT_INTERVAL_S": "1"},
                          (state / "checkpoint.ckpt").exists)


@pytest.mark.redis
def test_killed_redis_store_server_loses_no_accepted_event(redis_server: RedisProcess) -> None:
    """The same with the Redis store (lease of 1 s, left to expire after the kill)."""
    prefix = f"{uid('ej')}:"
    r = redis.Redis.from_url(redis_server.url)
    try:
        _kill_restart_compare({"SCREENING_STORAGE__BACKEND": "redis",
                               "SCREENING_STORAGE__REDIS_URL": redis_server.url,
                               "SCREENING_STORAGE__KEY_PREFIX": prefix,
                               "SCREENING_STORAGE__LEASE_S": "1",
                               "SCREENING_STORAGE__CHECKPOINT_INTERVAL_S": "1"},
                              lambda: bool(r.exists(f"{prefix}ckpt:latest")))
    finally:
        r.close()
