"""Transaction and call ids are the calling institution's and bound to their content, through a
real server: a retry is a duplicate; a reused id for another payment is refused and changes
nothing; another institution's ids never collide with a bank's."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from screening.client import call_event, transaction, watch_entry
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, recent, uid

OLD = "2015-01-05"


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _listed(live: Live) -> str:
    """A payee account on the police watchlist."""
    mule = uid("mule")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "case 17", "police")])
    return mule


def _out_count(live: Live, account: str) -> float:
    report = live.police.query_account(account)
    return report.features["out_count_24h"] if report.known else 0.0


def test_reused_id_for_a_payment_to_a_watchlisted_account_is_refused(live: Live) -> None:
    """The review's case: an id used before, now for another payer, payee and amount to a listed
    mule, is ALREADY_EXISTS naming the field, never the first payment's ALLOW; nothing counted."""
    tid, payer, when = uid("t"), uid("a"), recent(5)
    first = live.bank.screen(transaction(tid, when, payer, uid("b"), 1_000))
    assert first.action == pb.ACTION_ALLOW and not first.duplicate
    mule, victim = _listed(live), uid("victim")
    err = _refused(lambda: live.bank.screen(transaction(tid, when, victim, mule, 900_000)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == "transaction_id: already used for a different payment (payer differs)"
    assert not live.police.query_account(victim).known
    assert not live.police.query_account(mule).recent_decisions
    assert _out_count(live, payer) == 1


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": 1_001}, "amount"),
    ({"currency": "USD"}, "amount"),
    ({"memo": "other"}, "memo"),
    ({"device_id": "dev-2"}, "device_id"),
    ({"payer_phone": "13800009999"}, "payer_phone"),
    ({"channel": pb.CHANNEL_ATM}, "channel"),
    ({"cross_border": True}, "cash or cross_border"),
    ({"institution": "OTHER-BANK"}, "payer"),
    ({"payee_opened": "2016-02-03"}, "payee"),
])
def test_same_id_with_other_content_names_the_field_that_differs(
        live: Live, change: dict[str, object], field: str) -> None:
    """Every part of a payment is bound to its id: the refusal says which one differs."""
    tid, payer, payee = uid("t"), uid("a"), uid("b")
    when = recent(5)
    base: dict[str, object] = {"amount": 1_000, "currency": "CNY", "memo": "rent",
                               "device_id": "dev-1", "payer_phone": "13800001234",
                               "channel": pb.CHANNEL_MOBILE_APP, "cross_border": False,
                               "institution": "B1", "payee_opened": OLD}

    def msg(**kw: object) -> pb.Transaction:
        a = {**base, **kw}
        return transaction(tid, when, payer, payee, a.pop("amount"), **a)  # type: ignore[arg-type]

    live.bank.screen(msg())
    err = _refused(lambda: live.bank.screen(msg(**change)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == f"transaction_id: already used for a different payment ({field} differs)"
    assert live.bank.screen(msg()).duplicate  # the first payment is still what the id names
    assert _out_count(live, payer) == 1


def test_another_institution_may_use_the_same_id(live: Live) -> None:
    """Ids are per calling institution: a payment institution's id equal to a bank's is its own
    payment, screened (here: stopped, the payee is listed), not the bank's ALLOW."""
    tid = uid("t")
    assert not live.bank.screen(transaction(tid, recent(5), uid("a"), uid("b"), 1_000)).duplicate
    mule = _listed(live)
    d = live.client("payment").screen(transaction(tid, recent(5), uid("victim"), mule, 900_000))
    assert not d.duplicate and d.action == pb.ACTION_STOP_PAYMENT
    assert "PAYEE_WATCHLISTED" in [r.code for r in d.reasons]


def test_batch_with_a_reused_id_is_refused_whole(live: Live) -> None:
    """All or nothing: a batch whose third payment reuses an id for other content is refused
    naming transactions[2]; none of its payments is counted or remembered."""
    payer, tid, when = uid("a"), uid("t"), recent(9)
    live.bank.screen(transaction(tid, when, payer, uid("b"), 1_000))
    fresh = [transaction(uid("t"), recent(8), payer, uid("c"), 2_000 + i) for i in range(2)]
    err = _refused(lambda: live.bank.screen_batch(
        [*fresh, transaction(tid, when, payer, uid("d"), 1_000)]))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == ("transactions[2].transaction_id: already used for a different "
                             "payment (payee differs)")
    assert _out_count(live, payer) == 1
    assert not any(d.duplicate for d in live.bank.screen_batch(fresh).decisions)


def test_same_id_twice_in_one_batch_with_other_content_is_refused(live: Live) -> None:
    """Inside one batch too: the second use names the first and the field."""
    payer, tid = uid("a"), uid("t")
    when = recent(3)
    payee = uid("b")
    err = _refused(lambda: live.bank.screen_batch([transaction(tid, when, payer, payee, 700),
                                                   transaction(tid, when, payer, payee, 800)]))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == ("transactions[1].transaction_id: already used for a different "
                             "payment in this batch (transactions[0]; amount differs)")
    assert _out_count(live, payer) == 0


def test_reused_id_ends_a_stream_with_already_exists(live: Live) -> None:
    """On a stream the refusal ends the stream, after the decisions before it."""
    tid, payer, payee, when = uid("t"), uid("a"), uid("b"), recent(5)
    live.bank.screen(transaction(tid, when, payer, payee, 1_000))
    answers: list[pb.Decision] = []
    msgs = [transaction(uid("t"), recent(4), payer, uid("c"), 10),
            transaction(tid, when, payer, payee, 5_000)]
    err = _refused(lambda: answers.extend(live.bank.screen_stream(iter(msgs))))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "transaction_id: already used for a different payment (amount differs)" in (
        err.details() or "")
    assert len(answers) == 1 and _out_count(live, payer) == 2


def test_call_ids_are_per_operator(live: Live) -> None:
    """A call id another operator used is a new call here (not its duplicate, not a refusal for
    another caller); the same operator reusing it for another number is still refused."""
    cid = uid("c")
    a = live.telecom.report_call(call_event(cid, recent(), "+8617100000001", "13700000001"))
    b = live.client("admin").report_call(call_event(cid, recent(), "+8617100000002", "13700000002"))
    assert not a.duplicate and not b.duplicate
    err = _refused(lambda: live.telecom.report_call(
        call_event(cid, recent(), "+8617100000002", "13700000001")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("caller_number:")


def test_two_institutions_whose_callers_share_a_name_keep_their_ids_apart() -> None:
    """Ids were scoped by the caller's name only: two banks whose tokens (or certificates' CNs)
    are both named "core" shared one scope, so the second bank's payment under an id the first
    used was refused ALREADY_EXISTS telling it what differs from the other bank's payment
    ("amount differs"), and the same content was answered with the other bank's decision as a
    duplicate, uncounted. The scope is the institution and the name."""
    from screening.auth import Authenticator
    from screening.client import ScreeningClient
    from screening.config import load_settings
    from screening.logs import configure_logging
    from screening.server import start_server

    tokens = {"tok-a": ("core", "bank", "BANK01"), "tok-b": ("core", "bank", "BANK02")}
    settings = load_settings(overrides={"state": {"initial_accounts": 256}})
    running = start_server(settings, masker=configure_logging(settings.log),
                           auth=Authenticator.with_tokens(tokens), port=0)
    try:
        with ScreeningClient(running.address, "tok-a") as a, \
                ScreeningClient(running.address, "tok-b") as b:
            a.wait_ready()
            when, payer, payee = recent(5), uid("a"), uid("b")
            tid, tid2 = uid("t"), uid("t")
            for t in (tid, tid2):
                assert not a.screen(transaction(t, when, payer, payee, 1_000)).duplicate
            assert not b.screen(transaction(tid, when, uid("c"), uid("d"), 250_000)).duplicate
            assert not b.screen(transaction(tid2, when, payer, payee, 1_000)).duplicate
            # each bank's own retry is still its duplicate
            assert a.screen(transaction(tid, when, payer, payee, 1_000)).duplicate
            assert b.screen(transaction(tid2, when, payer, payee, 1_000)).duplicate
    finally:
        running.stop(0.5)


def test_a_call_report_repeated_with_other_content_is_refused_not_answered_as_a_duplicate(
        live: Live) -> None:
    """The same call id and numbers at hang-up again with another duration (or outcome, or
    caller class) was answered with the first hang-up's decision as a duplicate; it is refused
    ALREADY_EXISTS naming what differs, as a transaction id is. The same report again is
    still a duplicate."""
    cid, when = uid("c"), recent(5)
    caller, callee = "+8617100000091", "13700000091"
    ring = live.telecom.report_call(call_event(cid, when, caller, callee))
    end = live.telecom.report_call(call_event(cid, when, caller, callee, duration_seconds=5,
                                              outcome=pb.CALL_OUTCOME_ANSWERED))
    assert not ring.duplicate and not end.duplicate
    err = _refused(lambda: live.telecom.report_call(
        call_event(cid, when, caller, callee, duration_seconds=900,
                   outcome=pb.CALL_OUTCOME_ANSWERED)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (err.details() or "").startswith("call_id:") and "duration_seconds" in (err.details() or "")
    again = live.telecom.report_call(call_event(cid, when, caller, callee, duration_seconds=5,
                                                outcome=pb.CALL_OUTCOME_ANSWERED))
    assert again.duplicate
    assert live.telecom.report_call(call_event(cid, when, caller, callee)).duplicate
