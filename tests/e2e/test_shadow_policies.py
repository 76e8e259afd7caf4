"""Shadow policies on a real server: decided beside the active one on the same features, never
answered, counted, written, and compared by `screening.shadow.report`."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from screening.auth import Authenticator
from screening.client import call_event, transaction, watch_entry
from screening.config import load_settings
from screening.errors import ConfigError
from screening.policy import default_policy_text
from screening.server import start_server
from screening.shadow import report
from screening.v1 import screening_pb2 as pb
from tests.conftest import TOKENS, Live, _start, _stop, recent, uid

OLD = "2015-01-05"
PROBE_FEN = 777_700
EXTRA_RULE = f"""

[[rule]]
code = "PROBE_AMOUNT"
message = "The amount the shadow test watches for."
action = "WARN"
score = 10
report = ["suspicious"]
when = ["amount == {PROBE_FEN}"]
"""


PROBE_CALL_SECONDS = 4_321
CALL_RULE = f"""

[[call_rule]]
code = "PROBE_CALL"
message = "The call the shadow test watches for."
action = "BLOCK"
score = 10
when = ["duration_seconds == {PROBE_CALL_SECONDS}"]
"""


def _server(tmp_path: Path, shadow_text: str) -> tuple[Live, Path]:
    shadow = tmp_path / "candidate.toml"
    shadow.write_text(shadow_text, encoding="utf-8")
    log = tmp_path / "shadow.jsonl"
    live = _start(load_settings(overrides={
        "policy": {"shadow_files": str(shadow), "shadow_log": str(log)},
        "server": {"latency_budget_ms": 1000.0}}))
    return live, log


def _sample(live: Live, name: str, **labels: str) -> float:
    assert live.server.metrics is not None
    return live.server.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_shadow_rule_is_decided_counted_written_and_reported_but_never_answered(
        tmp_path: Path) -> None:
    """The candidate adds a WARN rule: the client still gets the active ALLOW; the shadow's WARN
    is in the metrics, the log and the report; a payment both stop counts on both sides."""
    candidate = default_policy_text().replace('version = "', 'version = "candidate-', 1) + EXTRA_RULE
    live, log = _server(tmp_path, candidate)
    try:
        probe = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), PROBE_FEN,
                                             payer_opened=OLD, payee_opened=OLD))
        assert probe.action == pb.ACTION_ALLOW and list(probe.reasons) == []
        quiet = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 3_000,
                                             payer_opened=OLD, payee_opened=OLD))
        assert quiet.action == pb.ACTION_ALLOW
        mule = uid("mule")
        live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "case", "police")])
        stop = live.bank.screen(transaction(uid("t"), recent(), uid("a"), mule, 50_000))
        assert stop.action == pb.ACTION_STOP_PAYMENT
        version = live.server.engine.shadows[0].version
        assert version.startswith("default-candidate-")
        assert _sample(live, "screening_shadow_decisions_total", shadow=version, event="transaction",
                       action="WARN") == 1
        assert _sample(live, "screening_shadow_decisions_total", shadow=version, event="transaction",
                       action="STOP_PAYMENT") == 1
        assert _sample(live, "screening_shadow_disagreements_total", shadow=version, event="transaction") == 1
    finally:
        _stop(live)  # the recorder writes what it holds on the way out

    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    decided = {r["transaction_id"]: r for r in lines if r["kind"] == "decision"}
    assert set(decided) == {probe.transaction_id, stop.transaction_id}  # the quiet one: nothing fired
    p = decided[probe.transaction_id]
    assert (p["active_action"], p["active_reasons"]) == ("ALLOW", [])
    assert (p["shadow_action"], p["shadow_reasons"]) == ("WARN", ["PROBE_AMOUNT"])
    assert p["amount_fen"] == PROBE_FEN and p["active"] == probe.policy_version
    s = decided[stop.transaction_id]
    assert s["active_action"] == s["shadow_action"] == "STOP_PAYMENT"
    assert [r["transactions"] for r in lines if r["kind"] == "totals"][-1] == 3
    assert mule not in log.read_text(encoding="utf-8")  # ids of transactions, not of accounts

    text = report(log)
    assert f"shadow policy {version}" in text and "3 transactions decided by both" in text
    assert "  alerted by this side only" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("alerted by this"))
    assert row.split()[-2:] == ["0", "1"]  # the shadow alone warned on the probe
    stopped = next(line for line in text.splitlines() if line.strip().startswith("money stopped"))
    assert stopped.split()[-2:] == ["¥500.00", "¥500.00"]
    probe_row = next(line for line in text.splitlines() if line.strip().startswith("PROBE_AMOUNT"))
    assert probe_row.split()[1:3] == ["0", "1"]


def test_a_shadow_equal_to_the_active_policy_never_disagrees(tmp_path: Path) -> None:
    """The same rules on the same features give the same decisions (decide_rows = process)."""
    live, _log = _server(tmp_path, default_policy_text())
    try:
        for amount in (100, 4_500, 600_000, 5_100_000, 60_000_000):
            live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), amount))
        callee = "+8613700" + uid("")[-6:]
        actions = set()
        for i, cls in enumerate((pb.NUMBER_CLASS_MOBILE, pb.NUMBER_CLASS_INTERNATIONAL,
                                 pb.NUMBER_CLASS_VIRTUAL_OPERATOR)):
            caller = "+8617000" + uid("")[-6:]
            if cls == pb.NUMBER_CLASS_INTERNATIONAL:  # ringing a second number: its first call
                actions.add(live.telecom.report_call(call_event(
                    uid("c"), recent(35), caller, "+8613800" + uid("")[-6:], caller_class=cls)).action)
            actions.add(live.telecom.report_call(call_event(
                uid("c"), recent(30 - i), caller, callee, duration_seconds=300, caller_class=cls)).action)
        assert pb.CALL_ACTION_WARN_CALLEE in actions  # a first call from a number abroad ringing others
        version = live.server.engine.shadows[0].version
        for event, names, n in (("transaction", ("ALLOW", "WARN", "HOLD", "STOP_PAYMENT", "FREEZE"), 5),
                                ("call", ("ALLOW", "WARN_CALLEE", "BLOCK"), 4)):
            decided = sum(_sample(live, "screening_shadow_decisions_total", shadow=version,
                                  event=event, action=a) for a in names)
            assert decided == n
            assert _sample(live, "screening_shadow_disagreements_total", shadow=version, event=event) == 0
    finally:
        _stop(live)


def test_a_bad_shadow_policy_stops_start_up_naming_its_line(tmp_path: Path) -> None:
    """A shadow file that does not validate is a start-up error with file:line."""
    bad = tmp_path / "bad.toml"
    bad.write_text(default_policy_text() + '\n[[rule]]\ncode = "X_RULE"\nmessage = "m"\n'
                   'action = "WARN"\nscore = 1\nwhen = ["nope >= 1"]\n', encoding="utf-8")
    settings = load_settings(overrides={"policy": {"shadow_files": str(bad)}})
    with pytest.raises(ConfigError, match=rf"{bad}:\d+: "):
        start_server(settings, port=0, auth=Authenticator.with_tokens(TOKENS))


def test_reload_re_reads_the_shadow_files_and_a_bad_one_keeps_the_running_set(
        tmp_path: Path) -> None:
    """SIGHUP (``RunningServer.reload_policy``) re-reads the shadow files too: an edited
    candidate decides from the next transaction, its log lines name it; one that does not load
    is refused and the running set stays."""
    first = default_policy_text().replace('version = "', 'version = "cand1-', 1)
    live, log = _server(tmp_path, first)
    try:
        before = live.server.engine.shadows[0].version
        live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), PROBE_FEN,
                                     payer_opened=OLD, payee_opened=OLD))
        second = default_policy_text().replace('version = "', 'version = "cand2-', 1) + EXTRA_RULE
        (tmp_path / "candidate.toml").write_text(second, encoding="utf-8")
        assert live.server.reload_policy(by="test") is True
        after = live.server.engine.shadows[0].version
        assert after != before and after.startswith("default-cand2-")
        probe = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), PROBE_FEN,
                                             payer_opened=OLD, payee_opened=OLD))
        assert probe.action == pb.ACTION_ALLOW
        assert _sample(live, "screening_shadow_decisions_total", shadow=after, event="transaction",
                       action="WARN") == 1
        (tmp_path / "candidate.toml").write_text(second + "\n[[rule]]\nbroken", encoding="utf-8")
        assert live.server.reload_policy(by="test") is False
        assert live.server.engine.shadows[0].version == after
    finally:
        _stop(live)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    warned = [r for r in lines if r["kind"] == "decision" and r["shadow_action"] == "WARN"]
    assert [(r["transaction_id"], r["shadow"]) for r in warned] == [(probe.transaction_id, after)]
    totals = {r["shadow"]: r["transactions"] for r in lines if r["kind"] == "totals"}
    assert totals == {before: 1, after: 1}


def test_the_reload_rpc_re_reads_the_shadow_files_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    """ReloadPolicy (no policy text: the configured files) re-reads the shadow files as SIGHUP
    does. A shadow file that does not load refuses the whole reload with FAILED_PRECONDITION
    naming the file: neither the active policy nor the running shadows change."""
    first = default_policy_text().replace('version = "', 'version = "cand1-', 1)
    live, _log = _server(tmp_path, first)
    admin = live.client("admin")
    try:
        active, before = live.server.engine.policy.version, live.server.engine.shadows[0].version
        second = default_policy_text().replace('version = "', 'version = "cand2-', 1) + EXTRA_RULE
        (tmp_path / "candidate.toml").write_text(second, encoding="utf-8")
        reply = admin.reload_policy()
        assert reply.policy_version == active
        after = live.server.engine.shadows[0].version
        assert after != before and after.startswith("default-cand2-")

        (tmp_path / "candidate.toml").write_text(second + "\n[[rule]]\nbroken", encoding="utf-8")
        with pytest.raises(grpc.RpcError) as err:
            admin.reload_policy()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "candidate.toml" in (err.value.details() or "")
        assert live.server.engine.shadows[0].version == after
        assert live.server.engine.policy.version == active
    finally:
        _stop(live)



def test_a_shadow_call_rule_decides_call_reports_counted_written_and_reported(tmp_path: Path) -> None:
    """Calls are decided by the shadows too: a candidate call rule that would block the probe
    call leaves the operator's answer ALLOW, and is counted (``event="call"``), written (call
    ids, no numbers) and in the report's calls part, by rule."""
    candidate = default_policy_text().replace('version = "', 'version = "calls-', 1) + CALL_RULE
    live, log = _server(tmp_path, candidate)
    caller, callee = "+8613800" + uid("")[-6:], "+8613900" + uid("")[-6:]
    try:
        probe = live.telecom.report_call(call_event(uid("c"), recent(20), caller, callee,
                                                    duration_seconds=PROBE_CALL_SECONDS))
        assert probe.action == pb.CALL_ACTION_ALLOW and list(probe.reasons) == []
        other = live.telecom.report_call(call_event(uid("c"), recent(10), callee, caller,
                                                    duration_seconds=60))
        assert other.action == pb.CALL_ACTION_ALLOW
        version = live.server.engine.shadows[0].version
        assert _sample(live, "screening_shadow_decisions_total", shadow=version, event="call",
                       action="BLOCK") == 1
        assert _sample(live, "screening_shadow_decisions_total", shadow=version, event="call",
                       action="ALLOW") == 1
        assert _sample(live, "screening_shadow_disagreements_total", shadow=version, event="call") == 1
        assert _sample(live, "screening_shadow_decisions_total", shadow=version,
                       event="transaction", action="BLOCK") == 0
    finally:
        _stop(live)
    text = log.read_text(encoding="utf-8")
    assert caller not in text and callee not in text and caller[1:] not in text
    lines = [json.loads(line) for line in text.splitlines()]
    calls = [r for r in lines if r["kind"] == "call"]
    assert [(r["call_id"], r["active_action"], r["shadow_action"], r["shadow_reasons"])
            for r in calls] == [(probe.call_id, "ALLOW", "BLOCK", ["PROBE_CALL"])]
    assert [(r["transactions"], r["calls"]) for r in lines if r["kind"] == "totals"][-1] == (0, 2)

    out = report(log)
    assert "2 calls, 1 where a rule fired" in out
    blocked = next(line for line in out.splitlines() if line.strip().startswith("BLOCK"))
    assert blocked.split()[-2:] == ["0", "1"]
    rule = next(line for line in out.splitlines() if line.strip().startswith("PROBE_CALL"))
    assert rule.split()[1:] == ["0", "1"]


def test_the_report_adds_up_the_runs_of_a_log_and_an_idle_server_writes_no_totals(
        tmp_path: Path) -> None:
    """A restarted server appends to the same log and counts from zero again: the report adds
    each run's last totals (2 + 3 transactions), and a server with no traffic writes no new
    totals line every second (one at most, when its count changed)."""
    candidate = default_policy_text().replace('version = "', 'version = "runs-', 1)
    for amounts in ((1_000, 2_000), (3_000, 4_000, 5_000)):
        live, log = _server(tmp_path, candidate)
        try:
            for amount in amounts:
                live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), amount))
            live.server.shadow.flush()  # type: ignore[union-attr]
            written = log.read_text(encoding="utf-8").count('"totals"')
            live.server.shadow.flush()  # type: ignore[union-attr]
            live.server.shadow.flush()  # type: ignore[union-attr]
            assert log.read_text(encoding="utf-8").count('"totals"') == written
        finally:
            _stop(live)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    runs = {r["run"] for r in lines if r["kind"] == "totals"}
    assert len(runs) == 2
    assert "5 transactions decided by both" in report(log)
