"""The audit trail through a real server: every RPC that decides, changes, queries or exports
leaves a record naming who, what, when, the decision and the policy; SIGTERM writes it all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest

from screening.audit import read_records, verify
from screening.client import ScreeningClient, call_event, transaction, watch_entry
from screening.config import load_settings
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, _start, _stop, free_port, recent, serve_process, server_env, uid


@pytest.fixture()
def audited(tmp_path: Path) -> Iterator[tuple[Live, Path]]:
    d = tmp_path / "audit"
    live = _start(load_settings(overrides={
        "log": {"level": "debug"}, "state": {"initial_accounts": 256},
        "server": {"latency_budget_ms": 1000.0},
        "audit": {"dir": str(d), "flush_interval_ms": 20.0}}))
    try:
        yield live, d
    finally:
        if live.server.audit is not None:
            _stop(live)


def _by_kind(d: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in read_records(d):
        out.setdefault(rec["kind"], []).append(rec)
    return out


def test_every_rpc_leaves_a_record_with_who_what_when_decision_and_policy(
        audited: tuple[Live, Path]) -> None:
    """ALLOW and stronger decisions (unary, batch, stream, a duplicate), a call, a watchlist
    change, feedback, a query, a case export and a large-value report: each in the trail,
    identifiers in clear, with the caller's name and role; the chain verifies after stop."""
    live, d = audited
    policy = live.server.engine.policy.version
    payer, payee, mule = uid("payer"), uid("payee"), uid("mule")
    allow = transaction(uid("t"), recent(30), payer, payee, 5_000)
    first = live.bank.screen(allow)
    assert first.action == pb.ACTION_ALLOW
    assert live.bank.screen(allow).duplicate
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "case 17", "police")])
    stopped = live.bank.screen(transaction(uid("t"), recent(29), payer, mule, 900_000))
    assert stopped.action != pb.ACTION_ALLOW
    live.bank.screen_batch([transaction(uid("t"), recent(28), payer, payee, 100 + i)
                            for i in range(3)])
    list(live.bank.screen_stream([transaction(uid("t"), recent(27), payer, payee, 200)]))
    live.telecom.report_call(call_event(uid("c"), recent(26), "+8613800000001",
                                        "+8613900000002", duration_seconds=30))
    live.bank.submit_feedback(pb.FEEDBACK_VERDICT_FALSE_ALARM, transaction_id=allow.transaction_id,
                              note="customer confirmed")
    live.police.query_account(payer)
    live.client("regulator").query_account(mule)
    live.police.export_case_graph(pb.ExportCaseGraphRequest(account_id=mule, hops=1,
                                                            formats=[pb.CASE_FORMAT_JSON]))
    local_day = recent(30).astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    live.police.large_value_report(local_day)
    _stop(live)  # flushes the trail and closes it with an anchor

    report = verify(d)
    assert report.ok, report.problem
    kinds = _by_kind(d)
    decisions = kinds["decision"]
    assert [r["rpc"] for r in decisions] == (["ScreenTransaction"] * 3 + ["ScreenBatch"] * 3
                                             + ["ScreenStream"])
    allowed = decisions[0]
    assert allowed.items() >= {
        "by": "test-bank", "role": "bank", "institution": "BANK01", "txn": allow.transaction_id,
        "payer": payer, "payee": payee, "amount_minor": 5_000, "currency": "CNY",
        "action": "ALLOW", "duplicate": False, "policy": policy}.items()
    assert decisions[1]["duplicate"] and decisions[1]["txn"] == allow.transaction_id
    assert decisions[2]["payee"] == mule and decisions[2]["action"] == pb.Action.Name(
        stopped.action).removeprefix("ACTION_")
    assert decisions[2]["reasons"] == [r.code for r in stopped.reasons]
    (call,) = kinds["call_decision"]
    assert call["caller_number"] == "+8613800000001" and call["role"] == "telecom"
    (watch,) = kinds["watchlist"]
    assert watch["by"] == "test-police" and watch["added"] == 1
    assert watch["upserts"][0].items() >= {"kind": "account", "value": mule,
                                           "reason": "case 17"}.items()
    (feedback,) = kinds["feedback"]
    assert feedback["verdict"] == "FEEDBACK_VERDICT_FALSE_ALARM"
    assert feedback["txn"] == allow.transaction_id and feedback["note"] == "customer confirmed"
    queries = kinds["query"]
    assert [(q["role"], q["account"], q["masked"]) for q in queries] == [
        ("police", payer, False), ("regulator", mule, True)]
    (export,) = kinds["export"]
    assert export["centre"] == mule and export["formats"] == ["json"] and export["nodes"] >= 1
    (report_record,) = kinds["report"]
    assert report_record["date"] == local_day and report_record["by"] == "test-police"
    for rec in read_records(d):
        if rec["kind"] not in ("open", "anchor"):
            assert rec["policy"] == policy and rec["at"].endswith("Z"), rec
    assert kinds["anchor"][-1]["reason"] == "stop"


def test_the_ordinary_log_stays_masked(audited: tuple[Live, Path]) -> None:
    """The trail holds the account in clear; the server's own log never does."""
    live, d = audited
    payee = uid("payee")
    live.bank.screen(transaction(uid("t"), recent(), uid("payer"), payee, 3_000_000))
    live.police.query_account(payee)
    _stop(live)
    assert any(r.get("payee") == payee for r in read_records(d))
    assert payee not in live.log.getvalue()
    assert "audit_anchor" in live.log.getvalue()


def test_refused_access_is_in_the_trail(audited: tuple[Live, Path]) -> None:
    """A bank asking for a case graph (police only) and a call with an unknown token: each a
    'denied' record with the method, the outcome, who (when known) and from where."""
    live, d = audited
    with pytest.raises(grpc.RpcError) as denied:
        live.bank.export_case_graph(pb.ExportCaseGraphRequest(account_id=uid("a"), hops=1))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    stranger = ScreeningClient(live.server.address, "not-a-token")
    with pytest.raises(grpc.RpcError) as unknown:
        stranger.query_account(uid("a"))
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stranger.close()
    _stop(live)
    assert verify(d).ok
    refused = _by_kind(d)["denied"]
    assert [(r["rpc"], r["outcome"], r["by"], r["role"]) for r in refused] == [
        ("ExportCaseGraph", "permission_denied", "test-bank", "bank"),
        ("QueryAccount", "unauthenticated", "", "")]
    assert all(r["peer"] and r["policy"] == live.server.engine.policy.version for r in refused)


def test_a_stalled_writer_refuses_calls_before_they_change_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_pending records unwritten (a disk that fails), the next call is refused
    UNAVAILABLE naming [audit]; it changed nothing: once the disk is back the same transaction
    is decided as new, not as a duplicate, and every record is written."""
    d = tmp_path / "audit"
    live = _start(load_settings(overrides={
        "state": {"initial_accounts": 256},
        "audit": {"dir": str(d), "flush_interval_ms": 5.0, "max_pending": 2, "block_ms": 20.0}}))
    trail = live.server.audit
    assert trail is not None
    real = trail._write

    def full_disk(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    try:
        monkeypatch.setattr(trail, "_write", full_disk)
        payer = uid("payer")
        for _ in range(2):
            live.bank.screen(transaction(uid("t"), recent(), payer, uid("b"), 100))
        refused = transaction(uid("t"), recent(), payer, uid("b"), 100)
        with pytest.raises(grpc.RpcError) as info:
            live.bank.screen(refused)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "[audit] max_pending 2" in (info.value.details() or "")
        assert "No space left on device" in (info.value.details() or "")
        assert trail.stats()["failing"] == 1 and trail.stats()["refused"] == 1
        metrics = generate_latest(live.server.metrics.registry).decode()  # type: ignore[union-attr]
        assert "screening_audit_pending 2.0" in metrics and "screening_audit_refused 1.0" in metrics
        monkeypatch.setattr(trail, "_write", real)
        assert trail.flush()
        again = live.bank.screen(refused)
        assert not again.duplicate
    finally:
        _stop(live)
    decided = [r["txn"] for r in read_records(d) if r["kind"] == "decision"]
    assert len(decided) == 3 and decided[-1] == refused.transaction_id
    assert verify(d).ok


def test_sigterm_writes_every_queued_record_and_a_last_anchor(tmp_path: Path) -> None:
    """A `screening serve` process whose writer would wait a minute: on SIGTERM everything
    screened is in the trail, which ends with the stop anchor and verifies."""
    d = tmp_path / "audit"
    env = server_env()
    env.update(SCREENING_AUDIT__DIR=str(d), SCREENING_AUDIT__FLUSH_INTERVAL_MS="60000",
               SCREENING_AUDIT__ANCHOR_INTERVAL_S="3600")
    ids = [uid("t") for _ in range(5)]

    def action(client: ScreeningClient) -> None:
        for i, tid in enumerate(ids):
            client.screen(transaction(tid, recent(10 - i), "acct-sig-1", "acct-sig-2", 1000 + i))

    code, err = serve_process(["--no-auth"], free_port(), action, env=env)
    assert code == 0, err[-2000:]
    records = list(read_records(d))
    assert [r["txn"] for r in records if r["kind"] == "decision"] == ids
    assert all(r["by"] == "anonymous" and r["role"] == "admin" for r in records
               if r["kind"] == "decision")
    assert records[-1]["kind"] == "anchor" and records[-1]["reason"] == "stop"
    assert verify(d).ok
    assert records[-1]["hash"] in err  # the last anchor, logged for notarising
