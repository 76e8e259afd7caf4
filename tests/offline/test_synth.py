"""The labelled scenario generator: schema, determinism, ordinary rhythms and planted cases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import polars as pl
import pytest

from screening.offline import synth
from screening.offline.schema import (
    ACCOUNT_LABEL_SCHEMA,
    CHANNELS,
    EVENT_SCHEMA,
    LABEL_COLUMNS,
    NUMBER_CLASSES,
    PARTY_TYPES,
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
    write(a, tmp_path / "a")
    write(b, tmp_path / "b")
    for name in ("events.parquet", "accounts.parquet"):
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


# ------------------------------------------------------------------------------ the frame


def test_event_frame_has_exactly_the_schema(result: SynthResult) -> None:
    """Events carry EVENT_SCHEMA then LABEL_COLUMNS, in order and dtype; accounts their schema."""
    assert result.events.schema == pl.Schema(EVENT_SCHEMA | LABEL_COLUMNS)
    assert result.accounts.schema == pl.Schema(ACCOUNT_LABEL_SCHEMA)


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
    call_cols = ["caller_number", "callee_number", "duration_seconds", "caller_class"]
    assert txns.select(pl.col(*call_cols).null_count()).row(0) == (txns.height,) * 4
    # USD only crosses the border; most transactions carry the payer's phone
    assert txns.filter(pl.col("currency") == "USD")["cross_border"].all()
    assert txns["payer_phone"].null_count() < 0.3 * txns.height
    # cash goes through ATM or counter terminals
    cash = txns.filter(pl.col("cash"))
    assert set(cash["channel"]) == {"atm", "counter"}


def test_calls_fill_only_call_columns(events: pl.DataFrame) -> None:
    """A call is completed (duration > 0) with a number class, and no transaction columns."""
    calls = events.filter(CALL)
    assert calls.height > 10_000
    assert (calls["duration_seconds"] > 0).all()
    assert set(calls["caller_class"]) <= set(NUMBER_CLASSES)
    number_cols = pl.col("caller_number", "callee_number", "caller_class")
    assert calls.select(number_cols.null_count()).row(0) == (0,) * 3
    txn_cols = [c for c in EVENT_SCHEMA if c not in ("event_id", "kind", "event_time")][:16]
    assert calls.select(pl.col(*txn_cols).null_count()).row(0) == (calls.height,) * 16
    assert calls["duration_seconds"].median() < 600  # mostly minutes


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
    assert set(planted["scenario"]) == set(SCENARIOS)
    assert (planted.group_by("scenario_id").agg(pl.col("scenario").n_unique())["scenario"] == 1).all()
    assert planted.height < 0.05 * events.height


def test_scenario_rate_is_respected(result: SynthResult) -> None:
    """About scenario_rate of the population is drawn into planted cases."""
    share = result.stats["scenario_persons"] / CONFIG.n_persons
    assert CONFIG.scenario_rate * 0.7 <= share <= CONFIG.scenario_rate * 1.3
    for scenario in SCENARIOS:
        assert result.stats[f"cases_{scenario}"] >= 1


def test_zero_rate_plants_nothing() -> None:
    """scenario_rate=0 gives an unlabelled stream and an empty accounts frame."""
    result = generate(SynthConfig(seed=1, n_persons=200, n_organisations=20, days=7, scenario_rate=0.0))
    assert (result.events["scenario"] == "").all()
    assert result.accounts.height == 0
    assert result.accounts.schema == pl.Schema(ACCOUNT_LABEL_SCHEMA)


def test_accounts_frame_matches_the_events(result: SynthResult) -> None:
    """Every labelled account acts in its case, and every party of a case is labelled."""
    events, accounts = result.events, result.accounts
    assert not accounts.is_duplicated().any()
    planted = events.filter(pl.col("scenario") != "")
    txn_parties = pl.concat(
        [
            planted.filter(TXN).select(account=pl.col(side), scenario_id="scenario_id")
            for side in ("payer_account", "payee_account")
        ]
    ).unique()
    callers = planted.filter(CALL).select(account="caller_number", scenario_id="scenario_id").unique()
    accounts_only = accounts.filter(pl.col("role") != "fraud_caller").select("account", "scenario_id")
    terminals = pl.col("account").str.starts_with("ATM") | pl.col("account").str.starts_with("CTR")
    assert accounts_only.join(txn_parties, on=["account", "scenario_id"], how="anti").height == 0
    unlisted = txn_parties.filter(~terminals).join(accounts_only, on=["account", "scenario_id"], how="anti")
    assert unlisted.height == 0
    fraud_callers = accounts.filter(pl.col("role") == "fraud_caller").select("account", "scenario_id")
    assert fraud_callers.join(callers, on=["account", "scenario_id"], how="anti").height == 0
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


def test_structuring_stays_just_under_the_cash_threshold(result: SynthResult) -> None:
    """Three or more 45,000-49,999.99 CNY transactions of one account within a few days."""
    for case, roles in _cases(result, "structuring"):
        (who,) = roles["structurer"]
        assert case.height >= 3
        assert case["amount_minor"].is_between(45_000 * CNY, 50_000 * CNY - 1).all()
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
    assert sorted(p.name for p in out.iterdir()) == ["accounts.parquet", "events.parquet"]
    assert sorted(written) == sorted(out.iterdir())
    assert pl.read_parquet(out / "events.parquet").equals(result.events)
    assert pl.read_parquet(out / "accounts.parquet").equals(result.accounts)
    write(result, out, csv=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "accounts.csv", "accounts.parquet", "events.csv", "events.parquet",
    ]  # fmt: skip
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.parquet", "events.parquet"]
