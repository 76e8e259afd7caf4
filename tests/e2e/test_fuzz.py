"""Hostile input through a real channel (``python -m bench.fuzz``): a fixed, seeded budget finds
nothing, and the fuzzer's checks do fail on what they are there to catch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from bench.fuzz import FLAVORS, METHODS, Fuzzer, FuzzRequest, fuzz, problems_of
from screening.client import transaction
from screening.config import load_settings
from screening.policy import default_policy_text
from tests.conftest import TOKENS, Live, _start, _stop, recent, uid

BUDGET = 1500
ROLE_TOKENS = {role: token for token, (_, role, *_) in TOKENS.items()}


def test_a_seeded_fuzz_budget_finds_no_failure() -> None:
    """1,500 requests of every RPC and flavor: no INTERNAL, no trace, no state change on refusal."""
    summary = fuzz(BUDGET, seed=14)
    shown = json.dumps(summary["failures"][:5], indent=1, ensure_ascii=False)
    assert summary["failure_count"] == 0, shown
    assert summary["requests"] >= BUDGET
    assert set(summary["by_method"]) == set(METHODS)
    assert set(summary["by_flavor"]) == set(FLAVORS)
    # it reached the handlers, the validation and the auth checks, and built up state
    for code in ("OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED"):
        assert summary["statuses"].get(code, 0) > 0, (code, summary["statuses"])
    assert summary["state_checks"]["unchanged_expected"] > 50
    assert summary["state_checks"]["changed_expected"] > 5
    assert summary["server"]["exit_code"] == 0


@pytest.mark.parametrize(("code", "details", "why"), [
    ("INTERNAL", "internal error (reference 0123456789ab)", "status INTERNAL"),
    ("UNKNOWN", "Exception calling application: boom", "status UNKNOWN"),
    ("INVALID_ARGUMENT", 'Traceback (most recent call last):\n  File "x.py", line 1', "traceback"),
    ("INVALID_ARGUMENT", 'amount: File "/srv/screening/convert.py", line 9', "source line"),
    ("INVALID_ARGUMENT", "request: ValueError('bad')", "exception repr"),
    ("NOT_FOUND", "<class 'KeyError'>", "class repr"),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded", "hang"),
])
def test_the_classifier_flags_internal_errors_traces_and_hangs(code: str, details: str, why: str) -> None:
    """Each kind of failure is named; an ordinary refusal naming its field is not one."""
    problems = problems_of("ScreenTransaction", code, details)
    assert problems and any(why in p for p in problems), problems
    assert problems_of("ScreenTransaction", "INVALID_ARGUMENT",
                       "transactions[3].amount.minor_units: must be > 0") == []
    assert problems_of("ScreenTransaction", "DEADLINE_EXCEEDED",
                       "deadline too short: 1 ms left, ScreenTransaction of 1 item(s) ...") == []


def test_the_classifier_flags_unexpected_codes_replies_and_trailing_metadata() -> None:
    """A wrong token answered OK, a reply that is not the method's, a trace in trailers."""
    assert problems_of("QueryAccount", "OK", "", expect=frozenset({"UNAUTHENTICATED"}))
    assert problems_of("QueryAccount", "OK", "", reply=b"\xff\xff\xff\x07garbage")
    assert problems_of("QueryAccount", "NOT_FOUND", "x",
                       trailing=(("debug", 'File "engine.py", line 3, in screen'),))


def _fuzzer(live: Live, digests: list[str]) -> Fuzzer:
    states: Iterator[str] = iter(digests)
    return Fuzzer(live.server.address, ROLE_TOKENS, digest=lambda: next(states))


def test_the_state_check_fails_when_a_refused_round_changes_the_digest(live: Live) -> None:
    """A refused request with the digest moving under it is a failure; without, it is not."""
    garbage = FuzzRequest("ScreenTransaction", "raw", b"\xff\xff\xff\x07garbage", "bank",
                          (("authorization", f"Bearer {ROLE_TOKENS['bank']}"),))
    steady = _fuzzer(live, ["a", "a"])
    steady.run_round([garbage])
    assert steady.failure_count == 0 and steady.checks["unchanged_expected"] == 1
    moved = _fuzzer(live, ["a", "b"])
    moved.run_round([garbage])
    assert [f.kind for f in moved.failures] == ["state"]
    assert moved.by_method["ScreenTransaction"]["INVALID_ARGUMENT"] == 1


def test_the_state_check_fails_when_a_new_decision_changes_nothing(live: Live) -> None:
    """An accepted payment that leaves the digest as it was is a failure too."""
    txn = transaction(uid("t"), recent(), uid("a"), uid("b"), 100).SerializeToString()
    payment = FuzzRequest("ScreenTransaction", "valid", txn, "bank",
                          (("authorization", f"Bearer {ROLE_TOKENS['bank']}"),))
    stuck = _fuzzer(live, ["a", "a"])
    stuck.run_round([payment])
    assert [f.kind for f in stuck.failures] == ["state"]
    assert stuck.checks["changed_expected"] == 1


def test_an_exception_in_a_handler_is_caught_through_a_real_channel() -> None:
    """A server whose handler raises (grpc answers UNKNOWN) and one that leaks a trace fail."""

    def boom(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        raise ValueError("boom")

    def leak(_request: bytes, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      'Traceback (most recent call last):\n  File "convert.py", line 1')

    handlers = {"ScreenTransaction": grpc.unary_unary_rpc_method_handler(boom),
                "QueryAccount": grpc.unary_unary_rpc_method_handler(leak)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("screening.v1.Screening", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        fuzzer = Fuzzer(f"127.0.0.1:{port}", ROLE_TOKENS, timeout=10)
        fuzzer.send(FuzzRequest("ScreenTransaction", "valid", b"", "bank"))
        fuzzer.send(FuzzRequest("QueryAccount", "valid", b"", "police"))
        fuzzer.close()
    finally:
        server.stop(0)
    details = [f.detail for f in fuzzer.failures]
    assert any("status UNKNOWN" in d for d in details), details
    assert any("QueryAccount" in d and "traceback" in d for d in details), details


def test_reload_policy_with_a_list_for_an_action_is_invalid_argument(live: Live) -> None:
    """Found by the fuzzer: a rule's `action = [1, 2]` (or a list in `report`) answered
    INTERNAL (a TypeError in the policy parser); now INVALID_ARGUMENT naming the line."""
    admin = live.client("admin")
    before = admin.query_account(uid("acct")).account_id  # the server answers
    text = default_policy_text()
    action = next(line for line in text.splitlines() if line.startswith("action = "))
    report = next(line for line in text.splitlines() if line.startswith("report = "))
    for spoiled in (text.replace(action, "action = [1, 2]", 1), text.replace(action, "action = {}", 1),
                    text.replace(report, "report = [[1]]", 1)):
        with pytest.raises(grpc.RpcError) as info:
            admin.reload_policy(spoiled)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert (info.value.details() or "").startswith("policy_toml: line ")
    assert admin.query_account(uid("acct")).account_id != before  # still answering


def test_fuzzing_a_running_server_checks_state_through_query_account() -> None:
    """`--server ADDR --token ROLE=TOKEN`: someone else's server (its failure throttle off), the
    state compared through the QueryAccount reports of the fuzzer's accounts."""
    srv = _start(load_settings(overrides={"auth": {"max_failures": 0}}))
    try:
        summary = fuzz(200, seed=3, server=srv.server.address, tokens=ROLE_TOKENS)
    finally:
        _stop(srv)
    assert summary["failure_count"] == 0, json.dumps(summary["failures"][:3], indent=1)
    assert summary["requests"] >= 200 and not summary["server"]["own"]
    assert summary["state_checks"]["unchanged_expected"] > 5
