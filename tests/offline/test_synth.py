"""The labelled scenario generator: schema, determinism, ordinary rhythms and planted cases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from screening.config import load_settings
from screening.errors import InputFileError
from screening.offline import synth
from screening.offline.events import validate_events, validate_registry
from screening.offline.schema import (
    ACCOUNT_LABEL_SCHEMA,
    CALL_OUTCOMES,
    CHANNELS,
    EVENT_SCHEMA,
    LABEL_COLUMNS,
    LABELS,
    LOOKALIKES,
    NUMBER_CLASSES,
    PARTY_TYPES,
    REGISTRY_SCHEMA,
    SCENARIOS,
)
from screening.offline.synth import INVEST_MEMOS, RETURN_MEMOS, SynthConfig, SynthResult, generate, write

CNY = 100
MINUTE = dt.timedelta(minutes=1)
TXN = pl.col("kind") == "txn"
CALL = pl.col("kind") == "call"
# a population large enough for several cases of every scenario, still well under a second
CONFIG = SynthConfig(seed=7, n_persons=3_000, n_organisations=200, days=30, scenario_rate=0.03)


@pytest.fixture(scope="module")
def result() -> SynthResult:
    return generate(CONFIG)


@pytest.fixture(scope="module")
def events(result: SynthResult) -> pl.DataFrame:
    return result.events


def _cases(result: SynthResult, scenario: str) -> list[tuple[pl.DataFrame, dict[str, list[str]]]]:
    """(events, role -> accounts) of every planted case of ``scenario``."""
    out = []
    labelled = result.events.filter(pl.col("scenario") == scenario)
    for sid in sorted(labelled["scenario_id"].unique().to_list()):
        roles = result.accounts.filter(pl.col("scenario_id") == sid)
        by_role = {r: roles.filter(pl.col("role") == r)["account"].to_list() for r in roles["role"].unique()}
        out.append((labelled.filter(pl.col("scenario_id") == sid).sort("event_time", "event_id"), by_role))
    assert out, f"no {scenario} case planted"
    return out


# ------------------------------------------------------------------------------ determinism


def test_same_config_gives_identical_frames_and_files(tmp_path: Path) -> None:
    """Generating twice from one config gives equal frames and byte-identical Parquet files."""
    config = SynthConfig(seed=3)
    a, b = generate(config), generate(config)
    assert a.events.equals(b.events)
    assert a.accounts.equals(b.accounts)
    assert a.registry.equals(b.registry)
    write(a, tmp_path / "a")
    write(b, tmp_path / "b")
    for name in ("events.parquet", "accounts.parquet", "registry.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_different_seed_gives_different_events() -> None:
    """Another seed gives another stream (times, identifiers and amounts differ)."""
    a, b = generate(SynthConfig(seed=1)), generate(SynthConfig(seed=2))
    assert not a.events.equals(b.events)
    assert not set(a.events["payer_account"].drop_nulls()) & set(b.events["payer_account"].drop_nulls())


def test_plain_polars_path_gives_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pyarrow string views (the fast path) the fallback builds the very same frame."""
    config = SynthConfig(seed=5, n_persons=300, n_organisations=20, days=10, scenario_rate=0.05)
    fast = generate(config)
    monkeypatch.setattr(synth, "_pa", None)
    slow = generate(config)
    assert fast.events.equals(slow.events)
    assert fast.accounts.equals(slow.accounts)
    assert fast.registry.equals(slow.registry)


# ------------------------------------------------------------------------------ the frame


def test_event_frame_has_exactly_the_schema(result: SynthResult) -> None:
    """Events carry EVENT_SCHEMA then LABEL_COLUMNS, in order and dtype; accounts and the
    registry their schemas."""
    assert result.events.schema == pl.Schema(EVENT_SCHEMA | LABEL_COLUMNS)
    assert result.accounts.schema == pl.Schema(ACCOUNT_LABEL_SCHEMA)
    assert result.registry.schema == pl.Schema(REGISTRY_SCHEMA)


def test_generated_events_pass_the_replay_validation(events: pl.DataFrame) -> None:
    """The stream passes validate_events (call outcomes, payee phones and all), as replay needs."""
    validated = validate_events(events, load_settings(), "synth")
    assert validated.height == events.height


def test_event_ids_are_unique_and_name_the_kind(events: pl.DataFrame) -> None:
    """Event ids are unique, 12 characters, "t..." for transactions and "c..." for calls."""
    assert events["event_id"].is_unique().all()
    assert (events["event_id"].str.len_chars() == 12).all()
    first = events["event_id"].str.slice(0, 1)
    assert ((first == "t") == (events["kind"] == "txn")).all()
    assert ((first == "c") == (events["kind"] == "call")).all()


def test_stream_is_sorted_by_time_then_id(events: pl.DataFrame) -> None:
    """Rows are in event_time order, ties broken by event_id."""
    assert events.select("event_time", "event_id").equals(
        events.select("event_time", "event_id").sort("event_time", "event_id")
    )


def test_events_lie_in_the_window_in_utc_ms(events: pl.DataFrame) -> None:
    """All events fall in the configured days, local time UTC+8, at millisecond precision."""
    start = dt.datetime.combine(CONFIG.start, dt.time(), dt.UTC) - dt.timedelta(hours=8)
    assert events["event_time"].min() >= start
    assert events["event_time"].max() < start + dt.timedelta(days=CONFIG.days)
    assert (events["event_time"].dt.millisecond() != 0).any()


def test_transactions_fill_only_transaction_columns(events: pl.DataFrame) -> None:
    """A transaction has positive integer money, known vocabularies and null call columns."""
    txns = events.filter(TXN)
    assert txns.height > 10_000
    assert (txns["amount_minor"] > 0).all()
    assert set(txns["currency"]) == {"CNY", "USD"}
    assert set(txns["channel"]) == set(CHANNELS)
    assert set(txns["payer_party_type"]) | set(txns["payee_party_type"]) == set(PARTY_TYPES)
    required = ["payer_account", "payee_account", "payer_institution", "amount_minor", "cash"]
    assert txns.select(pl.col(*required, "cross_border", "channel").null_count()).sum_horizontal()[0] == 0
    call_cols = ["caller_number", "callee_number", "duration_seconds", "call_outcome", "caller_class"]
    assert txns.select(pl.col(*call_cols).null_count()).row(0) == (txns.height,) * 5
    # USD crosses the border (but for planted USD cash and domestic USD structuring); most
    # transactions carry the payer's phone
    usd = txns.filter((pl.col("currency") == "USD") & (pl.col("scenario") != "structuring_thresholds"))
    assert usd.height and usd["cross_border"].all()
    assert txns["payer_phone"].null_count() < 0.3 * txns.height
    # cash goes through ATM or counter terminals
    cash = txns.filter(pl.col("cash"))
    assert set(cash["channel"]) == {"atm", "counter"}


def test_calls_fill_only_call_columns(events: pl.DataFrame) -> None:
    """A call has its final outcome (answered with a duration, else none) and a number class,
    and no transaction columns; some ordinary calls ring out or are rejected."""
    calls = events.filter(CALL)
    assert calls.height > 10_000
    assert set(calls["call_outcome"]) <= set(CALL_OUTCOMES)
    answered = calls["call_outcome"] == "answered"
    assert ((calls["duration_seconds"] > 0) == answered).all()
    assert (calls["duration_seconds"] >= 0).all()
    ordinary = calls.filter(pl.col("scenario") == "")
    assert 0.05 < (ordinary["call_outcome"] == "unanswered").mean() < 0.2
    assert (ordinary["call_outcome"] == "rejected").any()
    assert set(calls["caller_class"]) <= set(NUMBER_CLASSES)
    number_cols = pl.col("caller_number", "callee_number", "caller_class")
    assert calls.select(number_cols.null_count()).row(0) == (0,) * 3
    txn_cols = [c for c in EVENT_SCHEMA if c not in ("event_id", "kind", "event_time")][:17]
    assert "payee_phone" in txn_cols
    assert calls.select(pl.col(*txn_cols).null_count()).row(0) == (calls.height,) * 17
    assert calls.filter(pl.col("duration_seconds") > 0)["duration_seconds"].median() < 600  # minutes


def test_ordinary_life_follows_local_time(events: pl.DataFrame) -> None:
    """Salaries arrive 09:00-11:00 local on an employer's pay day; shopping sleeps at night."""
    local = pl.col("event_time").dt.offset_by("8h")
    ordinary = events.filter(pl.col("scenario") == "")
    salary = ordinary.filter(pl.col("memo") == "工资")
    assert salary.height > 100
    assert salary.select(local.dt.hour().is_between(9, 10).all()).item()
    pay_days = salary.group_by("payer_account").agg(local.dt.day().n_unique().alias("days"))
    assert pay_days["days"].max() <= 2  # one day of the month (twice if the window spans it)
    shopping = ordinary.filter(pl.col("channel") == "qr")
    night = shopping.select(local.dt.hour().is_between(1, 5).mean()).item()
    assert night < 0.05
    rent = ordinary.filter(pl.col("memo") == "房租")
    assert (rent["payee_party_type"] == "person").all()


def test_merchants_settle_their_takings_to_their_bank_account(events: pl.DataFrame) -> None:
    """Merchant collection accounts pay their daily takings, less a fee, to one bank account."""
    qr_payees = set(events.filter(pl.col("channel") == "qr")["payee_account"])
    settle = events.filter(pl.col("payer_account").is_in(qr_payees) & TXN)
    assert settle.height > 100
    banks = settle.group_by("payer_account").agg(pl.col("payee_account").n_unique())
    assert (banks["payee_account"] == 1).all()
    assert (settle["payer_party_type"] == "organisation").all()


def test_accounts_are_mostly_years_old(events: pl.DataFrame) -> None:
    """Most accounts were opened years before the window; a few recently."""
    opened = events.filter(TXN).select("payer_account", "payer_opened_date").drop_nulls().unique()
    age = (pl.lit(CONFIG.start) - pl.col("payer_opened_date")).dt.total_days()
    share_old = opened.select((age > 365).mean()).item()
    assert 0.7 < share_old < 1.0


# ------------------------------------------------------------------------------ labels


def test_labels_are_consistent(events: pl.DataFrame) -> None:
    """Ordinary events are "" / -1; each planted case has one id and one scenario."""
    ordinary = events.filter(pl.col("scenario") == "")
    assert (ordinary["scenario_id"] == -1).all()
    planted = events.filter(pl.col("scenario") != "")
    assert (planted["scenario_id"] >= 0).all()
    assert set(planted["scenario"]) == set(LABELS)
    assert (planted.group_by("scenario_id").agg(pl.col("scenario").n_unique())["scenario"] == 1).all()
    assert planted.height < 0.05 * events.height


def test_scenario_rate_is_respected(result: SynthResult) -> None:
    """About scenario_rate of the population is drawn into planted fraud cases; look-alikes
    have their own budget; every scenario and look-alike gets cases."""
    share = result.stats["scenario_persons"] / CONFIG.n_persons
    assert CONFIG.scenario_rate * 0.7 <= share <= CONFIG.scenario_rate * 1.3
    for label in LABELS:
        assert result.stats[f"cases_{label}"] >= 1, label
    assert 1 <= result.stats["lookalike_persons"] <= 3 * len(LOOKALIKES)


def test_zero_rate_plants_nothing() -> None:
    """scenario_rate=0 and lookalike_rate=0 give an unlabelled stream and an empty accounts frame."""
    result = generate(
        SynthConfig(seed=1, n_persons=200, n_organisations=20, days=7, scenario_rate=0.0, lookalike_rate=0.0)
    )
    assert (result.events["scenario"] == "").all()
    assert result.accounts.height == 0
    assert result.accounts.schema == pl.Schema(ACCOUNT_LABEL_SCHEMA)


def test_accounts_frame_matches_the_events(result: SynthResult) -> None:
    """Every labelled account acts in its case, and every party of a fraud case is labelled
    (ordinary persons a look-alike deals with, customers or staff, stay unlabelled)."""
    events, accounts = result.events, result.accounts
    assert not accounts.is_duplicated().any()
    phones = accounts.filter(pl.col("role").is_in(["fraud_caller", "robocaller", "lookalike_caller"]))
    look = events.filter(pl.col("scenario").is_in(LOOKALIKES))
    look_parties = pl.concat(
        [
            look.select(account=pl.col(c), scenario_id="scenario_id")
            for c in ("payer_account", "payee_account")
        ]
        + [
            look.select(account=pl.col(c), scenario_id="scenario_id")
            for c in ("caller_number", "callee_number")
        ]
    ).drop_nulls()
    assert (
        accounts.filter(pl.col("scenario").is_in(LOOKALIKES))
        .select("account", "scenario_id")
        .join(look_parties, on=["account", "scenario_id"], how="anti")
        .height
        == 0
    )
    accounts = accounts.filter(pl.col("scenario").is_in(SCENARIOS))
    planted = events.filter(pl.col("scenario").is_in(SCENARIOS))
    txn_parties = pl.concat(
        [
            planted.filter(TXN).select(account=pl.col(side), scenario_id="scenario_id")
            for side in ("payer_account", "payee_account")
        ]
    ).unique()
    callers = planted.filter(CALL).select(account="caller_number", scenario_id="scenario_id").unique()
    accounts_only = accounts.join(phones, on=["account", "scenario_id", "role"], how="anti").select(
        "account", "scenario_id"
    )
    terminals = pl.col("account").str.starts_with("ATM") | pl.col("account").str.starts_with("CTR")
    assert accounts_only.join(txn_parties, on=["account", "scenario_id"], how="anti").height == 0
    unlisted = txn_parties.filter(~terminals).join(accounts_only, on=["account", "scenario_id"], how="anti")
    assert unlisted.height == 0
    fraud_callers = accounts.filter(pl.col("role").is_in(["fraud_caller", "robocaller"]))
    assert (
        fraud_callers.select("account", "scenario_id")
        .join(callers, on=["account", "scenario_id"], how="anti")
        .height
        == 0
    )
    assert set(accounts["scenario"]) == set(SCENARIOS)


# ------------------------------------------------------------------------------ scenarios


def test_telecom_fraud_call_then_transfer_to_new_mule_who_forwards_fast(result: SynthResult) -> None:
    """A fraud number calls the victim <= 60 min before the victim pays a new, young mule
    account, which passes the money on within minutes; the number sprays many short calls."""
    events = result.events
    for case, roles in _cases(result, "telecom_fraud"):
        (caller,), (victim,), (mule,) = roles["fraud_caller"], roles["victim"], roles["mule"]
        calls = case.filter(CALL & (pl.col("caller_number") == caller))
        assert set(calls["caller_class"]) <= {"virtual_operator", "international", "spoofed_suspect"}
        assert calls.height >= 30 and calls["callee_number"].n_unique() >= 20
        assert calls["duration_seconds"].median() < 60
        paid = case.filter(TXN & (pl.col("payer_account") == victim))
        assert paid.height >= 1 and (paid["payee_account"] == mule).all()
        assert 20_000 * CNY * 0.99 <= paid["amount_minor"].sum() <= 300_000 * CNY
        to_victim = calls.filter(pl.col("callee_number") == paid["payer_phone"][0])["event_time"]
        for t in paid["event_time"]:
            assert any(dt.timedelta(0) < t - c <= 60 * MINUTE for c in to_victim)
        first = paid["event_time"].min()
        earlier = events.filter(
            (pl.col("payer_account") == victim)
            & (pl.col("payee_account") == mule)
            & (pl.col("event_time") < first)
        )
        assert earlier.height == 0
        assert (first.date() - paid["payee_opened_date"][0]).days <= 60
        out = case.filter(TXN & (pl.col("payer_account") == mule))["event_time"]
        for t in paid["event_time"]:
            assert any(dt.timedelta(0) < o - t <= 30 * MINUTE for o in out)
        leaves = (
            pl.col("cash") | pl.col("cross_border") | pl.col("payee_account").is_in(roles.get("cashout", []))
        )
        cashout = case.filter(TXN & leaves)
        assert cashout.height >= 1


def test_fundraising_takes_many_investments_and_pays_returns_from_them(result: SynthResult) -> None:
    """A collector takes investment-memo payments from many persons and pays "returns" to
    earlier payers after they paid, never more than it has taken in (Ponzi)."""
    for case, roles in _cases(result, "illegal_fundraising"):
        (collector,) = roles["collector"]
        inflow = case.filter((pl.col("payee_account") == collector) & pl.col("memo").is_in(INVEST_MEMOS))
        assert inflow["payer_account"].n_unique() >= 8
        assert set(inflow["payer_account"]) == set(roles["investor"])
        returns = case.filter((pl.col("payer_account") == collector) & pl.col("memo").is_in(RETURN_MEMOS))
        assert returns.height >= 1
        first_paid = inflow.group_by("payer_account").agg(first=pl.col("event_time").min())
        paid_back = returns.join(first_paid, left_on="payee_account", right_on="payer_account")
        assert paid_back.height == returns.height
        assert (paid_back["event_time"] > paid_back["first"]).all()
        signed = (
            pl.when(pl.col("payee_account") == collector)
            .then("amount_minor")
            .otherwise(-pl.col("amount_minor"))
        )
        flow = case.select(signed)
        assert flow.to_series().cum_sum().min() >= 0


def test_mule_ring_members_pass_money_on_within_minutes(result: SynthResult) -> None:
    """Money entering a ring member leaves it again within 30 minutes, never grown."""
    for case, roles in _cases(result, "mule_ring"):
        members = set(roles["ring_member"])
        txns = case.filter(TXN)
        inner = txns.filter(pl.col("payer_account").is_in(members) & pl.col("payee_account").is_in(members))
        assert inner.height >= 2
        for row in txns.filter(pl.col("payee_account").is_in(members)).iter_rows(named=True):
            out = txns.filter(
                (pl.col("payer_account") == row["payee_account"])
                & (pl.col("event_time") > row["event_time"])
                & (pl.col("event_time") <= row["event_time"] + 30 * MINUTE)
            )
            assert out.height >= 1
            assert out["amount_minor"].max() <= row["amount_minor"]


def test_round_tripping_cycle_closes_with_shrinking_amounts(result: SynthResult) -> None:
    """Transfers chain A -> B -> ... -> A within days, each hop a little smaller."""
    for case, roles in _cases(result, "round_tripping"):
        payers, payees = case["payer_account"].to_list(), case["payee_account"].to_list()
        assert payees[:-1] == payers[1:]
        origin = payers[0]
        assert payees[-1] == origin
        assert set(payers) == set(roles["cycle_member"]) and len(set(payers)) >= 3
        amounts = case["amount_minor"].to_list()
        assert all(b < a for a, b in itertools.pairwise(amounts))
        assert amounts[-1] > 0.9 ** len(amounts) * amounts[0]
        closes = [i for i, p in enumerate(payees) if p == origin]
        starts = [0, *[i + 1 for i in closes[:-1]]]
        times = case["event_time"].to_list()
        for s, e in zip(starts, closes, strict=True):
            assert times[e] - times[s] <= dt.timedelta(days=10)


def test_structuring_stays_just_under_the_cash_or_the_transfer_line() -> None:
    """Three or more transactions of one account within a few days: cash of 45,000-49,999.99 CNY
    (the cash line is 50,000), or transfers of 450,000-499,999.90 CNY (a person's transfer line
    is 500,000): never a transfer under the cash line, which reports no transfer."""
    weights = tuple(1.0 if s == "structuring" else 0.0 for s in SCENARIOS)
    result = generate(SynthConfig(seed=3, n_persons=1_500, n_organisations=50, days=30,
                                  scenario_rate=0.02, scenario_weights=weights, lookalike_rate=0.0))
    assert result.events.filter((pl.col("scenario") == "structuring") & ~pl.col("cash")).height
    for case, roles in _cases(result, "structuring"):
        (who,) = roles["structurer"]
        assert case.height >= 3
        line = np.where(case["cash"].to_numpy(), 50_000 * CNY, 500_000 * CNY)
        amount = case["amount_minor"].to_numpy()
        assert ((amount >= line // 10 * 9) & (amount < line)).all()
        assert ((case["payer_account"] == who) | (case["payee_account"] == who)).all()
        assert (case["currency"] == "CNY").all()
        assert case["event_time"].max() - case["event_time"].min() < dt.timedelta(days=6)


def test_large_value_genuine_crosses_reporting_thresholds(result: SynthResult) -> None:
    """Company payments >= 2,000,000, person transfers >= 500,000, cash >= 50,000 CNY."""
    kinds = set()
    for case, _ in _cases(result, "large_value_genuine"):
        for row in case.iter_rows(named=True):
            if row["cash"]:
                kinds.add("cash")
                assert row["amount_minor"] >= 50_000 * CNY
            elif row["payer_party_type"] == "organisation":
                kinds.add("company")
                assert row["payee_party_type"] == "organisation"
                assert row["amount_minor"] >= 2_000_000 * CNY
            else:
                kinds.add("person")
                assert row["amount_minor"] >= 500_000 * CNY
    assert kinds == {"cash", "company", "person"}


# ------------------------------------------------------------------------------ config, size, files


def test_events_target_sets_the_size() -> None:
    """events_target scales the population to about that many events."""
    result = generate(SynthConfig(seed=2, events_target=200_000))
    assert 160_000 <= result.events.height <= 240_000
    assert result.stats["persons"] != SynthConfig().n_persons


def test_default_config_gives_about_100k_events() -> None:
    """The defaults produce on the order of 100k events."""
    assert 60_000 <= generate(SynthConfig()).events.height <= 150_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_persons", 10),
        ("days", 3),
        ("scenario_rate", 0.9),
        ("usd_share", -0.1),
        ("scenario_weights", (1.0,)),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    """Bad settings fail at construction with the field's name in the message."""
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(SynthConfig(), **{field: value})


def test_config_is_frozen_and_keyword_only() -> None:
    """SynthConfig cannot be changed after construction nor built positionally."""
    config = SynthConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        SynthConfig(1)  # type: ignore[misc]


def test_write_puts_files_in_place_atomically(tmp_path: Path) -> None:
    """write() leaves exactly the Parquet (and CSV) files, which read back as the frames."""
    result = generate(SynthConfig(seed=4, n_persons=200, n_organisations=20, days=7, scenario_rate=0.05))
    out = tmp_path / "synth"
    written = write(result, out)
    assert sorted(p.name for p in out.iterdir()) == ["accounts.parquet", "events.parquet", "registry.parquet"]
    assert sorted(written) == sorted(out.iterdir())
    assert pl.read_parquet(out / "events.parquet").equals(result.events)
    assert pl.read_parquet(out / "accounts.parquet").equals(result.accounts)
    assert pl.read_parquet(out / "registry.parquet").equals(result.registry)
    write(result, out, csv=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "accounts.csv", "accounts.parquet", "events.csv", "events.parquet",
        "registry.csv", "registry.parquet",
    ]  # fmt: skip
    registry = validate_registry(pl.read_csv(out / "registry.csv", infer_schema=False), "registry.csv")
    assert registry.equals(result.registry)
    header = (out / "events.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == [*EVENT_SCHEMA, *LABEL_COLUMNS]
    back = pl.read_csv(out / "events.csv", infer_schema=False)
    assert back.height == result.events.height
    assert back["event_time"][0].endswith("Z")


def test_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails midway leaves the previous file intact and no temporary file behind."""
    result = generate(SynthConfig(seed=4, n_persons=200, n_organisations=20, days=7))
    write(result, tmp_path)
    before = (tmp_path / "events.parquet").read_bytes()

    def broken(self: pl.DataFrame, file: Path, *args: object, **kwargs: object) -> None:
        Path(file).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write(result, tmp_path)
    assert (tmp_path / "events.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accounts.parquet",
        "events.parquet",
        "registry.parquet",
    ]


# ------------------------------------------------------------------------------ registry, new columns


def test_registry_lists_the_domestic_customers_and_validates(result: SynthResult) -> None:
    """The registry holds every person and organisation account at a domestic institution that
    appears in the events (never terminals or accounts abroad), once each, and validates."""
    registry = validate_registry(result.registry)
    txns = result.events.filter(TXN)
    parties = pl.concat(
        [
            txns.select(account=pl.col(f"{s}_account"), party=pl.col(f"{s}_party_type"))
            for s in ("payer", "payee")
        ]
    ).unique()
    customers = parties.filter(
        (pl.col("party") != "cash_terminal") & ~pl.col("account").str.starts_with("OS")
    )
    assert customers.join(registry, on="account", how="anti").height == 0
    assert not registry["account"].str.starts_with("OS").any()
    assert not registry["account"].str.starts_with("ATM").any()
    assert set(registry["party_type"]) == {"person", "organisation"}
    # facts a bank has: phones on file for persons, categories for merchants, payroll employers
    persons = registry.filter(pl.col("party_type") == "person")
    assert persons["phone"].null_count() < 0.01 * persons.height
    qr_payees = txns.filter(pl.col("channel") == "qr")["payee_account"].unique().to_list()
    merchants = registry.filter(pl.col("account").is_in(qr_payees))
    assert merchants.height and merchants["merchant_category"].null_count() == 0
    salary_payers = txns.filter((pl.col("memo") == "工资") & (pl.col("scenario") == ""))[
        "payer_account"
    ].unique()
    assert registry.filter(pl.col("account").is_in(salary_payers.to_list()))["payroll"].all()
    assert registry["payroll"].sum() < 0.1 * registry.height
    # most accounts were in use days before the window; the registry never dates activity in it
    start = CONFIG.start
    last = registry["last_active_date"].drop_nulls()
    assert (last < start).all()
    assert ((start - last).dt.total_days() <= 30).mean() > 0.9


def test_registry_validation_names_the_problem() -> None:
    """A registry with a duplicate account, an unknown party type or activity before opening is refused."""
    row = {
        "account": "6200000000000001", "institution": "ICBC", "party_type": "person",
        "opened_date": dt.date(2020, 1, 1), "last_active_date": dt.date(2024, 1, 1),
        "merchant_category": None, "payroll": False, "phone": "+8613800000000",
    }  # fmt: skip
    good = pl.DataFrame([row], schema=REGISTRY_SCHEMA)
    assert validate_registry(good).height == 1
    for bad, message in (
        (pl.concat([good, good]), "account: listed more than once"),
        (good.with_columns(party_type=pl.lit("cash_terminal")), "party_type: must be one of"),
        (good.with_columns(last_active_date=pl.lit(dt.date(2019, 1, 1))), "last_active_date: before"),
        (good.with_columns(phone=pl.lit("not-a-phone")), "phone: not a phone number"),
        (good.drop("payroll"), "missing column payroll"),
    ):
        with pytest.raises(InputFileError, match=message):
            validate_registry(bad, "reg.csv")


def test_payee_phone_is_the_payees_phone_on_file(result: SynthResult) -> None:
    """payee_phone, set on a share of transfers (most within one institution), is the phone
    the payee's institution has on file; mules' phones among them."""
    txns = result.events.filter(TXN)
    known = txns.filter(pl.col("payee_phone").is_not_null())
    assert 0.005 * txns.height < known.height < 0.5 * txns.height
    on_file = result.registry.select(payee_account="account", on_file="phone")
    joined = known.join(on_file, on="payee_account", how="left")
    assert (joined["payee_phone"] == joined["on_file"]).all()
    same = (known["payer_institution"] == known["payee_institution"]).mean()
    assert same > 0.5
    mules = result.accounts.filter(pl.col("role").str.starts_with("mule"))["account"].to_list()
    assert known.filter(pl.col("payee_account").is_in(mules)).height >= 1


def test_call_outcome_and_payee_phone_are_validated() -> None:
    """validate_events refuses outcomes it does not know, an answered call without a duration,
    an unanswered one with one, and each new column on the wrong kind of event."""
    settings = load_settings()
    base = generate(SynthConfig(seed=2, n_persons=100, n_organisations=10, days=7)).events.head(2_000)
    call = pl.col("kind") == "call"
    first_call = call & (pl.col("event_id") == base.filter(call)["event_id"][0])
    first_txn = ~call & (pl.col("event_id") == base.filter(~call)["event_id"][0])
    cases = (
        (
            pl.when(first_call).then(pl.lit("hung_up")).otherwise("call_outcome"),
            "call_outcome",
            "must be one of",
        ),
        (
            pl.when(first_txn).then(pl.lit("answered")).otherwise("call_outcome"),
            "call_outcome",
            "set on a transaction",
        ),
        (pl.when(call).then(pl.lit("unanswered")).otherwise("call_outcome"), "call_outcome", "not answered"),
        (
            pl.when(first_call).then(pl.lit("+8613800000000")).otherwise("payee_phone"),
            "payee_phone",
            "set on a call",
        ),
        (pl.when(first_txn).then(pl.lit("x1")).otherwise("payee_phone"), "payee_phone", "not a phone number"),
    )
    for expr, column, message in cases:
        with pytest.raises(InputFileError, match=f"column {column}: {message}"):
            validate_events(base.with_columns(expr.alias(column)), settings, "x")
    answered_zero = base.with_columns(
        pl.when(call).then(0).otherwise("duration_seconds").alias("duration_seconds"),
        pl.when(call).then(pl.lit("answered")).otherwise("call_outcome").alias("call_outcome"),
    )
    with pytest.raises(InputFileError, match="answered with duration_seconds 0"):
        validate_events(answered_zero, settings, "x")
    legacy = base.with_columns(pl.lit(None, dtype=pl.String).alias("call_outcome"))
    assert validate_events(legacy, settings, "x").height == base.height


# ------------------------------------------------------------------------------ new scenarios

# several cases of every new scenario and look-alike
MANY = SynthConfig(
    seed=11, n_persons=4_000, n_organisations=200, days=30, scenario_rate=0.1, lookalike_rate=0.03
)


@pytest.fixture(scope="module")
def many() -> SynthResult:
    return generate(MANY)


def _role_map(result: SynthResult) -> dict[int, dict[str, set[str]]]:
    out: dict[int, dict[str, set[str]]] = {}
    for sid, role, account in result.accounts.select("scenario_id", "role", "account").iter_rows():
        out.setdefault(sid, {}).setdefault(role, set()).add(account)
    return out


def _victim_transfers(case: pl.DataFrame, roles: dict[str, set[str]]) -> pl.DataFrame:
    return case.filter(TXN & pl.col("payer_account").is_in(roles["victim"]))


def test_repeat_victims_pay_again_to_the_same_and_to_new_accounts(many: SynthResult) -> None:
    """Victims pay two or more times, minutes to days apart, again to an account paid before
    and to new ones, after calls from the fraud numbers (the first before the first payment)."""
    same, new, days_apart, minutes_apart, once = 0, 0, 0, 0, 0
    cases = _cases(many, "telecom_fraud_repeat")
    for case, roles in cases:
        paid = _victim_transfers(case, roles).sort("event_time")
        once += paid.height == 1  # the rest fell past the window's end
        assert set(paid["payee_account"]) <= set(roles["mule"])
        payees = paid["payee_account"].to_list()
        same += any(p in payees[:i] for i, p in enumerate(payees))
        new += paid["payee_account"].n_unique() > 1
        gaps = paid["event_time"].diff().drop_nulls()
        days_apart += (gaps > dt.timedelta(hours=12)).any()
        minutes_apart += (gaps < dt.timedelta(hours=1)).any()
        phone = paid["payer_phone"].drop_nulls()[0]
        calls = case.filter(CALL & (pl.col("callee_number") == phone))
        assert set(calls["caller_number"]) <= set(roles["fraud_caller"])
        assert calls["event_time"].min() < paid["event_time"].min()
    assert min(same, new, days_apart, minutes_apart) >= 2
    assert once <= 0.1 * len(cases)


def test_split_forwarding_mules_pass_each_payment_on_in_pieces(many: SynthResult) -> None:
    """The level-1 mule sends victim payments on within 30 minutes (nine in ten or more; the
    delay is random) in two or more pieces (uneven, some of a few hundred yuan) to level-2
    accounts or cash-out, never more than it got."""
    small, payments, split = 0, 0, 0
    for case, roles in _cases(many, "mule_split_forwarding"):
        txns = case.filter(TXN)
        for row in txns.filter(pl.col("payer_account").is_in(roles["victim"])).iter_rows(named=True):
            out = txns.filter(
                (pl.col("payer_account") == row["payee_account"])
                & (pl.col("event_time") > row["event_time"])
                & (pl.col("event_time") <= row["event_time"] + 30 * MINUTE)
            )
            payments += 1
            split += out.height >= 2
        for mule in roles["mule"]:
            inflow = txns.filter(pl.col("payee_account") == mule)["amount_minor"].sum()
            outflow = txns.filter((pl.col("payer_account") == mule) & (pl.col("currency") == "CNY"))
            assert outflow["amount_minor"].sum() <= inflow
            small += (outflow["amount_minor"] < 3_000 * CNY).sum()
        assert roles["mule_level2"]
    assert small >= 1
    assert split >= 0.9 * payments


def test_rented_dormant_mules_wake_up_and_pass_victims_money_on(many: SynthResult) -> None:
    """The rented account is years old, dormant for months before the window (registry), does
    nothing in the stream before its case, and forwards victims' money within 30 minutes; many
    victims never get a call."""
    registry = many.registry
    no_call, payments, forwarded = 0, 0, 0
    for case, roles in _cases(many, "rented_dormant_mule"):
        for mule in roles["mule"]:
            entry = registry.filter(pl.col("account") == mule).row(0, named=True)
            assert (MANY.start - entry["opened_date"]).days >= 730
            assert (MANY.start - entry["last_active_date"]).days >= 180
            all_txns = many.events.filter(
                TXN & ((pl.col("payer_account") == mule) | (pl.col("payee_account") == mule))
            )
            assert (all_txns["scenario"] == "rented_dormant_mule").all()
        txns = case.filter(TXN)
        for row in txns.filter(pl.col("payer_account").is_in(roles["victim"])).iter_rows(named=True):
            out = txns.filter(
                (pl.col("payer_account") == row["payee_account"])
                & (pl.col("event_time").is_between(row["event_time"], row["event_time"] + 30 * MINUTE))
            )
            payments += 1
            forwarded += out.height >= 1
        phones = txns.filter(pl.col("payer_account").is_in(roles["victim"]))["payer_phone"].unique().to_list()
        called = case.filter(CALL & pl.col("callee_number").is_in(phones))["callee_number"].n_unique()
        no_call += len(roles["victim"]) - called
    assert no_call >= 2
    assert forwarded >= 0.9 * payments


def test_robocallers_dial_many_mostly_unanswered_busiest_first(many: SynthResult) -> None:
    """A robocall number dials hundreds of distinct numbers, most calls not answered, answered
    ones mostly seconds long, its first day its busiest; a victim pays after talking to the gang."""
    for case, roles in _cases(many, "robocall"):
        for number in roles["robocaller"]:
            calls = case.filter(CALL & (pl.col("caller_number") == number))
            assert calls["callee_number"].n_unique() >= 0.8 * calls.height
            assert (calls["call_outcome"] != "answered").mean() > 0.5
            answered = calls.filter(pl.col("call_outcome") == "answered")["duration_seconds"]
            assert answered.median() < 60
            per_day = calls.group_by(pl.col("event_time").dt.date()).len().sort("event_time")["len"]
            assert per_day[0] == per_day.max()
        if "victim" not in roles:  # paid after the window's end
            continue
        paid = _victim_transfers(case, roles)
        phones = paid["payer_phone"].unique().to_list()
        talks = case.filter(
            CALL & pl.col("callee_number").is_in(phones) & (pl.col("duration_seconds") >= 180)
        )
        assert talks["event_time"].min() < paid["event_time"].min()


def test_pyramid_fees_are_fixed_and_flow_up_the_tree(many: SynthResult) -> None:
    """Members pay one fixed fee (or two or three times it); fee money reaches the controller,
    directly, through the company account or level by level; recruiters get money back."""
    for case, roles in _cases(many, "pyramid_scheme"):
        members = set(roles.get("member", [])) | set(roles.get("recruiter", []))
        txns = case.filter(TXN)
        (controller,) = roles["controller"]
        assert txns.filter(pl.col("payee_account") == controller).height >= 1
        fees = txns.filter(
            pl.col("payer_account").is_in(members)
            & pl.col("memo").is_in(["入会费", "会员费", "加盟费", "报单"])
        )
        if fees.height >= 2:
            unit = fees["amount_minor"].min()
            assert all(a % unit == 0 and a // unit <= 3 for a in fees["amount_minor"])
        back = txns.filter(pl.col("payee_account").is_in(roles.get("recruiter", [])))
        assert back.height >= 1


def test_a_pyramid_pays_out_only_what_joins_so_far_brought_in() -> None:
    """A platform's company account settles the bonuses that joins so far have earned, to members
    who have joined, and sweeps part of what is left: it never pays out more than it took in by
    then (a settlement that paid the month's bonuses at its first evening did, and paid members
    days before they joined)."""
    weights = tuple(1.0 if s == "pyramid_scheme" else 0.0 for s in SCENARIOS)
    schemes = generate(SynthConfig(seed=3, n_persons=3_000, n_organisations=100, days=30,
                                   scenario_rate=0.1, scenario_weights=weights, lookalike_rate=0.0))
    platforms = settled_together = tops = 0
    for case, roles in _cases(schemes, "pyramid_scheme"):
        if "collector" not in roles:  # a chain: the top pays recruiters with two recruits or more
            (controller,) = roles["controller"]
            tops += case.filter(TXN & (pl.col("payer_account") == controller)
                                & pl.col("payee_account").is_in(roles.get("recruiter", []))).height > 0
            continue
        platforms += 1
        (collector,) = roles["collector"]
        flows = case.filter(TXN & ((pl.col("payer_account") == collector)
                                   | (pl.col("payee_account") == collector))).sort("event_time")
        signed = (pl.when(pl.col("payee_account") == collector)
                  .then("amount_minor").otherwise(-pl.col("amount_minor")))
        assert flows.select(signed.cum_sum().min()).item() >= 0
        joined = flows.filter(pl.col("payee_account") == collector).group_by("payer_account").agg(
            pl.col("event_time").min().alias("joined"))
        paid = flows.filter(pl.col("payer_account") == collector).join(
            joined, left_on="payee_account", right_on="payer_account", how="inner")
        assert paid.filter(pl.col("event_time") < pl.col("joined")).height == 0
        payouts = flows.filter(pl.col("payer_account") == collector)["event_time"]
        settled_together += int((payouts.diff() == dt.timedelta(seconds=20)).any())
    assert platforms >= 1 and settled_together >= 1  # one settles daily or weekly, at least
    assert tops >= 1


def test_ponzi_exit_moves_the_pool_out_in_large_amounts(many: SynthResult) -> None:
    """Near the end the collector sends large sums to the controllers' cards, who send money
    abroad, draw cash or pass it on; the collector never pays out more than it took in."""
    abroad_or_cash = 0
    for case, roles in _cases(many, "ponzi_exit"):
        (collector,) = roles["collector"]
        txns = case.filter(TXN)
        to_ctrl = txns.filter(
            (pl.col("payer_account") == collector) & pl.col("payee_account").is_in(roles["controller"])
        )
        assert to_ctrl.height >= 1 and to_ctrl["amount_minor"].min() >= 10_000 * CNY
        assert to_ctrl["event_time"].min() > txns["event_time"].min()
        signed = (
            pl.when(pl.col("payee_account") == collector)
            .then("amount_minor")
            .otherwise(-pl.col("amount_minor"))
        )
        flows = txns.filter((pl.col("payer_account") == collector) | (pl.col("payee_account") == collector))
        assert flows.select(signed.cum_sum().min()).item() >= 0
        ctrl_out = txns.filter(pl.col("payer_account").is_in(roles["controller"]))
        abroad_or_cash += (ctrl_out["cross_border"] | ctrl_out["cash"]).any()
    assert abroad_or_cash >= 1


LINES = {  # reporting lines in minor units of the currency (PBOC Order [2016] No. 3)
    ("cash", "CNY"): 50_000 * CNY, ("cash", "USD"): 10_000 * 100,
    ("domestic", "CNY"): 500_000 * CNY, ("domestic", "USD"): 100_000 * 100,
    ("abroad", "CNY"): 200_000 * CNY, ("abroad", "USD"): 10_000 * 100,
    ("org", "CNY"): 2_000_000 * CNY, ("org", "USD"): 200_000 * 100,
}  # fmt: skip


def test_structuring_stays_under_every_line_each_day() -> None:
    """Per structurer, local day and line family, the day's total stays under the line and
    close to it; the cases cover cash, transfers, cross-border and organisations, CNY and USD,
    and pieces on several days."""
    weights = tuple(1.0 if s == "structuring_thresholds" else 0.0 for s in SCENARIOS)
    result = generate(
        dataclasses.replace(MANY, scenario_weights=weights, scenario_rate=0.02, lookalike_rate=0)
    )
    case = result.events.filter((pl.col("scenario") == "structuring_thresholds") & TXN)
    structurers = result.accounts.filter(pl.col("role") == "structurer")["account"].to_list()
    family = (
        pl.when(pl.col("cash")).then(pl.lit("cash"))
        .when(pl.col("payer_party_type") == "organisation").then(pl.lit("org"))
        .when(pl.col("cross_border")).then(pl.lit("abroad")).otherwise(pl.lit("domestic"))
    )  # fmt: skip
    who = pl.when(pl.col("payer_account").is_in(structurers)).then("payer_account").otherwise("payee_account")
    days = case.group_by(
        who.alias("who"), pl.col("event_time").dt.offset_by("8h").dt.date().alias("day"),
        family.alias("family"),
        "currency",
    ).agg(pl.col("amount_minor").sum().alias("total"))  # fmt: skip
    seen = set()
    for row in days.iter_rows(named=True):
        line = LINES[(row["family"], row["currency"])]
        assert 0.8 * line <= row["total"] < line, row
        seen.add((row["family"], row["currency"]))
    assert {f for f, _ in seen} == {"cash", "domestic", "abroad", "org"}
    assert {c for _, c in seen} == {"CNY", "USD"}
    assert (days.group_by("who").agg(pl.col("day").n_unique())["day"] >= 2).mean() > 0.7


# ------------------------------------------------------------------------------ look-alikes


def test_every_lookalike_family_is_planted_and_labelled(many: SynthResult) -> None:
    """Each look-alike family has cases, events and at least one 'lookalike' account or caller."""
    for family in LOOKALIKES:
        assert many.stats[f"cases_{family}"] >= 2, family
        labelled = many.accounts.filter(pl.col("scenario") == family)
        assert labelled.filter(pl.col("role").is_in(["lookalike", "lookalike_caller"])).height >= 2, family
        assert many.events.filter(pl.col("scenario") == family).height >= 2, family


def test_shop_settles_daily_to_the_owners_card(many: SynthResult) -> None:
    """A look-alike shop's collection account pays its owner's personal card night after night,
    and the owner has also paid the shop."""
    for case, roles in _cases(many, "lookalike_shop_settlement"):
        shop = [a for a in roles["lookalike"] if a.startswith("31")]
        owner = [a for a in roles["lookalike"] if a.startswith("62")]
        settle = case.filter((pl.col("payer_account") == shop[0]) & (pl.col("payee_account") == owner[0]))
        assert settle.height >= 5
        assert settle["event_time"].dt.date().n_unique() == settle.height


def test_salary_runs_pay_many_staff_within_minutes(many: SynthResult) -> None:
    """A salary run pays three or more persons within 15 minutes; the employer's registry entry
    says payroll unless the boss pays from a personal card."""
    for case, roles in _cases(many, "lookalike_salary_run"):
        (payer,) = roles["lookalike"]
        run = case.filter(TXN & (pl.col("payer_account") == payer) & (pl.col("payee_party_type") == "person"))
        busiest = (
            run.group_by(pl.col("event_time").dt.date())
            .agg(
                pl.col("payee_account").n_unique(),
                (pl.col("event_time").max() - pl.col("event_time").min()).alias("span"),
            )
            .sort("payee_account")
            .row(-1, named=True)
        )
        assert busiest["payee_account"] >= 3 and busiest["span"] <= dt.timedelta(hours=3)
        entry = many.registry.filter(pl.col("account") == payer).row(0, named=True)
        assert entry["payroll"] == (entry["party_type"] == "organisation")


def test_couriers_call_many_numbers_mostly_answered_and_short(many: SynthResult) -> None:
    """A courier's or rider's number calls dozens of numbers a day, three in four or more
    answered, answered calls under a minute or two."""
    for case, roles in _cases(many, "lookalike_courier"):
        calls = case.filter(CALL & pl.col("caller_number").is_in(roles["lookalike_caller"]))
        assert calls.height >= 100
        assert (calls["call_outcome"] == "answered").mean() > 0.7
        assert calls.filter(pl.col("duration_seconds") > 0)["duration_seconds"].median() < 60


def test_family_transfer_follows_a_relatives_call(many: SynthResult) -> None:
    """Each family transfer comes within four hours of a call with the relative's number."""
    for case, _ in _cases(many, "lookalike_family_call"):
        calls = case.filter(CALL)
        for row in case.filter(TXN).iter_rows(named=True):
            before = calls.filter(
                pl.col("event_time").is_between(row["event_time"] - 240 * MINUTE, row["event_time"])
            )
            assert before.height >= 1


def test_crowdfunding_many_small_donations_then_the_hospital(many: SynthResult) -> None:
    """Ten or more donors send small round sums; the family pays the hospital large amounts."""
    for case, roles in _cases(many, "lookalike_crowdfunding"):
        (family,) = roles["lookalike"]
        donations = case.filter(
            (pl.col("payee_account") == family) & pl.col("memo").is_in(["捐款", "爱心捐款"])
            | ((pl.col("payee_account") == family) & (pl.col("amount_minor") <= 2_000 * CNY))
        )
        assert donations["payer_account"].n_unique() >= 10
        bills = case.filter(
            (pl.col("payer_account") == family) & pl.col("payee_account").is_in(roles["lookalike_party"])
        )
        assert bills.height >= 1 and bills["amount_minor"].max() >= 1_000 * CNY


def test_reactivated_accounts_were_dormant_in_the_registry(many: SynthResult) -> None:
    """A genuinely reactivated account is years old and last active months or years before the
    window, like a rented mule's."""
    for _, roles in _cases(many, "lookalike_dormant_reactivation"):
        (acc,) = roles["lookalike"]
        entry = many.registry.filter(pl.col("account") == acc).row(0, named=True)
        assert (MANY.start - entry["last_active_date"]).days >= 180
        assert (MANY.start - entry["opened_date"]).days >= 3 * 365


def test_group_buy_and_home_purchase_collect_then_pay_one_party(many: SynthResult) -> None:
    """A group-buy organiser collects from many neighbours and pays the supplier; a home buyer
    collects from family and pays the developer or seller more than any single contribution."""
    for case, roles in _cases(many, "lookalike_group_buy"):
        (org,) = roles["lookalike"]
        assert case.filter(pl.col("payee_account") == org)["payer_account"].n_unique() >= 5
        assert case.filter(pl.col("payee_account").is_in(roles["lookalike_party"])).height >= 2
    for case, roles in _cases(many, "lookalike_home_purchase"):
        (buyer,) = roles["lookalike"]
        inflow = case.filter(TXN & (pl.col("payee_account") == buyer))["amount_minor"]
        paid = case.filter(TXN & (pl.col("payer_account") == buyer))["amount_minor"]
        assert paid.sum() >= inflow.sum() and inflow.max() >= 50_000 * CNY


def test_couriers_call_from_a_mobile_or_a_platforms_privacy_number() -> None:
    """A courier or rider rings the day's customers from a mobile of their own or a platform's
    privacy number (a virtual operator's): never from a home landline or a foreign SIM, which a
    person's own phone can be (about 2 % of them)."""
    many_couriers = generate(SynthConfig(seed=11, n_persons=30_000, n_organisations=300, days=7,
                                         scenario_rate=0.0, lookalike_rate=0.2))
    numbers = many_couriers.accounts.filter((pl.col("scenario") == "lookalike_courier")
                                            & (pl.col("role") == "lookalike_caller"))["account"]
    classes = (many_couriers.events.filter(pl.col("caller_number").is_in(numbers.implode()))
               .group_by("caller_number").agg(pl.col("caller_class").first())["caller_class"])
    assert numbers.len() >= 300
    assert set(classes.to_list()) == {"mobile", "virtual_operator"}


def test_a_scenario_that_adds_a_phone_moves_no_device_id_and_no_payee_phone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Identifiers are drawn at the end, each table from a stream of its own: a generator change
    that adds one phone number changes phone digits, not device ids nor which payments carry the
    payee's phone (so a fix to one scenario does not reshuffle the others' evidence)."""
    config = SynthConfig(seed=5, n_persons=300, n_organisations=20, days=10, scenario_rate=0.05,
                         lookalike_rate=0.1)
    before = generate(config)
    courier = synth._courier

    def courier_with_a_spare_phone(w: Any, ev: Any, rng: np.random.Generator, groups: list[Any]) -> int:
        w.ph.add(synth._CLS["mobile"])
        return courier(w, ev, rng, groups)

    monkeypatch.setattr(synth, "_courier", courier_with_a_spare_phone)
    after = generate(config)
    assert not before.events["caller_number"].equals(after.events["caller_number"])  # it ran
    assert before.events["device_id"].equals(after.events["device_id"])
    assert before.events["payee_phone"].is_null().equals(after.events["payee_phone"].is_null())
    assert before.events.drop("caller_number", "callee_number", "payer_phone", "payee_phone").equals(
        after.events.drop("caller_number", "callee_number", "payer_phone", "payee_phone"))
