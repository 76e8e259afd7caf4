"""Live policy changes: ReloadPolicy through a real channel, and SIGHUP on a `screening serve`
process; a bad policy is refused with its line and the running one stays."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from screening.auth import ROLES, add_token
from screening.client import ScreeningClient, transaction
from screening.policy import default_policy_text, load_policy
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, free_port, recent, serve_process, uid

OLD = "2015-01-05"
# a payment of exactly this amount between old accounts is ALLOW under the default policy
PROBE_FEN = 777_700

EXTRA_RULE = f"""

[[rule]]
code = "PROBE_AMOUNT"
message = "The amount the live-reload test watches for."
action = "WARN"
score = 10
when = ["amount == {PROBE_FEN}"]
"""


def _stricter(tag: str) -> str:
    return default_policy_text().replace('version = "', f'version = "{tag}-', 1) + EXTRA_RULE


def _probe_txn() -> pb.Transaction:
    return transaction(uid("t"), recent(), uid("a"), uid("m"), PROBE_FEN,
                       payer_opened=OLD, payee_opened=OLD)


def _probe(client: ScreeningClient) -> pb.Decision:
    return client.screen(_probe_txn())


def test_reload_swaps_the_policy_for_the_next_decision_only(fresh: Live) -> None:
    """After ReloadPolicy the next decision follows the new rules and names its version; a
    repeat of a decision made before still answers what it answered then (its reasons and
    version), and QueryAccount names the old decision's reasons by the old policy."""
    admin = fresh.client("admin")
    first = _probe_txn()
    before = fresh.bank.screen(first)
    assert before.action == pb.ACTION_ALLOW and list(before.reasons) == []

    reply = admin.reload_policy(_stricter("live"))
    assert reply.previous_version == before.policy_version
    assert reply.policy_version.startswith("default-live-")
    assert reply.transaction_rules >= 1

    after_txn = _probe_txn()
    after = fresh.bank.screen(after_txn)
    assert after.policy_version == reply.policy_version
    assert after.action == pb.ACTION_WARN
    assert [r.code for r in after.reasons] == ["PROBE_AMOUNT"]
    again = fresh.bank.screen(first)  # the same payment again: its first decision
    assert again.duplicate and again.policy_version == before.policy_version
    assert list(again.reasons) == []
    # a decision made under the new policy, seen from the police: its reasons by its own policy
    seen = fresh.police.query_account(after_txn.payer.account_id).recent_decisions
    assert [(d.policy_version, [r.code for r in d.reasons]) for d in seen] == [
        (reply.policy_version, ["PROBE_AMOUNT"])]

    # and back: the default again (empty text re-reads the configured file: the default)
    back = admin.reload_policy()
    assert back.previous_version == reply.policy_version
    assert back.policy_version == before.policy_version
    assert _probe(fresh.bank).action == pb.ACTION_ALLOW


def test_a_bad_policy_is_refused_with_its_line_and_nothing_changes(fresh: Live) -> None:
    """A policy with an unknown feature: INVALID_ARGUMENT naming policy_toml and the line; the
    running policy stays (the next decision has its version); a timezone change is refused."""
    admin = fresh.client("admin")
    running = _probe(fresh.bank).policy_version
    bad = default_policy_text().replace('version = "', 'version = "bad-', 1) + \
        '\n[[rule]]\ncode = "BROKEN"\nmessage = "m"\naction = "WARN"\nscore = 1\n' \
        'when = ["no_such_feature >= 1"]\n'
    with pytest.raises(grpc.RpcError) as info:
        admin.reload_policy(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    line = bad.splitlines().index('when = ["no_such_feature >= 1"]') + 1
    assert info.value.details().startswith(f"policy_toml: line {line}:"), info.value.details()
    assert "no_such_feature" in info.value.details()
    assert _probe(fresh.bank).policy_version == running

    moved = _stricter("tz").replace("timezone_offset_hours = 8", "timezone_offset_hours = 0")
    assert moved != _stricter("tz")
    with pytest.raises(grpc.RpcError) as info:
        admin.reload_policy(moved)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timezone_offset_hours" in info.value.details()
    assert _probe(fresh.bank).policy_version == running


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"admin"}))
def test_only_admin_may_reload_the_policy(live: Live, role: str) -> None:
    """Every other role gets PERMISSION_DENIED (and the policy does not change)."""
    running = _probe(live.bank).policy_version
    with pytest.raises(grpc.RpcError) as info:
        live.client(role).reload_policy(_stricter("denied"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _probe(live.bank).policy_version == running


def test_sighup_reloads_the_policy_file_and_keeps_the_old_one_when_it_is_bad(
        tmp_path: Path) -> None:
    """`screening serve --policy FILE`: rewrite FILE and send SIGHUP, the next decision follows
    it; write a broken FILE and SIGHUP again, the server logs policy_refused with the line and
    goes on deciding under the last good policy; SIGTERM still stops it cleanly."""
    policy = tmp_path / "policy.toml"
    policy.write_text(default_policy_text(), encoding="utf-8")
    tokens = tmp_path / "tokens.toml"
    token = add_token(tokens, "bank", "reload-test")
    seen: dict[str, pb.Decision] = {}

    def hup_twice(client: ScreeningClient, proc: subprocess.Popen[str]) -> None:
        first = _probe(client)
        assert first.action == pb.ACTION_ALLOW

        def after_hup(changed_from: str) -> pb.Decision:
            proc.send_signal(signal.SIGHUP)
            end = time.time() + 30
            while True:
                d = _probe(client)
                if d.policy_version != changed_from or time.time() > end:
                    return d
                time.sleep(0.05)

        policy.write_text(_stricter("hup"), encoding="utf-8")
        second = seen["second"] = after_hup(first.policy_version)
        assert second.policy_version.startswith("default-hup-")
        assert second.action == pb.ACTION_WARN

        policy.write_text(_stricter("hup2") + "\n[[rule]]\ncode = 12\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)  # the loop looks at the flag at least every 0.5 s
        assert _probe(client).policy_version == second.policy_version

    status, err = serve_process(["--tokens", str(tokens), "--policy", str(policy)], free_port(),
                                lambda _client: None, token=token, cwd=tmp_path,
                                signals=hup_twice)
    second = seen["second"]
    assert status == 0
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    swapped = [e for e in lines if e["event"] == "policy_swapped"]
    refused = [e for e in lines if e["event"] == "policy_refused"]
    assert len(swapped) == 1 and swapped[0]["by"] == "SIGHUP"
    assert len(refused) == 1 and f"{policy}:" in refused[0]["error"]
    assert refused[0]["running"] == second.policy_version


def test_a_rule_past_the_63rd_is_named_in_every_reply_and_survives_a_checkpoint(fresh: Live) -> None:
    """The default policy fills the first reason word (63 rules) and more; a risk team's next
    rule sits in the second: unary and columnar replies name it (the columnar one in
    reason_bits_high), and a checkpoint and restore keep it."""
    from screening.client import decisions_of_columns
    from screening.engine import Engine
    from screening.store import MemoryStore, restore_engine, save_checkpoint

    shipped = len(load_policy().txn_rules)
    assert shipped >= 63  # else the extra rule would not reach the second word: this test's point
    reply = fresh.client("admin").reload_policy(_stricter("wide"))
    assert reply.transaction_rules == shipped + 1
    unary = _probe(fresh.bank)
    assert [r.code for r in unary.reasons] == ["PROBE_AMOUNT"]
    batch = fresh.bank.screen_batch([_probe_txn(), transaction(uid("t"), recent(), uid("a"), uid("m"), 5_000,
                                                               payer_opened=OLD, payee_opened=OLD)],
                                    columnar=True)
    cols = batch.columns
    assert list(cols.reason_bits) == [0, 0] and list(cols.reason_bits_high) == [1 << (shipped - 63), 0]
    assert [d["reasons"] for d in decisions_of_columns(cols)] == [["PROBE_AMOUNT"], []]
    engine = fresh.server.engine
    store = MemoryStore()
    save_checkpoint(engine, store)
    restored = Engine(engine.settings, engine.policy)
    restore_engine(restored, store)
    assert [engine.policy.fired(r.reason_bits)[0].code
            for r in restored.decisions.records() if r.reason_bits] == ["PROBE_AMOUNT", "PROBE_AMOUNT"]


def test_a_reloaded_policys_decision_shows_the_features_its_own_rules_read(fresh: Live) -> None:
    """Two policies whose extra rules (past the 63rd) fire on the same payment but read different
    features: each decision shows what its own policy's rule read (the features were once cached
    by reason bits alone, and the second policy's decision showed the first one's)."""
    admin = fresh.client("admin")
    admin.reload_policy(_stricter("first"))
    assert set(_probe(fresh.bank).features) == {"amount"}
    other = EXTRA_RULE.replace(f'when = ["amount == {PROBE_FEN}"]',
                               f'when = ["amount == {PROBE_FEN}", "payer_is_person == 1"]')
    admin.reload_policy(default_policy_text().replace('version = "', 'version = "second-', 1) + other)
    assert set(_probe(fresh.bank).features) == {"amount", "payer_is_person"}
