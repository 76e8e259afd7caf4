"""One writer per store: a second server is refused, a server that lost the store writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from screening.auth import Authenticator
from screening.client import watch_entry
from screening.config import Settings
from screening.errors import ConfigError, StoreBusy
from screening.model import NEVER, WatchEntry
from screening.server import start_server
from screening.store import (
    FileStore,
    RedisStore,
    WriterLease,
    encode_watch_change,
    safe_url,
    save_checkpoint,
)
from screening.v1 import screening_pb2 as pb
from tests.conftest import TOKENS, RedisProcess, _start, _stop, server_env, uid
from tests.e2e.test_durable_state import _settings
from tests.store.conftest import busy_engine


class _Log:
    """Records structlog-style calls: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))


def test_second_file_writer_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    """The message names the directory and who holds it; closing the first frees it."""
    first = FileStore(tmp_path / "state")
    first.claim_writer("host a pid 1 since then")
    with FileStore(tmp_path / "state") as second:
        with pytest.raises(StoreBusy) as info:
            second.claim_writer("host b pid 2 since now")
        assert str(tmp_path / "state") in str(info.value)
        assert "(host a pid 1 since then)" in str(info.value)
        first.close()
        second.claim_writer("host b pid 2 since now")
        assert (tmp_path / "state" / "writer.lock").read_text() == "host b pid 2 since now\n"


@pytest.mark.redis
def test_second_redis_writer_is_refused_until_the_first_lets_go(redis_server: RedisProcess) -> None:
    prefix = f"{uid('w')}:"
    first = RedisStore(redis_server.url, prefix)
    first.claim_writer("host a pid 1 since then")
    with RedisStore(redis_server.url, prefix) as second:
        with pytest.raises(StoreBusy) as info:
            second.claim_writer("host b pid 2 since now")
        assert "(host a pid 1 since then; its lease ends in 30 s" in str(info.value)
        assert prefix in str(info.value)
        with RedisStore(redis_server.url, f"{uid('other')}:") as elsewhere:
            elsewhere.claim_writer("host c")  # another prefix is another store
        first.close()
        second.claim_writer("host b pid 2 since now")


@pytest.mark.redis
def test_redis_writer_that_lost_its_lease_changes_nothing(redis_server: RedisProcess) -> None:
    """Past its expiry another server took the store: the old one's renewal, checkpoint and
    journal append all fail with StoreBusy (also after it noticed the loss or let go) and the
    new one's checkpoint stays the latest."""
    prefix = f"{uid('w')}:"
    engine = busy_engine()
    old = RedisStore(redis_server.url, prefix, lease_s=0.2, chunk_bytes=64 * 1024)
    new = RedisStore(redis_server.url, prefix, chunk_bytes=64 * 1024)
    try:
        old.claim_writer("old")
        save_checkpoint(engine, old)
        time.sleep(0.4)
        new.claim_writer("new")
        where = save_checkpoint(engine, new).where
        seq = new.append_journal(b'{"x":1}')
        for _ in range(2):  # noticing the loss (as the lease thread does) must not unlock writes
            with pytest.raises(StoreBusy, match="lease was lost"):
                old.renew_writer()
        with pytest.raises(StoreBusy, match="no longer holds the writer lease"):
            save_checkpoint(engine, old)
        with pytest.raises(StoreBusy, match="no longer holds the writer lease"):
            old.append_journal(b'{"x":2}')
        old.release_writer()  # nor must letting go
        with pytest.raises(StoreBusy, match="no longer holds the writer lease"):
            old.append_journal(b'{"x":3}')
        reader = new.open_checkpoint()
        assert reader is not None and reader.where == where
        assert [s for s, _ in new.read_journal()] == [seq]
        keys = {k.decode() for k in new.r.scan_iter(match=f"{prefix}ckpt:*:0")}
        assert keys == {where.rsplit(" ", 1)[1]}, "the old writer's chunks are gone"
    finally:
        old.close()
        new.close()


@pytest.mark.redis
def test_lease_thread_renews_and_reports_a_loss_once(redis_server: RedisProcess) -> None:
    prefix = f"{uid('w')}:"
    store = RedisStore(redis_server.url, prefix, lease_s=0.3)
    log = _Log()
    calls: list[str] = []
    lease = WriterLease(store, log, on_lost=lambda: calls.append("lost"))
    try:
        lease.claim()
        time.sleep(1.0)  # three lease lengths: alive only because the thread renews it
        with RedisStore(redis_server.url, prefix) as rival:
            with pytest.raises(StoreBusy):
                rival.claim_writer("rival")
            # another server took the store (in one step: a lease that merely ran out is
            # taken back, see test_lease_thread_takes_back_a_lease_that_ran_out)
            store.r.set(f"{prefix}writer", "rival 0123456789abcdef")
            deadline = time.time() + 5
            while not lease.lost:
                assert time.time() < deadline, "the loss was not noticed"
                time.sleep(0.05)
            assert [e for _, e, _ in log.lines] == ["store_lease_lost"] and calls == ["lost"]
            with pytest.raises(StoreBusy):
                store.append_journal(b'{"late":1}')
            assert rival.read_journal() == []
            lease.release()  # must not delete the rival's lease
            with pytest.raises(StoreBusy):
                RedisStore(redis_server.url, prefix).claim_writer("third")
    finally:
        lease.release()
        store.close()


def _no_wait(settings: Settings, wait_s: float = 0.0) -> Settings:
    return replace(settings, storage=replace(settings.storage, claim_wait_s=wait_s))


def test_second_server_on_a_file_store_does_not_start(tmp_path: Path) -> None:
    """In process: start_server raises StoreBusy (after its wait) before restoring anything."""
    settings = _no_wait(_settings("file", tmp_path), 0.5)
    auth = Authenticator.with_tokens(TOKENS)
    running = start_server(settings, port=0, auth=auth)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreBusy, match=f"pid {os.getpid()}"):
            start_server(settings, port=0, auth=auth)
        assert time.monotonic() - t0 >= 0.5, "gave up before claim_wait_s"
    finally:
        running.stop(0)
    again = start_server(settings, port=0, auth=auth)  # the first let go at shutdown
    again.stop(0)


def test_starting_server_waits_for_the_holder_to_let_go(tmp_path: Path) -> None:
    """A rolling restart: the new server starts while the old one still runs, waits, and takes
    the store (with the old one's final checkpoint) once the old one stops."""
    settings = _settings("file", tmp_path)
    auth = Authenticator.with_tokens(TOKENS)
    old = start_server(settings, port=0, auth=auth)
    old.engine.update_watchlist([WatchEntry(1, "6222000011110000", "case 3", "police", NEVER)], [])
    stopper = threading.Timer(1.0, old.stop, kwargs={"grace": 0})
    stopper.start()
    t0 = time.monotonic()
    new = start_server(_no_wait(settings, 30.0), port=0, auth=auth)
    try:
        assert 0.9 <= time.monotonic() - t0 < 30
        assert [e.value for e in new.engine.snapshot().watch] == ["6222000011110000"]
    finally:
        stopper.join()
        new.stop(0)


def test_serve_on_a_claimed_store_exits_with_one_line(tmp_path: Path) -> None:
    """`screening serve` while another holds the directory: status 2, one line naming both."""
    state = tmp_path / "state"
    with FileStore(state) as holder:
        holder.claim_writer("host ops-1 pid 4242 since 2026-12-05T23:00:00+00:00")
        env = server_env()
        env.update(SCREENING_STORAGE__BACKEND="file", SCREENING_STORAGE__PATH=str(state),
                   SCREENING_STORAGE__CLAIM_WAIT_S="0.5")
        proc = subprocess.run([sys.executable, "-m", "screening", "serve", "--no-auth", "--port", "0"],
                              capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert lines == [f"screening: storage file {state}: another server writes here (host ops-1 "
                     "pid 4242 since 2026-12-05T23:00:00+00:00); stop it first, or give each "
                     "server its own [storage] path"], proc.stderr
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert "serving" not in [e["event"] for e in events]
    assert [e["wait_s"] for e in events if e["event"] == "store_busy_waiting"] == [0.5]


@pytest.mark.redis
def test_server_that_lost_the_redis_store_refuses_watchlist_writes(redis_server: RedisProcess,
                                                                   tmp_path: Path) -> None:
    """Through a real channel: after another server took the store, health turns NOT_SERVING
    and UpdateWatchlist fails UNAVAILABLE naming the lost lease; neither the engine nor the
    journal changed."""
    settings = _settings("redis", tmp_path, redis_server)
    settings = replace(settings, storage=replace(settings.storage, lease_s=0.3))
    prefix = settings.storage.key_prefix
    live = _start(settings)
    rival = RedisStore(redis_server.url, prefix)
    try:
        entry = watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("mule"), "case 9", "police")
        assert live.police.update_watchlist([entry]).added == 1
        rival.r.set(f"{prefix}writer", "rival 0123456789abcdef")  # taken over in one step
        deadline = time.time() + 5
        while live.bank.is_serving():  # the lease thread noticed: traffic should go elsewhere
            assert time.time() < deadline, "health still SERVING after the store was lost"
            time.sleep(0.05)
        before = live.server.engine.snapshot().watch
        journal = rival.read_journal()
        with pytest.raises(grpc.RpcError) as info:
            live.police.update_watchlist(
                [watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("other"), "case 10", "police")])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no longer holds the writer lease" in (info.value.details() or "")
        assert live.server.engine.snapshot().watch == before
        assert rival.read_journal() == journal
    finally:
        _stop(live)
        rival.close()


@pytest.mark.redis
def test_old_writer_never_deletes_a_newer_generation(redis_server: RedisProcess) -> None:
    """A writer cleaning up after its checkpoint deletes only older generations: a successor's
    checkpoint being written (a newer generation) survives."""
    prefix = f"{uid('w')}:"
    engine = busy_engine()
    with RedisStore(redis_server.url, prefix, chunk_bytes=64 * 1024) as store:
        save_checkpoint(engine, store)
        newer = int(store.r.get(f"{prefix}ckpt:gen") or 0) + 5
        store.r.set(store.chunk_key(newer, 0), b"a successor's chunk")
        where = save_checkpoint(engine, store).where
        gens = {int(k.decode().split(":")[-2]) for k in store.r.scan_iter(match=f"{prefix}ckpt:*:0")}
        assert gens == {int(where.split(":")[-2]), newer}


def test_failed_bind_leaves_the_store_unclaimed(tmp_path: Path) -> None:
    """Start-up failing after the claim (here: the port is taken) gives the store back."""
    settings = _no_wait(_settings("file", tmp_path))
    auth = Authenticator.with_tokens(TOKENS)
    first = start_server(replace(settings, storage=replace(settings.storage,
                                                           path=str(tmp_path / "other"))),
                         port=0, auth=auth)
    try:
        with pytest.raises(ConfigError, match=f"cannot bind 127.0.0.1:{first.port}"):
            start_server(settings, port=first.port, auth=auth)
    finally:
        first.stop(0)
    with FileStore(tmp_path / "state") as store:
        store.claim_writer("next")  # would raise StoreBusy had the failed start kept it


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://app:hunter2@h:6379/0?ssl_cert_reqs=none", "redis://app:***@h:6379/0?ssl_cert_reqs=none"),
    ("unix:///run/redis.sock?password=hunter2&db=1", "unix:///run/redis.sock?password=***&db=1"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_safe_url_hides_every_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown


@pytest.mark.redis
def test_claim_is_taken_back_only_when_nobody_wrote_since(redis_server: RedisProcess) -> None:
    """After a lease ran out: taken back while 'latest' is still this server's checkpoint (or
    gone: Redis lost its data, and then the journal is numbered on above what the server has);
    refused, naming why, when another server wrote a checkpoint or holds the lease."""
    prefix = f"{uid('w')}:"
    engine = busy_engine()
    with RedisStore(redis_server.url, prefix, lease_s=0.2, chunk_bytes=64 * 1024) as old:
        old.claim_writer("old")
        save_checkpoint(engine, old)
        time.sleep(0.3)
        old.reclaim_writer("old", 0)  # nobody wrote since: taken back
        old.renew_writer()
        old.r.flushdb()  # Redis lost everything
        old.reclaim_writer("old", 7)
        assert old.append_journal(b'{"x":1}') == 8
        time.sleep(0.3)
        with RedisStore(redis_server.url, prefix, chunk_bytes=64 * 1024) as new:
            new.claim_writer("new")
            with pytest.raises(StoreBusy, match=r"another server took the store .*\(new\)"):
                old.reclaim_writer("old", 8)
            save_checkpoint(engine, new)
        with pytest.raises(StoreBusy, match="another server wrote a checkpoint here while this "
                                            "one could not reach it"):
            old.reclaim_writer("old", 8)


@pytest.mark.redis
def test_lease_thread_takes_back_a_lease_that_ran_out(redis_server: RedisProcess) -> None:
    """The lease key vanished (expired while Redis was out of reach) and another server wrote a
    journal entry meanwhile without a checkpoint: the thread takes the lease back, applies that
    entry to the engine and reports the recovery; the claim is not lost."""
    prefix = f"{uid('w')}:"
    engine = busy_engine()
    store = RedisStore(redis_server.url, prefix, lease_s=0.3)
    recovered: list[str] = []
    lease = WriterLease(store, _Log(), engine=engine, on_recovered=recovered.append)
    try:
        lease.claim()
        with RedisStore(redis_server.url, prefix) as other:
            other.r.delete(f"{prefix}writer")
            other.claim_writer("other")
            entry = WatchEntry(1, "6222000099990000", "case 44", "police", NEVER)
            other.append_journal(encode_watch_change([entry], [], 0))
            other.release_writer()
        deadline = time.time() + 5
        while not recovered:
            assert time.time() < deadline, "the lease was not taken back"
            time.sleep(0.05)
        assert recovered == ["store_reclaimed"] and not lease.lost
        assert "6222000099990000" in {e.value for e in engine.snapshot().watch}
        assert store.append_journal(b'{"after":1}') > engine.journal_seq - 1
    finally:
        lease.release()
        store.close()
