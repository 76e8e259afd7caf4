"""Every RPC, every decision path, bad input and idempotency, through a real channel."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from screening.client import ScreeningClient, call_event, transaction, watch_entry
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, recent, uid

OLD = "2015-01-05"


def _codes(decision: pb.Decision | pb.CallDecision) -> list[str]:
    return [r.code for r in decision.reasons]


def _rpc_error(call) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# ---------------------------------------------------------------- ScreenTransaction
def test_ordinary_payment_is_allowed_with_no_reasons(live: Live) -> None:
    """A small payment between established accounts is ALLOW with no reasons."""
    d = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 4_500,
                                     payer_opened=OLD, payee_opened=OLD))
    assert d.action == pb.ACTION_ALLOW
    assert list(d.reasons) == []
    assert d.risk_score == 0
    assert d.policy_version.startswith("default-")
    assert d.server_latency_us > 0
    assert not d.degraded and not d.duplicate


def test_decision_keeps_transaction_id_and_event_time(live: Live) -> None:
    """The decision echoes the transaction id and event time."""
    when = recent(5).replace(microsecond=123000)
    tid = uid("t")
    d = live.bank.screen(transaction(tid, when, uid("a"), uid("b"), 100))
    assert d.transaction_id == tid
    assert d.event_time.ToMilliseconds() == int(when.timestamp() * 1000)


def test_watchlisted_payee_stops_payment_and_watchlisted_payer_freezes(live: Live) -> None:
    """Payee on the watchlist -> STOP_PAYMENT; payer on it -> FREEZE; both notify police."""
    mule = uid("mule")
    resp = live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "case 1", "police")])
    assert resp.added == 1
    to_mule = live.bank.screen(transaction(uid("t"), recent(), uid("a"), mule, 10_000))
    assert to_mule.action == pb.ACTION_STOP_PAYMENT
    assert "PAYEE_WATCHLISTED" in _codes(to_mule)
    assert to_mule.reports.notify_police and to_mule.reports.suspicious
    assert to_mule.features["payee_watchlisted"] == 1.0
    from_mule = live.bank.screen(transaction(uid("t"), recent(), mule, uid("b"), 10_000))
    assert from_mule.action == pb.ACTION_FREEZE
    assert _codes(from_mule) == ["PAYER_WATCHLISTED"]


def test_watchlisted_device_holds(live: Live) -> None:
    """A payment from a listed device is HOLD."""
    device = uid("dev")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_DEVICE, device, "stolen", "police")])
    d = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 500, device_id=device))
    assert d.action == pb.ACTION_HOLD
    assert "DEVICE_WATCHLISTED" in _codes(d)


def test_expired_watchlist_entry_no_longer_applies(live: Live) -> None:
    """A listing that lapsed before the event time does not fire."""
    acct = uid("a")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, acct, "r", "s", expires=soon)])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)  # within the future-skew limit
    d = live.bank.screen(transaction(uid("t"), later, uid("a"), acct, 500))
    assert d.action == pb.ACTION_ALLOW


def test_risky_call_then_large_new_payee_transfer_is_stopped(live: Live) -> None:
    """A first call from abroad by a number ringing no one else is not warned, but it counts as
    a risky call for the payer's phone: a large transfer to a new payee after it is STOP_PAYMENT."""
    phone = "139" + uid("")[-5:].rjust(8, "0")
    call = live.telecom.report_call(call_event(uid("c"), recent(30), "+852901" + uid("")[-5:], phone,
                                               caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    assert call.action == pb.CALL_ACTION_ALLOW
    assert _codes(call) == ["INTERNATIONAL_FIRST_CONTACT_ONE_CALLEE"]
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("victim"), uid("safe"), 5_000_000,
                                     payer_phone=phone, payer_opened=OLD))
    assert d.action == pb.ACTION_STOP_PAYMENT
    assert "CALL_THEN_TRANSFER_LARGE" in _codes(d)
    assert d.features["risky_call_recent"] == 1.0


def test_a_spoofed_call_the_service_blocked_is_no_risky_contact(live: Live) -> None:
    """The spoofed call was blocked, so the payer never spoke with it: no victim pattern."""
    phone = "139" + uid("")[-5:].rjust(8, "0")
    call = live.telecom.report_call(call_event(uid("c"), recent(30), "+85290000002", phone,
                                               caller_class=pb.NUMBER_CLASS_SPOOFED_SUSPECT))
    assert call.action == pb.CALL_ACTION_BLOCK and _codes(call) == ["SPOOFED_CALLER"]
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("victim"), uid("safe"), 5_000_000,
                                     payer_phone=phone, payer_opened=OLD))
    assert d.action == pb.ACTION_ALLOW


def test_risky_call_then_small_new_payee_transfer_warns(live: Live) -> None:
    """After a risky call (a virtual-operator number spraying calls nobody answers), a transfer of
    2,000 CNY to a new payee nothing was ever paid into gets a WARN (risk prompt); 200 CNY to a
    shop's QR code does not."""
    phone = "137" + uid("")[-5:].rjust(8, "0")
    sprayer = "+86170" + uid("")[-5:].rjust(8, "0")
    for i in range(8):
        live.telecom.report_call(call_event(uid("c"), recent(50 - i), sprayer, f"1380000{i:04d}",
                                            outcome=pb.CALL_OUTCOME_UNANSWERED,
                                            caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    warned = live.telecom.report_call(call_event(uid("c"), recent(30), sprayer, phone,
                                                 caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    assert warned.action == pb.CALL_ACTION_WARN_CALLEE
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("victim"), uid("x"), 200_000,
                                     payer_phone=phone))
    assert d.action == pb.ACTION_WARN
    assert "CALL_THEN_TRANSFER" in _codes(d)  # (and the talk rule: the call is still going on)
    lunch = live.bank.screen(transaction(uid("t"), recent(9), uid("p"), uid("shop"), 20_000,
                                         payer_phone=phone, channel=pb.CHANNEL_QR))
    assert lunch.action == pb.ACTION_ALLOW


def test_risky_call_outside_lookback_is_ignored(live: Live) -> None:
    """A risky call three hours before the payment is outside the 120-minute lookback."""
    phone = "136" + uid("")[-5:].rjust(8, "0")
    live.telecom.report_call(call_event(uid("c"), recent(200), "+85290000003", phone,
                                        caller_class=pb.NUMBER_CLASS_SPOOFED_SUSPECT))
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), uid("x"), 5_000_000,
                                     payer_phone=phone, payer_opened=OLD, payee_opened=OLD))
    assert d.action == pb.ACTION_ALLOW


def test_mule_pass_through_is_stopped(live: Live) -> None:
    """Money in, then nearly all of it out within the hour from a young account: STOP_PAYMENT,
    and the account stays a suspected mule."""
    mule = uid("mule")
    for i in range(3):
        live.bank.screen(transaction(uid("t"), recent(40 - i), uid("v"), mule, 1_000_000,
                                     payee_opened="2026-10-01"))
    d = live.bank.screen(transaction(uid("t"), recent(30), mule, uid("next"), 2_900_000))
    assert d.action == pb.ACTION_STOP_PAYMENT
    assert "MULE_PASS_THROUGH" in _codes(d) and d.reports.notify_police
    assert d.features["payer_pass_through_1h"] == pytest.approx(29 / 30)
    assert d.features["payer_in_sum_1h"] == 3_000_000


def test_fundraising_collection_is_watched_and_ponzi_returns_hold(live: Live) -> None:
    """Many 'investment' payers -> the collector is marked (its buyers are not warned: every
    wealth product collects so); paying returns to earlier payers -> HOLD."""
    fund = uid("fund")
    investors = [uid("inv") for _ in range(20)]
    decisions = [
        live.bank.screen(transaction(uid("t"), recent(100 - i), inv, fund, 1_000_000,
                                     payee_type=pb.PARTY_TYPE_ORGANISATION, memo="理财投资",
                                     payee_opened="2025-06-01"))
        for i, inv in enumerate(investors)
    ]
    # the policy's line: 8 'investment' transfers from 6 distinct payers within 7 days
    assert [d.action for d in decisions[:7]] == [pb.ACTION_ALLOW] * 7
    assert decisions[7].action == pb.ACTION_ALLOW and not decisions[7].reports.suspicious
    assert _codes(decisions[7]) == ["FUNDRAISING_COLLECTOR"]
    marks = live.police.query_account(fund).case_marks
    assert [m.role for m in marks] == [pb.CASE_ROLE_SUSPECTED_COLLECTOR]
    returns = [
        live.bank.screen(transaction(uid("t"), recent(50 - i), fund, inv, 50_000,
                                     payer_type=pb.PARTY_TYPE_ORGANISATION, memo="interest"))
        for i, inv in enumerate(investors[:5])
    ]
    assert [d.action for d in returns[:4]] == [pb.ACTION_ALLOW] * 4
    assert returns[4].action == pb.ACTION_HOLD
    assert "PONZI_RETURNS" in _codes(returns[4])


def test_structuring_just_under_cash_line_warns(live: Live) -> None:
    """Three cash amounts in the band just under 50,000 CNY within a day: WARN + STR."""
    who = uid("s")
    out = [live.bank.screen(transaction(uid("t"), recent(90 - 10 * i), who, uid("ctr"), 4_900_000,
                                        cash=True, channel=pb.CHANNEL_COUNTER,
                                        payee_type=pb.PARTY_TYPE_CASH_TERMINAL,
                                        payer_opened=OLD, payee_opened=OLD))
           for i in range(3)]
    assert "STRUCTURING" not in _codes(out[1])
    assert "STRUCTURING" in _codes(out[2])
    assert out[2].action == pb.ACTION_WARN and out[2].reports.suspicious


def test_large_value_transfer_is_reported_not_blocked(live: Live) -> None:
    """An organisation paying 2,000,000 CNY is ALLOW with the large-value report flag."""
    d = live.bank.screen(transaction(uid("t"), recent(), uid("co"), uid("co"), 200_000_000,
                                     payer_type=pb.PARTY_TYPE_ORGANISATION,
                                     payee_type=pb.PARTY_TYPE_ORGANISATION,
                                     payer_opened=OLD, payee_opened=OLD))
    assert d.action == pb.ACTION_ALLOW
    assert d.reports.large_value and not d.reports.suspicious
    assert "LARGE_TRANSFER_ORGANISATION_OUT" in _codes(d)


def test_large_value_threshold_boundary(live: Live) -> None:
    """Organisation transfer of 1,999,999.99 CNY is not reported; the next fen is."""
    base = dict(payer_type=pb.PARTY_TYPE_ORGANISATION, payee_type=pb.PARTY_TYPE_ORGANISATION,
                payer_opened=OLD, payee_opened=OLD)
    under = live.bank.screen(transaction(uid("t"), recent(), uid("co"), uid("co"), 199_999_999, **base))
    at = live.bank.screen(transaction(uid("t"), recent(), uid("co"), uid("co"), 200_000_000, **base))
    assert not under.reports.large_value
    assert at.reports.large_value


def test_foreign_currency_is_converted_to_fen_for_thresholds(live: Live) -> None:
    """USD cents convert to CNY fen with an integer rate: 10,000 USD -> 71,000 CNY."""
    d = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("atm"), 1_000_000,
                                     currency="USD", cash=True, channel=pb.CHANNEL_ATM,
                                     payee_type=pb.PARTY_TYPE_CASH_TERMINAL,
                                     payer_opened=OLD, payee_opened=OLD))
    assert d.reports.large_value
    assert d.features["payer_day_cash_out_sum"] == 7_100_000


# ---------------------------------------------------------------- idempotency
def test_duplicate_transaction_id_returns_first_decision_and_is_not_counted(live: Live) -> None:
    """Resending a payment (same id, same content) returns the first decision, marked
    duplicate, counted once."""
    payer, tid = uid("a"), uid("t")
    msg = transaction(tid, recent(5), payer, uid("b"), 12_345)
    first = live.bank.screen(msg)
    again = live.bank.screen(msg)
    assert again.duplicate and not first.duplicate
    assert again.action == first.action and again.transaction_id == tid
    assert list(again.reasons) == list(first.reasons)
    report = live.police.query_account(payer)
    assert report.features["out_count_24h"] == 1
    assert report.features["out_sum_24h"] == 12_345


def test_duplicate_inside_one_batch_is_counted_once(live: Live) -> None:
    """The same id twice in one batch: one decision, the second marked duplicate."""
    payer, tid = uid("a"), uid("t")
    batch = live.bank.screen_batch([transaction(tid, recent(), payer, uid("b"), 700)] * 2)
    assert [d.duplicate for d in batch.decisions] == [False, True]
    assert live.police.query_account(payer).features["out_count_24h"] == 1


# ---------------------------------------------------------------- batch and stream
def test_batch_returns_one_decision_per_transaction_in_order(live: Live) -> None:
    """ScreenBatch answers each transaction, in request order."""
    ids = [uid("t") for _ in range(50)]
    payer = uid("payroll")
    batch = live.bank.screen_batch(
        [transaction(t, recent(), payer, uid("emp"), 800_000, payer_type=pb.PARTY_TYPE_ORGANISATION)
         for t in ids])
    assert [d.transaction_id for d in batch.decisions] == ids
    assert live.police.query_account(payer).features["out_count_24h"] == 50


def test_a_batch_the_wire_reader_leaves_to_protobuf_is_answered_the_same(live: Live) -> None:
    """ScreenBatch reads the plain form from the bytes (``screening.wire``); a field a newer
    client sends and a memo with a line break are left to protobuf, which reads them."""
    payer = uid("a")
    txns = [transaction(uid("t"), recent(), payer, uid("b"), 100 + i) for i in range(3)]
    txns[1].memo = "rent\nMarch"
    raw = pb.TransactionBatch(transactions=txns).SerializeToString() + b"\x98\x06\x01"
    call = live.bank.channel.unary_unary("/screening.v1.Screening/ScreenBatch",
                                         request_serializer=None,
                                         response_deserializer=pb.DecisionBatch.FromString)
    batch = call(raw, metadata=live.bank.metadata, timeout=10)
    assert [d.transaction_id for d in batch.decisions] == [t.transaction_id for t in txns]
    assert live.police.query_account(payer).features["out_count_24h"] == 3
    again = call(raw, metadata=live.bank.metadata, timeout=10)  # the same payments: duplicates
    assert [d.duplicate for d in again.decisions] == [True] * 3


def test_batch_with_one_bad_transaction_is_rejected_whole(live: Live) -> None:
    """All-or-nothing: one bad amount rejects the batch, names its index, and counts nothing."""
    payer = uid("a")
    txns = [transaction(uid("t"), recent(), payer, uid("b"), 100) for _ in range(5)]
    txns[3].amount.minor_units = 0
    err = _rpc_error(lambda: live.bank.screen_batch(txns))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("transactions[3].amount.minor_units")
    assert not live.police.query_account(payer).known


def test_stream_answers_in_order_with_request_ids(live: Live) -> None:
    """ScreenStream yields one decision per message, same ids, same order."""
    ids = [uid("t") for _ in range(20)]
    out = list(live.bank.screen_stream(transaction(t, recent(), uid("a"), uid("b"), 100)
                                       for t in ids))
    assert [d.transaction_id for d in out] == ids


def test_stream_ends_with_invalid_argument_on_a_bad_message(live: Live) -> None:
    """A bad message ends the stream naming it; the earlier decisions stand."""
    payer = uid("a")
    good = [transaction(uid("t"), recent(), payer, uid("b"), 100) for _ in range(2)]
    bad = transaction("bad-" + uid("t"), recent(), payer, uid("b"), 100, currency="XYZ")
    received: list[pb.Decision] = []
    with pytest.raises(grpc.RpcError) as info:
        for d in live.bank.screen_stream([*good, bad]):
            received.append(d)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message 2" in info.value.details() and "amount.currency" in info.value.details()
    assert len(received) == 2
    assert live.police.query_account(payer).features["out_count_24h"] == 2


# ---------------------------------------------------------------- bad input
BAD_TRANSACTIONS = [
    ("transaction_id", lambda t: setattr(t, "transaction_id", "")),
    ("transaction_id", lambda t: setattr(t, "transaction_id", "x" * 65)),
    ("event_time", lambda t: t.ClearField("event_time")),
    ("event_time", lambda t: t.event_time.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=2))),
    ("event_time", lambda t: t.event_time.FromDatetime(dt.datetime(1999, 1, 1, tzinfo=dt.UTC))),
    ("payer", lambda t: t.ClearField("payer")),
    ("payer.account_id", lambda t: setattr(t.payer, "account_id", "")),
    ("payee.account_id", lambda t: setattr(t.payee, "account_id", "has space")),
    ("payee.account_id", lambda t: setattr(t.payee, "account_id", t.payer.account_id)),
    ("payer.party_type", lambda t: setattr(t.payer, "party_type", 0)),
    ("payer.party_type", lambda t: setattr(t.payer, "party_type", 77)),
    ("payer.account_opened_date", lambda t: setattr(t.payer, "account_opened_date", "01/02/2020")),
    ("payer.institution", lambda t: setattr(t.payer, "institution", "B" * 500)),
    ("amount", lambda t: t.ClearField("amount")),
    ("amount.minor_units", lambda t: setattr(t.amount, "minor_units", 0)),
    ("amount.minor_units", lambda t: setattr(t.amount, "minor_units", -100)),
    ("amount.minor_units", lambda t: setattr(t.amount, "minor_units", 10**17)),
    ("amount.currency", lambda t: setattr(t.amount, "currency", "ZZZ")),
    ("amount.currency", lambda t: setattr(t.amount, "currency", "cny")),
    ("channel", lambda t: setattr(t, "channel", 0)),
    ("channel", lambda t: setattr(t, "channel", 42)),
    ("payer_phone", lambda t: setattr(t, "payer_phone", "call me maybe")),
    ("memo", lambda t: setattr(t, "memo", "m" * 10_000)),
    ("memo", lambda t: setattr(t, "memo", "nul\x00byte")),
    ("device_id", lambda t: setattr(t, "device_id", "d" * 1_000)),
    # what the December review found passing (each was an ALLOW that should not have been)
    ("payee.account_id", lambda t: setattr(t.payee, "account_id", t.payee.account_id + "\n")),
    ("payee.party_type", lambda t: setattr(t.payee, "party_type", pb.PARTY_TYPE_CASH_TERMINAL)),
    ("payee.party_type", lambda t: _both_terminals(t)),
    ("device_id", lambda t: setattr(t, "device_id", " dev-1")),
    ("device_id", lambda t: setattr(t, "device_id", "dev\u200b1")),
    ("amount.currency", lambda t: setattr(t.amount, "currency", "CNYX")),
]


def _both_terminals(t: pb.Transaction) -> None:
    t.cash = True
    t.payer.party_type = t.payee.party_type = pb.PARTY_TYPE_CASH_TERMINAL


@pytest.mark.parametrize(("field", "spoil"), BAD_TRANSACTIONS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_TRANSACTIONS)])
def test_bad_transaction_is_rejected_naming_the_field_and_touches_nothing(live: Live, field, spoil) -> None:  # type: ignore[no-untyped-def]
    """Each kind of bad input: INVALID_ARGUMENT, message starts with the field, no state change."""
    payer = uid("a")
    txn = transaction(uid("t"), recent(), payer, uid("b"), 100)
    spoil(txn)
    err = _rpc_error(lambda: live.bank.screen(txn))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(field + ":"), err.details()
    assert "Traceback" not in err.details()
    if txn.payer.account_id == payer:
        assert not live.police.query_account(payer).known
    # the id was not remembered either: sending it again, repaired, is a first decision
    if txn.transaction_id and len(txn.transaction_id) <= 64:
        ok = transaction(txn.transaction_id, recent(), uid("a"), uid("b"), 100)
        assert not live.bank.screen(ok).duplicate


def test_bad_call_reports_name_the_field(live: Live) -> None:
    """ReportCall validation: numbers, enum, duration, same caller/callee."""
    cases = [
        ("caller_number", call_event(uid("c"), recent(), "", "13800000000")),
        ("callee_number", call_event(uid("c"), recent(), "13800000000", "not-a-number")),
        ("callee_number", call_event(uid("c"), recent(), "13800000000", "+8613800000000")),
        ("caller_class", call_event(uid("c"), recent(), "13800000000", "13900000000",
                                    caller_class=0)),
        ("duration_seconds", call_event(uid("c"), recent(), "13800000000", "13900000000",
                                        duration_seconds=-1)),
        ("start_time", call_event(uid("c"), dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                                  "13800000000", "13900000000")),
    ]
    for field, msg in cases:
        err = _rpc_error(lambda msg=msg: live.telecom.report_call(msg))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith(field + ":"), err.details()


def test_bad_watchlist_update_applies_nothing(live: Live) -> None:
    """One bad entry rejects the whole update; the good entries before it are not listed."""
    good = uid("acct")
    req = [watch_entry(pb.ENTITY_KIND_ACCOUNT, good, "r", "s"),
           watch_entry(pb.ENTITY_KIND_PHONE, "not a phone", "r", "s")]
    err = _rpc_error(lambda: live.police.update_watchlist(req))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("upsert[1].entity.value")
    assert list(live.police.query_account(good).watchlist_hits) == []


def test_watchlist_expiry_past_the_year_9999_is_refused(live: Live) -> None:
    """An expiry no reply can carry (a Timestamp ends in 9999) is refused naming the field;
    leaving it out means 'never lapses'."""
    acct = uid("acct")
    entry = watch_entry(pb.ENTITY_KIND_ACCOUNT, acct, "r", "s")
    entry.expires_at.seconds = 2**63 // 1000  # a client's Long.MAX_VALUE millis as "never"
    err = _rpc_error(lambda: live.police.update_watchlist([entry]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("upsert[0].expires_at: after the year 9999")
    assert list(live.police.query_account(acct).watchlist_hits) == []


# ---------------------------------------------------------------- ReportCall
def test_call_paths_allow_warn_and_block(live: Live) -> None:
    """Ordinary call ALLOW; a first call from abroad WARN_CALLEE once the number rings more
    than one person; listed caller BLOCK."""
    ordinary = live.telecom.report_call(call_event(uid("c"), recent(), "13811110000", "13922220000"))
    assert ordinary.action == pb.CALL_ACTION_ALLOW
    abroad = "+4477009" + uid("")[-5:]
    one = live.telecom.report_call(call_event(uid("c"), recent(), abroad, "13922220001",
                                              caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    assert one.action == pb.CALL_ACTION_ALLOW  # ringing only this one person (a child abroad)
    assert _codes(one) == ["INTERNATIONAL_FIRST_CONTACT_ONE_CALLEE"]
    intl = live.telecom.report_call(call_event(uid("c"), recent(), abroad, "13922220003",
                                               caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    assert intl.action == pb.CALL_ACTION_WARN_CALLEE  # ringing a second person: a dial list
    assert _codes(intl) == ["INTERNATIONAL_FIRST_CONTACT"]
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_PHONE, "+86 170-1234-0000", "r", "s")])
    listed = live.telecom.report_call(call_event(uid("c"), recent(), "17012340000", "13922220002"))
    assert listed.action == pb.CALL_ACTION_BLOCK
    assert "CALLER_WATCHLISTED" in _codes(listed)


def test_mass_short_calls_get_blocked(live: Live) -> None:
    """A number ringing 18 people within the hour, most not answering and the rest hanging up
    within seconds, is blocked."""
    caller = "+8616" + uid("")[-5:].rjust(9, "0")
    last = None
    for i in range(18):
        cid = uid("c")
        live.telecom.report_call(call_event(cid, recent(50 - i), caller, f"1350000{i:04d}"))
        ended = (call_event(cid, recent(50 - i), caller, f"1350000{i:04d}", duration_seconds=8)
                 if i % 3 == 0 else
                 call_event(cid, recent(50 - i), caller, f"1350000{i:04d}",
                            outcome=pb.CALL_OUTCOME_UNANSWERED))  # 2 of 3 unanswered
        last = live.telecom.report_call(ended)
    assert last is not None and last.action == pb.CALL_ACTION_BLOCK
    assert "MASS_SHORT_CALLS" in _codes(last)


def test_a_courier_calling_many_people_briefly_is_not_blocked(live: Live) -> None:
    """Delivery calls are short too, but answered: no block, no warning."""
    courier = "+8615" + uid("")[-5:].rjust(9, "0")
    answers = []
    for i in range(14):
        cid = uid("c")
        live.telecom.report_call(call_event(cid, recent(50 - i), courier, f"1360000{i:04d}"))
        answers.append(live.telecom.report_call(call_event(
            cid, recent(50 - i), courier, f"1360000{i:04d}", duration_seconds=12)))
    assert all(a.action == pb.CALL_ACTION_ALLOW for a in answers)


def test_call_reports_ringing_then_ended_are_not_double_counted(live: Live) -> None:
    """Ringing and ended reports of one call count it once; repeats are duplicates."""
    caller = "+8615" + uid("")[-5:].rjust(9, "0")
    cid = uid("c")
    ring = live.telecom.report_call(call_event(cid, recent(), caller, "13700000001"))
    again = live.telecom.report_call(call_event(cid, recent(), caller, "13700000001"))
    ended = live.telecom.report_call(call_event(cid, recent(), caller, "13700000001",
                                                duration_seconds=100))
    ended_again = live.telecom.report_call(call_event(cid, recent(), caller, "13700000001",
                                                      duration_seconds=100))
    assert not ring.duplicate and again.duplicate
    assert not ended.duplicate and ended_again.duplicate
    other = live.telecom.report_call(call_event(uid("c"), recent(), caller, "13700000002"))
    assert other is not None
    err = _rpc_error(lambda: live.telecom.report_call(
        call_event(cid, recent(), caller, "13700000009", duration_seconds=5)))
    assert err.details().startswith("callee_number:")


# ---------------------------------------------------------------- UpdateWatchlist / QueryAccount
def test_watchlist_upsert_replace_and_remove_counts(live: Live) -> None:
    """UpdateWatchlist reports added, replaced, removed and not-found entries."""
    a, b = uid("acct"), uid("acct")
    first = live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, a, "r", "s")])
    second = live.police.update_watchlist(
        [watch_entry(pb.ENTITY_KIND_ACCOUNT, a, "r2", "s")],
        [pb.EntityRef(kind=pb.ENTITY_KIND_ACCOUNT, value=b)])
    assert (first.added, first.replaced) == (1, 0)
    assert (second.added, second.replaced, second.not_found) == (0, 1, 1)
    hits = live.police.query_account(a).watchlist_hits
    assert [h.reason for h in hits] == ["r2"]
    third = live.police.update_watchlist(remove=[pb.EntityRef(kind=pb.ENTITY_KIND_ACCOUNT, value=a)])
    assert third.removed == 1
    assert list(live.police.query_account(a).watchlist_hits) == []
    d = live.bank.screen(transaction(uid("t"), recent(), uid("p"), a, 100))
    assert d.action == pb.ACTION_ALLOW


def test_query_account_returns_features_risk_and_recent_decisions(live: Live) -> None:
    """The fast query: window features, highest recent risk, newest decisions first."""
    acct = uid("a")
    tids = [uid("t") for _ in range(3)]
    for i, t in enumerate(tids):
        live.bank.screen(transaction(t, recent(30 - i), acct, uid("b"), 10_000 * (i + 1)))
    report = live.police.query_account(acct, limit=2)
    assert report.known and report.account_id == acct
    assert report.features["out_count_24h"] == 3
    assert report.features["out_sum_24h"] == 60_000
    assert [d.transaction_id for d in report.recent_decisions] == [tids[2], tids[1]]
    assert report.last_seen.ToMilliseconds() > report.first_seen.ToMilliseconds()


def test_query_unknown_account_is_not_an_error(live: Live) -> None:
    """An account never seen answers known=false with empty features."""
    report = live.police.query_account(uid("never"))
    assert not report.known and dict(report.features) == {}


def test_regulator_sees_masked_identifiers_police_sees_clear(live: Live) -> None:
    """Only police and admin get account ids in clear."""
    acct = uid("acct")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, acct, "r", "s")])
    assert live.police.query_account(acct).account_id == acct
    masked = live.client("regulator").query_account(acct)
    assert masked.account_id != acct and acct not in masked.account_id
    assert acct not in str(masked)


# ---------------------------------------------------------------- access control
@pytest.mark.parametrize(("role", "allowed"), [
    ("bank", {"screen"}), ("payment", {"screen"}), ("telecom", {"call"}),
    ("police", {"watch", "query"}), ("regulator", {"watch", "query"}),
    ("admin", {"screen", "call", "watch", "query"}),
])
def test_each_role_may_call_only_its_methods(live: Live, role: str, allowed: set[str]) -> None:
    """Permissions are enforced: other methods answer PERMISSION_DENIED."""
    c = live.client(role)
    calls = {
        "screen": lambda: c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100)),
        "call": lambda: c.report_call(call_event(uid("c"), recent(), "13800000001", "13800000002")),
        "watch": lambda: c.update_watchlist(remove=[pb.EntityRef(kind=1, value=uid("x"))]),
        "query": lambda: c.query_account(uid("x")),
    }
    for name, call in calls.items():
        if name in allowed:
            call()
        else:
            assert _rpc_error(call).code() == grpc.StatusCode.PERMISSION_DENIED, name


def test_missing_or_wrong_token_is_unauthenticated(live: Live) -> None:
    """No token, or an unknown one: UNAUTHENTICATED, for every method."""
    for token in (None, "not-a-real-token"):
        with ScreeningClient(live.server.address, token) as c:
            err = _rpc_error(lambda c=c: c.screen(transaction(uid("t"), recent(), "a1", "b1", 1)))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# ---------------------------------------------------------------- health, reflection, logs
def test_health_reports_serving_without_a_token(live: Live) -> None:
    """grpc.health.v1 answers SERVING for the server and the Screening service, no token needed."""
    with ScreeningClient(live.server.address) as c:
        assert c.is_serving("")
        assert c.is_serving("screening.v1.Screening")
        resp = c.health.Check(health_pb2.HealthCheckRequest(service="screening.v1.Screening"))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_screening_service(live: Live) -> None:
    """Server reflection exposes the service for grpcurl and similar tools."""
    with ScreeningClient(live.server.address) as c:
        stub = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert "screening.v1.Screening" in names
    assert "grpc.health.v1.Health" in names


def test_reflection_v1_lists_and_describes_the_services_as_grpcurl_asks(live: Live) -> None:
    """A client of grpc.reflection.v1 (grpcurl, Postman), without a token: lists the Screening
    service and both reflection services, and gets the descriptor files of the Screening
    service and of the v1 reflection service itself."""
    from google.protobuf import descriptor_pb2

    # v1 has v1alpha's messages, field for field, under another package: same bytes on the wire
    with ScreeningClient(live.server.address) as c:
        info = c.channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        responses = list(info(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="screening.v1.Screening"),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="grpc.reflection.v1.ServerReflection"),
        ]), timeout=10))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"screening.v1.Screening", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    for response, package, service in ((responses[1], "screening.v1", "Screening"),
                                       (responses[2], "grpc.reflection.v1", "ServerReflection")):
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in response.file_descriptor_response.file_descriptor_proto]
        described = [f for f in files if f.package == package]
        assert described, (package, response.error_response.error_message)
        assert service in {s.name for s in described[0].service}


def test_logs_are_json_and_never_show_account_or_phone_numbers(live: Live) -> None:
    """Every log line parses as JSON and no account id or phone number appears in clear."""
    payer, payee, phone = uid("6222acct"), uid("6217acct"), "13612345678"
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, payee, "r", "s")])
    live.bank.screen(transaction(uid("t"), recent(), payer, payee, 100, payer_phone=phone))
    live.telecom.report_call(call_event(uid("c"), recent(), "+85290000009", phone,
                                        caller_class=pb.NUMBER_CLASS_SPOOFED_SUSPECT))
    live.police.query_account(payer)
    text = live.log.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(entry["event"] == "screened" for entry in lines)
    assert any(entry["event"] == "call_screened" for entry in lines)
    for secret in (payer, payee, phone, "+86" + phone, "+85290000009"):
        assert secret not in text
