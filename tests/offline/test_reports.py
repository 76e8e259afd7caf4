"""Daily reports: large-value lines at their boundaries, suspicious cases, files in and out."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from features.layout import Mark
from screening.config import Currency, Settings, load_settings
from screening.errors import ConfigError, InputFileError
from screening.offline.events import conform, read_events
from screening.offline.replay import replay
from screening.offline.reports import (
    CATEGORIES,
    LARGE_VALUE_SCHEMA,
    SUSPICIOUS_SCHEMA,
    Lines,
    ReportThresholds,
    large_value_report,
    load_thresholds,
    read_decisions,
    suspicious_report,
    thresholds_from_policy,
    write_report,
)
from screening.offline.synth import SynthConfig, generate
from screening.policy import REPORT_FLAGS, default_policy_text, load_policy

SETTINGS = load_settings()
POLICY = load_policy()
TH = load_thresholds()
CNY = 100
LOCAL = dt.timezone(dt.timedelta(hours=8))
# 10:00 on 2026-11-27 in China
T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=LOCAL).astimezone(dt.UTC)
MIN = dt.timedelta(minutes=1)
Pair = tuple[pl.DataFrame, pl.DataFrame]  # (events, decisions)

_ids = iter(range(1, 1_000_000))


def txn(payer: str, payee: str, amount: int, *, at: dt.datetime = T0, eid: str | None = None,
        currency: str = "CNY", cash: bool = False, cross_border: bool = False,
        payer_type: str = "person", payee_type: str = "person", payer_inst: str = "ICBC",
        payee_inst: str = "ICBC") -> dict[str, Any]:
    """One transaction row (amount in minor units of ``currency``)."""
    return {"event_id": eid or f"t{next(_ids):06d}", "kind": "txn", "event_time": at,
            "payer_account": payer, "payee_account": payee, "amount_minor": amount,
            "currency": currency, "cash": cash, "cross_border": cross_border,
            "channel": "counter" if cash else "online_banking",
            "payer_party_type": payer_type, "payee_party_type": payee_type,
            "payer_institution": payer_inst, "payee_institution": payee_inst}


def deposit(customer: str, amount: int, **kw: Any) -> dict[str, Any]:
    return txn("CTR0001", customer, amount, cash=True, payer_type="cash_terminal", **kw)


def withdrawal(customer: str, amount: int, **kw: Any) -> dict[str, Any]:
    return txn(customer, "ATM0001", amount, cash=True, payee_type="cash_terminal", **kw)


def events(*rows: dict[str, Any]) -> pl.DataFrame:
    return conform(pl.DataFrame(list(rows)), "test")


def lv(*rows: dict[str, Any], thresholds: ReportThresholds = TH) -> pl.DataFrame:
    return large_value_report(events(*rows), thresholds, SETTINGS)


def reported(report: pl.DataFrame) -> set[tuple[str, str, str]]:
    return set(report.select("account", "direction", "category").iter_rows())


# ------------------------------------------------------------------------------ thresholds


def test_default_cny_lines_are_the_default_policy_thresholds() -> None:
    """The shipped report file takes its CNY lines from the policy: one source of truth."""
    assert {c: TH.cny_fen.of(c) for c in CATEGORIES} == {c: POLICY.thresholds[c] for c in CATEGORIES}
    assert TH.cny_fen == Lines(cash=50_000 * CNY, person_domestic_transfer=500_000 * CNY,
                               person_cross_border_transfer=200_000 * CNY,
                               organisation_transfer=2_000_000 * CNY)
    assert TH.foreign_usd_cents == Lines(cash=10_000 * 100, person_domestic_transfer=100_000 * 100,
                                         person_cross_border_transfer=10_000 * 100,
                                         organisation_transfer=200_000 * 100)
    assert TH.timezone_offset_hours == 8


def test_a_policy_file_or_a_report_file_pointing_at_it_gives_its_lines(tmp_path: Path) -> None:
    """Lines change by editing the policy; a report file naming that policy reads the same."""
    policy = tmp_path / "policy.toml"
    policy.write_text(default_policy_text().replace("cash = 5_000_000", "cash = 3_000_000")
                      .replace("timezone_offset_hours = 8", "timezone_offset_hours = 7"))
    direct = load_thresholds(policy)
    assert direct.cny_fen.cash == 3_000_000 and direct.timezone_offset_hours == 7
    assert direct.foreign_usd_cents == TH.foreign_usd_cents
    report = tmp_path / "report.toml"
    report.write_text('[large_value]\ncny_lines_from = "policy.toml"\ntimezone_offset_hours = 8\n'
                      "[large_value.foreign_currency]\ncash = 500_000\nperson_domestic_transfer = 1\n"
                      "person_cross_border_transfer = 2\norganisation_transfer = 3\n")
    via = load_thresholds(report)
    assert via.cny_fen == direct.cny_fen and via.timezone_offset_hours == 8
    assert via.foreign_usd_cents.cash == 500_000
    assert thresholds_from_policy(load_policy(policy)).cny_fen == direct.cny_fen


@pytest.mark.parametrize(("text", "message"), [
    ('[large_value]\ncny_lines_from = "default"\n[large_value.foreign_currency]\ncash = 1.5\n'
     "person_domestic_transfer = 1\nperson_cross_border_transfer = 1\norganisation_transfer = 1\n",
     "'cash' must be a positive integer"),
    ('[large_value]\ncny_lines_from = "default"\n[large_value.foreign_currency]\ncash = 1\n',
     "no line 'person_domestic_transfer'"),
    ('[large_value]\ncny_lines_from = "default"\ncahs = 1\n', "unknown key 'cahs'"),
    ('[large_value]\ncny_lines_from = "nope.toml"\n', "policy file not found"),
    ("[something]\nx = 1\n", "neither a report thresholds file"),
    ('[policy]\nversion = "1"\n[thresholds]\ncash = 5_000_000\n', "no line 'person_domestic_transfer'"),
])
def test_bad_thresholds_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    """Float lines, missing or unknown keys and dangling policy paths are config errors."""
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_thresholds(path)


# ------------------------------------------------------------------------------ large value

# category -> (rows for a total of `amount` in `parts` transactions, the customer sides expected)
CASES: dict[str, tuple[Any, set[tuple[str, str, str]]]] = {
    "cash_deposit": (lambda a, **kw: deposit("P1", a, **kw), {("P1", "in", "cash")}),
    "cash_withdrawal": (lambda a, **kw: withdrawal("P1", a, **kw), {("P1", "out", "cash")}),
    "person_domestic": (lambda a, **kw: txn("P1", "P2", a, **kw),
                        {("P1", "out", "person_domestic_transfer"),
                         ("P2", "in", "person_domestic_transfer")}),
    "person_cross_border": (lambda a, **kw: txn("P1", "P2", a, cross_border=True, **kw),
                            {("P1", "out", "person_cross_border_transfer"),
                             ("P2", "in", "person_cross_border_transfer")}),
    "organisation": (lambda a, **kw: txn("O1", "O2", a, payer_type="organisation",
                                         payee_type="organisation", **kw),
                     {("O1", "out", "organisation_transfer"), ("O2", "in", "organisation_transfer")}),
}
LINE = {"cash_deposit": "cash", "cash_withdrawal": "cash", "person_domestic": "person_domestic_transfer",
        "person_cross_border": "person_cross_border_transfer", "organisation": "organisation_transfer"}


@pytest.mark.parametrize("delta", [-1, 0, 1], ids=["just_under", "at", "just_over"])
@pytest.mark.parametrize("parts", [1, 2], ids=["single", "same_day_cumulative"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_line_reports_at_or_over_and_not_just_under(case: str, parts: int, delta: int) -> None:
    """One fen under the line is not reported; at the line and one fen over are, single or summed."""
    make, expected = CASES[case]
    total = TH.cny_fen.of(LINE[case]) + delta
    amounts = [total] if parts == 1 else [total // 3, total - total // 3]
    rows = [make(a, at=T0 + i * 90 * MIN) for i, a in enumerate(amounts)]
    report = lv(*rows)
    assert reported(report) == (expected if delta >= 0 else set())
    for row in report.iter_rows(named=True):
        assert row["total_fen"] == total and row["n_txns"] == parts
        assert row["line_fen"] == TH.cny_fen.of(LINE[case])
        assert row["event_ids"] == [r["event_id"] for r in rows]
        assert row["report_date"] == dt.date(2026, 11, 27)


def test_cumulative_crossing_at_the_second_transaction_lists_both() -> None:
    """The day's first withdrawal alone is under the line; the second takes the day over it."""
    first = withdrawal("P1", 30_000 * CNY, at=T0)
    second = withdrawal("P1", 20_000 * CNY, at=T0 + 5 * MIN)
    assert lv(first).height == 0
    row = lv(first, second).row(0, named=True)
    assert row["event_ids"] == [first["event_id"], second["event_id"]]
    assert row["total_fen"] == 50_000 * CNY
    assert row["first_time"] == T0 and row["last_time"] == T0 + 5 * MIN


def test_midnight_utc8_splits_the_day() -> None:
    """23:59:59.999 and 00:00 local (15:59:59.999 and 16:00 UTC) fall on two reporting days."""
    midnight = dt.datetime(2026, 11, 28, tzinfo=LOCAL).astimezone(dt.UTC)
    late = withdrawal("P1", 25_000 * CNY, at=midnight - dt.timedelta(milliseconds=1))
    early = withdrawal("P1", 25_000 * CNY, at=midnight)
    assert lv(late, early).height == 0
    both_late = lv(late, withdrawal("P1", 25_000 * CNY, at=midnight - 2 * MIN))
    assert both_late.get_column("report_date").to_list() == [dt.date(2026, 11, 27)]
    next_day = lv(early, withdrawal("P1", 25_000 * CNY, at=midnight + 2 * MIN))
    assert next_day.get_column("report_date").to_list() == [dt.date(2026, 11, 28)]
    utc_days = dataclasses.replace(TH, timezone_offset_hours=0)
    assert lv(late, early, thresholds=utc_days).height == 1  # the same UTC day


def test_cash_terminal_is_never_a_customer() -> None:
    """An ATM taking many withdrawals and a counter paying a large deposit are never reported."""
    rows = [withdrawal(f"P{i}", 40_000 * CNY, at=T0 + i * MIN) for i in range(5)]
    rows.append(deposit("P9", 80_000 * CNY))
    report = lv(*rows)
    assert reported(report) == {("P9", "in", "cash")}
    assert not set(report.get_column("account")) & {"ATM0001", "CTR0001"}


def test_person_and_organisation_lines_differ() -> None:
    """1,000,000 CNY from a person to a company: the person's payment is reported, not the receipt."""
    report = lv(txn("P1", "O1", 1_000_000 * CNY, payee_type="organisation"))
    assert reported(report) == {("P1", "out", "person_domestic_transfer")}
    both = lv(txn("P1", "O1", 2_000_000 * CNY, payee_type="organisation"))
    assert reported(both) == {("P1", "out", "person_domestic_transfer"),
                              ("O1", "in", "organisation_transfer")}


def test_cross_border_has_its_own_lower_line_and_sums_apart() -> None:
    """200,000 CNY abroad is reported, at home it is not; domestic and cross-border do not mix."""
    assert reported(lv(txn("P1", "P2", 200_000 * CNY, cross_border=True))) == {
        ("P1", "out", "person_cross_border_transfer"), ("P2", "in", "person_cross_border_transfer")}
    assert lv(txn("P1", "P2", 200_000 * CNY)).height == 0
    mixed = lv(txn("P1", "P2", 150_000 * CNY, cross_border=True),
               txn("P1", "P3", 400_000 * CNY, at=T0 + MIN))
    assert mixed.height == 0  # 550,000 in total, but neither category reaches its line


def test_receipts_and_payments_are_summed_apart() -> None:
    """30,000 CNY deposited and 30,000 withdrawn the same day: two sums of 30,000, none reported."""
    assert lv(deposit("P1", 30_000 * CNY), withdrawal("P1", 30_000 * CNY, at=T0 + MIN)).height == 0


def test_foreign_currency_is_converted_exactly_and_held_against_the_usd_lines() -> None:
    """USD 10,000 cash or cross-border is reported (USD 9,999.99 not), summed apart from CNY."""
    usd = Currency("USD", SETTINGS.currencies["USD"])
    at_line = lv(withdrawal("P1", 1_000_000, currency="USD"))
    row = at_line.row(0, named=True)
    assert (row["basis"], row["category"], row["currencies"]) == ("foreign", "cash", ["USD"])
    assert row["total_fen"] == usd.to_fen(1_000_000) == 7_100_000 == row["line_fen"]
    assert lv(withdrawal("P1", 999_999, currency="USD")).height == 0
    abroad = lv(txn("P1", "P2", 1_000_000, currency="USD", cross_border=True))
    assert set(abroad.get_column("basis")) == {"foreign"} and abroad.height == 2
    # CNY 49,000 + USD 9,000 cash: each under its own line (together over 50,000 CNY)
    cny_and_usd = lv(withdrawal("P1", 49_000 * CNY), withdrawal("P1", 900_000, currency="USD", at=T0 + MIN))
    assert cny_and_usd.height == 0
    # other currencies count toward the foreign sum at their own integer rate
    hkd, eur = SETTINGS.currencies["HKD"], SETTINGS.currencies["EUR"]
    mix = lv(withdrawal("P1", 4_000_000, currency="HKD"),
             withdrawal("P1", 500_000, currency="EUR", at=T0 + MIN))
    assert mix.row(0, named=True)["total_fen"] == (Currency("HKD", hkd).to_fen(4_000_000)
                                                   + Currency("EUR", eur).to_fen(500_000))
    assert mix.row(0, named=True)["currencies"] == ["EUR", "HKD"]


def test_duplicate_event_ids_are_counted_once() -> None:
    """A transaction sent twice counts once, so the day stays one fen under the line."""
    first = withdrawal("P1", 25_000 * CNY, eid="dup1")
    second = withdrawal("P1", 25_000 * CNY - 1, at=T0 + MIN)
    assert lv(first, dict(first), second).height == 0
    over = lv(first, dict(first), second, withdrawal("P1", 1, at=T0 + 2 * MIN))
    assert over.row(0, named=True)["n_txns"] == 3


def test_institutions_keep_own_customers_only() -> None:
    """A bank's report leaves out the other bank's customer on the far side of a transfer."""
    rows = txn("P1", "P2", 600_000 * CNY, payee_inst="HSBC_HK")
    assert reported(large_value_report(events(rows), TH, SETTINGS, institutions=["ICBC"])) == {
        ("P1", "out", "person_domestic_transfer")}


def test_no_rows_give_empty_reports_with_the_full_schema() -> None:
    """Nothing over a line (or no events at all) is an empty, fully typed report."""
    ev = events(txn("A", "B", 100))
    for frame in (ev, ev.head(0)):
        empty = large_value_report(frame, TH, SETTINGS)
        assert empty.schema == pl.Schema(LARGE_VALUE_SCHEMA) and empty.height == 0
    quiet = suspicious_report(decisions(decision(ev.row(0, named=True), [], "ALLOW", suspicious=False)),
                              ev, POLICY)
    assert quiet.schema == pl.Schema(SUSPICIOUS_SCHEMA) and quiet.height == 0


def test_foreign_lines_need_a_usd_rate() -> None:
    """Without a USD rate the foreign-currency lines cannot be converted: a config error, not a guess."""
    no_usd = Settings(currencies={"CNY": 1_000_000, "EUR": 7_700_000})
    with pytest.raises(ConfigError, match="no USD rate"):
        large_value_report(events(withdrawal("P1", 2_000_000, currency="EUR")), TH, no_usd)
    assert large_value_report(events(withdrawal("P1", 50_000 * CNY)), TH, no_usd).height == 1


def test_synthetic_large_value_cases_are_all_reported_and_match_a_naive_twin() -> None:
    """Every planted large-value transaction over a line is reported; the report equals a plain loop."""
    # the six original families' weights: enough large-value cases, whatever else is planted
    stream = generate(SynthConfig(seed=11, n_persons=1_000, n_organisations=80, days=20,
                                  scenario_rate=0.05,
                                  scenario_weights=(0.35, 0.3, 0.12, 0.08, 0.07, 0.08))).events
    report = large_value_report(stream, TH, SETTINGS)
    listed = {(a, d, c, dr): set(ids) for a, d, c, dr, ids in
              report.select("account", "report_date", "category", "direction", "event_ids").iter_rows()}
    planted = stream.filter(pl.col("scenario") == "large_value_genuine")
    assert planted.height >= 5
    checked = 0
    for r in planted.iter_rows(named=True):
        day = (r["event_time"].astimezone(LOCAL)).date()
        for side, direction in (("payer", "out"), ("payee", "in")):
            kind = r[f"{side}_party_type"]
            if kind == "cash_terminal":
                continue
            cat = _category(r["cash"], kind, r["cross_border"])
            if r["amount_minor"] >= TH.cny_fen.of(cat):
                assert r["event_id"] in listed[(r[f"{side}_account"], day, cat, direction)]
                checked += 1
    assert checked >= planted.height
    assert _naive_rows(stream) == {
        (a, d, c, dr, b, t, tuple(ids)) for a, d, c, dr, b, t, ids in report.select(
            "account", "report_date", "category", "direction", "basis", "total_fen", "event_ids").iter_rows()}
    assert {"cash", "person_domestic_transfer", "organisation_transfer"} <= set(report.get_column("category"))


def _category(cash: bool, party: str, cross_border: bool) -> str:
    if cash:
        return "cash"
    if party == "organisation":
        return "organisation_transfer"
    return "person_cross_border_transfer" if cross_border else "person_domestic_transfer"


def _naive_rows(stream: pl.DataFrame) -> set[tuple[Any, ...]]:
    """The large-value report as a plain loop: obviously right, slow."""
    usd = Currency("USD", SETTINGS.currencies["USD"])
    seen: set[str] = set()
    sums: dict[tuple[Any, ...], int] = defaultdict(int)
    ids: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    rows = sorted(stream.filter(pl.col("kind") == "txn").with_row_index("_row").iter_rows(named=True),
                  key=lambda r: (r["event_time"], r["_row"]))
    for r in rows:
        if r["event_id"] in seen:
            continue
        seen.add(r["event_id"])
        fen = max(1, Currency(r["currency"], SETTINGS.currencies[r["currency"]]).to_fen(r["amount_minor"]))
        day = (r["event_time"] + dt.timedelta(hours=8)).date()
        basis = "CNY" if r["currency"] == "CNY" else "foreign"
        for side, direction in (("payer", "out"), ("payee", "in")):
            if r[f"{side}_party_type"] == "cash_terminal":
                continue
            category = _category(r["cash"], r[f"{side}_party_type"], r["cross_border"])
            key = (r[f"{side}_account"], day, category, direction, basis)
            sums[key] += fen
            ids[key].append(r["event_id"])
    out = set()
    for key, total in sums.items():
        line = TH.cny_fen.of(key[2]) if key[4] == "CNY" else usd.to_fen(TH.foreign_usd_cents.of(key[2]))
        if total >= line:
            out.add((*key, total, tuple(ids[key])))
    return out


# ------------------------------------------------------------------------------ suspicious


def decision(row: dict[str, Any], codes: list[str], action: str = "HOLD", *, suspicious: bool = True,
             police: bool = False, score: int = 75) -> dict[str, Any]:
    rate = SETTINGS.currencies[row["currency"]]
    return {"event_id": row["event_id"], "kind": "txn", "event_time": row["event_time"], "action": action,
            "reason_codes": codes, "risk_score": score, "suspicious": suspicious, "notify_police": police,
            "amount_fen": Currency(row["currency"], rate).to_fen(row["amount_minor"])}


def decisions(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema={
        "event_id": pl.String, "kind": pl.String, "event_time": pl.Datetime("ms", "UTC"), "action": pl.String,
        "reason_codes": pl.List(pl.String), "risk_score": pl.Int32, "suspicious": pl.Boolean,
        "notify_police": pl.Boolean, "amount_fen": pl.Int64})


@pytest.fixture(scope="module")
def mule_day() -> Pair:
    """Account M receives 60,000 CNY from three payers and passes 57,000 on: flagged on the way out."""
    at = T0 + 2 * MIN
    ins = [txn(f"X{i}", "M", 20_000 * CNY, at=at + i * 3 * MIN) for i in range(3)]
    outs = [txn("M", "Y1", 30_000 * CNY, at=at + 13 * MIN), txn("M", "Y2", 27_000 * CNY, at=at + 19 * MIN)]
    tomorrow = txn("M", "Y3", 5_000 * CNY, at=T0 + dt.timedelta(days=1))
    both = txn("V", "W", 12_000 * CNY, at=T0 + 30 * MIN)  # V a mule, W on the watchlist
    dep = deposit("D", 48_000 * CNY, at=T0 + 40 * MIN)
    ev = events(*ins, *outs, tomorrow, both, dep)
    dec = decisions(
        *(decision(r, [], "ALLOW", suspicious=False, score=0) for r in ins),
        *(decision(r, ["MULE_PASS_THROUGH"]) for r in outs),
        decision(tomorrow, ["MULE_PASS_THROUGH"]),
        decision(both, ["PAYEE_WATCHLISTED", "MULE_PASS_THROUGH"], "STOP_PAYMENT", police=True, score=98),
        # a reason about the payer of a deposit falls on the depositor (the terminal is no subject);
        # LARGE_CASH_IN reports large-value, not suspicious, so it is not among the case's reasons
        decision(dep, ["DEVICE_WATCHLISTED", "STRUCTURING_DEPOSITS", "LARGE_CASH_IN"], score=88),
    )
    return ev, dec


def test_suspicious_cases_group_per_subject_per_day_with_figures(mule_day: Pair) -> None:
    """Two flagged payments of M on one day are one case; its narrative states times, sums, parties."""
    ev, dec = mule_day
    cases = suspicious_report(dec, ev, POLICY)
    assert cases.schema == pl.Schema(SUSPICIOUS_SCHEMA)
    m = cases.filter(pl.col("subject_account") == "M").sort("report_date")
    assert m.get_column("report_date").to_list() == [dt.date(2026, 11, 27), dt.date(2026, 11, 28)]
    case = m.row(0, named=True)
    sums = (case["n_txns"], case["total_fen"], case["paid_fen"], case["received_fen"])
    assert sums == (2, 5_700_000, 5_700_000, 0)
    assert (case["reason_codes"], case["action"], case["n_counterparties"]) == (
        ["MULE_PASS_THROUGH"], "HOLD", 2)
    text = case["narrative"]
    for part in ("Between 10:15 and 10:21 (UTC+8) on 2026-11-27", "account M ", "made 2 flagged payments",
                 "57,000.00 CNY", "received 3 payments totalling 60,000.00 CNY from 3 payers",
                 "MULE_PASS_THROUGH (Money received in the last hour"):
        assert part in text, (part, text)
    assert "At 10:00 (UTC+8) on 2026-11-28" in m.row(1, named=True)["narrative"]


def test_reasons_pointing_at_both_sides_make_two_cases(mule_day: Pair) -> None:
    """A watchlisted payee and a mule payer on one payment: one case each, each with its own reason."""
    ev, dec = mule_day
    cases = suspicious_report(dec, ev, POLICY)
    by = {r["subject_account"]: r for r in cases.iter_rows(named=True)}
    assert by["W"]["reason_codes"] == ["PAYEE_WATCHLISTED"]
    assert by["V"]["reason_codes"] == ["MULE_PASS_THROUGH"]
    assert by["W"]["action"] == by["V"]["action"] == "STOP_PAYMENT" and by["W"]["notify_police"]
    assert by["W"]["received_fen"] == by["V"]["paid_fen"] == 1_200_000
    assert by["D"]["reason_codes"] == ["DEVICE_WATCHLISTED", "STRUCTURING_DEPOSITS"]
    assert by["D"]["max_risk_score"] == 88
    assert set(by) == {"M", "V", "W", "D"}  # X*, Y* and the counter are no subjects
    ids = cases.sort("case_id").get_column("case_id").to_list()
    assert ids == ["STR-20261127-0001", "STR-20261127-0002", "STR-20261127-0003", "STR-20261127-0004",
                   "STR-20261128-0001"]


@pytest.mark.parametrize(("codes", "subject"), [
    (["PAYS_SUSPECTED_MULE"], "M"),  # a victim paying a suspected mule: the mule's case
    (["PAYEE_CONFIRMED_FRAUD"], "M"),
    (["FRAUD_MEMO_NEW_PAYEE"], "M"),
    (["REPEAT_TO_STOPPED_PAYEE"], "M"),
    (["PYRAMID_FEE_TREE"], "M"),  # the recruiter the fee is paid to
    (["SUSPECTED_MULE_PAYS_OUT"], "V"),  # no marks, not listed: the payer
    (["MULE_QUICK_SPLIT"], "V"),  # the payer made a mule
])
def test_a_reason_is_reported_on_the_side_its_rule_suspects(codes: list[str], subject: str) -> None:
    """Unlisted codes take their subject from the rule's marks: protecting the payer as a victim
    or making the payee a mule or collector points at the payee; no marks, at the payer."""
    row = txn("V", "M", 30_000 * CNY, at=T0)
    cases = suspicious_report(decisions(decision(row, codes)), events(row), POLICY)
    assert cases.get_column("subject_account").to_list() == [subject]


def test_every_default_rule_that_protects_a_victim_reports_the_payee() -> None:
    """No default rule that protects its payer as a victim names that victim as the subject."""
    for rule in POLICY.txn_rules:
        if rule.report_flags & REPORT_FLAGS["suspicious"] and rule.marks & Mark.PAYER_VICTIM:
            row = txn("V", "M", 30_000 * CNY, at=T0)
            cases = suspicious_report(decisions(decision(row, [rule.code])), events(row), POLICY)
            assert cases.get_column("subject_account").to_list() == ["M"], rule.code


def test_replayed_stream_every_suspicious_decision_is_in_a_case() -> None:
    """Over a replayed synthetic stream each suspicious transaction lands in a case of its day."""
    config = SynthConfig(seed=7, n_persons=150, n_organisations=15, days=8, scenario_rate=0.2)
    stream = generate(config).events
    dec = replay(stream, POLICY, SETTINGS).decisions
    cases = suspicious_report(dec, stream, POLICY, settings=SETTINGS)
    flagged = set(dec.filter(pl.col("suspicious") & (pl.col("kind") == "txn")).get_column("event_id"))
    assert flagged and flagged == set(cases.get_column("event_ids").explode())
    suspicious_codes = {r.code for r in POLICY.txn_rules if r.report_flags & 2}
    assert set(cases.get_column("reason_codes").explode()) <= suspicious_codes
    assert cases.get_column("case_id").is_unique().all()


# ------------------------------------------------------------------------------ bad input


def test_bad_event_files_name_the_column(tmp_path: Path) -> None:
    """A missing column, a float amount or unparseable text stop the report naming the column."""
    csv = tmp_path / "e.csv"
    csv.write_text("event_id,event_time,payer_account,payee_account,currency,channel,payer_party_type,"
                   "payee_party_type\nt1,2026-01-01T00:00:00Z,a,b,CNY,counter,person,person\n")
    with pytest.raises(InputFileError, match="column amount_minor"):
        large_value_report(read_events(csv), TH, SETTINGS)
    raw = pl.DataFrame([withdrawal("P1", 100)]).drop("cash")
    with pytest.raises(InputFileError, match="missing column cash"):
        large_value_report(raw, TH, SETTINGS)
    floats = tmp_path / "f.parquet"
    pl.DataFrame([withdrawal("P1", 100)]).with_columns(
        pl.col("amount_minor").cast(pl.Float64)).write_parquet(floats)
    with pytest.raises(InputFileError, match="column amount_minor: expected Int64"):
        large_value_report(pl.read_parquet(floats), TH, SETTINGS)
    with pytest.raises(InputFileError, match="column event_time"):
        large_value_report(pl.DataFrame([withdrawal("P1", 100)]).with_columns(
            pl.lit("yesterday").alias("event_time")), TH, SETTINGS)
    with pytest.raises(InputFileError, match="column payer_party_type"):
        large_value_report(events(withdrawal("P1", 100, payer_type="alien")), TH, SETTINGS)


def test_bad_decision_files_name_the_column(tmp_path: Path, mule_day: Pair) -> None:
    """Decisions missing a column, with a bad type, an unknown code or an unknown event are refused."""
    ev, dec = mule_day
    path = tmp_path / "d.csv"
    write_report(dec.drop("reason_codes"), tmp_path / "d", formats=("csv",))
    with pytest.raises(InputFileError, match="missing column reason_codes"):
        read_decisions(path)
    write_report(dec.with_columns(pl.lit("high").alias("risk_score")), tmp_path / "d", formats=("csv",))
    with pytest.raises(InputFileError, match="column risk_score"):
        read_decisions(path)
    with pytest.raises(InputFileError, match=r"column reason_codes: 'NO_SUCH_RULE'"):
        suspicious_report(dec.with_columns(pl.lit(["NO_SUCH_RULE"]).alias("reason_codes")), ev, POLICY)
    with pytest.raises(InputFileError, match="column event_id: 1 suspicious decision"):
        suspicious_report(dec, ev.filter(pl.col("payee_account") != "W"), POLICY)
    with pytest.raises(InputFileError, match="column action"):
        suspicious_report(dec.with_columns(pl.lit("SHRUG").alias("action")), ev, POLICY)


# ------------------------------------------------------------------------------ output files


def _read_back(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A report file as a frame of ``schema`` (CSV: list columns split at ';')."""
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    raw = pl.read_csv(path, infer_schema=False)
    cols = []
    for name, dtype in schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List):
            cols.append(col.fill_null("").str.split(";").list.eval(pl.element().filter(pl.element() != "")))
        elif isinstance(dtype, pl.Datetime):
            cols.append(col.str.to_datetime(time_unit="ms", time_zone="UTC"))
        elif dtype == pl.Boolean:
            cols.append(col == "true")
        elif dtype == pl.Date:
            cols.append(col.str.to_date())
        else:
            cols.append(col.cast(dtype))
    return raw.select(cols).cast(schema)  # type: ignore[arg-type]


def test_reports_are_written_as_csv_and_parquet_and_read_back_equal(
        tmp_path: Path, mule_day: Pair) -> None:
    """Both formats hold the same rows; CSV lists are ';'-joined; decisions CSV reads back too."""
    ev, dec = mule_day
    large = lv(txn("P1", "P2", 600_000 * CNY), withdrawal("P1", 60_000 * CNY, currency="USD"))
    cases = suspicious_report(dec, ev, POLICY)
    for frame, schema, base in ((large, LARGE_VALUE_SCHEMA, "large_value"),
                                (cases, SUSPICIOUS_SCHEMA, "suspicious")):
        paths = write_report(frame, tmp_path / "out" / f"{base}_2026-11-27")
        assert [p.name for p in paths] == [f"{base}_2026-11-27.csv", f"{base}_2026-11-27.parquet"]
        for path in paths:
            assert _read_back(path, schema).equals(frame), path
    assert "MULE_PASS_THROUGH" in (tmp_path / "out" / "suspicious_2026-11-27.csv").read_text()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind
    write_report(dec, tmp_path / "decisions", formats=("csv",))
    again = read_decisions(tmp_path / "decisions.csv")
    assert suspicious_report(again, ev, POLICY).equals(cases)


def test_large_value_command_shows_yuan_and_utc_z_while_files_keep_integer_fen(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`screening report large-value` prints amounts as yuan with two decimals and times as
    ISO-8601 with a Z; the CSV keeps integer fen in the *_fen columns and Z times."""
    from screening.cli import main

    source = tmp_path / "events.parquet"
    events(deposit("C1", 5_234_567, at=T0), deposit("C1", 1_234_567_890, at=T0 + 2 * MIN),
           withdrawal("C2", 60_000 * CNY, at=T0)).write_parquet(source)
    assert main(["report", "large-value", str(source), "--out", str(tmp_path / "lv")]) == 0
    out = capsys.readouterr().out
    assert "12,398,024.57 CNY" in out and "60,000.00 CNY" in out and "50,000.00 CNY" in out
    assert "2026-11-27T02:00:00Z" in out and "2026-11-27T02:02:00Z" in out
    assert "+0000" not in out and "1239802457" not in out
    csv = pl.read_csv(tmp_path / "lv.csv")
    c1 = csv.filter(pl.col("account") == "C1").row(0, named=True)
    assert (c1["total_fen"], c1["line_fen"]) == (1_239_802_457, 50_000 * CNY)
    assert (c1["first_time"], c1["last_time"]) == ("2026-11-27T02:00:00.000Z", "2026-11-27T02:02:00.000Z")
    assert main(["report", "large-value", str(source), "--out", str(tmp_path / "lv"), "--show", "1"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 4 and shown[-1] == "... and 1 more row(s), in the files"


def test_write_report_refuses_unknown_formats_and_ambiguous_csv(tmp_path: Path) -> None:
    """An unknown format, or a list value holding the ';' separator, is refused before writing."""
    with pytest.raises(ValueError, match="unknown report format 'xlsx'"):
        write_report(pl.DataFrame({"a": [1]}), tmp_path / "r", formats=("xlsx",))
    with pytest.raises(ValueError, match="column event_ids"):
        write_report(pl.DataFrame({"event_ids": [["a;b"]]}), tmp_path / "r")
    assert not list(tmp_path.iterdir())
