"""The shipped policy's victim-protection rules and their counter-evidence, on feature rows.

Each test builds the features a decision would see (everything else zero, or "no call" for the
call features) and checks which rules of the default policy fire and what the decision is.
The same situations through a real server are in ``tests/e2e/test_victim_protection.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from features import _kernels as k
from features.layout import CALL_FEATURES, TXN_FEATURES, Mark
from features.state import MAX_COND, Op, RuleTable, decide_rows
from screening.policy import ACTIONS, load_policy
from tests.reference import _decide, read_rules

POLICY = load_policy()
NO_CALL = 1e9  # what the kernels give payer_last_call_ended_minutes when there was no call
# what the kernels give an account that never slept or was never tested, and one whose age is
# unknown; a server two months in service
NEUTRAL = dict(observed_days=60, payer_last_call_ended_minutes=NO_CALL,
               payer_minutes_since_intervention=NO_CALL, payer_days_since_wake=1e6, payee_days_since_wake=1e6,
               payer_days_since_test_transfer=1e6, payee_days_since_test_transfer=1e6,
               payer_account_age_days=math.nan, payee_account_age_days=math.nan)


def _row(**features: float) -> np.ndarray:
    feat = np.zeros((1, k.N_TXN_FEATURE), dtype=np.float64)
    for name, value in {**NEUTRAL, **features}.items():
        feat[0, TXN_FEATURES.index(name)] = value
    return feat


def _decide_row(**features: float) -> tuple[str, list[str], int]:
    """(action, fired codes, marks) of the default policy on one feature row."""
    dec = decide_rows(POLICY.txn_table, _row(**features))[0]
    action = {v: n for n, v in ACTIONS.items()}[int(dec[k.D_ACTION])]
    mask = int(dec[k.D_REASONS]) | int(dec[k.D_REASONS_HIGH]) << k.REASON_WORD
    codes = [r.code for r in POLICY.fired(mask)]
    return action, codes, int(dec[k.D_MARKS])


PROTECTED = dict(payer_protected_victim=1, first_time_payee=1, payee_is_person=1, payer_is_person=1,
                 amount=300_000)


def test_a_protected_victim_paying_a_new_payee_just_after_a_call_is_held() -> None:
    """The fraudster calls back and names the next account: held, the payer stays protected."""
    action, codes, marks = _decide_row(**PROTECTED, payee_history_count=4,
                                       payer_last_call_ended_minutes=12)
    assert action == "HOLD" and "PROTECTED_VICTIM_NEW_PAYEE" in codes
    assert marks & Mark.TXN_NAMES["payer_victim"]


@pytest.mark.parametrize(("minutes", "in_episode"), [(20, True), (1440, True), (1441, False),
                                                     (25 * 60, False), (NO_CALL, False)])
def test_a_repeat_to_a_stopped_payee_makes_it_a_suspect_only_while_the_scam_runs(
        minutes: float, in_episode: bool) -> None:
    """Paying again an account whose payment was held or stopped is stopped whenever it comes;
    within a day of the payer's latest intervention the account is a suspected mule and the stop
    a new intervention; more than a day later (the relative paid in the protection window) it
    marks nothing, so a retry minutes later is not "within a day" of it either."""
    action, codes, marks = _decide_row(payee_stopped_for_payer=1, payer_minutes_since_intervention=minutes)
    assert action == "STOP_PAYMENT"
    assert codes == ["REPEAT_TO_STOPPED_PAYEE" if in_episode else "REPEAT_TO_STOPPED_PAYEE_LATER"]
    assert marks == (Mark.TXN_NAMES["payer_victim"] | Mark.TXN_NAMES["payee_mule"] if in_episode else 0)


def test_a_protected_victim_paying_an_account_nothing_was_ever_paid_into_is_held() -> None:
    """No call seen (another phone, a call the operator does not report), but the account is a
    fresh one: the next safe account is held."""
    action, codes, _ = _decide_row(**PROTECTED, payee_history_count=0)
    assert action == "HOLD" and codes == ["PROTECTED_VICTIM_FRESH_PAYEE"]


def test_a_protected_victim_paying_an_account_others_pay_with_no_call_is_only_reminded() -> None:
    """The rent to a new landlord during the protection window: a warning to the payer, no hold
    and no report on the landlord."""
    action, codes, marks = _decide_row(**PROTECTED, payee_history_count=5,
                                       payer_last_call_ended_minutes=600,
                                       payer_minutes_since_intervention=300)
    assert action == "WARN" and codes == ["PROTECTED_VICTIM_KNOWN_ACCOUNT"]
    assert marks == 0


@pytest.mark.parametrize(("minutes", "held"), [(5, True), (120, True), (121, False)])
def test_a_protected_victim_paying_an_account_others_pay_soon_after_the_intervention_is_held(
        minutes: float, held: bool) -> None:
    """Within two hours of the hold or stop the scam is still going on (the fraudster names the
    next account on a chat app, no call seen): held, no report on the payee, the payer stays
    protected; after that, the reminder above."""
    action, codes, marks = _decide_row(**PROTECTED, payee_history_count=5,
                                       payer_minutes_since_intervention=minutes)
    if held:
        assert action == "HOLD" and "PROTECTED_VICTIM_NEW_PAYEE_SOON_AFTER" in codes
        assert marks & Mark.TXN_NAMES["payer_victim"]
    else:
        assert action == "WARN" and codes == ["PROTECTED_VICTIM_KNOWN_ACCOUNT"]


@pytest.mark.parametrize("situation", [
    dict(payee_history_count=0),                                  # a fresh account
    dict(payee_history_count=0, payer_last_call_ended_minutes=12),  # just after a call
    dict(payee_history_count=4, first_time_payee=0, amount=2_000_000),  # a large sum, paid before
    dict(payee_history_count=0, payee_is_person=0),               # a firm's fresh account
])
def test_a_protected_victim_paying_someone_it_talks_with_is_reminded_not_held(
        situation: dict[str, float]) -> None:
    """A victim's parents send their son his down payment during the protection window: his
    phone is one theirs speaks with, so a reminder to the payer and no report on the son; the
    same payment to an account whose owner the payer never spoke with is held."""
    action, codes, marks = _decide_row(**{**PROTECTED, **situation}, payer_talks_with_payee=1)
    assert (action, marks) == ("WARN", 0)
    assert codes
    assert set(codes) <= {"PROTECTED_VICTIM_PAYS_CONTACT", "PROTECTED_VICTIM_LARGE_PAYMENT_TO_CONTACT"}
    action, codes, _ = _decide_row(**{**PROTECTED, **situation})
    assert action == "HOLD" and "PROTECTED_VICTIM_PAYS_CONTACT" not in codes


@pytest.mark.parametrize("situation", [
    dict(payer_minutes_since_intervention=30, payee_history_count=4),  # the scam still going on
    dict(payer_last_call_risky=1, payer_last_call_ended_minutes=5, payee_history_count=4),
])
def test_right_after_an_intervention_even_a_contact_is_paid_only_after_a_hold(
        situation: dict[str, float]) -> None:
    """Minutes after the hold, or just off a risky number's call again, the fraudster may be
    steering the payer whoever the account is: held."""
    action, codes, _ = _decide_row(**PROTECTED, **situation, payer_talks_with_payee=1)
    assert action == "HOLD"
    assert {"PROTECTED_VICTIM_NEW_PAYEE_SOON_AFTER", "PROTECTED_VICTIM_RISKY_CALL_AGAIN"} & set(codes)


@pytest.mark.parametrize(("rule", "features"), [
    ("NEW_ACCOUNT_LARGE_INFLOW", dict(payee_account_age_days=20, first_time_payee=1,
                                      amount=14_000_000, payee_is_person=1)),
    ("AMOUNT_SPIKE_NEW_PAYEE", dict(payer_history_count=40, payer_amount_ratio=50, first_time_payee=1,
                                    amount=12_000_000, payee_account_age_days=20)),
    ("TALKED_WITH_RISKY_CLASS_THEN_NEW_PAYEE", dict(payer_last_call_risky=1,
                                                    payer_last_call_talk_seconds=400,
                                                    payer_last_call_ended_minutes=20,
                                                    first_time_payee=1, amount=300_000)),
    ("NEW_CALLER_THEN_FRESH_PAYEE", dict(payer_last_call_first_contact=1, payer_last_call_talk_seconds=120,
                                         payer_last_call_ended_minutes=10, first_time_payee=1,
                                         payee_is_person=1, payer_amount_ratio=30, amount=300_000)),
])
def test_a_payee_the_payer_talks_with_is_no_stranger(rule: str, features: dict[str, float]) -> None:
    """Relatives pooling a down payment into the son's new account, a mother's large first
    payment to it, a relative abroad calling before the buyer pays: the payer's phone has spoken
    with the payee's (learned from its payments too). A victim never spoke with the mule's owner."""
    _, codes, _ = _decide_row(**features)
    assert rule in codes
    _, codes, _ = _decide_row(**features, payer_talks_with_payee=1)
    assert rule not in codes


FAMILY_ABROAD = dict(risky_call_recent=1, risky_call_score=60, first_time_payee=1, amount=3_000_000,
                     payer_last_call_risky=1, payer_last_call_talk_seconds=400,
                     payer_last_call_ended_minutes=20, payee_is_person=1)


def test_a_remittance_abroad_after_a_call_from_abroad_is_not_stopped() -> None:
    """A child studying abroad calls from an international number, the parent sends tuition."""
    action, codes, _ = _decide_row(**FAMILY_ABROAD, is_cross_border=1)
    assert action == "ALLOW" and codes == []


def test_the_same_payment_to_a_domestic_account_is_stopped() -> None:
    """The same call, then a large payment to a domestic account never paid before: stopped."""
    action, codes, _ = _decide_row(**FAMILY_ABROAD, is_cross_border=0)
    assert action == "STOP_PAYMENT" and "CALL_THEN_TRANSFER_LARGE" in codes
    assert "TALKED_WITH_RISKY_CLASS_THEN_NEW_PAYEE" in codes


WARNED_CALL = dict(risky_call_recent=1, risky_call_score=60, first_time_payee=1, payee_is_person=1)


@pytest.mark.parametrize(("extra", "warned"), [
    (dict(amount=200_000, payee_history_count=0), True),  # 2,000 CNY to a fresh account
    (dict(amount=20_000, payee_history_count=0), False),  # 200 CNY: the QR code of a shop
    (dict(amount=200_000, payee_history_count=3), False),  # an account others pay (the utility)
    (dict(amount=200_000, payee_history_count=0, payee_is_merchant=1), False),
])
def test_a_payment_after_a_warned_call_is_warned_only_to_a_fresh_account(extra: dict[str, float],
                                                                      warned: bool) -> None:
    """CALL_THEN_TRANSFER: from 500 CNY, to an account nothing was paid into, not a merchant."""
    action, codes, _ = _decide_row(**WARNED_CALL, **extra)
    assert ("CALL_THEN_TRANSFER" in codes) is warned
    assert action == ("WARN" if warned else "ALLOW")


def test_a_long_talk_then_paying_an_account_others_pay_is_not_warned() -> None:
    """After a five-minute call from a virtual-operator number the payer pays a new landlord whom
    others pay too: no impersonator's fresh safe account."""
    talk = dict(payer_last_call_risky=1, payer_last_call_talk_seconds=300, payer_last_call_ended_minutes=30,
                first_time_payee=1, amount=300_000, payee_is_person=1)
    assert _decide_row(**talk, payee_history_count=6)[0] == "ALLOW"
    action, codes, _ = _decide_row(**talk, payee_history_count=0)
    assert action == "WARN" and codes == ["TALKED_WITH_RISKY_CLASS_THEN_NEW_PAYEE"]


def test_collecting_investment_money_marks_the_collector_but_alerts_no_buyer() -> None:
    """The eighth 'investment' payment of the week to a company: watched, not warned or reported."""
    action, codes, marks = _decide_row(memo_investment=1, payee_investment_in_count_7d=8,
                                       payee_in_distinct_7d=8, payee_account_age_days=400,
                                       first_time_payee=1, amount=5_000_000)
    assert action == "ALLOW" and codes == ["FUNDRAISING_COLLECTOR"]
    assert marks == Mark.TXN_NAMES["payee_collector"]
    dec = decide_rows(POLICY.txn_table, _row(memo_investment=1, payee_investment_in_count_7d=8,
                                             payee_in_distinct_7d=8, payee_account_age_days=400))[0]
    assert int(dec[k.D_FLAGS]) == 0  # no suspicious report


@pytest.mark.parametrize(("payers", "held"), [(5, True), (12, True), (13, False), (40, False)])
def test_scatter_gather_into_a_hub_is_not_held(payers: int, held: bool) -> None:
    """Three of one payer's payees paying the same shop (many payers a week) is no pattern."""
    action, codes, _ = _decide_row(graph_scatter_gather=3, payee_in_distinct_7d=payers, amount=100_000)
    assert ("GRAPH_SCATTER_GATHER" in codes) is held
    assert action == ("HOLD" if held else "ALLOW")


def test_a_rule_with_the_most_conditions_agrees_with_the_reference() -> None:
    """MAX_COND conditions on one rule: the kernel and the plain-Python twin decide alike."""
    conds = [(i, Op.GE, 1.0) for i in range(MAX_COND)]
    table = RuleTable.build([(conds, ACTIONS["HOLD"], 50, 0, 0)])
    rows = np.zeros((3, k.N_TXN_FEATURE), dtype=np.float64)
    rows[0, :MAX_COND] = 1.0
    rows[1, :MAX_COND] = 1.0
    rows[1, MAX_COND - 1] = 0.0  # the last condition fails
    got = decide_rows(table, rows)
    rules = read_rules(table)
    for i in range(3):
        assert got[i].tolist() == _decide(rules, rows[i].tolist())
    assert int(got[0, k.D_ACTION]) == ACTIONS["HOLD"] and int(got[1, k.D_ACTION]) == ACTIONS["ALLOW"]


ON_THE_PHONE = dict(payer_last_call_talk_seconds=900, payer_last_call_ended_minutes=0, payer_on_call=1,
                    first_time_payee=1, payee_is_person=1, amount=500_000, payee_history_count=0)


@pytest.mark.parametrize(("extra", "warned"), [
    (dict(payee_account_age_days=60), True),  # the safe account opened two months ago
    (dict(payee_account_age_days=60, payer_last_call_ended_minutes=20), True),  # hung up just before
    (dict(payee_account_age_days=60, payer_last_call_ended_minutes=45), False),  # well before
    (dict(payee_account_age_days=60, payer_last_call_talk_seconds=120), False),  # a short call
    (dict(payee_account_age_days=3000), False),  # a relative's old account
    (dict(payee_account_age_days=60, payee_history_count=2), False),  # others pay it
    (dict(payee_account_age_days=60, payee_phone_known_contact=1), False),  # the caller's own
    (dict(payee_account_age_days=math.nan), False),  # age unknown: not young
])
def test_paying_a_young_fresh_account_while_on_a_long_call_is_warned(extra: dict[str, float],
                                                                    warned: bool) -> None:
    """Talked through the payment by an ordinary mobile number into an account opened for the job."""
    action, codes, _ = _decide_row(**{**ON_THE_PHONE, **extra})
    assert ("TALKED_THEN_PAYS_YOUNG_FRESH_ACCOUNT" in codes) is warned
    assert action == ("WARN" if warned else "ALLOW")


def test_a_large_payment_after_a_risky_call_to_an_account_others_pay_makes_no_suspect() -> None:
    """The payee has been paid before: stop the payment, protect the payer, suspect no one."""
    row = dict(risky_call_recent=1, first_time_payee=1, amount=800_000, payee_is_person=1)
    action, codes, marks = _decide_row(**row, payee_history_count=3)
    assert action == "STOP_PAYMENT" and codes == ["CALL_THEN_TRANSFER_LARGE_TO_ACCOUNT_IN_USE"]
    assert marks == Mark.TXN_NAMES["payer_victim"]
    action, codes, marks = _decide_row(**row, payee_history_count=0)
    assert action == "STOP_PAYMENT" and codes == ["CALL_THEN_TRANSFER_LARGE"]
    assert marks & Mark.TXN_NAMES["payee_mule"]


def test_in_a_servers_first_week_a_large_payment_after_a_risky_call_makes_no_suspect() -> None:
    """Every account is new to a server in its first week (a tenant's rent after a call from
    abroad on its first day): the payment is stopped, the payer protected, the payee no suspect."""
    row = dict(risky_call_recent=1, first_time_payee=1, amount=800_000, payee_is_person=1,
               payee_history_count=0)
    action, codes, marks = _decide_row(**row, observed_days=2)
    assert action == "STOP_PAYMENT" and codes == ["CALL_THEN_TRANSFER_LARGE_FIRST_WEEK"]
    assert marks == Mark.TXN_NAMES["payer_victim"]
    action, codes, marks = _decide_row(**row, observed_days=7)
    assert codes == ["CALL_THEN_TRANSFER_LARGE"] and marks & Mark.TXN_NAMES["payee_mule"]


@pytest.mark.parametrize(("investments", "held"), [(0, False), (1, True), (9, True)])
def test_paying_back_many_earlier_payers_is_held_only_after_investment_payments(investments: int,
                                                                              held: bool) -> None:
    """Returns are paid on investments: a group-buy organiser refunding a sold-out item to
    several members took no 'investment' payment this week."""
    action, codes, _ = _decide_row(payee_paid_payer_before=1, payer_payback_distinct_7d=5,
                                   payer_in_distinct_7d=20, payer_investment_in_count_7d=investments,
                                   amount=20_000, payee_is_person=1)
    assert ("PONZI_RETURNS" in codes) is held
    assert action == ("HOLD" if held else "ALLOW")


@pytest.mark.parametrize(("payees", "held"), [(1, False), (2, True), (3, True)])
def test_money_from_several_payers_passed_on_is_a_conduit_only_to_several_accounts(payees: int,
                                                                                  held: bool) -> None:
    """Relatives pool a down payment and the buyer pays the one seller in three transfers: no
    conduit; the same money split over two or more accounts is."""
    action, codes, marks = _decide_row(payer_pass_through_1h=0.95, payer_pass_through_24h=0.95,
                                       payer_in_sum_24h=50_000_000, payer_in_distinct_24h=3,
                                       payer_out_count_24h=3, payer_out_distinct_24h=payees,
                                       payer_is_person=1, payee_is_person=1, amount=15_000_000,
                                       payer_in_distinct_persons_24h=3, payer_in_strangers_24h=3)
    assert ("MULE_CONDUIT" in codes) is held
    assert bool(marks & Mark.TXN_NAMES["payer_mule"]) is held
    assert action == ("HOLD" if held else "ALLOW")


@pytest.mark.parametrize(("persons", "held"), [(1, False), (2, True)])
def test_a_conduit_passes_on_money_from_two_strangers_not_a_firms(persons: int, held: bool) -> None:
    """The boss's card: the firm paid it the wages, a friend 858 CNY; the boss pays the staff."""
    action, codes, _ = _decide_row(payer_pass_through_1h=0.95, payer_pass_through_24h=0.95,
                                   payer_in_sum_24h=15_057_000, payer_in_distinct_24h=2,
                                   payer_out_count_24h=18, payer_out_distinct_24h=18,
                                   payer_is_person=1, payee_is_person=1, amount=461_400,
                                   payer_in_distinct_persons_24h=persons, payer_in_strangers_24h=persons)
    assert ("MULE_CONDUIT" in codes) is held
    assert action == ("HOLD" if held else "ALLOW")


@pytest.mark.parametrize(("hour_ratio", "held"), [(0.9, True), (3.0, True), (8.4, False)])
def test_a_conduit_passes_on_the_hours_money_not_the_days_takings(hour_ratio: float, held: bool) -> None:
    """The group-buy organiser pays the supplier 1,474 CNY in the evening after a neighbour's
    63 CNY: 8.4 times what came in within the hour leaves, the day's takings and a salary."""
    action, codes, _ = _decide_row(payer_pass_through_1h=hour_ratio, payer_pass_through_24h=0.85,
                                   payer_in_sum_24h=1_141_782, payer_in_distinct_24h=16,
                                   payer_out_count_24h=6, payer_out_distinct_24h=6,
                                   payer_is_person=1, payee_is_person=1, amount=147_495,
                                   payer_in_distinct_persons_24h=16, payer_in_strangers_24h=16)
    assert ("MULE_CONDUIT" in codes) is held
    assert action == ("HOLD" if held else "ALLOW")


TESTED = dict(payee_days_since_test_transfer=0.2, first_time_payee=1, payer_is_person=1,
              payee_is_person=1, amount=40_000)


@pytest.mark.parametrize(("payers", "warned"), [(0, True), (5, True), (6, False)])
def test_an_account_many_people_pay_within_the_day_is_no_tested_account(payers: int, warned: bool) -> None:
    """A medical crowdfunding's first donation was 10 CNY; dozens of donors follow that day."""
    action, codes, _ = _decide_row(**TESTED, payee_in_distinct_24h=payers)
    assert ("TESTED_ACCOUNT_RECEIVES" in codes) is warned
    assert action == ("WARN" if warned else "ALLOW")


def test_a_stranger_paying_an_account_that_was_only_tested_is_warned_and_protected() -> None:
    """A bought account checked with a few yuan, then paid by a brushing scam's victim: warned,
    and the payer is protected from then on."""
    action, codes, marks = _decide_row(**TESTED)
    assert (action, codes) == ("WARN", ["TESTED_ACCOUNT_RECEIVES"])
    assert marks & Mark.PAYER_VICTIM


@pytest.mark.parametrize("counter", [
    dict(first_time_payee=0),                       # paid it before
    dict(payee_phone_known_contact=1),              # someone the payer calls
    dict(payee_days_since_test_transfer=8.0),       # the test was long ago
    dict(payee_days_since_test_transfer=1e6),       # never a tested account
    dict(amount=9_999),                             # under 100 CNY
    dict(payee_is_merchant=1),
])
def test_what_keeps_a_payment_to_a_tested_account_quiet(counter: dict[str, float]) -> None:
    _, codes, _ = _decide_row(**{**TESTED, **counter})
    assert "TESTED_ACCOUNT_RECEIVES" not in codes


FORWARDS = dict(payer_days_since_test_transfer=0.1, payer_in_sum_1h=480_000, payer_pass_through_1h=0.4,
                payer_is_person=1, first_time_payee=1, amount=200_000)


def test_a_tested_account_passing_on_strangers_money_is_held_and_made_a_suspect() -> None:
    action, codes, marks = _decide_row(**FORWARDS)
    assert (action, codes) == ("HOLD", ["TESTED_ACCOUNT_FORWARDS"])
    assert marks & Mark.PAYER_MULE


@pytest.mark.parametrize("counter", [
    dict(payer_protected_victim=1),                 # a victim told to pass a loan on
    dict(payer_in_sum_1h=150_000),                  # under 2,000 CNY came in
    dict(payer_days_since_test_transfer=1e6),       # never a tested account
    dict(payer_is_merchant=1),
])
def test_what_keeps_a_tested_accounts_payment_out_unheld(counter: dict[str, float]) -> None:
    _, codes, _ = _decide_row(**{**FORWARDS, **counter})
    assert "TESTED_ACCOUNT_FORWARDS" not in codes


def test_a_person_paying_a_suspected_mule_is_held_a_firm_paying_wages_is_not() -> None:
    """The hold protects people talked into paying; a firm's payroll into a rented account is
    no victim's payment (policy 2026.12.8)."""
    paid = dict(payee_suspected_mule=1, payee_is_person=1, amount=650_000, payee_history_count=3)
    action, codes, marks = _decide_row(**paid, payer_is_person=1)
    assert action == "HOLD" and "PAYS_SUSPECTED_MULE" in codes and marks & Mark.TXN_NAMES["payer_victim"]
    action, codes, _ = _decide_row(**paid, payer_is_person=0)
    assert "PAYS_SUSPECTED_MULE" not in codes and action == "ALLOW"


def test_a_person_paying_a_suspected_mule_it_talks_with_is_not_held() -> None:
    """A ring member's friend, landlord or relative paying it back talks with its owner (policy
    2026.12.16): not held; a stranger paying the same account is, and is protected."""
    paid = dict(payee_suspected_mule=1, payee_is_person=1, payer_is_person=1, amount=65_000,
                payee_history_count=30, first_time_payee=0)
    action, codes, marks = _decide_row(**paid)
    assert action == "HOLD" and "PAYS_SUSPECTED_MULE" in codes and marks & Mark.TXN_NAMES["payer_victim"]
    action, codes, marks = _decide_row(**paid, payer_talks_with_payee=1)
    assert "PAYS_SUSPECTED_MULE" not in codes and action == "ALLOW" and marks == 0


# money a stranger paid within the hour, warned about as fraud on its way in, most of it paid on
WARNED_ON = dict(payer_minutes_since_warned_inflow=6, first_time_payee=1, payer_pass_through_1h=0.8,
                 payer_in_strangers_1h=1, payer_is_person=1, payee_is_person=1, amount=250_000,
                 payer_history_count=0)


def test_an_account_passing_on_a_warned_payment_is_stopped_and_made_a_suspect() -> None:
    action, codes, marks = _decide_row(**WARNED_ON)
    assert action == "STOP_PAYMENT" and "FORWARDS_WARNED_PAYMENT" in codes
    assert marks & Mark.TXN_NAMES["payer_mule"]


def test_an_account_in_use_passing_on_a_warned_payment_is_held_unmarked() -> None:
    action, codes, marks = _decide_row(**{**WARNED_ON, "payer_history_count": 6})
    assert (action, codes, marks) == ("HOLD", ["FORWARDS_WARNED_PAYMENT_ACCOUNT_IN_USE"], 0)


@pytest.mark.parametrize("quiet", [
    {"payer_minutes_since_warned_inflow": 61}, {"first_time_payee": 0},
    {"payer_pass_through_1h": 0.1}, {"payer_in_strangers_1h": 0}, {"payer_is_person": 0},
    {"payer_is_terminal": 1}, {"payer_is_merchant": 1}, {"is_cash": 1},
    {"payer_protected_victim": 1}, {"amount": 9_999}])
def test_passing_on_a_warned_payment_each_counter_condition_keeps_it_quiet(quiet: dict[str, float]
                                                                          ) -> None:
    for history in (0, 6):
        _, codes, _ = _decide_row(**{**WARNED_ON, "payer_history_count": history, **quiet})
        assert not {"FORWARDS_WARNED_PAYMENT", "FORWARDS_WARNED_PAYMENT_ACCOUNT_IN_USE"} & set(codes)


def test_cash_paid_into_a_suspected_mule_is_held() -> None:
    """A victim told to deposit cash into the 'safe account' at a machine: no person is the
    payer, and the deposit is held all the same."""
    action, codes, _ = _decide_row(payee_suspected_mule=1, payee_is_person=1, payer_is_terminal=1,
                                   is_cash=1, amount=500_000)
    assert action == "HOLD" and "CASH_INTO_SUSPECTED_MULE" in codes


SPIKE = dict(payer_history_count=12, payer_amount_ratio=80, first_time_payee=1, amount=2_000_000,
             payee_account_age_days=40, payee_is_person=1, payer_is_person=1)


def test_far_more_than_usual_to_an_account_nothing_was_paid_into_is_warned() -> None:
    action, codes, _ = _decide_row(**SPIKE, payee_history_count=0)
    # a young person's account: LARGE_FIRST_PAYMENT_TO_STRANGER (any age) says the same
    assert action == "WARN" and set(codes) <= {"AMOUNT_SPIKE_NEW_PAYEE", "LARGE_FIRST_PAYMENT_TO_STRANGER"}
    assert "AMOUNT_SPIKE_NEW_PAYEE" in codes


def test_far_more_than_usual_to_an_account_others_pay_is_not_warned() -> None:
    """A relative's or a seller's account that others pay: the family's one-off payment."""
    _, codes, _ = _decide_row(**SPIKE, payee_history_count=6)
    assert "AMOUNT_SPIKE_NEW_PAYEE" not in codes


# an hour in which 30,000 CNY came in and most of it left again in pieces to new people
PASSED_ON = dict(payer_pass_through_1h=0.95, payer_pass_through_24h=0.95, payer_in_sum_1h=3_000_000,
                 payer_in_sum_24h=3_000_000, payer_in_distinct_24h=2, payer_out_count_1h=6,
                 payer_out_count_24h=6, payer_out_distinct_1h=6, payer_out_distinct_24h=6,
                 payer_account_age_days=60, first_time_payee=1, payer_is_person=1, payee_is_person=1,
                 payer_days_since_wake=2, amount=300_000)
MULE_RULES = {"MULE_PASS_THROUGH", "MULE_CONDUIT", "MULE_QUICK_SPLIT", "RAPID_FAN_OUT", "MULE_FIRST_FORWARD",
              "WOKEN_DORMANT_FORWARDS"}


def test_strangers_money_passed_on_in_pieces_is_a_mules() -> None:
    action, codes, marks = _decide_row(**PASSED_ON, payer_in_distinct_persons_1h=2,
                                       payer_in_distinct_persons_24h=2, payer_in_strangers_1h=2,
                                       payer_in_strangers_24h=2)
    assert set(codes) >= MULE_RULES, codes
    assert action == "STOP_PAYMENT" and marks & Mark.PAYER_MULE


def test_a_firms_money_passed_on_in_pieces_is_no_mules() -> None:
    """The boss pays the staff from a personal card after the firm paid the card the total; a
    victim pays a loan on: nobody but an organisation paid in within the hour (policy 2026.12.8)."""
    action, codes, marks = _decide_row(**PASSED_ON, payer_in_distinct_persons_1h=0,
                                       payer_in_distinct_persons_24h=0)
    assert not MULE_RULES & set(codes), codes
    assert not marks & Mark.PAYER_MULE and action == "ALLOW"


def test_relatives_money_passed_on_in_pieces_is_no_mules() -> None:
    """Parents and siblings (who call the buyer) send the down payment within the hour; the
    buyer pays the seller and the notary: people paid in, none of them strangers."""
    action, codes, marks = _decide_row(**PASSED_ON, payer_in_distinct_persons_1h=2,
                                       payer_in_distinct_persons_24h=2, payer_in_strangers_1h=0,
                                       payer_in_strangers_24h=0)
    assert not MULE_RULES & set(codes), codes
    assert not marks & Mark.PAYER_MULE and action == "ALLOW"


NEW_CALLER = dict(payer_last_call_first_contact=1, payer_last_call_talk_seconds=420,
                  payer_last_call_ended_minutes=12, first_time_payee=1, payee_history_count=0,
                  payee_is_person=1, payer_is_person=1, payer_amount_ratio=40, amount=1_400_000,
                  observed_days=12)


@pytest.mark.parametrize("counter", [None, "payer_last_call_first_contact", "payee_phone_is_last_caller",
                                     "observed_days", "payer_last_call_talk_seconds", "payee_history_count"])
def test_paying_a_fresh_account_just_after_a_first_call_is_warned_unless(counter: str | None) -> None:
    """The callback victim is warned; not when the caller was known, the payee is who called,
    the server has seen less than a week, the call was a ring, or others pay the account."""
    change = {"payer_last_call_first_contact": 0, "payee_phone_is_last_caller": 1, "observed_days": 3,
              "payer_last_call_talk_seconds": 20, "payee_history_count": 4}
    row = dict(NEW_CALLER, **({counter: change[counter]} if counter else {}))
    action, codes, marks = _decide_row(**row)
    assert ("NEW_CALLER_THEN_FRESH_PAYEE" in codes) is (counter is None), codes
    if counter is None:
        assert action == "WARN" and marks & Mark.PAYER_VICTIM


TALKED_THROUGH = dict(payer_on_call=1, payer_last_call_talk_seconds=600, payer_last_call_ended_minutes=0,
                      first_time_payee=1, payee_history_count=0, payee_is_person=1, payer_is_person=1,
                      payee_phone_known=1, payer_amount_ratio=400, payer_history_count=20,
                      amount=2_000_000, payee_account_age_days=900, payer_account_age_days=3_000)


def test_a_payer_kept_on_the_line_through_a_large_payment_to_a_stranger_is_held() -> None:
    """Ten minutes into a call from an ordinary number the server knows, the payer sends 20,000
    CNY, 400 times its usual, to an old account nothing was ever paid into, whose owner's phone
    the bank knows and the payer never talks with: held, reported, the payer protected."""
    action, codes, marks = _decide_row(**TALKED_THROUGH)
    assert action == "HOLD" and "TALKED_THROUGH_LARGE_PAYMENT" in codes
    assert marks & Mark.TXN_NAMES["payer_victim"]


@pytest.mark.parametrize("change", [
    dict(payer_on_call=0, payer_last_call_ended_minutes=15),  # the relative's call ended first
    dict(payee_history_count=3),  # an account others have paid
    dict(payee_phone_known_contact=1),  # the payee's phone is one the payer talks with
    dict(payee_phone_known=0),  # whose account it is, the bank does not know
    dict(payer_last_call_talk_seconds=60),  # a minute's call
    dict(payer_amount_ratio=5),  # the size it usually pays
])
def test_the_family_payment_during_a_call_is_not_talked_through(change: dict[str, float]) -> None:
    _, codes, _ = _decide_row(**{**TALKED_THROUGH, **change})
    assert "TALKED_THROUGH_LARGE_PAYMENT" not in codes


KEPT_ON_THE_LINE = dict(payer_on_call=1, payer_last_call_talk_seconds=1_200, payer_last_call_ended_minutes=0,
                        first_time_payee=1, payee_history_count=2, payee_in_distinct_7d=2, payee_is_person=1,
                        payer_is_person=1, payer_amount_ratio=8, payer_history_count=20, amount=600_000,
                        payee_account_age_days=2_000, payer_account_age_days=3_000)


def test_a_payer_twenty_minutes_on_a_call_paying_a_stranger_eight_times_its_usual_is_warned() -> None:
    """"Do not hang up": the impersonator talks the victim through the transfer into an old
    account two others paid, whose owner's phone the bank does not know: warned, the payee
    remembered for the payer."""
    action, codes, marks = _decide_row(**KEPT_ON_THE_LINE)
    assert (action, codes) == ("WARN", ["TALKED_THROUGH_PAYMENT_TO_STRANGER"])
    assert marks & Mark.TXN_NAMES["payer_victim"]


@pytest.mark.parametrize("change", [
    dict(payer_talks_with_payee=1),  # paying someone the payer talks with
    dict(payee_phone_is_last_caller=1),  # the relative on the line, paid on its own account
    dict(payee_in_distinct_7d=13),  # the hospital or dealer whose clerk is on the line
    dict(payer_last_call_talk_seconds=300),  # five minutes
    dict(payer_on_call=0, payer_last_call_ended_minutes=10),  # after the call
    dict(payer_amount_ratio=3),  # about what it usually pays
    dict(is_cross_border=1),
    dict(payee_is_merchant=1),
])
def test_what_keeps_a_payment_during_a_long_call_unwarned(change: dict[str, float]) -> None:
    _, codes, _ = _decide_row(**{**KEPT_ON_THE_LINE, **change})
    assert "TALKED_THROUGH_PAYMENT_TO_STRANGER" not in codes



CHAIN_LINK = dict(graph_chain_hops=3, payer_pass_through_1h=0.99, payer_in_sum_1h=4_990_000,
                  payer_in_strangers_1h=1, payer_in_distinct_persons_1h=1, payer_is_person=1,
                  payee_is_person=1, first_time_payee=1, amount=4_980_000, payer_history_count=40,
                  payer_account_age_days=3_000, payee_account_age_days=3_000)


def test_an_old_account_passing_a_strangers_money_on_as_a_chain_link_is_stopped_unmarked() -> None:
    """A mule ring's member: stopped and reported to the police, but made no suspected mule (its
    mark would follow its money into its own daily life)."""
    action, codes, marks = _decide_row(**CHAIN_LINK)
    assert action == "STOP_PAYMENT" and "MULE_CHAIN_PASS_THROUGH" in codes
    assert not marks & Mark.TXN_NAMES["payer_mule"]


@pytest.mark.parametrize("change", [
    dict(payer_in_strangers_1h=0),  # relatives' money passed on
    dict(payer_pass_through_1h=0.5),  # half of it kept
    dict(graph_chain_hops=2),  # no chain of three
    dict(payer_in_sum_1h=900_000),  # under 10,000 CNY in the hour
    dict(payer_is_merchant=1),
    dict(payer_is_payroll=1),
    dict(payer_protected_victim=1),  # a victim told to pass a loan on
])
def test_what_keeps_a_chain_link_from_being_stopped(change: dict[str, float]) -> None:
    _, codes, _ = _decide_row(**{**CHAIN_LINK, **change})
    assert "MULE_CHAIN_PASS_THROUGH" not in codes


LAST_CALLER_NOW_RISKY = dict(payer_last_caller_risky=1, first_time_payee=1, payee_is_person=1,
                             payer_is_person=1, amount=500_000, payer_last_call_talk_seconds=240,
                             payer_last_call_ended_minutes=20)


def test_a_payment_after_a_talk_with_a_number_flagged_since_is_held() -> None:
    """The victim talked minutes with a number flagged for fraud since, then pays a stranger."""
    action, codes, marks = _decide_row(**LAST_CALLER_NOW_RISKY)
    assert action == "HOLD" and "LAST_CALLER_NOW_RISKY" in codes
    assert marks & Mark.TXN_NAMES["payer_victim"]


@pytest.mark.parametrize("change", [dict(payer_last_call_talk_seconds=13),  # a recording hung up on
                                    dict(payer_talks_with_payee=1)])  # a relative's account
def test_what_keeps_a_payment_after_a_flagged_number_unheld(change: dict[str, float]) -> None:
    _action, codes, _marks = _decide_row(**{**LAST_CALLER_NOW_RISKY, **change})
    assert "LAST_CALLER_NOW_RISKY" not in codes



@pytest.mark.parametrize("row", [
    dict(payee_history_count=0, observed_days=60, amount=800_000),  # CALL_THEN_TRANSFER_LARGE
    dict(payee_history_count=0, observed_days=2, amount=800_000),   # ..._FIRST_WEEK
    dict(payee_history_count=3, observed_days=60, amount=800_000),  # ..._TO_ACCOUNT_IN_USE
    dict(payee_history_count=0, observed_days=60, amount=100_000, risky_call_score=60),  # WARN
])
def test_a_payment_after_a_risky_call_to_someone_the_payer_talks_with_is_no_victims(
        row: dict[str, float]) -> None:
    """A victim pays a stranger (2026.12.20): the same payment after the same risky call goes
    through when it goes to an account whose phone the payer's phone talks with (her son's)."""
    base = dict(risky_call_recent=1, first_time_payee=1, payee_is_person=1, **row)
    action, codes, _ = _decide_row(**base)
    assert action in ("WARN", "STOP_PAYMENT") and any(c.startswith("CALL_THEN_TRANSFER") for c in codes)
    action, codes, _ = _decide_row(**base, payer_talks_with_payee=1)
    assert not any(c.startswith("CALL_THEN_TRANSFER") for c in codes), codes


def _call_codes(**features: float) -> list[str]:
    """The default policy's call rules that fire on one call-feature row."""
    feat = np.zeros((1, k.N_TXN_FEATURE), dtype=np.float64)
    for name, value in features.items():
        feat[0, CALL_FEATURES.index(name)] = value
    dec = decide_rows(POLICY.call_table, feat)[0]
    mask = int(dec[k.D_REASONS]) | int(dec[k.D_REASONS_HIGH]) << k.REASON_WORD
    return [r.code for r in POLICY.fired(mask, calls=True)]


PRIVACY_NUMBER_SPRAYING = dict(caller_virtual_operator=1, caller_calls_24h=8,
                               caller_short_call_ratio_24h=0.75, caller_unanswered_ratio_24h=0.625,
                               first_contact=1)


@pytest.mark.parametrize(("week_unanswered", "mean_talk", "code"), [
    (0.625, 20, "VIRTUAL_OPERATOR_SHORT_CALLS"),   # no week behind the day: the day is the week
    (0.51, 600, "VIRTUAL_OPERATOR_SHORT_CALLS"),
    (0.5, 20, None),                                # a week answered in seconds: a delivery line
    (0.5, 59, None),
    (0.5, 60, "VIRTUAL_OPERATOR_SHORT_CALLS_AFTER_TALKS"),  # answered in talks: a fraudster's
    (0.2, 600, "VIRTUAL_OPERATOR_SHORT_CALLS_AFTER_TALKS"),
])
def test_a_privacy_numbers_week_decides_between_the_two_rules_at_their_edges(
        week_unanswered: float, mean_talk: float, code: str | None) -> None:
    """The day's spraying pattern, and the week: exactly one of the two rules fires, or neither
    when the week was mostly answered in calls under a minute."""
    codes = _call_codes(**PRIVACY_NUMBER_SPRAYING, caller_unanswered_ratio_7d=week_unanswered,
                        caller_mean_talk_seconds_7d=mean_talk)
    assert codes == ([code] if code else [])


# a victim groomed in a chat app: no call; twenty times its usual to an old account nothing was
# paid into, whose owner it never talked with, out of its savings
CHAT_APP_VICTIM = dict(payer_history_count=30, payer_amount_ratio=50, first_time_payee=1, amount=2_000_000,
                       payer_is_person=1, payee_is_person=1, payee_history_count=0, payer_in_cover_7d=0.1,
                       payee_account_age_days=2_000)


@pytest.mark.parametrize(("change", "fires"), [
    ({}, True),
    ({"payer_in_cover_7d": 0.49}, True),
    ({"payer_in_cover_7d": 0.5}, False),      # the family sent half of it this week: a purchase
    ({"payee_is_person": 0}, False),          # a developer, a dealer: organisations
    ({"payer_talks_with_payee": 1}, False),   # a relative's or a friend's account
    ({"payee_phone_is_last_caller": 1}, False),  # the account of the relative who just called
    ({"payee_phone_is_payer_phone": 1}, False),  # the payer's own account at another bank
    ({"payer_is_person": 0}, False),          # a firm pays: no one's savings
    ({"payer_history_count": 4}, False),      # too little history for "its usual"
    ({"payer_history_count": 5}, True),
    ({"first_time_payee": 0}, False),
    ({"payee_history_count": 1}, False),      # an account others pay: a landlord, a tradesman
    ({"amount": 999_999}, False),
    ({"payer_amount_ratio": 19}, False),
    ({"is_cross_border": 1}, False),          # a remittance to a child abroad
])
def test_a_large_first_payment_out_of_savings_to_a_stranger_is_warned_at_its_edges(
        change: dict[str, float], fires: bool) -> None:
    """No call to see, an old account: the payment itself is what is left; a buyer paying what
    the family sent in that week is not warned."""
    action, codes, marks = _decide_row(**{**CHAT_APP_VICTIM, **change})
    assert ("LARGE_FIRST_PAYMENT_TO_STRANGER" in codes) == fires, codes
    if fires:
        assert action == "WARN" and marks == 0
