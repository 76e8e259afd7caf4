"""A Redis outage longer than the writer lease, with a real redis-server and `screening serve`
as its own process: the server answers meanwhile (degraded, store health NOT_SERVING), takes its
store back when Redis returns (checkpoint at once, health SERVING) and loses nothing; or, when
another server took the store meanwhile, stops and says why."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis

from screening.client import ScreeningClient, transaction, watch_entry
from screening.server import STORE_HEALTH_SERVICE
from screening.store import RedisStore
from screening.v1 import screening_pb2 as pb
from tests.conftest import RedisProcess, free_port, recent, server_env, uid

LEASE_S = 1.0
pytestmark = pytest.mark.redis


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    client: ScreeningClient
    log: Path
    prefix: str

    def events(self, name: str) -> list[dict[str, object]]:
        return [e for e in map(json.loads, (x for x in self.log.read_text().splitlines()
                                            if x.startswith("{"))) if e.get("event") == name]

    def store_serving(self) -> bool:
        return self.client.is_serving(STORE_HEALTH_SERVICE)


def _until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> float:
    """Wait until ``check()``; returns when (monotonic). No timing is asserted, only the order."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic()


@pytest.fixture()
def serve(redis_server: RedisProcess, tmp_path: Path) -> Iterator[Callable[[], Served]]:
    """Start `screening serve --no-auth` on one Redis key prefix (lease LEASE_S), as often as
    the test likes; every process is killed at the end."""
    prefix = f"outage-{uid('p')}:"
    procs: list[Served] = []

    def start() -> Served:
        env = server_env()
        env.update(SCREENING_STORAGE__BACKEND="redis", SCREENING_STORAGE__REDIS_URL=redis_server.url,
                   SCREENING_STORAGE__KEY_PREFIX=prefix, SCREENING_STORAGE__LEASE_S=str(LEASE_S),
                   SCREENING_STORAGE__CHECKPOINT_INTERVAL_S="3600",
                   SCREENING_STORAGE__CLAIM_WAIT_S="30")
        port = free_port()
        log = tmp_path / f"server-{len(procs)}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "screening", "serve", "--no-auth",
                                     "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=err)
        served = Served(proc, ScreeningClient(f"127.0.0.1:{port}"), log, prefix)
        procs.append(served)
        served.client.wait_ready(60)
        _until("SERVING", lambda: _serving(served), 60)
        return served

    yield start
    for s in procs:
        s.client.close()
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def _serving(s: Served) -> bool:
    try:
        return s.client.is_serving()
    except grpc.RpcError:
        return False


def _outage(redis_server: RedisProcess, how: str) -> Callable[[], None]:
    """Cut Redis off (paused with SIGSTOP, or killed); returns what brings it back."""
    assert redis_server.proc is not None
    if how == "pause":
        pid = redis_server.proc.pid
        os.kill(pid, signal.SIGSTOP)
        return lambda: os.kill(pid, signal.SIGCONT)
    redis_server.stop()  # no persistence: it comes back empty, as after a crash
    return redis_server.start


@pytest.mark.parametrize("how", ["pause", "restart"])
def test_outage_of_twice_the_lease_is_survived_and_nothing_is_lost(
        serve: Callable[[], Served], redis_server: RedisProcess, how: str) -> None:
    """Redis paused (or restarted empty) for 2x the lease: meanwhile decisions come back degraded,
    store health is NOT_SERVING and watchlist writes are UNAVAILABLE; then the server takes its
    store back, checkpoints at once, is SERVING again and takes watchlist writes. Killed with
    SIGKILL afterwards, the next server has the watchlist change made before the outage, the one
    after it and the transactions decided before, during and after it (the event journal)."""
    s = serve()
    assert s.store_serving()
    listed, later, payer = uid("mule"), uid("mule"), uid("payer")
    assert s.client.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, listed, "case 5",
                                                  "police")]).added == 1
    before = transaction(uid("t"), recent(9), payer, uid("b"), 10_000)
    assert not s.client.screen(before).degraded

    cut = time.monotonic()
    bring_back = _outage(redis_server, how)
    try:
        _until("store health NOT_SERVING", lambda: not s.store_serving())
        assert s.client.is_serving(), "the server must go on answering payments"
        during = [transaction(uid("t"), recent(8 - i), payer, uid("c"), 20_000 + i)
                  for i in range(3)]
        decided = [s.client.screen(m) for m in during]
        assert all(d.degraded for d in decided)
        frozen = s.client.screen(transaction(uid("t"), recent(5), listed, uid("v"), 5_000))
        assert frozen.degraded and frozen.action == pb.ACTION_FREEZE
        with pytest.raises(grpc.RpcError) as info:
            s.client.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("x"), "r", "p")])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        time.sleep(max(0.0, cut + 2 * LEASE_S - time.monotonic()))  # 2x the lease, at least
    finally:
        bring_back()

    _until("store health SERVING again", s.store_serving)
    assert s.client.is_serving()
    _until("the checkpoint taken at once", lambda: any(
        e["why"] == "store_reclaimed" for e in s.events("checkpoint_saved")))
    assert s.client.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, later, "case 6",
                                                  "police")]).added == 1
    after = transaction(uid("t"), recent(2), payer, uid("d"), 1)
    assert not s.client.screen(after).degraded
    assert [e["source"] for e in s.events("store_degraded")] == ["lease"]
    assert s.events("store_reclaimed") and s.events("store_recovered")
    assert s.events("store_recovered")[-1]["degraded_decisions"] == 4
    assert payer not in s.log.read_text() and listed not in s.log.read_text()
    s.proc.send_signal(signal.SIGKILL)  # no shutdown checkpoint: the journal has what came after
    s.proc.wait(10)

    again = serve()
    for m, d in zip(during, decided, strict=True):
        retry = again.client.screen(m)
        assert retry.duplicate and retry.action == d.action
    assert again.client.screen(after).duplicate  # accepted after the checkpoint: journalled
    assert again.client.query_account(payer).features["out_count_24h"] == 5
    for account in (listed, later):
        hits = again.client.query_account(account).watchlist_hits
        assert [h.entity.value for h in hits] == [account]


def _idle(outbox: queue.Queue[bytes | None]) -> Iterator[bytes]:
    while (item := outbox.get()) is not None:
        yield item


@pytest.mark.parametrize("streams", [0, 3])
def test_server_whose_store_was_taken_meanwhile_stops_and_says_why(
        serve: Callable[[], Served], redis_server: RedisProcess, streams: int) -> None:
    """While the server cannot reach Redis (it refuses the server's connections) another server
    takes the store past the lease. When Redis answers again the first server finds the store
    taken, writes nothing there, and exits 2 naming the holder; also while clients hold streams
    open (one of them half a message into a request), which it does not wait for."""
    s = serve()
    held: list[queue.Queue[bytes | None]] = []
    raw = s.client.channel.stream_stream("/screening.v1.Screening/ScreenStream",
                                         request_serializer=None, response_deserializer=None)
    calls = []
    for _ in range(streams):  # open until the server goes
        held.append(queue.Queue())
        calls.append(raw(_idle(held[-1])))
    if streams:
        good = transaction(uid("t"), recent(), uid("a"), uid("b"), 100).SerializeToString()
        held[0].put(good)
        assert pb.Decision.FromString(next(calls[0])).action == pb.ACTION_ALLOW
        held[1].put(good[: len(good) // 2])  # half a message, never finished
    try:
        _taken_meanwhile_exits_2(s, redis_server)
    finally:
        for outbox in held:
            outbox.put(None)


def _taken_meanwhile_exits_2(s: Served, redis_server: RedisProcess) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("requirepass", "outage-test")
    admin.close()
    admin = redis.Redis.from_url(redis_server.url, password="outage-test")
    admin.client_kill_filter(_type="normal", skipme=True)  # the server's connections must log in
    try:
        _until("store health NOT_SERVING", lambda: not s.store_serving())
        _until("the lease to run out", lambda: not admin.exists(f"{s.prefix}writer"))
        rival = RedisStore(redis_server.url.replace("redis://", "redis://:outage-test@"), s.prefix)
        rival.claim_writer("host rival pid 7")
        latest = admin.get(f"{s.prefix}ckpt:latest")
    finally:
        admin.config_set("requirepass", "")
        admin.close()
    try:
        assert s.proc.wait(30) == 2
        err = s.log.read_text()
        lines = [x for x in err.splitlines() if not x.startswith("{")]
        where = f"redis {redis_server.url} prefix {s.prefix!r}"
        assert lines == [f"screening: storage {where}: another server took the store while this "
                         "one could not reach it (host rival pid 7); stopped"], err
        assert [e["error"] for e in s.events("store_lease_lost")] == [lines[0][11:-9]]
        assert s.events("stopping") and not s.events("checkpoint_saved")
        assert rival.r.get(f"{rival.prefix}ckpt:latest") == latest
    finally:
        rival.close()
