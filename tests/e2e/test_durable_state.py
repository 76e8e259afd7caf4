"""State that survives a restart, through real servers on real ports, for both backends."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from screening.auth import Authenticator
from screening.client import ScreeningClient, call_event, transaction, watch_entry
from screening.config import Settings, load_settings
from screening.errors import CheckpointError
from screening.server import start_server
from screening.v1 import screening_pb2 as pb
from tests.conftest import (
    OTHER_BANK_TOKEN,
    Live,
    RedisProcess,
    _start,
    _stop,
    free_port,
    give_history,
    recent,
    serve_process,
    server_env,
    uid,
)

OLD = "2015-01-05"


def _settings(backend: str, tmp_path: Path, redis: RedisProcess | None = None,
              interval: float = 3600.0) -> Settings:
    storage: dict[str, object] = {"backend": backend, "checkpoint_interval_s": interval}
    if backend == "file":
        storage["path"] = str(tmp_path / "state")
    else:
        assert redis is not None
        storage.update(redis_url=redis.url, key_prefix=f"e2e-{uid('p')}:")
    return load_settings(overrides={"state": {"initial_accounts": 256}, "storage": storage})


def _log_events(live: Live, event: str) -> list[dict[str, object]]:
    return [e for e in map(json.loads, live.log.getvalue().splitlines()) if e.get("event") == event]


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return _settings(request.param, tmp_path, redis)


def test_restarted_server_continues_with_the_same_state(store_settings: Settings) -> None:
    """Stop gracefully, start again on the same store: same features, duplicates and freezes."""
    payer, payee, mule, victim = uid("payer"), uid("payee"), uid("mule"), uid("victim")
    tids = [uid("t") for _ in range(6)]
    live = _start(store_settings)
    try:
        sent = [transaction(t, recent(50 - 5 * i), payer, payee, 120_000 + i, payer_opened=OLD,
                            payee_opened=OLD, payer_phone="+8613800001111")
                for i, t in enumerate(tids)]
        first = [live.bank.screen(m) for m in sent]
        live.telecom.report_call(call_event(uid("call"), recent(3), "+8617000000001", "+8613800001111"))
        assert live.police.update_watchlist(
            [watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "case 41", "police")]).added == 1
        before = live.police.query_account(payer, limit=10)
        assert before.known and len(before.recent_decisions) == 6
    finally:
        _stop(live)
    saved = _log_events(live, "checkpoint_saved")
    assert saved and saved[-1]["why"] == "shutdown" and saved[-1]["decisions"] == 6

    again = _start(store_settings)
    try:
        restored = _log_events(again, "state_restored")
        assert restored and restored[0]["accounts"] == 3 and restored[0]["watchlist"] == 1
        after = again.police.query_account(payer, limit=10)
        assert dict(after.features) == dict(before.features)
        assert list(after.recent_decisions) == list(before.recent_decisions)
        assert (after.first_seen, after.last_seen) == (before.first_seen, before.last_seen)
        dup = again.bank.screen(sent[2])  # the bank retries: the same payment again
        assert dup.duplicate
        assert (dup.action, list(dup.reasons), dup.risk_score) == (
            first[2].action, list(first[2].reasons), first[2].risk_score)
        frozen = again.bank.screen(transaction(uid("t"), recent(1), mule, victim, 5_000))
        assert frozen.action == pb.ACTION_FREEZE
        assert [r.code for r in frozen.reasons] == ["PAYER_WATCHLISTED"]
        listed = again.police.query_account(mule)
        assert [h.reason for h in listed.watchlist_hits] == ["case 41"]
    finally:
        _stop(again)


@pytest.mark.redis
def test_watchlist_update_while_redis_is_down_is_unavailable_and_changes_nothing(
        redis_server: RedisProcess, tmp_path: Path) -> None:
    """Redis stopped: UpdateWatchlist fails UNAVAILABLE and the account is not listed."""
    live = _start(_settings("redis", tmp_path, redis_server))
    suspect = uid("suspect")
    try:
        live.bank.screen(transaction(uid("t"), recent(5), suspect, uid("b"), 1_000))
        redis_server.stop()
        with pytest.raises(grpc.RpcError) as info:
            live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, suspect, "x", "police")])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "watchlist journal" in (info.value.details() or "")
        assert list(live.police.query_account(suspect).watchlist_hits) == []
        d = live.bank.screen(transaction(uid("t"), recent(1), suspect, uid("b"), 1_000))
        assert d.action != pb.ACTION_FREEZE
    finally:
        _stop(live)
    failed = _log_events(live, "checkpoint_failed")
    assert failed and failed[-1]["why"] == "shutdown"


def test_periodic_checkpoints_are_logged_without_identifiers(tmp_path: Path) -> None:
    """Checkpoints run in the background and log sizes and times, never an account in clear."""
    live = _start(_settings("file", tmp_path, interval=0.2))
    payer = uid("secret-acct")
    try:
        live.bank.screen(transaction(uid("t"), recent(2), payer, uid("b"), 9_000))
        live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, payer, "r", "police")])
        deadline = time.monotonic() + 10
        while not _log_events(live, "checkpoint_saved") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _stop(live)
    saved = _log_events(live, "checkpoint_saved")
    assert saved[0]["why"] == "periodic"
    assert {"bytes", "duration_ms", "lock_ms", "accounts", "where"} <= saved[0].keys()
    assert payer not in live.log.getvalue()


def _killed_server(settings: Settings, action: Callable[[ScreeningClient], None]) -> None:
    """Run `screening serve` on ``settings``' store as its own process, do ``action`` once it is
    SERVING, then SIGKILL it (no shutdown checkpoint; a Redis lease of 1 s is left to expire)."""
    env = server_env()
    st = settings.storage
    env.update(SCREENING_STORAGE__BACKEND=st.backend, SCREENING_STORAGE__PATH=st.path,
               SCREENING_STORAGE__REDIS_URL=st.redis_url, SCREENING_STORAGE__KEY_PREFIX=st.key_prefix,
               SCREENING_STORAGE__LEASE_S="1")

    def act_then_kill(admin: ScreeningClient, proc: subprocess.Popen[str]) -> None:
        action(admin)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    # (the shared start: waits as long as a loaded machine needs, and says at once why a server
    # that exited before SERVING did; a wait of 60 s with its output discarded timed out once)
    serve_process(["--no-auth"], free_port(), action, env=env, signals=act_then_kill)


def _freeze(account: str, reason: str) -> Callable[[ScreeningClient], None]:
    def action(client: ScreeningClient) -> None:
        assert client.update_watchlist(
            [watch_entry(pb.ENTITY_KIND_ACCOUNT, account, reason, "police")]).added == 1
    return action


def test_acknowledged_freeze_survives_a_killed_server(tmp_path: Path) -> None:
    """A server killed with SIGKILL after an acknowledged freeze: the next one still freezes."""
    settings = _settings("file", tmp_path)
    mule = uid("mule")
    _killed_server(settings, _freeze(mule, "case 42"))
    assert not (Path(settings.storage.path) / "checkpoint.ckpt").exists()  # no checkpoint: journal only
    live = _start(settings)
    try:
        d = live.bank.screen(transaction(uid("t"), recent(1), mule, uid("v"), 5_000))
        assert d.action == pb.ACTION_FREEZE
    finally:
        _stop(live)


def test_freeze_after_a_graceful_restart_survives_a_killed_server(store_settings: Settings) -> None:
    """Three freezes, graceful stop (checkpoint, journal trimmed), restart, a fourth freeze, kill:
    the next server holds all four (the fourth is numbered after the checkpoint's three)."""
    mules = [uid("mule") for _ in range(4)]
    live = _start(store_settings)
    try:
        for i, mule in enumerate(mules[:3]):
            _freeze(mule, f"case {i}")(live.police)
    finally:
        _stop(live)
    _killed_server(store_settings, _freeze(mules[3], "case 3"))
    live = _start(store_settings)
    try:
        for mule in mules:
            d = live.bank.screen(transaction(uid("t"), recent(1), mule, uid("v"), 5_000))
            assert d.action == pb.ACTION_FREEZE, mule
    finally:
        _stop(live)


def test_server_refuses_to_start_on_a_corrupted_checkpoint(tmp_path: Path) -> None:
    """A damaged checkpoint stops start-up with an error naming the file (no silent reset)."""
    settings = _settings("file", tmp_path)
    _stop(_start(settings))
    path = Path(settings.storage.path) / "checkpoint.ckpt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path}: corrupted"):
        start_server(settings, port=0, auth=Authenticator({}, enabled=False))


def test_idempotency_survives_a_restart_per_institution(store_settings: Settings) -> None:
    """Scopes and fingerprints are in the checkpoint: after a restart the bank's retry is a
    duplicate, its reuse of the id for another payment is refused, and a payment institution's
    equal id is a payment of its own."""
    tid, payer, payee = uid("t"), uid("payer"), uid("payee")
    msg = transaction(tid, recent(30), payer, payee, 70_000, memo="rent")
    live = _start(store_settings)
    try:
        first = live.bank.screen(msg)
    finally:
        _stop(live)
    again = _start(store_settings)
    try:
        dup = again.bank.screen(msg)
        assert dup.duplicate and dup.action == first.action
        other = pb.Transaction()
        other.CopyFrom(msg)
        other.memo = "rent for march"
        with pytest.raises(grpc.RpcError) as info:
            again.bank.screen(other)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert info.value.details() == ("transaction_id: already used for a different payment "
                                        "(memo differs)")
        assert not again.client("payment").screen(other).duplicate
    finally:
        _stop(again)


def _stop_and_mark(victim: str, safe: str, phone: str) -> Callable[[ScreeningClient], None]:
    """On a server with two weeks of history (past its first week, when every account is new to
    it and no payee is made a suspect), a warned call from abroad, then the victim's payment to
    a 'safe account' is stopped and the account made a suspected mule."""

    def action(client: ScreeningClient) -> None:
        give_history(client, days=14, payer_opened=OLD, payee_opened=OLD)
        client.report_call(call_event(uid("c"), recent(30), "+85291" + phone[-6:], phone,
                                      caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
        d = client.screen(transaction(uid("t"), recent(20), victim, safe, 3_000_000,
                                      payer_phone=phone, payer_opened=OLD, payee_opened=OLD))
        assert d.action == pb.ACTION_STOP_PAYMENT
        assert "CALL_THEN_TRANSFER_LARGE" in [r.code for r in d.reasons]
    return action


def test_decision_memory_survives_a_restart(store_settings: Settings) -> None:
    """A stopped payment's conclusions (victim protected, payee a suspected mule, the stop
    remembered) hold after a graceful restart, and feedback given after it survives a kill."""
    victim, safe, phone = uid("victim"), uid("safe"), "+8613912" + uid("")[-5:].rjust(5, "0")
    live = _start(store_settings)
    try:
        _stop_and_mark(victim, safe, phone)(live.client("admin"))
    finally:
        _stop(live)
    live = _start(store_settings)
    try:  # the mark survived: before any new decision the police see it
        assert pb.CASE_ROLE_SUSPECTED_MULE in [m.role for m in live.police.query_account(safe).case_marks]
        again = live.bank.screen(transaction(uid("t"), recent(15), victim, safe, 100_000,
                                             payer_opened=OLD, payee_opened=OLD))
        assert again.action == pb.ACTION_STOP_PAYMENT
        assert "REPEAT_TO_STOPPED_PAYEE" in [r.code for r in again.reasons]
        out = live.bank.screen(transaction(uid("t"), recent(14), safe, uid("l2"), 50_000,
                                           payer_opened=OLD, payee_opened=OLD))
        assert out.action == pb.ACTION_STOP_PAYMENT
        assert pb.CASE_ROLE_SUSPECTED_MULE in [m.role for m in live.police.query_account(safe).case_marks]
    finally:
        _stop(live)


def test_feedback_acknowledged_before_a_kill_survives(tmp_path: Path) -> None:
    """Police confirm an account as a fraud account, the server is killed before any checkpoint:
    the next server still stops payments to it (the verdict was journaled before the answer)."""
    settings = _settings("file", tmp_path)
    fraud = uid("fraud")

    def confirm(client: ScreeningClient) -> None:
        assert client.submit_feedback(pb.FEEDBACK_VERDICT_CONFIRMED_FRAUD, account_id=fraud,
                                      note="case 77").accounts_changed == 1

    _killed_server(settings, confirm)
    live = _start(settings)
    try:
        d = live.bank.screen(transaction(uid("t"), recent(1), uid("v"), fraud, 5_000))
        assert d.action == pb.ACTION_STOP_PAYMENT
        assert "PAYEE_CONFIRMED_FRAUD" in [r.code for r in d.reasons]
        marks = live.police.query_account(fraud).case_marks
        assert marks[0].role == pb.CASE_ROLE_CONFIRMED_FRAUD and marks[0].note == "case 77"
    finally:
        _stop(live)


def _dormant_entry(account: str) -> Callable[[ScreeningClient], None]:
    """BANK01's registry entry for ``account``: opened in 2014, idle since over a year ago."""

    def action(client: ScreeningClient) -> None:
        assert client.upsert_accounts([pb.AccountProfile(
            account_id=account, party_type=pb.PARTY_TYPE_PERSON, opened_date="2014-03-01",
            last_active_date=recent(24 * 60 * 400).date().isoformat(),
            institution="BANK01")]).upserted == 1
    return action


def test_registry_entry_acknowledged_before_a_kill_survives(store_settings: Settings) -> None:
    """A bank says an account has been idle for a year, the server is killed before any
    checkpoint: the next server still knows it (the entry was journaled before the answer), so
    the woken account's forwarding of a victim's money is stopped, and the entry is still
    BANK01's (BANK02 may not overwrite it)."""
    rented = uid("rented")
    _killed_server(store_settings, _dormant_entry(rented))
    live = _start(store_settings)
    try:
        d = live.bank.screen(transaction(uid("t"), recent(30), uid("victim"), rented, 2_000_000,
                                         payer_opened=OLD))
        assert "WOKEN_DORMANT_ACCOUNT_RECEIVES" in [r.code for r in d.reasons]
        out = live.bank.screen(transaction(uid("t"), recent(25), rented, uid("l2"), 600_000,
                                           payee_opened=OLD))
        assert out.action == pb.ACTION_STOP_PAYMENT
        assert "WOKEN_DORMANT_FORWARDS" in [r.code for r in out.reasons]
        with ScreeningClient(live.server.address, OTHER_BANK_TOKEN) as bank02, \
                pytest.raises(grpc.RpcError) as info:
            bank02.upsert_accounts([pb.AccountProfile(account_id=rented, merchant_category="5411")])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        _stop(live)


def _decide_open(settings: Settings, action: Callable[[ScreeningClient], None]) -> None:
    """Start a server without auth (every caller admin, one idempotency scope, as the killed
    `screening serve --no-auth`) on ``settings``' store, do ``action``, stop it gracefully."""
    running = start_server(settings, port=0, auth=Authenticator({}, enabled=False))
    try:
        with ScreeningClient(running.address) as admin:
            admin.wait_ready()
            action(admin)
    finally:
        running.stop(0.5)


def test_registry_decisions_after_a_kill_equal_those_of_a_run_never_interrupted(
        tmp_path: Path) -> None:
    """Registry entry, a victim's payment into the account, kill, restart: the retried payment
    is a duplicate with its first decision and the forwarding is decided as by a server that
    ran on (the entry re-applied before the payment it preceded)."""
    rented, victim = uid("rented"), uid("victim")
    first = transaction(uid("t"), recent(30), victim, rented, 2_000_000, payer_opened=OLD)
    onward = transaction(uid("t"), recent(25), rented, uid("l2"), 600_000, payee_opened=OLD)
    replies: dict[str, pb.Decision] = {}

    def before_kill(client: ScreeningClient) -> None:
        _dormant_entry(rented)(client)
        replies["first"] = client.screen(first)

    def ran_on(client: ScreeningClient) -> None:
        before_kill(client)
        replies["want"] = client.screen(onward)

    def after_restart(client: ScreeningClient) -> None:
        replies["dup"] = client.screen(first)
        replies["got"] = client.screen(onward)

    killed = _settings("file", tmp_path / "killed")
    _killed_server(killed, before_kill)
    _decide_open(_settings("file", tmp_path / "ran-on"), ran_on)
    _decide_open(killed, after_restart)
    dup, got, want = replies["dup"], replies["got"], replies["want"]
    assert dup.duplicate and (dup.action, list(dup.reasons)) == (
        replies["first"].action, list(replies["first"].reasons))
    assert "WOKEN_DORMANT_ACCOUNT_RECEIVES" in [r.code for r in dup.reasons]
    assert (got.action, [r.code for r in got.reasons], got.risk_score) == (
        want.action, [r.code for r in want.reasons], want.risk_score)
    assert got.action == pb.ACTION_STOP_PAYMENT


@pytest.mark.redis
def test_registry_update_while_redis_is_down_is_unavailable_and_changes_nothing(
        redis_server: RedisProcess, tmp_path: Path) -> None:
    """Redis stopped: UpsertAccounts fails UNAVAILABLE and the account is not taken for dormant."""
    live = _start(_settings("redis", tmp_path, redis_server))
    rented = uid("rented")
    try:
        redis_server.stop()
        with pytest.raises(grpc.RpcError) as info:
            _dormant_entry(rented)(live.client("admin"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        d = live.bank.screen(transaction(uid("t"), recent(30), uid("victim"), rented, 2_000_000,
                                         payer_opened=OLD))
        assert "WOKEN_DORMANT_ACCOUNT_RECEIVES" not in [r.code for r in d.reasons]
    finally:
        _stop(live)
