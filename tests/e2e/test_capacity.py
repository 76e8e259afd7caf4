"""Capacity through a real server: open streams never starve unary callers or health, and
overload is refused early (RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED) instead of answered late."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from screening.client import ScreeningClient, transaction
from screening.config import load_settings
from screening.v1 import screening_pb2 as pb
from screening.v1 import screening_pb2_grpc as pb_grpc
from tests.conftest import TOKENS, Live, _start, _stop, recent, uid

HEALTH_DEADLINE_S = 3.0


class IdleStream:
    """A ScreenStream held open by a client that sends only when told to."""

    def __init__(self, client: ScreeningClient) -> None:
        self.outbox: queue.Queue[pb.Transaction | None] = queue.Queue()
        self.call = client.stub.ScreenStream(self._requests(), metadata=client.metadata)

    def _requests(self) -> Iterator[pb.Transaction]:
        while (txn := self.outbox.get()) is not None:
            yield txn

    def screen(self, txn: pb.Transaction, timeout: float = 10.0) -> pb.Decision:
        """Send one transaction and wait (at most ``timeout``) for its decision or the error."""
        self.outbox.put(txn)
        box: queue.Queue[pb.Decision | grpc.RpcError] = queue.Queue()

        def read() -> None:
            try:
                box.put(next(self.call))
            except grpc.RpcError as exc:
                box.put(exc)

        threading.Thread(target=read, daemon=True).start()
        got = box.get(timeout=timeout)
        if isinstance(got, grpc.RpcError):
            raise got
        return got

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()


def _reopen(client: ScreeningClient, failure: str) -> IdleStream:
    """A new stream of ``client``, retried while the server has not yet seen the closed one
    go (RESOURCE_EXHAUSTED meanwhile); fails the test with ``failure`` after 5 s."""
    for _ in range(50):
        again = IdleStream(client)
        try:
            again.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
            return again
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            threading.Event().wait(0.1)
    pytest.fail(failure)


def _health_ok(live: Live) -> bool:
    with ScreeningClient(live.server.address, timeout=HEALTH_DEADLINE_S) as c:
        return c.is_serving()


@pytest.fixture()
def small() -> Iterator[Live]:
    """A server with few threads, a short queue and few streams (shared by no other test)."""
    srv = _start(load_settings(overrides={
        "server": {"max_workers": 1, "max_queue": 1, "max_streams": 4,
                   "max_streams_per_caller": 4},
        "state": {"initial_accounts": 256}}))
    yield srv
    _stop(srv)


def test_one_caller_cannot_hold_every_stream_place() -> None:
    """One bank's idle streams took every [server] max_streams place, and every other
    institution's ScreenStream was refused. A caller holds at most max_streams_per_caller
    (default half of max_streams): past it it is refused naming the setting, others still open
    theirs, and a stream it closes gives its place back."""
    srv = _start(load_settings(overrides={"server": {"max_streams": 4},
                                          "state": {"initial_accounts": 256}}))
    streams: list[IdleStream] = []
    try:
        for _ in range(2):
            streams.append(IdleStream(srv.bank))
            streams[-1].screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        extra = IdleStream(srv.bank)
        with pytest.raises(grpc.RpcError) as info:
            extra.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams_per_caller" in (info.value.details() or "")
        other = IdleStream(srv.client("payment"))
        streams.append(other)
        assert other.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100)).action \
            == pb.ACTION_ALLOW
        streams.pop(0).close()
        streams.append(_reopen(srv.bank, "a closed stream did not give its caller's place back"))
    finally:
        for s in streams:
            s.close()
        _stop(srv)


def test_twenty_idle_streams_leave_health_and_unary_calls_answered(live: Live) -> None:
    """20 open idle ScreenStreams (more than all unary threads): health and a payment still answer."""
    streams: list[IdleStream] = []
    try:
        # opened one after another, each open on the server (it answered a first message): 20
        # opened at once are a burst past [server] max_pending (16), which grpc's core may
        # refuse in part (CANCELLED) before a thread takes them; that is not what this tests
        for _ in range(20):
            streams.append(IdleStream(live.bank))
            assert streams[-1].screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100)).transaction_id
        assert _health_ok(live)
        with ScreeningClient(live.server.address, "test-token-bank", timeout=HEALTH_DEADLINE_S) as c:
            d = c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert d.action == pb.ACTION_ALLOW
        # the streams are still usable
        tid = uid("t")
        assert streams[-1].screen(transaction(tid, recent(), uid("a"), uid("b"), 100)).transaction_id == tid
    finally:
        for s in streams:
            s.close()


def test_a_stream_whose_caller_stops_reading_stalls_no_one_else(live: Live) -> None:
    """A caller sends thousands of payments on a ScreenStream and never reads a reply (its
    channel grants 1 KiB of receive window and does not grow it): the server's handler for that
    stream stalls on sending once the window is full, on its own thread and holding no lock, and
    other callers' payments, another stream and health checks are answered meanwhile."""
    engine = live.server.engine

    def payments() -> Iterator[pb.Transaction]:
        for i in range(20_000):
            yield transaction(uid("s"), recent(), uid("a"), uid("b"), 100 + i)

    channel = grpc.insecure_channel(live.server.address, options=[
        ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)])
    stuck = pb_grpc.ScreeningStub(channel).ScreenStream(payments(), metadata=live.bank.metadata)
    try:
        start = engine.decisions.next_seq
        last, deadline = -1, time.monotonic() + 60
        while engine.decisions.next_seq != last:  # until the stream's handler stops deciding
            assert time.monotonic() < deadline
            last = engine.decisions.next_seq
            time.sleep(1.0)
        assert last - start < 20_000  # stalled part way on its unread replies: the premise
        with ScreeningClient(live.server.address, "test-token-bank", timeout=10) as c:
            for _ in range(20):
                assert c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100)).action \
                    == pb.ACTION_ALLOW
        other = live.bank.stub.ScreenStream(
            iter([transaction(uid("t"), recent(), uid("a"), uid("b"), 100) for _ in range(5)]),
            metadata=live.bank.metadata, timeout=10)
        assert len(list(other)) == 5
        assert _health_ok(live)
        assert engine.decisions.next_seq == last + 25  # the stuck stream still decides nothing
    finally:
        stuck.cancel()
        channel.close()


def test_streams_past_max_streams_are_refused_naming_the_setting(small: Live) -> None:
    """At [server] max_streams open streams the next is RESOURCE_EXHAUSTED; health still answers."""
    streams = [IdleStream(small.bank) for _ in range(4)]
    try:
        for s in streams:
            s.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        extra = IdleStream(small.bank)
        with pytest.raises(grpc.RpcError) as info:
            extra.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams" in (info.value.details() or "")
        assert _health_ok(small)
        d = small.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert d.action == pb.ACTION_ALLOW
        streams.pop().close()  # a closed stream frees its place
        streams.append(_reopen(small.bank, "a closed stream did not free its place"))
    finally:
        for s in streams:
            s.close()


def test_reflection_streams_without_a_token_take_no_screenstream_place(small: Live) -> None:
    """Reflection needs no token and is a stream: held open in the stream lane, anyone could take
    every [server] max_streams place and banks' ScreenStreams were refused RESOURCE_EXHAUSTED.
    It has a small lane of its own: past it only reflection is refused."""
    channel = grpc.insecure_channel(small.server.address)
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    held: list[tuple[Any, queue.Queue[Any]]] = []
    try:
        for _ in range(4):  # as many as max_streams here, and the reflection lane's size
            box: queue.Queue[Any] = queue.Queue()
            call = stub.ServerReflectionInfo(iter(box.get, None))
            box.put(reflection_pb2.ServerReflectionRequest(list_services=""))
            next(call)  # open on the server, and left open
            held.append((call, box))
        box = queue.Queue()
        extra = stub.ServerReflectionInfo(iter(box.get, None))
        box.put(reflection_pb2.ServerReflectionRequest(list_services=""))
        with pytest.raises(grpc.RpcError) as info:
            next(extra)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        streams = [IdleStream(small.bank) for _ in range(4)]
        try:
            for s in streams:
                assert s.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100)).action \
                    == pb.ACTION_ALLOW
        finally:
            for s in streams:
                s.close()
    finally:
        for call, box in held:
            box.put(None)
            call.cancel()
        channel.close()


def _big_batch(n: int) -> list[pb.Transaction]:
    return [transaction(uid("t"), recent(), uid("pa"), uid("pb"), 1_000 + i) for i in range(n)]


def test_calls_past_workers_and_queue_are_refused_at_once(small: Live) -> None:
    """Engine busy (its lock held, as a checkpoint copy holds it), 1 call running and 1 queued:
    the next call is RESOURCE_EXHAUSTED before either finishes; health still answers."""
    lane = small.server.lanes.screen if small.server.lanes is not None else None
    assert lane is not None
    with ThreadPoolExecutor(2) as pool:
        with small.server.engine._lock:
            ahead: list[Future[pb.Decision]] = []
            for _ in range(2):
                ahead.append(pool.submit(small.bank.screen,
                                         transaction(uid("t"), recent(), uid("a"), uid("b"), 100)))
                deadline = time.monotonic() + 10
                while lane.held < len(ahead):
                    assert time.monotonic() < deadline, "the call did not reach the server"
                    time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as info:
                small.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
            assert not any(f.done() for f in ahead), "the refusal waited for the calls ahead"
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_queue" in (info.value.details() or "")
            assert _health_ok(small)
        assert all(f.result(30).action == pb.ACTION_ALLOW for f in ahead)
    d = small.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
    assert d.action == pb.ACTION_ALLOW


def test_call_whose_deadline_cannot_be_met_is_refused_and_screens_nothing(small: Live) -> None:
    """A batch of 5,000 sent after a pause of 3 s with a quarter of the time the first such batch
    took: refused, no payer recorded; a batch of 10 with a 2 s deadline is still answered. (The
    estimate relaxes toward zero while nothing is measured, halving every second; before it
    stopped at the fastest cost measured, a pause of 3 s took it to an eighth and the batch was
    screened. A fixed 50 ms was more than a quiet machine takes for 5,000.)"""
    first = _big_batch(5_000)
    started = time.perf_counter()
    assert len(small.bank.screen_batch(first).decisions) == 5_000  # measured once
    took = time.perf_counter() - started
    late = _big_batch(5_000)
    threading.Event().wait(3.0)  # a pause: nothing measured
    with pytest.raises(grpc.RpcError) as info:
        small.bank.stub.ScreenBatch(pb.TransactionBatch(transactions=late),
                                    metadata=small.bank.metadata, timeout=took / 4)
    assert info.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED)
    threading.Event().wait(1.0)  # a late answer would have been computed by now
    for t in (late[0], late[-1]):
        assert not small.police.query_account(t.payer.account_id).known
    few = small.bank.stub.ScreenBatch(pb.TransactionBatch(transactions=_big_batch(10)),
                                      metadata=small.bank.metadata, timeout=2.0)
    assert len(few.decisions) == 10  # a small batch is judged by what small batches take


# A client in another process: it connects, says so, then sends its calls at once and prints
# the status of each, while this process (the server's) holds the GIL.
_BURST = """
import json, sys, grpc
from screening.client import ScreeningClient, transaction
c = ScreeningClient(sys.argv[1], sys.argv[2]); c.wait_ready()
print("ready", flush=True)
calls = [c.stub.ScreenTransaction.future(transaction(f"burst-{i}", int(sys.argv[3]), "a", "b", 100),
                                         metadata=c.metadata, timeout=20) for i in range(24)]
codes = []
for f in calls:
    try:
        f.result(); codes.append("OK")
    except grpc.RpcError as exc:
        codes.append(exc.code().name)
print(json.dumps(codes), flush=True)
"""


def test_calls_past_max_pending_are_refused_by_grpc_core_at_once() -> None:
    """While no server thread can take a call (the GIL held: a screening call running, grpc's
    polling thread waiting), grpc's core holds at most [server] max_pending new calls and
    resets the rest at once (CANCELLED), instead of letting them wait until their deadline;
    what it held is screened afterwards, and the server answers as before."""
    srv = _start(load_settings(overrides={"server": {"max_pending": 2},
                                          "state": {"initial_accounts": 256}}))
    token = next(t for t, (_, role, *_) in TOKENS.items() if role == "bank")
    when_ms = int(time.time() * 1000) - 60_000
    client = subprocess.Popen([sys.executable, "-c", _BURST, srv.server.address, token, str(when_ms)],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        sum(range(60_000_000))  # one C call: the GIL held for about a second, no thread switch
        codes: list[str] = json.loads(client.stdout.readline())
        client.wait(20)
        assert set(codes) <= {"OK", "CANCELLED", "RESOURCE_EXHAUSTED"}, codes
        assert "CANCELLED" in codes and "OK" in codes, codes
        assert _health_ok(srv)
        d = srv.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert d.action == pb.ACTION_ALLOW
    finally:
        client.kill()
        client.wait(5)
        if client.stdout is not None:
            client.stdout.close()
        _stop(srv)
