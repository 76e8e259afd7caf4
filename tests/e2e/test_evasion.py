"""Input that validation used to accept and the rules then did not see for what it was, through a
real channel: an id or device with an invisible tail is "another" entity than the listed one, a
transfer whose payee is called a cash terminal skips the customer rules, a memo keyword typed
full-width or split by spaces is no keyword. Each answered ALLOW where the plain form is held."""

from __future__ import annotations

import grpc
import pytest

from screening.client import ScreeningClient, transaction, watch_entry
from screening.v1 import screening_pb2 as pb
from tests.conftest import OTHER_BANK_TOKEN, Live, recent, uid

OLD = "2015-01-05"


def _codes(decision: pb.Decision) -> list[str]:
    return [r.code for r in decision.reasons]


def _refused(live: Live, txn: pb.Transaction) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        live.bank.screen(txn)
    return info.value


@pytest.mark.parametrize("tail", ["\n", "\r\n"])
def test_an_account_id_with_a_line_break_at_its_end_is_refused_not_a_new_account(
        live: Live, tail: str) -> None:
    """'MULE\\n' matched the id pattern (its '$' matches before a final newline): a payment to
    a listed payee spelled so was ALLOW. Now INVALID_ARGUMENT naming the field, everywhere an
    id is taken (payee, transaction id, watchlist entry)."""
    mule = uid("mule")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "fraud", "police")])
    listed = live.bank.screen(transaction(uid("t"), recent(), uid("v"), mule, 500_000))
    assert listed.action == pb.ACTION_STOP_PAYMENT
    err = _refused(live, transaction(uid("t"), recent(), uid("v"), mule + tail, 500_000))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("payee.account_id:"), err.details()
    err = _refused(live, transaction(uid("t") + tail, recent(), uid("v"), uid("p"), 100))
    assert (err.details() or "").startswith("transaction_id:"), err.details()
    with pytest.raises(grpc.RpcError) as info:
        live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("m") + tail,
                                                  "fraud", "police")])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("spelling", ["{} ", " {}", "{}\n", "{}\t", "{}\u200b", "\ufeff{}"])
def test_a_device_id_with_invisible_characters_is_refused_not_a_new_device(
        live: Live, spelling: str) -> None:
    """A listed device reported with a space, tab, line break or zero-width character around it
    was another device (ALLOW); now INVALID_ARGUMENT naming device_id."""
    device = uid("dev")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_DEVICE, device, "stolen", "police")])
    assert live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 500,
                                        device_id=device)).action == pb.ACTION_HOLD
    err = _refused(live, transaction(uid("t"), recent(), uid("a"), uid("b"), 500,
                                     device_id=spelling.format(device)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("device_id:"), err.details()
    # an inner space stays allowed (device names have them)
    ok = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 500,
                                      device_id=f"Pixel 7 {uid('d')}"))
    assert ok.action == pb.ACTION_ALLOW


def test_a_cash_terminal_party_is_only_taken_on_a_cash_transaction(live: Live) -> None:
    """A transfer (cash = false) whose payee is called a CASH_TERMINAL skipped every rule about
    customers: the fraud-memo payment to a new payee, HOLD as a person, was ALLOW. A terminal is
    the cash side of a deposit or withdrawal: now INVALID_ARGUMENT naming the party type; a
    withdrawal at a terminal is still taken."""
    memo = "转到安全账户"
    person = live.bank.screen(transaction(uid("t"), recent(), uid("v"), uid("p"), 500_000,
                                          memo=memo, payer_opened=OLD, payee_opened=OLD))
    assert "FRAUD_MEMO_NEW_PAYEE" in _codes(person) and person.action == pb.ACTION_HOLD
    for side in ("payee", "payer"):
        kw = {f"{side}_type": pb.PARTY_TYPE_CASH_TERMINAL}
        err = _refused(live, transaction(uid("t"), recent(), uid("v"), uid("p"), 500_000,
                                         memo=memo, payer_opened=OLD, **kw))  # type: ignore[arg-type]
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.details() or "").startswith(f"{side}.party_type:"), err.details()
    err = _refused(live, transaction(uid("t"), recent(), uid("atm"), uid("ctr"), 500_000,
                                     cash=True, payer_type=pb.PARTY_TYPE_CASH_TERMINAL,
                                     payee_type=pb.PARTY_TYPE_CASH_TERMINAL))
    assert (err.details() or "").startswith("payee.party_type:"), err.details()
    cash = live.bank.screen(transaction(uid("t"), recent(), uid("v"), uid("atm"), 500_000,
                                        cash=True, channel=pb.CHANNEL_ATM, payer_opened=OLD,
                                        payee_type=pb.PARTY_TYPE_CASH_TERMINAL))
    assert cash.action == pb.ACTION_ALLOW


@pytest.mark.parametrize("memo", ["ｓａｆｅ ａｃｃｏｕｎｔ", "safe\u200baccount", "safe  account",
                                  "安全\u200b账户", "安 全 账 户", "Safe\u00adAccount"])
def test_memo_keywords_match_full_width_spaced_and_zero_width_spellings(
        live: Live, memo: str) -> None:
    """A fraud keyword typed full-width (a Chinese input method's full-width mode), split by
    spaces or by an invisible character was no keyword (ALLOW); memos and keywords are now
    compared in one normal form (NFKC, lower case, no whitespace or format characters)."""
    d = live.bank.screen(transaction(uid("t"), recent(), uid("v"), uid("p"), 500_000, memo=memo,
                                     payer_opened=OLD, payee_opened=OLD))
    assert "FRAUD_MEMO_NEW_PAYEE" in _codes(d), (memo, _codes(d))
    assert d.action == pb.ACTION_HOLD


def test_a_late_payment_of_an_earlier_local_day_keeps_its_large_value_flag(live: Live) -> None:
    """A cash withdrawal over the 50,000 CNY line dated the local day before the payer's latest
    payment (a late end-of-day file) had day sums of 0 — its own amount was not counted either —
    and no large-value flag; its day features are now at least its own amount."""
    import datetime as dt

    who = uid("late")
    now = dt.datetime.now(dt.UTC)
    local_midnight = (now + dt.timedelta(hours=8)).replace(hour=0, minute=0, second=0,
                                                          microsecond=0) - dt.timedelta(hours=8)
    live.bank.screen(transaction(uid("t"), max(local_midnight, now - dt.timedelta(minutes=4)),
                                 who, uid("shop"), 1_000, payer_opened=OLD,
                                 payee_type=pb.PARTY_TYPE_ORGANISATION))
    late = live.bank.screen(transaction(uid("t"), local_midnight - dt.timedelta(hours=3), who,
                                        uid("atm"), 6_000_000, cash=True, channel=pb.CHANNEL_ATM,
                                        payer_opened=OLD,
                                        payee_type=pb.PARTY_TYPE_CASH_TERMINAL))
    assert late.reports.large_value, (_codes(late), dict(late.features))
    assert late.features["payer_day_cash_out_sum"] == 6_000_000


def test_window_sums_of_huge_amounts_saturate_instead_of_wrapping_negative(live: Live) -> None:
    """1,030 payments of the largest amount in GBP (9e15 fen each) into one account: its int64
    window sums wrapped to about -9.1e18, so every "in_sum >= line" condition on it failed. Now
    they stop at 2**62."""
    payee = uid("sink")
    when = recent(30)
    txns = [transaction(uid("t"), when, uid("a"), payee, 10**15, currency="GBP",
                        payer_type=pb.PARTY_TYPE_ORGANISATION, payee_type=pb.PARTY_TYPE_ORGANISATION,
                        payer_opened=OLD, payee_opened=OLD) for _ in range(1_030)]
    live.bank.stub.ScreenBatch(pb.TransactionBatch(transactions=txns),
                               metadata=live.bank.metadata, timeout=120)
    sums = {k: v for k, v in live.police.query_account(payee).features.items() if "in_sum" in k}
    assert sums and all(v == 2**62 for v in sums.values()), sums
    # a small payment in: the payee's day sum is far over the organisation line
    d = live.bank.screen(transaction(uid("t"), when, uid("a"), payee, 100, payer_opened=OLD,
                                     payee_opened=OLD, payee_type=pb.PARTY_TYPE_ORGANISATION))
    assert "LARGE_TRANSFER_ORGANISATION_IN" in _codes(d), _codes(d)
    assert d.features["payee_day_transfer_in_sum"] == 2**62


def test_one_payment_naming_a_mule_account_an_organisation_does_not_make_it_immune(
        live: Live) -> None:
    """A 1-fen payment, from anyone, whose payee was called an ORGANISATION made that account
    "an organisation" for good, and organisations are never marked as mules: after a victim's
    fraud-memo payment to it (HOLD) the next victim paying it was ALLOW instead of HOLD. The
    account's latest payment now decides; one naming it a person takes the label back."""
    for label in (None, pb.PARTY_TYPE_ORGANISATION):
        mule = uid("mule")
        if label is not None:
            live.bank.screen(transaction(uid("t"), recent(30), uid("x"), mule, 1, payee_type=label,
                                         payer_opened=OLD, payee_opened=OLD))
        fraud = live.bank.screen(transaction(uid("t"), recent(20), uid("v"), mule, 500_000,
                                             memo="转到安全账户", payer_opened=OLD,
                                             payee_opened=OLD))
        assert fraud.action == pb.ACTION_HOLD
        nxt = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), mule, 300_000,
                                           payer_opened=OLD, payee_opened=OLD))
        assert "PAYS_SUSPECTED_MULE" in _codes(nxt), (label, _codes(nxt))
        assert nxt.action >= pb.ACTION_HOLD


def test_a_payment_naming_an_older_opening_date_does_not_make_a_new_account_old(
        live: Live) -> None:
    """Any payment's payee_opened overwrote the account's opening date: one 1-fen payment
    saying "1995-01-01" made a 5-day-old account old for everyone after it, and a 60,000 CNY
    inflow from a first-time payer (NEW_ACCOUNT_LARGE_INFLOW, WARN) was ALLOW. A reported date
    now counts when it is the latest known."""
    import datetime as dt

    young = (dt.datetime.now(dt.UTC) - dt.timedelta(days=5)).date().isoformat()
    new = uid("new")
    live.bank.screen(transaction(uid("t"), recent(40), uid("p"), new, 100, payer_opened=OLD,
                                 payee_opened=young))
    live.bank.screen(transaction(uid("t"), recent(30), uid("x"), new, 1, payer_opened=OLD,
                                 payee_opened="1995-01-01"))
    d = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), new, 6_000_000,
                                     payer_opened=OLD))
    assert "NEW_ACCOUNT_LARGE_INFLOW" in _codes(d), _codes(d)
    assert d.action == pb.ACTION_WARN


def _upsert_refused(client: ScreeningClient, *profiles: pb.AccountProfile) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        client.upsert_accounts(profiles)
    return info.value


def _mule_marked_after_upsert(live: Live, mule: str, payee_institution: str = "BANK01") -> None:
    """A victim's fraud-memo payment to ``mule`` is held, and the next victim's payment to it
    is held as paying a suspected mule (the registry did not make it a merchant)."""
    fraud = live.bank.screen(transaction(uid("t"), recent(20), uid("v"), mule, 500_000,
                                         memo="转到安全账户", payer_opened=OLD, payee_opened=OLD,
                                         payee_institution=payee_institution))
    assert fraud.action == pb.ACTION_HOLD
    nxt = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), mule, 300_000,
                                       payer_opened=OLD, payee_opened=OLD,
                                       payee_institution=payee_institution))
    assert "PAYS_SUSPECTED_MULE" in _codes(nxt), _codes(nxt)
    assert nxt.action == pb.ACTION_HOLD


def test_another_institution_cannot_make_a_mule_account_a_merchant(live: Live) -> None:
    """UpsertAccounts from any bank or payment token (one bound to no institution included)
    set any account's registry profile: a merchant category made a mule's account immune to
    mule marks, and the next victim paying it was ALLOW instead of HOLD. Now an entry belongs
    to the institution that services the account: a caller bound to no institution is refused
    PERMISSION_DENIED, and nothing is recorded."""
    mule = uid("mule")
    err = _upsert_refused(live.client("payment"),
                          pb.AccountProfile(account_id=mule, merchant_category="5411"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not bound to an institution" in (err.details() or ""), err.details()
    _mule_marked_after_upsert(live, mule)


def test_a_profile_naming_another_institution_is_refused_and_nothing_applied(live: Live) -> None:
    """BANK01 naming BANK02 as an account's institution is PERMISSION_DENIED naming the field;
    the request is all or nothing: its valid first profile is not recorded either."""
    mule, own = uid("mule"), uid("own")
    err = _upsert_refused(live.bank,
                          pb.AccountProfile(account_id=own, merchant_category="5411"),
                          pb.AccountProfile(account_id=mule, merchant_category="5411",
                                            institution="BANK02"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (err.details() or "").startswith("accounts[1].institution:"), err.details()
    _mule_marked_after_upsert(live, own)


def test_a_bank_cannot_overwrite_another_banks_registry_entry(live: Live) -> None:
    """BANK01 files its customer as a person; BANK02 then calling the same account a merchant
    is PERMISSION_DENIED naming the account (its own new entries in the same request are not
    recorded), and the account is still marked a mule. BANK01 may update its own entry."""
    mule, other = uid("mule"), uid("other")
    assert live.bank.upsert_accounts([pb.AccountProfile(
        account_id=mule, party_type=pb.PARTY_TYPE_PERSON, opened_date=OLD)]).upserted == 1
    bank02 = ScreeningClient(live.server.address, OTHER_BANK_TOKEN)
    try:
        err = _upsert_refused(bank02, pb.AccountProfile(account_id=other, merchant_category="5411"),
                              pb.AccountProfile(account_id=mule, merchant_category="5411"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (err.details() or "").startswith("accounts[1].account_id:"), err.details()
        # BANK02's own new account is its own (and was not recorded by the refused request)
        assert bank02.upsert_accounts([pb.AccountProfile(account_id=other)]).upserted == 1
    finally:
        bank02.close()
    assert live.bank.upsert_accounts([pb.AccountProfile(
        account_id=mule, party_type=pb.PARTY_TYPE_PERSON, opened_date=OLD,
        institution="BANK01")]).upserted == 1
    _mule_marked_after_upsert(live, mule)


def test_an_admin_writes_any_entry_and_names_its_owner(live: Live) -> None:
    """An admin's profile without an institution is INVALID_ARGUMENT naming the field; one
    naming BANK02 takes over BANK01's entry, which BANK01 may then no longer overwrite."""
    account = uid("acct")
    admin = live.client("admin")
    err = _upsert_refused(admin, pb.AccountProfile(account_id=account))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("accounts[0].institution:"), err.details()
    assert live.bank.upsert_accounts([pb.AccountProfile(account_id=account)]).upserted == 1
    assert admin.upsert_accounts([pb.AccountProfile(account_id=account,
                                                    institution="BANK02")]).upserted == 1
    err = _upsert_refused(live.bank, pb.AccountProfile(account_id=account))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_transaction_naming_another_institution_ignores_the_registry_entry(live: Live) -> None:
    """BANK01 calls its account a merchant; a payment naming BANK02 as the payee's institution
    does not take BANK01's word about it: a victim's fraud-memo payment marks it a mule, and the
    next victim's payment is held. The same payments naming BANK01 are the merchant's (no mule
    mark: ALLOW)."""
    shop, mule = uid("shop"), uid("mule")
    assert live.bank.upsert_accounts([pb.AccountProfile(account_id=a, merchant_category="5411")
                                      for a in (shop, mule)]).upserted == 2
    _mule_marked_after_upsert(live, mule, payee_institution="BANK02")
    live.bank.screen(transaction(uid("t"), recent(20), uid("v"), shop, 500_000,
                                 memo="转到安全账户", payer_opened=OLD, payee_opened=OLD))
    nxt = live.bank.screen(transaction(uid("t"), recent(10), uid("v"), shop, 300_000,
                                       payer_opened=OLD, payee_opened=OLD))
    assert "PAYS_SUSPECTED_MULE" not in _codes(nxt) and nxt.action == pb.ACTION_ALLOW, _codes(nxt)
