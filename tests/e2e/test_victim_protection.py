"""Decision memory through a real server: what one decision concludes protects the next payment.

Each test plays how the fraud goes (a call, a payment stopped, the victim paying again, the mule
moving the money on) and checks the service's answer at the step where it must intervene.
"""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from screening.client import call_event, transaction, watch_entry
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, recent, uid

OLD = "2015-01-05"
AGED = dict(payer_opened=OLD, payee_opened=OLD)


def _codes(d: pb.Decision | pb.CallDecision) -> list[str]:
    return [r.code for r in d.reasons]


def _phone(n: int) -> str:
    return f"+861390000{n:04d}"


_phones = iter(range(10_000))


def new_phone() -> str:
    return _phone(next(_phones))


def _call_from_abroad(live: Live, minutes: float, fraud: str, phone: str) -> pb.CallDecision:
    """A call centre abroad working through its dial list: it rings a stranger, then ``phone``
    (a first contact from an international number ringing others: the callee is warned)."""
    live.telecom.report_call(call_event(uid("c"), recent(minutes + 5), fraud, new_phone(),
                                        caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    call = live.telecom.report_call(call_event(uid("c"), recent(minutes), fraud, phone,
                                               caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    assert call.action == pb.CALL_ACTION_WARN_CALLEE and _codes(call) == ["INTERNATIONAL_FIRST_CONTACT"]
    return call


def _stopped_victim(live: Live, minutes: float = 40) -> tuple[str, str, str, pb.Decision]:
    """A victim talked into paying a 'safe account' on a first call from abroad (the callee was
    warned): the first payment is stopped. Returns (victim, victim's phone, safe account,
    decision)."""
    victim, safe, phone, fraud = uid("victim"), uid("safe"), new_phone(), "+85291" + new_phone()[-6:]
    _call_from_abroad(live, minutes + 10, fraud, phone)
    d = live.bank.screen(transaction(uid("t"), recent(minutes), victim, safe, 3_000_000,
                                     payer_phone=phone, **AGED))
    return victim, phone, safe, d


def test_a_child_abroad_ringing_home_is_not_warned_and_the_tuition_goes(live: Live) -> None:
    """A student abroad rings home from a new international number (no one else); the parent
    then sends the tuition abroad in dollars: neither the call nor the payment is an alert."""
    parent, phone, child = uid("parent"), new_phone(), "+4479" + new_phone()[-8:]
    call = live.telecom.report_call(call_event(uid("c"), recent(50), child, phone, duration_seconds=420,
                                               caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    assert call.action == pb.CALL_ACTION_ALLOW
    assert _codes(call) == ["INTERNATIONAL_FIRST_CONTACT_ONE_CALLEE"]
    d = live.bank.screen(transaction(uid("t"), recent(20), parent, uid("uni"), 1_200_000, currency="USD",
                                     cross_border=True, payer_phone=phone, memo="学费", **AGED))
    assert d.action == pb.ACTION_ALLOW, _codes(d)  # (the call counts: no rule stops a payment abroad)


def test_a_son_abroad_calling_back_is_warned_but_his_mothers_transfer_to_him_goes(live: Live) -> None:
    """The mother rang her son's international number before; he calls back (his number rings
    others too: the call is warned as any first call from it) and she sends him 74,800 CNY to
    his account, whose phone is his: not stopped, a victim pays a stranger (2026.12.20). The
    same call and payment to a stranger's account is stopped."""
    son, mother = "+8551" + new_phone()[-8:], new_phone()
    son_acct = uid("son")
    live.bank.screen(transaction(uid("t"), recent(3_000), son_acct, uid("shop"), 5_000,
                                 payer_phone=son, **AGED))  # his account, paid with his phone
    live.telecom.report_call(call_event(uid("c"), recent(2_000), mother, son, duration_seconds=300))
    live.telecom.report_call(call_event(uid("c"), recent(60), son, new_phone(), duration_seconds=60,
                                        caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    call = live.telecom.report_call(call_event(uid("c"), recent(40), son, mother, duration_seconds=900,
                                               caller_class=pb.NUMBER_CLASS_INTERNATIONAL))
    assert call.action == pb.CALL_ACTION_WARN_CALLEE
    d = live.bank.screen(transaction(uid("t"), recent(15), uid("mother"), son_acct, 7_480_000,
                                     payer_phone=mother, **AGED))
    assert not any(c.startswith("CALL_THEN_TRANSFER") for c in _codes(d)), _codes(d)
    assert d.action < pb.ACTION_HOLD, _codes(d)
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("mother"), uid("safe"), 7_480_000,
                                     payer_phone=mother, **AGED))
    assert d.action == pb.ACTION_STOP_PAYMENT and any(c.startswith("CALL_THEN_TRANSFER") for c in _codes(d))


def test_a_repeat_payment_to_a_stopped_payee_is_stopped_again(live: Live) -> None:
    """Minutes after a stop, the fraudster calls back and the victim pays the same account again."""
    victim, phone, safe, first = _stopped_victim(live)
    assert first.action == pb.ACTION_STOP_PAYMENT
    again = live.bank.screen(transaction(uid("t"), recent(30), victim, safe, 2_000_000,
                                         payer_phone=phone, **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT
    assert "REPEAT_TO_STOPPED_PAYEE" in _codes(again) and again.reports.notify_police


def _warned_victim(live: Live, minutes: float = 40) -> tuple[str, str, str, pb.Decision]:
    """An impersonator talks the victim through a first payment from a virtual-operator number
    nobody flagged yet and hangs up minutes before it: the payment is warned. Returns (victim,
    victim's phone, safe account, decision)."""
    caller, phone, victim, safe = "+86170" + new_phone()[-8:], new_phone(), uid("victim"), uid("safe")
    live.telecom.report_call(call_event(uid("c"), recent(minutes + 20), caller, phone,
                                        duration_seconds=900, outcome=pb.CALL_OUTCOME_ANSWERED,
                                        caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    d = live.bank.screen(transaction(uid("t"), recent(minutes), victim, safe, 300_000,
                                     payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_WARN and "TALKED_WITH_RISKY_CLASS_THEN_NEW_PAYEE" in _codes(d)
    return victim, phone, safe, d


def test_paying_a_warned_payee_again_after_the_call_is_stopped(live: Live) -> None:
    """The warning does not end it: minutes later the victim pays the same 'safe account' more:
    stopped (and the victim protected for weeks, not days), and a third payment too."""
    victim, phone, safe, _ = _warned_victim(live)
    again = live.bank.screen(transaction(uid("t"), recent(30), victim, safe, 800_000,
                                         payer_phone=phone, **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_WARNED_PAYEE" in _codes(again)
    assert again.features["payee_warned_for_payer"] == 1.0
    third = live.bank.screen(transaction(uid("t"), recent(25), victim, safe, 1_500_000,
                                         payer_phone=phone, **AGED))
    assert third.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_STOPPED_PAYEE" in _codes(third)


def _paid_by_others(live: Live, name: str) -> str:
    """An account someone else paid hours ago (not a fresh one)."""
    account = uid(name)
    live.bank.screen(transaction(uid("t"), recent(400), uid("someone"), account, 500_000, **AGED))
    return account


def test_a_protected_victim_moving_savings_to_an_account_others_pay_is_held(live: Live) -> None:
    """Hours after the stop, no call before it (the fraudster moved to a chat app), the victim
    pays 30,000 CNY to an account other victims pay too: not a fresh account, but held for
    the sum (a reminder is for the rent, hours later), and the next payment to it stopped."""
    victim, _phone, _safe, first = _stopped_victim(live, minutes=300)
    assert first.action == pb.ACTION_STOP_PAYMENT
    other = _paid_by_others(live, "other-victims-pay-it")
    d = live.bank.screen(transaction(uid("t"), recent(10), victim, other, 3_000_000, **AGED))
    assert d.action == pb.ACTION_HOLD and "PROTECTED_VICTIM_LARGE_PAYMENT" in _codes(d)
    again = live.bank.screen(transaction(uid("t"), recent(5), victim, other, 2_000_000, **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_STOPPED_PAYEE" in _codes(again)
    landlord = _paid_by_others(live, "landlord")  # a minute after a stop it is held all the same
    rent = live.bank.screen(transaction(uid("t"), recent(4), victim, landlord, 300_000, **AGED))
    assert rent.action == pb.ACTION_HOLD and "PROTECTED_VICTIM_NEW_PAYEE_SOON_AFTER" in _codes(rent)


def test_a_protected_victim_paying_an_account_others_pay_minutes_after_the_stop_is_held(
        live: Live) -> None:
    """Five minutes after the stop, no call since (the fraudster went on in a chat app), the
    victim pays 7,400 CNY to a second account other victims pay too: the scam is still going
    on, so held (no report on the payee), and paying it again is stopped. The rent, hours
    after a stop, stays a reminder (the rent test below)."""
    victim, _phone, _safe, first = _stopped_victim(live, minutes=300)
    assert first.action == pb.ACTION_STOP_PAYMENT
    other = _paid_by_others(live, "second-mule")
    d = live.bank.screen(transaction(uid("t"), recent(295), victim, other, 740_000, **AGED))
    assert d.action == pb.ACTION_HOLD and "PROTECTED_VICTIM_NEW_PAYEE_SOON_AFTER" in _codes(d)
    assert not d.reports.suspicious
    again = live.bank.screen(transaction(uid("t"), recent(290), victim, other, 700_000, **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_STOPPED_PAYEE" in _codes(again)
    out = live.bank.screen(transaction(uid("t"), recent(280), other, uid("next"), 600_000, **AGED))
    assert out.features["payer_suspected_mule"] >= 1.0  # the scam is running: a suspect
    assert out.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(out)


def test_paying_a_held_relative_again_days_later_is_stopped_and_the_relative_no_suspect(
        live: Live) -> None:
    """Two days after the stop the victim sends a relative living expenses (a fresh account):
    held. Two days later it pays the relative again: stopped (still protected), but the scam is
    no longer running (no intervention for days), so the relative is no suspected mule and its
    own payments go through. Within the day, a repeat makes the account a suspect (above)."""
    victim, _phone, _safe, first = _stopped_victim(live, minutes=4 * 24 * 60)
    assert first.action == pb.ACTION_STOP_PAYMENT and "CALL_THEN_TRANSFER_LARGE" in _codes(first)
    relative = uid("relative")
    held = live.bank.screen(transaction(uid("t"), recent(2 * 24 * 60), victim, relative, 150_000,
                                        **AGED))
    assert held.action == pb.ACTION_HOLD and "PROTECTED_VICTIM_FRESH_PAYEE" in _codes(held)
    again = live.bank.screen(transaction(uid("t"), recent(30), victim, relative, 120_000, memo="生活费",
                                         **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT
    assert "REPEAT_TO_STOPPED_PAYEE_LATER" in _codes(again)
    assert "REPEAT_TO_STOPPED_PAYEE" not in _codes(again)
    assert not again.reports.notify_police and not again.reports.suspicious
    assert again.features["payer_minutes_since_intervention"] > 24 * 60
    retry = live.bank.screen(transaction(uid("t"), recent(20), victim, relative, 120_000, **AGED))
    assert _codes(retry) == ["REPEAT_TO_STOPPED_PAYEE_LATER"]  # the stop above was no intervention
    groceries = live.bank.screen(transaction(uid("t"), recent(10), relative, uid("neighbour"), 20_000,
                                             **AGED))
    assert groceries.action == pb.ACTION_ALLOW, _codes(groceries)
    assert groceries.features["payer_suspected_mule"] == 0.0


def test_in_a_servers_first_week_a_risky_call_then_a_large_payment_is_stopped_suspecting_no_one(
        fresh: Live) -> None:
    """On a server's first day every account is new to it: a tenant's rent minutes after a call
    from abroad is stopped and the tenant protected, but the landlord is no suspected mule (its
    own payments go through; the other tenants are not held paying it)."""
    victim, phone, landlord, d = _stopped_victim(fresh)
    assert d.action == pb.ACTION_STOP_PAYMENT and "CALL_THEN_TRANSFER_LARGE_FIRST_WEEK" in _codes(d)
    assert "CALL_THEN_TRANSFER_LARGE" not in _codes(d) and d.features["observed_days"] < 7
    tenant = fresh.bank.screen(transaction(uid("t"), recent(20), uid("tenant"), landlord, 300_000, **AGED))
    assert tenant.action == pb.ACTION_ALLOW, _codes(tenant)
    out = fresh.bank.screen(transaction(uid("t"), recent(10), landlord, uid("plumber"), 80_000, **AGED))
    assert out.action == pb.ACTION_ALLOW and out.features["payer_suspected_mule"] == 0.0
    later = fresh.bank.screen(transaction(uid("t"), recent(5), victim, uid("fresh"), 500_000,
                                          payer_phone=phone, **AGED))
    assert later.features["payer_protected_victim"] == 1.0


def test_a_protected_victim_paying_a_small_deposit_after_a_risky_call_is_held(live: Live) -> None:
    """Minutes after a hold the caller (a virtual-operator number) names a 'deposit' of 900 CNY
    to another new account: held, though under the 1,000 CNY of PROTECTED_VICTIM_NEW_PAYEE.
    The same 900 CNY after an ordinary mobile call is not held by this rule."""
    victim, phone, _safe, first = _stopped_victim(live, minutes=40)
    assert first.action >= pb.ACTION_HOLD
    live.telecom.report_call(call_event(uid("c"), recent(20), "+86170" + new_phone()[-8:], phone,
                                        duration_seconds=300, caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR,
                                        outcome=pb.CALL_OUTCOME_ANSWERED))
    d = live.bank.screen(transaction(uid("t"), recent(10), victim, uid("deposit"), 90_000,
                                     payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_HOLD and "PROTECTED_VICTIM_RISKY_CALL_AGAIN" in _codes(d)
    victim2, phone2, _safe2, _ = _stopped_victim(live, minutes=40)
    live.telecom.report_call(call_event(uid("c"), recent(20), new_phone(), phone2, duration_seconds=300,
                                        outcome=pb.CALL_OUTCOME_ANSWERED))
    d2 = live.bank.screen(transaction(uid("t"), recent(10), victim2, uid("shop"), 90_000,
                                      payer_phone=phone2, **AGED))
    assert "PROTECTED_VICTIM_RISKY_CALL_AGAIN" not in _codes(d2)


def test_paying_a_warned_payee_again_days_later_with_no_call_is_allowed(live: Live) -> None:
    """An ordinary payer warned once (a relative calling from a virtual-operator number) pays the
    same person again days later, no call before it: not held. The warning is still remembered:
    after a new call the next payment to that account is stopped."""
    victim, phone, safe, _ = _warned_victim(live, minutes=3 * 24 * 60)
    d = live.bank.screen(transaction(uid("t"), recent(60), victim, safe, 300_000,
                                     payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_ALLOW and "REPEAT_TO_WARNED_PAYEE" not in _codes(d)
    live.telecom.report_call(call_event(uid("c"), recent(40), "+86170" + new_phone()[-8:], phone,
                                        duration_seconds=600, outcome=pb.CALL_OUTCOME_ANSWERED))
    after_call = live.bank.screen(transaction(uid("t"), recent(10), victim, safe, 300_000,
                                              payer_phone=phone, **AGED))
    assert after_call.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_WARNED_PAYEE" in _codes(after_call)
    assert after_call.features["payee_warned_for_payer"] == 1.0


def test_a_warning_alone_does_not_put_the_payer_under_protection(live: Live) -> None:
    """Ordinary payers get a warning now and then: only a hold or a stop protects the payer (new
    payees held), so hours after a warning a new account is paid as before."""
    victim, phone, _, _ = _warned_victim(live, minutes=6 * 60)
    d = live.bank.screen(transaction(uid("t"), recent(10), victim, uid("fresh"), 300_000,
                                     payer_phone=phone, **AGED))
    # (a protected payer paying an account nothing was ever paid into is held)
    assert d.action < pb.ACTION_HOLD and not any(c.startswith("PROTECTED_VICTIM") for c in _codes(d))


def test_released_feedback_forgets_the_warned_payee(live: Live) -> None:
    """The bank reached the customer after the warning: the payee is a real one, released."""
    victim, phone, safe, first = _warned_victim(live)
    r = live.bank.submit_feedback(pb.FEEDBACK_VERDICT_RELEASED, transaction_id=first.transaction_id)
    assert r.payee_released
    again = live.bank.screen(transaction(uid("t"), recent(30), victim, safe, 800_000,
                                         payer_phone=phone, **AGED))
    # (30 minutes after the call: remembered, it would be held)
    assert again.action < pb.ACTION_HOLD and "REPEAT_TO_WARNED_PAYEE" not in _codes(again)


def test_a_stopped_victim_stays_protected_for_weeks(live: Live) -> None:
    """The fraudster comes back weeks after a stopped payment (victim_protection_after_stop_hours,
    30 days) or a held one (victim_protection_hours, 30 days since policy 2026.12.11: an
    investment scam returned 9 and 14 days after a hold; next test); not after a month."""
    stopped, _, _, first = _stopped_victim(live, minutes=12 * 24 * 60)
    assert first.action == pb.ACTION_STOP_PAYMENT
    d = live.bank.screen(transaction(uid("t"), recent(10), stopped, uid("fresh"), 500_000, **AGED))
    assert d.features["payer_protected_victim"] == 1.0
    assert d.action >= pb.ACTION_HOLD and "PROTECTED_VICTIM_FRESH_PAYEE" in _codes(d)


@pytest.mark.parametrize(("days", "protected"), [(12, True), (31, False)])
def test_a_held_victim_stays_protected_for_a_month(fresh: Live, days: int, protected: bool) -> None:
    """(A server of its own: an event a month old ends the shared server's learning period.)"""
    held = uid("held")  # told in a chat app to move savings to a "safe account": held
    again = fresh.bank.screen(transaction(uid("t"), recent(days * 24 * 60), held, uid("safe"), 800_000,
                                          memo="安全账户", **AGED))
    assert again.action == pb.ACTION_HOLD and "FRAUD_MEMO_NEW_PAYEE" in _codes(again)
    later = fresh.bank.screen(transaction(uid("t"), recent(10), held, uid("fresh"), 500_000, **AGED))
    assert (later.action >= pb.ACTION_HOLD) is protected, _codes(later)
    assert any(c.startswith("PROTECTED_VICTIM") for c in _codes(later)) is protected


def test_a_protected_victim_paying_a_new_account_is_held(live: Live) -> None:
    """After the stop the fraudster gives a second 'safe account': at least held with a warning."""
    victim, phone, _, _ = _stopped_victim(live)
    d = live.bank.screen(transaction(uid("t"), recent(25), victim, uid("safe2"), 800_000,
                                     payer_phone=phone, **AGED))
    assert d.action >= pb.ACTION_HOLD and "PROTECTED_VICTIM_NEW_PAYEE" in _codes(d)
    another = live.bank.screen(transaction(uid("t"), recent(20), victim, uid("safe3"), 200_000,
                                           **AGED))
    # still a new payee within the protection window, and one nothing was ever paid into
    assert another.action >= pb.ACTION_HOLD and "PROTECTED_VICTIM_FRESH_PAYEE" in _codes(another)
    shop = live.bank.screen(transaction(uid("t"), recent(19), victim, uid("shop"), 3_500, **AGED))
    assert shop.action == pb.ACTION_ALLOW  # buying lunch (under 1,000 CNY) is not held


def test_a_protected_victim_paying_rent_to_an_account_others_pay_is_only_reminded(live: Live) -> None:
    """Hours after the stop, no call since: the victim pays the rent to a new landlord whom other
    tenants pay too. A reminder, no hold and no report on the landlord."""
    victim, _, _, first = _stopped_victim(live, minutes=300)
    assert first.action == pb.ACTION_STOP_PAYMENT
    landlord = uid("landlord")
    for i in range(3):
        live.bank.screen(transaction(uid("t"), recent(200 - i), uid("tenant"), landlord, 300_000, **AGED))
    d = live.bank.screen(transaction(uid("t"), recent(100), victim, landlord, 300_000, **AGED))
    assert d.action == pb.ACTION_WARN and _codes(d) == ["PROTECTED_VICTIM_KNOWN_ACCOUNT"]
    assert not d.reports.suspicious


@pytest.mark.parametrize("son", [True, False])
def test_a_protected_victim_sending_her_son_his_down_payment_is_reminded_not_held(
        live: Live, son: bool) -> None:
    """Days after her stopped payment the victim sends 200,000 CNY to the new account her son
    opened for his flat. They talk on the phone and the service learned his account's phone from
    his own payments: a reminder to her, no hold, no report on him. The same payment into a
    fresh account whose owner she never spoke with is held."""
    victim, phone, _, first = _stopped_victim(live, minutes=3 * 24 * 60)
    assert first.action == pb.ACTION_STOP_PAYMENT
    payee, payee_phone = uid("son" if son else "stranger"), new_phone()
    live.bank.screen(transaction(uid("t"), recent(600), payee, uid("grocer"), 4_000,
                                 payer_phone=payee_phone, **AGED))
    if son:
        live.telecom.report_call(call_event(uid("c"), recent(300), payee_phone, phone,
                                            duration_seconds=240, outcome=pb.CALL_OUTCOME_ANSWERED))
    d = live.bank.screen(transaction(uid("t"), recent(30), victim, payee, 20_000_000, **AGED))
    if son:
        assert d.action == pb.ACTION_WARN
        assert set(_codes(d)) == {"PROTECTED_VICTIM_PAYS_CONTACT",
                                  "PROTECTED_VICTIM_LARGE_PAYMENT_TO_CONTACT"}
        assert not d.reports.suspicious
    else:
        assert d.action == pb.ACTION_HOLD and "PROTECTED_VICTIM_FRESH_PAYEE" in _codes(d)
        assert d.reports.suspicious


def test_the_mule_and_the_next_hop_are_stopped_but_not_beyond(live: Live) -> None:
    """The safe account received a stopped fraud payment: its payments out are stopped and the
    suspicion follows the money one hop, no further."""
    _, _, safe, _ = _stopped_victim(live)
    level2, level3 = uid("l2"), uid("l3")
    out = live.bank.screen(transaction(uid("t"), recent(20), safe, level2, 500_000, **AGED))
    assert out.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(out)
    assert out.features["payer_suspected_mule"] == 1.0
    nxt = live.bank.screen(transaction(uid("t"), recent(15), level2, level3, 400_000, **AGED))
    assert nxt.action == pb.ACTION_STOP_PAYMENT and nxt.features["payer_suspected_mule"] == 2.0
    beyond = live.bank.screen(transaction(uid("t"), recent(10), level3, uid("shop"), 300, **AGED))
    assert "SUSPECTED_MULE_PAYS_OUT" not in _codes(beyond)


def test_the_account_a_warned_victim_paid_is_stopped_passing_the_money_on(live: Live) -> None:
    """The victim was warned and paid anyway: minutes later the account it paid moves most of
    the money to an account it never paid. Stopped, the police told, and from then on a suspect
    (policy 2026.12.17: FORWARDS_WARNED_PAYMENT)."""
    _, _, safe, _ = _warned_victim(live, minutes=40)
    out = live.bank.screen(transaction(uid("t"), recent(34), safe, uid("next"), 250_000, **AGED))
    assert out.action == pb.ACTION_STOP_PAYMENT and "FORWARDS_WARNED_PAYMENT" in _codes(out)
    assert out.reports.notify_police and out.reports.suspicious
    assert out.features["payer_minutes_since_warned_inflow"] == pytest.approx(6, abs=0.1)
    nxt = live.bank.screen(transaction(uid("t"), recent(33), safe, uid("next"), 40_000, **AGED))
    assert nxt.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(nxt)


def test_an_account_in_use_passing_on_a_warned_payment_is_held_and_made_no_suspect(
        live: Live) -> None:
    """A landlord (six payments out before) pays a new plumber with the rent a tenant was warned
    paying: held, not stopped, no suspect (its next payment goes through)."""
    caller, phone, tenant, landlord = "+86170" + new_phone()[-8:], new_phone(), uid("tenant"), uid("land")
    for i in range(6):
        live.bank.screen(transaction(uid("t"), recent(600 - i), landlord, uid("shop"), 5_000, **AGED))
    live.telecom.report_call(call_event(uid("c"), recent(120), caller, phone, duration_seconds=900,
                                        outcome=pb.CALL_OUTCOME_ANSWERED,
                                        caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    rent = live.bank.screen(transaction(uid("t"), recent(100), tenant, landlord, 300_000,
                                        payer_phone=phone, **AGED))
    assert rent.action == pb.ACTION_WARN
    out = live.bank.screen(transaction(uid("t"), recent(90), landlord, uid("plumber"), 80_000, **AGED))
    assert out.action == pb.ACTION_HOLD and _codes(out) == ["FORWARDS_WARNED_PAYMENT_ACCOUNT_IN_USE"]
    # past the hour: no rule of the warned payment, and no suspect's stop
    later = live.bank.screen(transaction(uid("t"), recent(30), landlord, uid("grocer"), 80_000, **AGED))
    assert later.action == pb.ACTION_ALLOW and later.features["payer_suspected_mule"] == 0.0


def test_a_released_warned_payment_is_no_evidence_against_its_payee(live: Live) -> None:
    """The bank reached the customer: the warned payment was real. Its payee passing the money on
    minutes later is then not stopped for it."""
    _, _, safe, first = _warned_victim(live, minutes=40)
    assert live.bank.submit_feedback(pb.FEEDBACK_VERDICT_RELEASED,
                                     transaction_id=first.transaction_id).payee_released
    out = live.bank.screen(transaction(uid("t"), recent(34), safe, uid("next"), 250_000, **AGED))
    assert "FORWARDS_WARNED_PAYMENT" not in _codes(out) and out.action == pb.ACTION_ALLOW


def test_money_from_a_warned_payment_passed_on_hours_later_is_not_stopped(live: Live) -> None:
    """The same account paying someone new two hours after the warned payment: allowed."""
    _, _, safe, _ = _warned_victim(live, minutes=200)
    out = live.bank.screen(transaction(uid("t"), recent(70), safe, uid("next"), 250_000, **AGED))
    assert "FORWARDS_WARNED_PAYMENT" not in _codes(out) and out.action == pb.ACTION_ALLOW


def test_money_a_mule_pays_back_to_its_victim_makes_the_victim_no_mule(live: Live) -> None:
    """Gangs pay victims too (a brushing scam's "commission", a "refund" to keep them paying):
    the protected victim receiving it is not where the mule's money went, and its own payments
    are not stopped as a mule's."""
    victim, _, safe, first = _stopped_victim(live)
    assert first.action == pb.ACTION_STOP_PAYMENT
    back = live.bank.screen(transaction(uid("t"), recent(30), safe, victim, 50_000, **AGED))
    assert back.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(back)
    rent = live.bank.screen(transaction(uid("t"), recent(10), victim, uid("landlord"), 300_000, **AGED))
    assert "SUSPECTED_MULE_PAYS_OUT" not in _codes(rent)


def test_a_mule_at_the_counter_is_held_for_the_staff(live: Live) -> None:
    """Non-counter business is what is suspended: at a branch counter the payment is held."""
    _, _, safe, _ = _stopped_victim(live)
    d = live.bank.screen(transaction(uid("t"), recent(20), safe, uid("x"), 500_000,
                                     channel=pb.CHANNEL_COUNTER, **AGED))
    assert d.action == pb.ACTION_HOLD and "SUSPECTED_MULE_AT_COUNTER" in _codes(d)


def test_another_victim_paying_the_same_mule_is_held(live: Live) -> None:
    """A second victim (no call seen) pays the account the first one was stopped paying."""
    _, _, safe, _ = _stopped_victim(live)
    d = live.bank.screen(transaction(uid("t"), recent(20), uid("victim2"), safe, 200_000, **AGED))
    assert d.action >= pb.ACTION_HOLD and "PAYS_SUSPECTED_MULE" in _codes(d)


def test_a_firm_paying_wages_into_a_suspected_mule_is_not_held(live: Live) -> None:
    """The account rented to the gang belongs to someone with a job: the employer's payroll into
    it protects no victim and is not held, a person paying it is, and what the suspect pays out
    is still stopped."""
    _, _, safe, _ = _stopped_victim(live)
    wage = live.bank.screen(transaction(uid("t"), recent(25), uid("firm"), safe, 650_000, memo="工资",
                                        payer_type=pb.PARTY_TYPE_ORGANISATION, **AGED))
    assert "PAYS_SUSPECTED_MULE" not in _codes(wage) and wage.action == pb.ACTION_ALLOW, _codes(wage)
    person = live.bank.screen(transaction(uid("t"), recent(24), uid("victim2"), safe, 650_000, **AGED))
    assert person.action >= pb.ACTION_HOLD and "PAYS_SUSPECTED_MULE" in _codes(person)
    out = live.bank.screen(transaction(uid("t"), recent(20), safe, uid("next"), 600_000, **AGED))
    assert out.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(out)


def test_query_account_shows_the_case_marks_with_their_decision(live: Live) -> None:
    """The fast query says who is a suspected victim and mule, since which decision, until when."""
    victim, _, safe, first = _stopped_victim(live)
    mule = live.police.query_account(safe)
    roles = {m.role: m for m in mule.case_marks}
    assert pb.CASE_ROLE_SUSPECTED_MULE in roles
    mark = roles[pb.CASE_ROLE_SUSPECTED_MULE]
    assert mark.transaction_id == first.transaction_id and mark.mule_level == 1
    assert "CALL_THEN_TRANSFER_LARGE" in mark.reason_codes
    assert mark.expires_at.seconds > mark.marked_at.seconds
    assert mule.features["suspected_mule"] == 1.0
    prot = live.police.query_account(victim)
    assert [m.role for m in prot.case_marks] == [pb.CASE_ROLE_SUSPECTED_VICTIM]


def test_false_alarm_feedback_clears_the_mule_and_released_forgets_the_stop(live: Live) -> None:
    """The bank reaches the customer: the 'mule' was a false alarm and the payment is released."""
    victim, _, safe, first = _stopped_victim(live)
    r = live.bank.submit_feedback(pb.FEEDBACK_VERDICT_FALSE_ALARM, transaction_id=first.transaction_id,
                                  note="customer verified by phone")
    assert r.accounts_changed == 2 and r.payee_released
    out = live.bank.screen(transaction(uid("t"), recent(20), safe, uid("y"), 500_000, **AGED))
    assert "SUSPECTED_MULE_PAYS_OUT" not in _codes(out) and out.features["payer_suspected_mule"] == 0
    again = live.bank.screen(transaction(uid("t"), recent(15), victim, safe, 100_000, **AGED))
    assert "REPEAT_TO_STOPPED_PAYEE" not in _codes(again)
    marks = live.police.query_account(safe).case_marks
    assert [m.role for m in marks] == [pb.CASE_ROLE_CLEARED] and marks[0].source == "test-bank"


def test_confirmed_fraud_feedback_stops_payments_both_ways(live: Live) -> None:
    """Police confirm an account as a fraud account: its payments frozen, payments to it stopped."""
    fraud = uid("fraud")
    live.bank.screen(transaction(uid("t"), recent(60), uid("a"), fraud, 1_000, **AGED))
    r = live.police.submit_feedback(pb.FEEDBACK_VERDICT_CONFIRMED_FRAUD, account_id=fraud,
                                    note="case 2026-0417")
    assert r.accounts_changed == 1
    out = live.bank.screen(transaction(uid("t"), recent(30), fraud, uid("b"), 1_000, **AGED))
    assert out.action == pb.ACTION_FREEZE and "PAYER_CONFIRMED_FRAUD" in _codes(out)
    to = live.bank.screen(transaction(uid("t"), recent(20), uid("c"), fraud, 1_000, **AGED))
    assert to.action == pb.ACTION_STOP_PAYMENT and "PAYEE_CONFIRMED_FRAUD" in _codes(to)


@pytest.mark.parametrize("role", ["telecom", "regulator"])
def test_feedback_is_refused_to_roles_that_do_not_decide_payments(live: Live, role: str) -> None:
    """Only banks, payment institutions, police and admin give verdicts."""
    with pytest.raises(grpc.RpcError) as err:
        live.client(role).submit_feedback(pb.FEEDBACK_VERDICT_FALSE_ALARM, account_id=uid("a"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_feedback_on_an_unknown_transaction_is_not_found(live: Live) -> None:
    with pytest.raises(grpc.RpcError) as err:
        live.bank.submit_feedback(pb.FEEDBACK_VERDICT_RELEASED, transaction_id=uid("nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "transaction_id" in err.value.details()


def test_feedback_without_a_verdict_names_the_field(live: Live) -> None:
    with pytest.raises(grpc.RpcError) as err:
        live.bank.submit_feedback(0, account_id=uid("a"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("verdict")


# ------------------------------------------------------------------ calls
def test_robocaller_with_unanswered_calls_is_blocked(live: Live) -> None:
    """A fresh number rings 25 people in half an hour and nearly nobody answers: blocked."""
    robo = new_phone()
    last = None
    for i in range(25):
        callee = new_phone()
        last = live.telecom.report_call(call_event(uid("c"), recent(40 - i), robo, callee,
                                                   outcome=pb.CALL_OUTCOME_UNANSWERED))
    assert last is not None and last.action == pb.CALL_ACTION_BLOCK
    assert "ROBOCALLER" in _codes(last)
    assert last.features["caller_unanswered_ratio_1h"] == 1.0


def test_a_blocked_call_does_not_make_the_callee_a_risky_contact(live: Live) -> None:
    """The service blocked the call: no conversation, so a transfer after it is no victim pattern."""
    fraud, phone = new_phone(), new_phone()
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_PHONE, fraud, "fraud line", "police")])
    blocked = live.telecom.report_call(call_event(uid("c"), recent(30), fraud, phone))
    assert blocked.action == pb.CALL_ACTION_BLOCK
    d = live.bank.screen(transaction(uid("t"), recent(20), uid("p"), uid("q"), 3_000_000,
                                     payer_phone=phone, **AGED))
    assert d.features.get("risky_call_recent", 0.0) == 0.0
    assert "CALL_FROM_WATCHLISTED_THEN_TRANSFER" not in _codes(d)


def test_a_talk_with_a_number_flagged_later_protects_the_payment_after_it(live: Live) -> None:
    """The victim answered a robocaller before it was flagged; paying a new account afterwards
    is held once the number is known to be a fraud number."""
    robo, victim_phone = new_phone(), new_phone()
    live.telecom.report_call(call_event(uid("c"), recent(50), robo, victim_phone,
                                        duration_seconds=600, outcome=pb.CALL_OUTCOME_ANSWERED))
    for i in range(25):  # then it sprays unanswered calls and gets flagged
        live.telecom.report_call(call_event(uid("c"), recent(39 - i), robo, new_phone(),
                                            outcome=pb.CALL_OUTCOME_UNANSWERED))
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), uid("safe"), 500_000,
                                     payer_phone=victim_phone, **AGED))
    assert d.action >= pb.ACTION_HOLD and "LAST_CALLER_NOW_RISKY" in _codes(d)


def test_a_robocall_recording_hung_up_on_is_no_talk_when_the_number_is_flagged(live: Live) -> None:
    """A mother hangs up on a robocaller's recording after 13 seconds; the number is flagged an
    hour later; she then sends her son his share of the down payment: no hold. Had she talked
    with it for minutes, the same payment to a stranger would be held."""
    for talk, held in ((13, False), (240, True)):
        robo, phone = new_phone(), new_phone()
        live.telecom.report_call(call_event(uid("c"), recent(50), robo, phone, duration_seconds=talk,
                                            outcome=pb.CALL_OUTCOME_ANSWERED))
        for i in range(25):
            live.telecom.report_call(call_event(uid("c"), recent(39 - i), robo, new_phone(),
                                                outcome=pb.CALL_OUTCOME_UNANSWERED))
        d = live.bank.screen(transaction(uid("t"), recent(10), uid("mother"), uid("son"), 500_000,
                                         payer_phone=phone, **AGED))
        assert ("LAST_CALLER_NOW_RISKY" in _codes(d)) is held, (talk, _codes(d))


def test_paying_a_relative_after_a_talk_with_a_number_flagged_since_is_not_held(live: Live) -> None:
    """She did talk with the robocaller's person for minutes, then pays her son, whose phone she
    speaks with: a victim pays a stranger, so no hold."""
    robo, phone, son_phone = new_phone(), new_phone(), new_phone()
    live.telecom.report_call(call_event(uid("c"), recent(300), son_phone, phone, duration_seconds=400,
                                        outcome=pb.CALL_OUTCOME_ANSWERED))
    live.telecom.report_call(call_event(uid("c"), recent(50), robo, phone, duration_seconds=240,
                                        outcome=pb.CALL_OUTCOME_ANSWERED))
    for i in range(25):
        live.telecom.report_call(call_event(uid("c"), recent(39 - i), robo, new_phone(),
                                            outcome=pb.CALL_OUTCOME_UNANSWERED))
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("mother"), uid("son"), 500_000,
                                     payer_phone=phone, payee_phone=son_phone, **AGED))
    assert "LAST_CALLER_NOW_RISKY" not in _codes(d), _codes(d)


def test_a_payment_just_after_a_long_talk_with_a_virtual_operator_number_is_warned(live: Live) -> None:
    """An impersonator talks the victim through the first payment from a virtual-operator
    number no one has flagged yet, and hangs up minutes before the victim pays a new account."""
    caller, victim_phone = "+86170" + new_phone()[-8:], new_phone()
    call = live.telecom.report_call(call_event(uid("c"), recent(30), caller, victim_phone,
                                               duration_seconds=900, outcome=pb.CALL_OUTCOME_ANSWERED,
                                               caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    assert call.action == pb.CALL_ACTION_ALLOW  # one call: nothing to flag the number by
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), uid("safe"), 300_000,
                                     payer_phone=victim_phone, **AGED))
    assert d.action == pb.ACTION_WARN and "TALKED_WITH_RISKY_CLASS_THEN_NEW_PAYEE" in _codes(d)
    assert d.features["payer_last_call_ended_minutes"] == pytest.approx(5.0, abs=0.1)
    assert d.features["payer_last_call_talk_seconds"] == 900.0


def test_a_payment_after_a_courier_call_from_a_virtual_operator_number_is_allowed(live: Live) -> None:
    """A delivery platform's privacy number calls for half a minute: no conversation to be
    talked into anything, so the payment after it is not warned."""
    courier, phone = "+86170" + new_phone()[-8:], new_phone()
    live.telecom.report_call(call_event(uid("c"), recent(15), courier, phone, duration_seconds=40,
                                        outcome=pb.CALL_OUTCOME_ANSWERED,
                                        caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("p"), uid("q"), 300_000,
                                     payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_ALLOW and "TALKED_WITH_RISKY_CLASS_THEN_NEW_PAYEE" not in _codes(d)


def test_a_ringing_or_unanswered_call_with_talk_time_is_invalid(live: Live) -> None:
    with pytest.raises(grpc.RpcError) as err:
        live.telecom.report_call(call_event(uid("c"), recent(5), new_phone(), new_phone(),
                                            duration_seconds=30,
                                            outcome=pb.CALL_OUTCOME_UNANSWERED))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("duration_seconds")


# ------------------------------------------------------------------ illegal fundraising
def _fundraising_pool(live: Live, minutes: float = 200) -> tuple[str, list[str]]:
    """An account open for years (older than the intake rule's three) takes 'investment' money
    from 12 people and has paid no 'returns' yet. Returns (account, investors)."""
    fund, investors = uid("fund"), [uid("inv") for _ in range(12)]
    intake = [
        live.bank.screen(transaction(uid("t"), recent(minutes - i), inv, fund, 20_000_000, memo="投资款",
                                     payee_type=pb.PARTY_TYPE_ORGANISATION, payer_opened=OLD,
                                     payee_opened="2019-03-01"))
        for i, inv in enumerate(investors)
    ]
    assert all(d.action == pb.ACTION_ALLOW for d in intake)  # no collector mark from the intake
    assert live.police.query_account(fund).features["suspected_collector"] == 0.0
    return fund, investors


def _pays(live: Live, minutes: float, fund: str, person: str, amount: int) -> pb.Decision:
    return live.bank.screen(transaction(uid("t"), recent(minutes), fund, person, amount,
                                        payer_type=pb.PARTY_TYPE_ORGANISATION, **AGED))


def test_a_ponzi_collector_moving_the_pool_to_a_controller_is_stopped(live: Live) -> None:
    """Days before the collapse the pool goes to a controller's personal card, who sends it
    abroad: the exit is stopped, the collector and the controller are marked, the transfer
    abroad and the next exit are stopped too. A large redemption to an investor is no exit."""
    fund, investors = _fundraising_pool(live)
    controller = uid("ctrl")
    redemption = _pays(live, 150, fund, investors[0], 21_000_000)
    assert "FUNDRAISING_POOL_TO_PERSON" not in _codes(redemption)
    exit_ = _pays(live, 100, fund, controller, 100_000_000)
    assert exit_.action == pb.ACTION_STOP_PAYMENT and "FUNDRAISING_POOL_TO_PERSON" in _codes(exit_)
    assert exit_.reports.suspicious and exit_.reports.notify_police
    assert exit_.features["payer_investment_in_count_7d"] == 12.0
    roles = [m.role for m in live.police.query_account(fund).case_marks]
    assert roles == [pb.CASE_ROLE_SUSPECTED_COLLECTOR]
    abroad = live.bank.screen(transaction(uid("t"), recent(80), controller, uid("os"), 4_500_000,
                                          currency="USD", cross_border=True, payer_opened=OLD,
                                          channel=pb.CHANNEL_ONLINE_BANKING))
    assert abroad.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(abroad)
    again = _pays(live, 60, fund, uid("ctrl2"), 50_000_000)
    assert again.action == pb.ACTION_STOP_PAYMENT and "COLLECTOR_MOVES_OUT" in _codes(again)


def test_a_pool_the_bank_cleared_pays_out_without_a_stop(live: Live) -> None:
    """The bank checks the stopped account: a licensed product redeeming to a buyer this server
    never saw pay in. After a false-alarm feedback on the account the next such payment goes
    through."""
    fund, _ = _fundraising_pool(live)
    first = _pays(live, 100, fund, uid("buyer"), 30_000_000)
    assert first.action == pb.ACTION_STOP_PAYMENT
    live.bank.submit_feedback(pb.FEEDBACK_VERDICT_FALSE_ALARM, account_id=fund,
                              note="licensed product, redemption verified")
    nxt = _pays(live, 90, fund, uid("buyer"), 30_000_000)
    assert nxt.action < pb.ACTION_HOLD
    assert not {"FUNDRAISING_POOL_TO_PERSON", "COLLECTOR_MOVES_OUT"} & set(_codes(nxt))


# ------------------------------------------------------------------ no call to see
@pytest.mark.parametrize("funded", [False, True])
def test_a_large_first_payment_out_of_savings_to_a_stranger_is_warned(live: Live, funded: bool) -> None:
    """A saver who pays a few hundred yuan at a time, groomed in a chat app (no call), sends
    20,000 CNY to an old account of a person nobody paid before: warned. The same payment from
    someone whose mother sent 15,000 CNY that week (a purchase the family pays for) is not."""
    saver = uid("saver")
    for i in range(5):
        live.bank.screen(transaction(uid("t"), recent(300 - i), saver, uid("shop"), 20_000, **AGED))
    if funded:
        live.bank.screen(transaction(uid("t"), recent(200), uid("mother"), saver, 1_500_000, **AGED))
    d = live.bank.screen(transaction(uid("t"), recent(100), saver, uid("stranger"), 2_000_000, **AGED))
    assert ("LARGE_FIRST_PAYMENT_TO_STRANGER" in _codes(d)) is not funded, _codes(d)
    if funded:
        assert d.action == pb.ACTION_ALLOW  # (an ALLOW carries no features)
    else:
        assert d.action == pb.ACTION_WARN and d.features["payer_in_cover_7d"] == 0.0


# ------------------------------------------------------------------ the account registry
def test_a_registry_dormant_account_that_wakes_and_forwards_is_stopped(live: Live) -> None:
    """An old account idle for a year (the registry says) receives a victim's money and passes
    it on within minutes: the victim is warned, the forwarding stopped."""
    rented = uid("rented")
    assert live.bank.upsert_accounts([pb.AccountProfile(
        account_id=rented, party_type=pb.PARTY_TYPE_PERSON, opened_date="2014-03-01",
        last_active_date="2025-01-10")]).upserted == 1
    d = live.bank.screen(transaction(uid("t"), recent(30), uid("victim"), rented, 2_000_000,
                                     payer_opened=OLD))
    assert d.action >= pb.ACTION_WARN and "WOKEN_DORMANT_ACCOUNT_RECEIVES" in _codes(d)
    assert d.features["payee_days_since_wake"] == 0.0
    out = live.bank.screen(transaction(uid("t"), recent(25), rented, uid("l2"), 600_000,
                                       payee_opened=OLD))
    assert out.action == pb.ACTION_STOP_PAYMENT and "WOKEN_DORMANT_FORWARDS" in _codes(out)


@pytest.mark.parametrize(("payer", "warned"), [("stranger", True), ("owner", False), ("insurer", False)])
def test_an_old_account_woken_by_its_owner_is_not_warned_about(live: Live, payer: str,
                                                                warned: bool) -> None:
    """An account idle for a year (the registry says, with its owner's phone on file) gets
    20,000 CNY: from a stranger, warned (a rented account); from its owner's everyday card (the
    payment comes from the phone on file), or from an insurer paying a claim into it, not: no
    victim pays itself, and a company is no one's fraud loss."""
    old, phone = uid("old"), new_phone()
    assert live.bank.upsert_accounts([pb.AccountProfile(
        account_id=old, party_type=pb.PARTY_TYPE_PERSON, opened_date="2014-03-01",
        last_active_date="2025-01-10", phone=phone)]).upserted == 1
    kind = pb.PARTY_TYPE_ORGANISATION if payer == "insurer" else pb.PARTY_TYPE_PERSON
    d = live.bank.screen(transaction(uid("t"), recent(30), uid(payer), old, 2_000_000,
                                     payer_type=kind, payer_opened=OLD,
                                     payer_phone=phone if payer == "owner" else new_phone()))
    assert ("WOKEN_DORMANT_ACCOUNT_RECEIVES" in _codes(d)) is warned, _codes(d)
    if warned:
        assert d.features["payee_phone_is_payer_phone"] == 0.0


def test_a_rented_account_tested_with_a_few_yuan_warns_the_strangers_who_pay_it(live: Live) -> None:
    """No registry: the gang checks the account it bought with a 6 CNY transfer to one of its own,
    then two brushing victims pay it within the hour: both warned; the first piece passed on is
    stopped (held for the test transfer; since 2026.12.17 stopped, the money having been warned
    about on its way in). A wage into another account that began with a few yuan ends its
    trial."""
    rented, gang = uid("rented"), uid("gang")
    test = live.bank.screen(transaction(uid("t"), recent(90), rented, gang, 600, **AGED))
    assert test.action == pb.ACTION_ALLOW
    victims = [uid("v1"), uid("v2")]
    paid = [live.bank.screen(transaction(uid("t"), recent(60 - 10 * i), v, rented, fen, **AGED))
            for i, (v, fen) in enumerate(zip(victims, (30_000, 450_000), strict=True))]
    for d in paid:
        assert d.action == pb.ACTION_WARN and "TESTED_ACCOUNT_RECEIVES" in _codes(d)
        assert 0.0 < d.features["payee_days_since_test_transfer"] < 0.1
    # minutes later the first piece leaves for the gang's next account: stopped while most of
    # the money is still there, and the account a suspect from then on
    piece = live.bank.screen(transaction(uid("t"), recent(45), rented, uid("l2"), 200_000, **AGED))
    assert piece.action == pb.ACTION_STOP_PAYMENT
    assert {"TESTED_ACCOUNT_FORWARDS", "FORWARDS_WARNED_PAYMENT"} <= set(_codes(piece))
    assert piece.reports.suspicious and piece.reports.notify_police
    nxt = live.bank.screen(transaction(uid("t"), recent(44), rented, uid("l2"), 200_000, **AGED))
    assert nxt.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(nxt)
    worker = uid("worker")
    live.bank.screen(transaction(uid("t"), recent(90), uid("friend"), worker, 500, **AGED))
    live.bank.screen(transaction(uid("t"), recent(80), uid("employer"), worker, 600_000,
                                 payer_type=pb.PARTY_TYPE_ORGANISATION, **AGED))
    later = live.bank.screen(transaction(uid("t"), recent(50), uid("cousin"), worker, 200_000, **AGED))
    assert later.action == pb.ACTION_ALLOW and "TESTED_ACCOUNT_RECEIVES" not in _codes(later)


def _conduit(live: Live, account: str, forward_to: list[str], payee_type: int = pb.PARTY_TYPE_PERSON,
             ) -> list[pb.Decision]:
    """Two strangers pay ``account`` (an old account the service knows nothing else about: no
    registry, no history) 14,000 CNY, and within minutes it passes the money on in pieces."""
    for i, (payer, fen) in enumerate(((uid("v1"), 800_000), (uid("v2"), 600_000))):
        d = live.bank.screen(transaction(uid("t"), recent(50 - 5 * i), payer, account, fen, **AGED))
        assert d.action == pb.ACTION_ALLOW
    return [live.bank.screen(transaction(uid("t"), recent(40 - 2 * k), account, payee, fen,
                                         payee_type=payee_type, **AGED))
            for k, (payee, fen) in enumerate(zip(forward_to, (500_000, 400_000, 300_000), strict=True))]


def test_an_old_account_passing_strangers_money_straight_on_is_held_then_stopped(live: Live) -> None:
    """A rented account is old and unknown, so its age proves nothing: what it does does. Money
    from two people leaves in three pieces within minutes: held, reported, and from then on a
    suspected mule (its next payment stopped, the next victim paying it held)."""
    rented = uid("rented")
    first, second, third = _conduit(live, rented, [uid("l2"), uid("l2"), uid("l2")])
    assert "MULE_CONDUIT" not in _codes(first) + _codes(second)  # 64 % passed on: not yet
    assert third.action == pb.ACTION_HOLD and "MULE_CONDUIT" in _codes(third)
    assert third.reports.suspicious and third.features["payer_pass_through_1h"] >= 0.8
    nxt = live.bank.screen(transaction(uid("t"), recent(30), rented, uid("p"), 150_000, **AGED))
    assert nxt.action == pb.ACTION_STOP_PAYMENT and "SUSPECTED_MULE_PAYS_OUT" in _codes(nxt)
    victim = live.bank.screen(transaction(uid("t"), recent(25), uid("v3"), rented, 500_000, **AGED))
    assert victim.action >= pb.ACTION_HOLD and "PAYS_SUSPECTED_MULE" in _codes(victim)


def test_the_suspects_money_is_followed_to_new_payees_not_back_to_its_payers(live: Live) -> None:
    """When an account becomes a suspected mule, its payees of the last day got the money and
    become suspects; not an account it paid back (a friend who lent it money, a Ponzi's
    investor getting a "return"), and not the cash machine it used."""
    rented, friend, atm, onward = uid("rented"), uid("friend"), uid("atm"), uid("l2")
    live.bank.screen(transaction(uid("t"), recent(3 * 24 * 60), friend, rented, 30_000, **AGED))
    back = live.bank.screen(transaction(uid("t"), recent(120), rented, friend, 30_000, **AGED))
    cash = live.bank.screen(transaction(uid("t"), recent(90), rented, atm, 20_000, cash=True,
                                        channel=pb.CHANNEL_ATM,
                                        payee_type=pb.PARTY_TYPE_CASH_TERMINAL, **AGED))
    assert back.action == cash.action == pb.ACTION_ALLOW
    *_, third = _conduit(live, rented, [onward, uid("l2b"), onward])
    assert third.action == pb.ACTION_HOLD and "MULE_CONDUIT" in _codes(third)

    def mule_level(account: str) -> int:
        marks = [m for m in live.police.query_account(account).case_marks
                 if m.role == pb.CASE_ROLE_SUSPECTED_MULE]
        return marks[0].mule_level if marks else 0

    assert (mule_level(rented), mule_level(onward)) == (1, 2)
    assert mule_level(friend) == 0 and mule_level(atm) == 0
    rent = live.bank.screen(transaction(uid("t"), recent(10), friend, uid("landlord"), 300_000, **AGED))
    assert "SUSPECTED_MULE_PAYS_OUT" not in _codes(rent) and rent.action == pb.ACTION_ALLOW


def test_a_boss_paying_the_staff_from_a_personal_card_is_no_conduit(live: Live) -> None:
    """The firm pays the boss's card the month's wages and the boss pays them on, one transfer
    after another; a friend's small transfer the same morning makes it no strangers' money: no
    hold, and the staff are no suspects."""
    boss, staff = uid("boss"), [uid("staff") for _ in range(4)]
    firm = live.bank.screen(transaction(uid("t"), recent(300), uid("firm"), boss, 4_000_000,
                                        payer_type=pb.PARTY_TYPE_ORGANISATION, **AGED))
    friend = live.bank.screen(transaction(uid("t"), recent(60), uid("friend"), boss, 85_800, **AGED))
    wages = [live.bank.screen(transaction(uid("t"), recent(50 - 2 * k), boss, s, 900_000, memo="工资",
                                          **AGED))
             for k, s in enumerate(staff)]
    for d in [firm, friend, *wages]:
        assert d.action == pb.ACTION_ALLOW, _codes(d)
    lunch = live.bank.screen(transaction(uid("t"), recent(20), staff[0], uid("canteen"), 3_500, **AGED))
    assert lunch.action == pb.ACTION_ALLOW and lunch.features["payer_suspected_mule"] == 0.0


def test_a_group_buy_organiser_paying_the_supplier_from_the_days_takings_is_no_conduit(live: Live) -> None:
    """The salary in the morning, the rent paid from it, neighbours' 30-150 CNY through the day,
    and in the evening the supplier paid: more leaves within the hour than came in within it,
    the day's money, not the hour's: no hold, and the neighbours paying next time are not held."""
    organiser, supplier = uid("organiser"), uid("farmer")
    live.bank.screen(transaction(uid("t"), recent(14 * 60), uid("firm"), organiser, 980_000,
                                 payer_type=pb.PARTY_TYPE_ORGANISATION, **AGED))
    live.bank.screen(transaction(uid("t"), recent(14 * 60 - 5), organiser, uid("landlord"), 720_000, **AGED))
    neighbours = [uid("neighbour") for _ in range(16)]
    for i, n in enumerate(neighbours):
        live.bank.screen(transaction(uid("t"), recent(13 * 60 - 48 * i), n, organiser, 3_000 + 700 * i,
                                     **AGED))
    live.bank.screen(transaction(uid("t"), recent(6 * 60), organiser, uid("shop"), 69_400, **AGED))
    paid = [live.bank.screen(transaction(uid("t"), recent(40 - k), organiser, supplier, fen, **AGED))
            for k, fen in enumerate((147_400, 20_000))]
    for d in paid:
        assert d.action == pb.ACTION_ALLOW and "MULE_CONDUIT" not in _codes(d), _codes(d)
    again = live.bank.screen(transaction(uid("t"), recent(5), neighbours[0], organiser, 6_000, **AGED))
    assert again.action == pb.ACTION_ALLOW and again.features["payee_suspected_mule"] == 0.0


@pytest.mark.parametrize("family", [True, False])
def test_money_relatives_send_passed_on_is_no_mules_but_strangers_is(live: Live, family: bool) -> None:
    """A young account gets 30,000 CNY from two people within the hour and pays most of it on
    to two accounts within minutes. When the two are the buyer's parents (they talk on the
    phone; the service learned each account's phone from its payments) it is a down payment
    pooled for a flat: allowed. When nobody who paid has ever spoken with the account's owner,
    it is strangers' money passed straight on: stopped as a mule's."""
    young = dict(payer_opened="2026-10-01", payee_opened="2026-10-01")
    buyer, phone = uid("buyer"), new_phone()
    live.bank.screen(transaction(uid("t"), recent(600), buyer, uid("grocer"), 4_000, payer_phone=phone,
                                 **young))
    sent = []
    for i, fen in enumerate((1_800_000, 1_200_000)):
        helper, helper_phone = uid("helper"), new_phone()
        if family:
            live.telecom.report_call(call_event(uid("c"), recent(2_000 + i), helper_phone, phone,
                                                duration_seconds=300, outcome=pb.CALL_OUTCOME_ANSWERED))
        sent.append(live.bank.screen(transaction(uid("t"), recent(50 - i), helper, buyer, fen,
                                                 payer_phone=helper_phone, **young)))
    assert all(d.action == pb.ACTION_ALLOW for d in sent), [_codes(d) for d in sent]
    paid = [live.bank.screen(transaction(uid("t"), recent(30 - k), buyer, payee, fen, payer_phone=phone,
                                         **young))
            for k, (payee, fen) in enumerate(((uid("seller"), 2_000_000), (uid("notary"), 800_000)))]
    mule = [c for d in paid for c in _codes(d) if c.startswith("MULE_")]
    if family:
        assert not mule and all(d.action == pb.ACTION_ALLOW for d in paid), [_codes(d) for d in paid]
    else:
        assert mule and paid[0].action == pb.ACTION_STOP_PAYMENT, [_codes(d) for d in paid]


def test_a_first_call_from_an_ordinary_number_then_ten_times_the_usual_to_a_fresh_account_is_warned(
        fresh: Live) -> None:
    """The callback fraudster's number is an ordinary mobile nobody flagged: the payer never
    spoke with it, talked for minutes, and pays ten times its usual to an account nothing was
    paid into: warned, and paying it again is stopped. The relative calling from a new phone
    and paid on their own account (whose phone the bank learned from its payments) is not
    warned; nor anyone on a server that has seen less than a week."""
    def setup(days_seen: float) -> tuple[str, str]:
        payer, phone = uid("payer"), new_phone()
        fresh.bank.screen(transaction(uid("t"), recent(days_seen * 24 * 60), payer, uid("shop"), 30_000,
                                      payer_phone=phone, **AGED))
        return payer, phone

    def talk(caller: str, callee: str) -> None:
        fresh.telecom.report_call(call_event(uid("c"), recent(30), caller, callee, duration_seconds=420,
                                             outcome=pb.CALL_OUTCOME_ANSWERED))

    early_payer, early_phone = setup(2)  # the server's first event: two days ago
    talk(new_phone(), early_phone)
    early = fresh.bank.screen(transaction(uid("t"), recent(10), early_payer, uid("safe"), 900_000,
                                          payer_phone=early_phone, **AGED))
    assert "NEW_CALLER_THEN_FRESH_PAYEE" not in _codes(early)  # the server's first week
    victim, phone = setup(10)
    talk(new_phone(), phone)
    safe = uid("safe")
    d = fresh.bank.screen(transaction(uid("t"), recent(10), victim, safe, 900_000,
                                      payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_WARN and "NEW_CALLER_THEN_FRESH_PAYEE" in _codes(d), _codes(d)
    assert d.features["payer_last_call_first_contact"] == 1.0
    again = fresh.bank.screen(transaction(uid("t"), recent(5), victim, safe, 500_000,
                                          payer_phone=phone, **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_WARNED_PAYEE" in _codes(again)
    parent, parent_phone = setup(9)
    son, son_phone = uid("son"), new_phone()
    fresh.bank.screen(transaction(uid("t"), recent(3 * 24 * 60), son, uid("canteen"), 2_000,
                                  payer_phone=son_phone, **AGED))
    talk(son_phone, parent_phone)
    paid = fresh.bank.screen(transaction(uid("t"), recent(10), parent, son, 900_000,
                                         payer_phone=parent_phone, **AGED))
    assert paid.action == pb.ACTION_ALLOW, _codes(paid)


def test_a_rented_account_splitting_one_victims_money_within_minutes_is_held(live: Live) -> None:
    """A brushing victim's 3,500 CNY, far under any day's line, leaves the rented account within
    minutes in three pieces to the gang's next account, a game-card platform and another card:
    the piece that passes 80 % on is held and reported, and the next victim paying it is held."""
    rented = uid("rented")
    d = live.bank.screen(transaction(uid("t"), recent(60), uid("v1"), rented, 350_000, **AGED))
    assert d.action == pb.ACTION_ALLOW
    pieces = [live.bank.screen(transaction(uid("t"), recent(50 - k), rented, payee, fen,
                                           payee_type=kind, **AGED))
              for k, (payee, fen, kind) in enumerate(((uid("l2"), 140_000, pb.PARTY_TYPE_PERSON),
                                                      (uid("cards"), 100_000, pb.PARTY_TYPE_ORGANISATION),
                                                      (uid("l2"), 60_000, pb.PARTY_TYPE_PERSON)))]
    assert all("MULE_QUICK_SPLIT" not in _codes(x) for x in pieces[:2])  # 40 %, 69 % passed on
    third = pieces[2]
    assert third.action == pb.ACTION_HOLD and "MULE_QUICK_SPLIT" in _codes(third)
    assert third.reports.suspicious and third.reports.notify_police
    victim = live.bank.screen(transaction(uid("t"), recent(30), uid("v2"), rented, 80_000, **AGED))
    assert victim.action >= pb.ACTION_HOLD and "PAYS_SUSPECTED_MULE" in _codes(victim)


def test_money_passed_on_to_one_payee_in_pieces_is_not_a_quick_split(live: Live) -> None:
    """Parents' 5,000 CNY paid on to the landlord in three transfers within the hour."""
    tenant, landlord = uid("tenant"), uid("landlord")
    live.bank.screen(transaction(uid("t"), recent(60), uid("parent"), tenant, 500_000, **AGED))
    pieces = [live.bank.screen(transaction(uid("t"), recent(50 - k), tenant, landlord, fen, **AGED))
              for k, fen in enumerate((200_000, 200_000, 100_000))]
    assert all(x.action == pb.ACTION_ALLOW and "MULE_QUICK_SPLIT" not in _codes(x) for x in pieces)


def test_wages_paid_from_the_boss_card_are_no_split_a_strangers_money_is(live: Live) -> None:
    """The firm pays the boss's personal card the month's wages and the boss pays the staff one
    after another: an organisation's money passed on, no mule, and the staff are no suspects.
    The same run after a stranger paid the card in is a mule's split."""
    def run(source: str, payer_type: int) -> list[pb.Decision]:
        boss = uid("boss")
        live.bank.screen(transaction(uid("t"), recent(50), source, boss, 3_000_000,
                                     payer_type=payer_type, **AGED))
        staff = [uid("staff") for _ in range(6)]
        paid = [live.bank.screen(transaction(uid("t"), recent(45 - k), boss, who, 450_000, memo="工资",
                                             **AGED)) for k, who in enumerate(staff)]
        rent = live.bank.screen(transaction(uid("t"), recent(20), staff[0], uid("landlord"), 200_000,
                                            **AGED))
        return [*paid, rent]

    *wages, rent = run(uid("firm"), pb.PARTY_TYPE_ORGANISATION)
    assert all(d.action == pb.ACTION_ALLOW for d in wages), [_codes(d) for d in wages]
    assert rent.action == pb.ACTION_ALLOW, _codes(rent)
    *pieces, _ = run(uid("stranger"), pb.PARTY_TYPE_PERSON)
    assert pieces[-1].action >= pb.ACTION_HOLD, [_codes(d) for d in pieces]
    assert {"MULE_QUICK_SPLIT", "RAPID_FAN_OUT"} & set(_codes(pieces[-1]))


def test_a_down_payment_paid_on_in_pieces_is_not_a_quick_split(live: Live) -> None:
    """Parents send 600,000 CNY; within the hour the buyer pays the seller in two transfers and
    the water bill between them: passed on, in three pieces, to two accounts, but no victim's
    savings (a large-value day)."""
    buyer, seller = uid("buyer"), uid("seller")
    live.bank.screen(transaction(uid("t"), recent(60), uid("parents"), buyer, 60_000_000, **AGED))
    pieces = [live.bank.screen(transaction(uid("t"), recent(50 - k), buyer, payee, fen, **AGED))
              for k, (payee, fen) in enumerate(((seller, 30_000_000), (uid("water"), 26_000),
                                                (seller, 20_000_000)))]
    assert all("MULE_QUICK_SPLIT" not in _codes(x) and x.action < pb.ACTION_HOLD for x in pieces)


def test_a_protected_victim_passing_a_loan_on_is_not_made_a_mule(live: Live) -> None:
    """Stopped once, the victim is told to borrow and pay the loan on in pieces: every piece is
    held for the victim's sake, none makes the victim a suspected mule (whose landlord, paid
    later, would be held)."""
    victim, phone, _first_safe, first = _stopped_victim(live, minutes=45)
    assert first.action == pb.ACTION_STOP_PAYMENT
    live.bank.screen(transaction(uid("t"), recent(40), uid("lender"), victim, 3_000_000,
                                 payer_type=pb.PARTY_TYPE_ORGANISATION, **AGED))
    safe = [uid("safe"), uid("safe")]
    pieces = [live.bank.screen(transaction(uid("t"), recent(35 - k), victim, safe[k % 2], fen,
                                           payer_phone=phone, **AGED))
              for k, fen in enumerate((1_200_000, 1_000_000, 500_000))]
    assert all(x.action >= pb.ACTION_HOLD and "MULE_QUICK_SPLIT" not in _codes(x) for x in pieces)
    assert all("PROTECTED_VICTIM_NEW_PAYEE" in _codes(x) for x in pieces[:2])
    rent = live.bank.screen(transaction(uid("t"), recent(20), uid("roommate"), victim, 150_000, **AGED))
    assert "PAYS_SUSPECTED_MULE" not in _codes(rent)


def test_donations_passed_on_to_a_hospital_are_not_a_conduit(live: Live) -> None:
    """The same flow paid to an organisation (a hospital bill, a supplier) is not a mule's."""
    hospital = uid("hospital")
    decisions = _conduit(live, uid("organiser"), [hospital] * 3, pb.PARTY_TYPE_ORGANISATION)
    assert all("MULE_CONDUIT" not in _codes(d) and d.action == pb.ACTION_ALLOW for d in decisions)


def test_registry_values_are_checked_and_name_the_field(live: Live) -> None:
    with pytest.raises(grpc.RpcError) as err:
        live.bank.upsert_accounts([pb.AccountProfile(account_id=uid("a"), opened_date="2014-13-01")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("accounts[0].opened_date")
    with pytest.raises(grpc.RpcError) as err:
        live.telecom.upsert_accounts([pb.AccountProfile(account_id=uid("a"))])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_paying_a_young_fresh_account_while_on_a_long_call_is_warned(live: Live) -> None:
    """An impersonator on an ordinary mobile number (no class to flag) talks the victim through
    paying an account opened two months ago that nothing was ever paid into: warned. The same
    call, then paying a relative's old account: not by this rule."""
    caller, victim_phone = new_phone(), new_phone()
    live.telecom.report_call(call_event(uid("c"), recent(30), caller, victim_phone,
                                        outcome=pb.CALL_OUTCOME_ANSWERED))  # answered, still going on
    young = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=60)).isoformat()
    d = live.bank.screen(transaction(uid("t"), recent(5), uid("v"), uid("safe"), 500_000,
                                     payer_phone=victim_phone, payer_opened=OLD, payee_opened=young))
    assert d.action >= pb.ACTION_WARN and "TALKED_THEN_PAYS_YOUNG_FRESH_ACCOUNT" in _codes(d)
    assert d.features["payer_last_call_talk_seconds"] >= 300
    relative = live.bank.screen(transaction(uid("t"), recent(4), uid("p"), uid("rel"), 500_000,
                                            payer_phone=victim_phone, **AGED))
    assert "TALKED_THEN_PAYS_YOUNG_FRESH_ACCOUNT" not in _codes(relative)


@pytest.mark.parametrize("in_use", [True, False])
def test_paying_during_a_call_from_a_new_number_holds_and_suspects_only_a_fresh_account(
        fresh: Live, in_use: bool) -> None:
    """Past the learning period (the server's first event a month ago), a payer on a call with a
    number it never spoke with pays 8,000 CNY to a new payee: held either way; the payee made a
    suspected mule only when nothing was ever paid into it (a landlord tenants pay is not)."""
    fresh.bank.screen(transaction(uid("t"), recent(31 * 24 * 60), uid("a"), uid("b"), 10_000, **AGED))
    payee, phone = uid("payee"), new_phone()
    if in_use:
        for i in range(2):
            fresh.bank.screen(transaction(uid("t"), recent(300 - i), uid("tenant"), payee, 300_000, **AGED))
    fresh.telecom.report_call(call_event(uid("c"), recent(3), new_phone(), phone,
                                         outcome=pb.CALL_OUTCOME_RINGING))
    d = fresh.bank.screen(transaction(uid("t"), recent(1), uid("v"), payee, 800_000, payer_phone=phone,
                                      **AGED))
    assert d.features["payer_on_call_unknown_caller"] == 1.0
    code = "ON_CALL_NEW_PAYEE_LARGE" + ("_TO_ACCOUNT_IN_USE" if in_use else "")
    assert d.action >= pb.ACTION_HOLD and code in _codes(d), _codes(d)
    marks = [m.role for m in fresh.police.query_account(payee).case_marks]
    assert (pb.CASE_ROLE_SUSPECTED_MULE in marks) is not in_use


def test_a_large_payment_after_a_risky_call_to_an_account_others_pay_makes_no_suspect(
        live: Live) -> None:
    """After a first call from abroad the payer sends 8,000 CNY to a landlord whom tenants pay
    every month: stopped and the payer protected, but the landlord is not made a suspected mule
    (so the next tenant paying the landlord is not held)."""
    landlord, phone = uid("landlord"), new_phone()
    for i in range(2):
        live.bank.screen(transaction(uid("t"), recent(300 - i), uid("tenant"), landlord, 300_000, **AGED))
    _call_from_abroad(live, 40, "+85292" + new_phone()[-6:], phone)
    d = live.bank.screen(transaction(uid("t"), recent(20), uid("v"), landlord, 800_000,
                                     payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_STOP_PAYMENT and "CALL_THEN_TRANSFER_LARGE_TO_ACCOUNT_IN_USE" in _codes(d)
    assert "CALL_THEN_TRANSFER_LARGE" not in _codes(d)
    assert pb.CASE_ROLE_SUSPECTED_MULE not in [m.role for m in live.police.query_account(landlord).case_marks]
    tenant = live.bank.screen(transaction(uid("t"), recent(10), uid("tenant"), landlord, 300_000, **AGED))
    assert tenant.action == pb.ACTION_ALLOW


@pytest.mark.parametrize(("unanswered", "warned"), [(4, False), (5, True)])
def test_a_privacy_number_is_warned_about_only_when_most_of_its_calls_go_unanswered(
        live: Live, unanswered: int, warned: bool) -> None:
    """A courier's privacy number: eight short calls this morning, half of them unanswered (by
    chance, early in the day): its next new callee is not warned. A sprayer whose calls mostly
    go unanswered: warned."""
    number = "+86170" + new_phone()[-8:]
    outcomes = [pb.CALL_OUTCOME_UNANSWERED] * unanswered + [pb.CALL_OUTCOME_ANSWERED] * (8 - unanswered)
    last = None
    for i, outcome in enumerate(outcomes[1:] + outcomes[:1]):  # the eighth call is an unanswered one
        talk = 20 if outcome == pb.CALL_OUTCOME_ANSWERED else 0
        last = live.telecom.report_call(call_event(uid("c"), recent(90 - 10 * i), number, new_phone(),
                                                   duration_seconds=talk, outcome=outcome,
                                                   caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))
    assert last is not None
    assert ("VIRTUAL_OPERATOR_SHORT_CALLS" in _codes(last)) is warned
    assert last.action == (pb.CALL_ACTION_WARN_CALLEE if warned else pb.CALL_ACTION_ALLOW)


@pytest.mark.parametrize(("week", "code"), [
    ("deliveries", None),
    ("none", "VIRTUAL_OPERATOR_SHORT_CALLS"),
    ("conversations", "VIRTUAL_OPERATOR_SHORT_CALLS_AFTER_TALKS"),
])
def test_a_privacy_number_answered_all_week_is_not_warned_about_after_a_day_off(
        live: Live, week: str, code: str | None) -> None:
    """A courier's privacy number worked three days ago (17 of 20 calls answered, 20 seconds
    each), then took days off; this morning five of its first eight calls go unanswered, a
    sprayer's pattern over the day but not over the week: its eighth callee is not warned. The
    same morning from a number with no week behind it is warned, and from one whose answered
    calls that day were ten-minute conversations (a fraudster's who kept victims on the line)."""
    number = "+86170" + new_phone()[-8:]

    def ring(minutes: float, outcome: pb.CallOutcome.ValueType, talk: int = 20) -> pb.CallDecision:
        return live.telecom.report_call(call_event(
            uid("c"), recent(minutes), number, new_phone(),
            duration_seconds=talk if outcome == pb.CALL_OUTCOME_ANSWERED else 0, outcome=outcome,
            caller_class=pb.NUMBER_CLASS_VIRTUAL_OPERATOR))

    for i in range(0 if week == "none" else 20):
        ring(3 * 24 * 60 - 15 * i, pb.CALL_OUTCOME_UNANSWERED if i % 7 == 3 else pb.CALL_OUTCOME_ANSWERED,
             talk=600 if week == "conversations" else 20)
    outcomes = [pb.CALL_OUTCOME_UNANSWERED] * 5 + [pb.CALL_OUTCOME_ANSWERED] * 3
    last = None
    for i, outcome in enumerate(outcomes[1:] + outcomes[:1]):
        last = ring(90 - 10 * i, outcome)
    assert last is not None
    assert _codes(last) == ([code] if code else []), _codes(last)
    assert last.action == (pb.CALL_ACTION_WARN_CALLEE if code else pb.CALL_ACTION_ALLOW)
    if week == "none":
        assert last.features["caller_unanswered_ratio_7d"] == pytest.approx(5 / 8)
    if week == "conversations":
        assert last.features["caller_unanswered_ratio_7d"] == pytest.approx(8 / 28)
        assert last.features["caller_mean_talk_seconds_7d"] == pytest.approx((17 * 600 + 3 * 20) / 20)


def test_a_payer_kept_on_the_line_paying_a_strangers_account_is_warned_and_cannot_pay_it_again(
        live: Live) -> None:
    """Twenty minutes into a call the victim pays 5,000 CNY, ten times its usual, into an old
    account two others paid (a rented account: not fresh, no phone the bank knows): warned; the
    second payment to it, still on the call, is stopped. The same customer paying, on the same
    kind of call, the account of someone it talks with is not warned."""
    phone, victim, mule = new_phone(), uid("victim"), uid("rented")
    for i in range(6):
        live.bank.screen(transaction(uid("t"), recent(600 - i), victim, uid("shop"), 50_000,
                                     payer_phone=phone, **AGED))
    for i in range(2):
        live.bank.screen(transaction(uid("t"), recent(300 - i), uid("earlier"), mule, 300_000, **AGED))
    live.telecom.report_call(call_event(uid("c"), recent(20), "+86138" + new_phone()[-8:], phone))
    d = live.bank.screen(transaction(uid("t"), recent(0), victim, mule, 500_000, payer_phone=phone, **AGED))
    assert d.action == pb.ACTION_WARN and _codes(d) == ["TALKED_THROUGH_PAYMENT_TO_STRANGER"], _codes(d)
    again = live.bank.screen(transaction(uid("t"), recent(0), victim, mule, 500_000, payer_phone=phone,
                                         **AGED))
    assert again.action == pb.ACTION_STOP_PAYMENT and "REPEAT_TO_WARNED_PAYEE" in _codes(again)

    friend, friend_phone = uid("friend"), new_phone()
    live.bank.screen(transaction(uid("t"), recent(400), friend, uid("shop"), 4_000, payer_phone=friend_phone,
                                 **AGED))
    live.telecom.report_call(call_event(uid("c"), recent(300), phone, friend_phone, duration_seconds=120,
                                        outcome=pb.CALL_OUTCOME_ANSWERED))
    paid = live.bank.screen(transaction(uid("t"), recent(0), victim, friend, 500_000, payer_phone=phone,
                                        **AGED))
    assert "TALKED_THROUGH_PAYMENT_TO_STRANGER" not in _codes(paid)


def test_a_payer_kept_on_the_line_through_a_large_payment_is_held(live: Live) -> None:
    """An impersonator keeps the victim on the line: ten minutes in, the victim sends 20,000 CNY
    (a hundred times its usual payments) to an old account nothing was ever paid into, whose
    owner's phone the bank sends and the victim never talks with. Held and reported. A relative
    on the line being paid (the payee's phone is the caller's) is not this rule's."""
    caller, phone, victim = "+86138" + new_phone()[-8:], new_phone(), uid("victim")
    for i in range(6):  # what the victim usually pays
        live.bank.screen(transaction(uid("t"), recent(500 - i), victim, uid("shop"), 20_000,
                                     payer_phone=phone, **AGED))
    live.telecom.report_call(call_event(uid("c"), recent(10), caller, phone))  # rings, still on
    d = live.bank.screen(transaction(uid("t"), recent(0), victim, uid("unused"), 2_000_000,
                                     payer_phone=phone, payee_phone=new_phone(), **AGED))
    assert d.action == pb.ACTION_HOLD and "TALKED_THROUGH_LARGE_PAYMENT" in _codes(d)
    assert d.reports.suspicious

    relative, payer, home = "+86137" + new_phone()[-8:], uid("payer"), new_phone()
    for i in range(6):
        live.bank.screen(transaction(uid("t"), recent(500 - i), payer, uid("shop"), 20_000,
                                     payer_phone=home, **AGED))
    live.telecom.report_call(call_event(uid("c"), recent(10), relative, home))
    paid = live.bank.screen(transaction(uid("t"), recent(0), payer, uid("relative"), 2_000_000,
                                        payer_phone=home, payee_phone=relative, **AGED))
    assert "TALKED_THROUGH_LARGE_PAYMENT" not in _codes(paid)
