"""Victim protection, measured from labels and decisions only: did the service protect people?

``protection_metrics(events, accounts, decisions, ...)`` scores a replay (or the decisions a
live server gave the same stream) against a labelled stream (``screening synth`` or any file
with the same labels). It reads no rule, feature or reason code: only each event's action and
report flags. Definitions, the same in every report:

- **order**: events are taken in replay order, event time then file row; "before" is in that order.
- **victim fraud transfers**: a case's transactions paid by an account labelled ``victim`` in
  that case (loans or "commissions" paid *to* a victim are not counted).
- **intervened before the first transfer**: the victim's first fraud transfer was decided WARN
  or stronger, or a call of the case to one of the victim's phones (the payer phone of their
  transfers, and the registry's phone on file when given) was decided WARN_CALLEE or BLOCK
  before it.
- **money stopped / held**: the amount (CNY fen) of victim fraud transfers decided
  STOP_PAYMENT or FREEZE / decided HOLD, as a share of all victim fraud transfers.
- **repeat payments after an intervention**: victim fraud transfers decided ALLOW or WARN after
  that victim's first transfer decided HOLD, STOP_PAYMENT or FREEZE (target 0).
- **mule stopped**: an account labelled ``mule``, ``mule_level2``, ``mule_level3``,
  ``sub_mule`` or ``ring_member`` had an outgoing transaction decided STOP_PAYMENT or FREEZE.
  **Still stoppable** at its first such stop: the case money it had received (incoming case
  transfers decided ALLOW or WARN: the money arrived) less what it had sent on (outgoing case
  transfers decided ALLOW or WARN), as a share of what it had received.
- **flagged** (collectors, controllers, recruiters of fundraising and pyramid cases): any
  transaction of theirs, paid or received, decided HOLD or stronger or reported suspicious.
- **reported** (structurers): any transaction of theirs with a suspicious-report flag.
- **large-value ground truth**: per customer side (payer ``out``, payee ``in``; terminals are
  not customers), local day, category (cash, organisation transfer, person domestic or
  cross-border transfer) and basis (CNY, or foreign currency converted at the settings' rates),
  every transaction of a group whose total is at or over its line (PBOC Order [2016] No. 3,
  Art. 5) is reportable. **Live-flag recall**: the share of reportable transactions flagged
  ``large_value``; a daily ledger (any frame of ``event_id``) gets the same recall.
- **alerted account**: the payer of a transaction decided WARN or stronger, either side of one
  decided HOLD or stronger, either side of one reported suspicious (a WARN is shown to the payer;
  a hold or a report concerns both). **Ordinary** accounts are the non-terminal parties of
  transactions that are in no case (not in the accounts frame). Look-alike rates are over the
  accounts labelled ``lookalike`` (the ones whose own behaviour is the look-alike) and the
  numbers labelled ``lookalike_caller``; a number is **warned** when a call it made was decided
  WARN_CALLEE or BLOCK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from screening.config import Settings
from screening.offline.schema import KIND_CALL, KIND_TXN, LOOKALIKES
from screening.policy import ACTIONS

__all__ = [
    "CRIMINAL_ROLES",
    "MULE_ROLES",
    "ProtectionMetrics",
    "format_protection",
    "large_value_truth",
    "protection_metrics",
]

MULE_ROLES = ("mule", "mule_level2", "mule_level3", "sub_mule", "ring_member")
FLAG_ROLES = ("collector", "controller", "recruiter")
# accounts run by criminals or moving their money: an ordinary customer's payment to or from one
# that is held is the service doing its job (the money would reach a criminal), not a false alarm
CRIMINAL_ROLES = (*MULE_ROLES, *FLAG_ROLES, "cashout", "structurer", "cycle_member", "source", "sink")
_RANK = dict(ACTIONS)  # ALLOW 1 .. FREEZE 5
_WARN, _HOLD, _STOP = _RANK["WARN"], _RANK["HOLD"], _RANK["STOP_PAYMENT"]
_CALL_ALERTS = ("WARN_CALLEE", "BLOCK")
_TERMINAL = "cash_terminal"


@dataclass(frozen=True)
class ProtectionMetrics:
    """The figures of one stream; frames have one row per scenario (and role or family)."""

    per_scenario: pl.DataFrame  # victims, interventions, money, repeats, mules
    flagged: pl.DataFrame  # collectors, controllers, recruiters, structurers
    large_value: Mapping[str, Any]
    alerts: Mapping[str, Any]  # ordinary accounts and callers
    lookalikes: pl.DataFrame
    info: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "info": dict(self.info),
            "per_scenario": self.per_scenario.to_dicts(),
            "flagged": self.flagged.to_dicts(),
            "large_value": dict(self.large_value),
            "alerts": dict(self.alerts),
            "lookalikes": self.lookalikes.to_dicts(),
        }


def protection_metrics(
    events: pl.DataFrame,
    accounts: pl.DataFrame,
    decisions: pl.DataFrame,
    *,
    lines_fen: Mapping[tuple[str, str], int] | None = None,
    settings: Settings | None = None,
    timezone_offset_hours: int = 8,
    registry: pl.DataFrame | None = None,
    ledgers: Mapping[str, pl.DataFrame] | None = None,
) -> ProtectionMetrics:
    """Score ``decisions`` against the labels of ``events`` and ``accounts`` (see the module).

    ``lines_fen`` maps (category, basis) to the large-value line in fen (for example
    ``ReportThresholds.lines_fen(settings)``); without it the large-value figures are left out.
    ``ledgers`` are daily report ledgers (frames with an ``event_id`` column) whose recall is
    reported beside the live flag's.
    """
    settings = settings or Settings()
    j = _joined(events, decisions)
    txn = j.filter(pl.col("kind") == KIND_TXN)
    calls = j.filter(pl.col("kind") == KIND_CALL)
    labels = accounts.select("account", "scenario", "scenario_id", "role")
    phones = _victim_phones(txn, labels, registry)
    victims = _victims(txn, calls, labels, phones)
    mules = _mules(txn, labels)
    per_scenario = _per_scenario(j, labels, victims, mules)
    flagged = _flagged(txn, labels)
    large_value = (
        _large_value(txn, lines_fen, settings, timezone_offset_hours, ledgers or {})
        if lines_fen is not None
        else {}
    )
    alerts, lookalikes = _alert_rates(j, txn, calls, labels)
    info = {"events": j.height, "transactions": txn.height, "calls": calls.height}
    return ProtectionMetrics(per_scenario, flagged, large_value, alerts, lookalikes, info)


# ============================================================================ building blocks


def _joined(events: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """Events with their decision (first occurrence of an id), in replay order, with ``rank``
    (the action's strength: 1 ALLOW .. 5 FREEZE, 0 for calls) and ``order``."""
    cols = [
        "event_id", "kind", "event_time", "payer_account", "payee_account", "payer_party_type",
        "payee_party_type", "payer_phone", "caller_number", "callee_number", "amount_minor",
        "currency", "cash", "cross_border",
    ]  # fmt: skip
    ev = events.select(
        *cols,
        pl.col("scenario").fill_null("") if "scenario" in events.columns else pl.lit("").alias("scenario"),
        pl.col("scenario_id").fill_null(-1)
        if "scenario_id" in events.columns
        else pl.lit(-1).alias("scenario_id"),
    )
    dec = decisions
    if "duplicate" in dec.columns:
        dec = dec.filter(~pl.col("duplicate"))
    if "row" not in dec.columns:
        dec = dec.with_row_index("row")
    dec = dec.select("event_id", "row", "action", "suspicious", "large_value", "amount_fen").unique(
        "event_id", keep="first", maintain_order=True
    )
    j = ev.join(dec, on="event_id", how="inner")
    return (
        j.sort("event_time", "row")
        .with_row_index("order")
        .with_columns(
            pl.col("action").replace_strict(_RANK, default=0, return_dtype=pl.Int8).alias("rank"),
            pl.col("suspicious").fill_null(False),
            pl.col("large_value").fill_null(False),
        )
    )


def _victim_phones(txn: pl.DataFrame, labels: pl.DataFrame, registry: pl.DataFrame | None) -> pl.DataFrame:
    """(account, phone) of every victim: the payer phones of their transfers, and on file."""
    victims = labels.filter(pl.col("role") == "victim").select("account").unique()
    used = txn.join(victims, left_on="payer_account", right_on="account", how="semi").select(
        account="payer_account", phone="payer_phone"
    )
    parts = [used]
    if registry is not None:
        parts.append(registry.join(victims, on="account", how="semi").select("account", "phone"))
    return pl.concat(parts).drop_nulls().unique()


def _victims(
    txn: pl.DataFrame, calls: pl.DataFrame, labels: pl.DataFrame, phones: pl.DataFrame
) -> pl.DataFrame:
    """One row per victim of a case: interventions, money, repeats after an intervention."""
    victims = labels.filter(pl.col("role") == "victim").select("account", "scenario", "scenario_id").unique()
    paid = txn.join(
        victims.rename({"account": "payer_account"}),
        on=["payer_account", "scenario", "scenario_id"],
        how="inner",
    )
    first = (
        paid.sort("order")
        .group_by("payer_account", "scenario_id")
        .agg(pl.col("order").first().alias("first_order"), pl.col("rank").first().alias("first_rank"))
    )
    # calls of the case to the victim's phones, warned or blocked, before the first transfer
    warned_calls = calls.filter(pl.col("action").is_in(_CALL_ALERTS)).select(
        "order", "scenario_id", phone="callee_number"
    )
    called = (
        warned_calls.join(phones, on="phone", how="inner")
        .join(first.rename({"payer_account": "account"}), on=["account", "scenario_id"], how="inner")
        .filter(pl.col("order") < pl.col("first_order"))
        .select("account", "scenario_id")
        .unique()
        .with_columns(pl.lit(True).alias("warned_call"))
    )
    stops = (
        paid.filter(pl.col("rank") >= _HOLD)
        .group_by("payer_account", "scenario_id")
        .agg(pl.col("order").min().alias("first_stop"))
    )
    per = (
        paid.join(stops, on=["payer_account", "scenario_id"], how="left")
        .with_columns(
            (
                pl.col("first_stop").is_not_null()
                & (pl.col("order") > pl.col("first_stop"))
                & (pl.col("rank") <= _WARN)
            ).alias("repeat")
        )
        .group_by("payer_account", "scenario", "scenario_id")
        .agg(
            pl.col("amount_fen").sum().alias("money_fen"),
            pl.col("amount_fen").filter(pl.col("rank") >= _STOP).sum().alias("stopped_fen"),
            pl.col("amount_fen").filter(pl.col("rank") == _HOLD).sum().alias("held_fen"),
            pl.col("repeat").sum().alias("repeats"),
            pl.col("amount_fen").filter(pl.col("repeat")).sum().alias("repeat_fen"),
            pl.len().alias("transfers"),
        )
        .rename({"payer_account": "account"})
    )
    return (
        per.join(first.rename({"payer_account": "account"}), on=["account", "scenario_id"], how="left")
        .join(called, on=["account", "scenario_id"], how="left")
        .with_columns(
            ((pl.col("first_rank") >= _WARN) | pl.col("warned_call").fill_null(False)).alias("intervened")
        )
    )


def _mules(txn: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """One row per mule of a case: stopped or not, and the share still stoppable then."""
    mules = labels.filter(pl.col("role").is_in(MULE_ROLES)).select(
        "account", "scenario", "scenario_id", "role"
    )
    mules = mules.unique(["account", "scenario_id"], keep="first", maintain_order=True)
    stop = (
        txn.filter(pl.col("rank") >= _STOP)
        .join(mules.select("account"), left_on="payer_account", right_on="account", how="semi")
        .group_by("payer_account")
        .agg(pl.col("order").min().alias("stop_order"))
        .rename({"payer_account": "account"})
    )
    moved = txn.filter((pl.col("rank") >= 1) & (pl.col("rank") <= _WARN))
    inflow = moved.select("scenario_id", "order", "amount_fen", account="payee_account")
    outflow = moved.select("scenario_id", "order", "amount_fen", account="payer_account")
    at_stop = mules.join(stop, on="account", how="inner")

    def before(flows: pl.DataFrame, name: str) -> pl.DataFrame:
        return (
            at_stop.join(flows, on=["account", "scenario_id"], how="inner")
            .filter(pl.col("order") < pl.col("stop_order"))
            .group_by("account", "scenario_id")
            .agg(pl.col("amount_fen").sum().alias(name))
        )

    return (
        mules.join(stop, on="account", how="left")
        .join(before(inflow, "received_fen"), on=["account", "scenario_id"], how="left")
        .join(before(outflow, "sent_fen"), on=["account", "scenario_id"], how="left")
        .with_columns(
            pl.col("stop_order").is_not_null().alias("stopped"),
            pl.col("received_fen").fill_null(0),
            pl.col("sent_fen").fill_null(0),
        )
        .with_columns(
            pl.when(pl.col("stopped") & (pl.col("received_fen") > 0))
            .then((pl.col("received_fen") - pl.col("sent_fen")).clip(0) / pl.col("received_fen"))
            .alias("stoppable")
        )
    )


def _per_scenario(
    j: pl.DataFrame, labels: pl.DataFrame, victims: pl.DataFrame, mules: pl.DataFrame
) -> pl.DataFrame:
    """Victim and mule figures per fraud scenario (look-alikes are reported apart)."""
    scenarios = sorted(
        {s for s in j.get_column("scenario").unique().to_list() if s and s not in LOOKALIKES}
        | {s for s in labels.get_column("scenario").unique().to_list() if s and s not in LOOKALIKES}
    )
    rows = []
    for s in scenarios:
        v = victims.filter(pl.col("scenario") == s)
        m = mules.filter(pl.col("scenario") == s)
        stopped = m.filter(pl.col("stopped"))
        share = stopped.get_column("stoppable").drop_nulls()
        money = int(v.get_column("money_fen").sum())
        rows.append(
            {
                "scenario": s,
                "cases": j.filter(pl.col("scenario") == s).get_column("scenario_id").n_unique(),
                "victims": v.height,
                "intervened_first": int(v.get_column("intervened").sum()),
                "intervened_first_share": _ratio(v.get_column("intervened").sum(), v.height),
                "victim_transfers": int(v.get_column("transfers").sum()),
                "victim_money_fen": money,
                "stopped_share": _ratio(v.get_column("stopped_fen").sum(), money),
                "held_share": _ratio(v.get_column("held_fen").sum(), money),
                "repeats_after_intervention": int(v.get_column("repeats").sum()),
                "repeat_fen": int(v.get_column("repeat_fen").sum()),
                "victims_repeating": int((v.get_column("repeats") > 0).sum()),
                "mules": m.height,
                "mules_stopped": stopped.height,
                "mules_stopped_share": _ratio(stopped.height, m.height),
                "level1_mules": m.filter(pl.col("role") == "mule").height,
                "level1_stopped": stopped.filter(pl.col("role") == "mule").height,
                "stoppable_median": float(share.median()) if share.len() else None,  # type: ignore[arg-type]
                "stoppable_mean": float(share.mean()) if share.len() else None,  # type: ignore[arg-type]
            }
        )
    return pl.DataFrame(rows, schema=_PER_SCENARIO_SCHEMA)


_PER_SCENARIO_SCHEMA = {
    "scenario": pl.String, "cases": pl.Int64, "victims": pl.Int64, "intervened_first": pl.Int64,
    "intervened_first_share": pl.Float64, "victim_transfers": pl.Int64, "victim_money_fen": pl.Int64,
    "stopped_share": pl.Float64, "held_share": pl.Float64, "repeats_after_intervention": pl.Int64,
    "repeat_fen": pl.Int64, "victims_repeating": pl.Int64, "mules": pl.Int64, "mules_stopped": pl.Int64,
    "mules_stopped_share": pl.Float64, "level1_mules": pl.Int64, "level1_stopped": pl.Int64,
    "stoppable_median": pl.Float64, "stoppable_mean": pl.Float64,
}  # fmt: skip


def _sides(txn: pl.DataFrame) -> pl.DataFrame:
    """Each transaction once per non-terminal side, with that side's alert levels."""
    common = ["event_id", "order", "rank", "suspicious", "scenario", "scenario_id"]
    both = pl.concat(
        [
            txn.filter(pl.col("payer_party_type") != _TERMINAL).select(
                *common, pl.col("payer_account").alias("account"), pl.lit(True).alias("payer"),
                pl.col("payee_account").alias("counterparty"),
            ),
            txn.filter(pl.col("payee_party_type") != _TERMINAL).select(
                *common, pl.col("payee_account").alias("account"), pl.lit(False).alias("payer"),
                pl.col("payer_account").alias("counterparty"),
            ),
        ]
    )
    return both.with_columns(
        (pl.col("rank") >= _HOLD).alias("hold"),
        ((pl.col("rank") >= _HOLD) | (pl.col("payer") & (pl.col("rank") >= _WARN))).alias("warn"),
        (
            (pl.col("rank") >= _HOLD) | (pl.col("payer") & (pl.col("rank") >= _WARN)) | pl.col("suspicious")
        ).alias("alert"),
    )


def _flagged(txn: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Fundraising and pyramid organisers flagged (HOLD+ or a report), structurers reported."""
    per_account = (
        _sides(txn)
        .group_by("account")
        .agg(
            (pl.col("hold") | pl.col("suspicious")).any().alias("flagged"),
            pl.col("suspicious").any().alias("reported"),
        )
    )
    wanted = labels.filter(pl.col("role").is_in([*FLAG_ROLES, "structurer"])).unique(
        ["account", "scenario_id", "role"]
    )
    joined = wanted.join(per_account, on="account", how="left").with_columns(
        pl.col("flagged").fill_null(False), pl.col("reported").fill_null(False)
    )
    return (
        joined.group_by("scenario", "role")
        .agg(
            pl.len().alias("accounts"),
            pl.col("flagged").sum().alias("flagged"),
            pl.col("reported").sum().alias("reported"),
        )
        .with_columns(
            (pl.col("flagged") / pl.col("accounts")).alias("flagged_share"),
            (pl.col("reported") / pl.col("accounts")).alias("reported_share"),
        )
        .sort("scenario", "role")
    )


def large_value_truth(
    txn: pl.DataFrame,
    lines_fen: Mapping[tuple[str, str], int],
    settings: Settings,
    timezone_offset_hours: int = 8,
) -> pl.DataFrame:
    """The reportable transactions (``event_id``, ``category``) by the regulation's count: every
    transaction of a customer side's day, category and basis whose total reaches the line.

    ``txn`` needs event_id, event_time, payer/payee account and party type, amount_minor,
    currency, cash, cross_border; amounts are converted to fen with the settings' rates (round
    half up, as the service does).
    """
    rates = pl.DataFrame(
        {"currency": list(settings.currencies), "ppm": list(settings.currencies.values())},
        schema={"currency": pl.String, "ppm": pl.Int64},
    )
    base = txn.select(
        "event_id", "event_time", "amount_minor", "currency", pl.col("cash").fill_null(False),
        pl.col("cross_border").fill_null(False), "payer_account", "payee_account", "payer_party_type",
        "payee_party_type",
    ).join(rates, on="currency", how="left")  # fmt: skip
    q, r = pl.col("amount_minor") // 1_000_000, pl.col("amount_minor") % 1_000_000
    base = base.with_columns(
        pl.max_horizontal(q * pl.col("ppm") + (r * pl.col("ppm") + 500_000) // 1_000_000, pl.lit(1)).alias(
            "fen"
        )
    )
    day = ((pl.col("event_time").dt.epoch("ms") + timezone_offset_hours * 3_600_000) // 86_400_000).alias(
        "day"
    )
    sides = pl.concat([
        base.select("event_id", "fen", "currency", "cash", "cross_border", day, account="payer_account",
                    party="payer_party_type", direction=pl.lit("out")),
        base.select("event_id", "fen", "currency", "cash", "cross_border", day, account="payee_account",
                    party="payee_party_type", direction=pl.lit("in")),
    ]).filter(pl.col("party") != _TERMINAL)  # fmt: skip
    sides = sides.with_columns(
        pl.when(pl.col("cash")).then(pl.lit("cash"))
        .when(pl.col("party") == "organisation").then(pl.lit("organisation_transfer"))
        .when(pl.col("cross_border")).then(pl.lit("person_cross_border_transfer"))
        .otherwise(pl.lit("person_domestic_transfer")).alias("category"),
        pl.when(pl.col("currency") == "CNY").then(pl.lit("CNY")).otherwise(pl.lit("foreign")).alias("basis"),
    )  # fmt: skip
    lines = pl.DataFrame(
        [(c, b, v) for (c, b), v in lines_fen.items()],
        schema={"category": pl.String, "basis": pl.String, "line": pl.Int64},
        orient="row",
    )
    keys = ["account", "day", "category", "direction", "basis"]
    totals = (
        sides.group_by(keys).agg(pl.col("fen").sum().alias("total")).join(lines, on=["category", "basis"])
    )
    over = totals.filter(pl.col("total") >= pl.col("line")).select(keys)
    return (
        sides.join(over, on=keys, how="semi").select("event_id", "category").unique("event_id", keep="first")
    )


def _large_value(
    txn: pl.DataFrame, lines_fen: Mapping[tuple[str, str], int], settings: Settings, tz: int,
    ledgers: Mapping[str, pl.DataFrame],
) -> dict[str, Any]:  # fmt: skip
    truth = large_value_truth(txn, lines_fen, settings, tz)
    flagged = txn.filter(pl.col("large_value")).select("event_id")
    n = truth.height
    hit = truth.join(flagged, on="event_id", how="semi")
    out: dict[str, Any] = {
        "reportable_transactions": n,
        "live_flagged": flagged.height,
        "live_flag_recall": _ratio(hit.height, n),
        "live_flag_not_reportable": flagged.join(truth, on="event_id", how="anti").height,
        "live_flag_recall_by_category": {
            c: _ratio(
                hit.filter(pl.col("category") == c).height, truth.filter(pl.col("category") == c).height
            )
            for c in sorted(truth.get_column("category").unique().to_list())
        },
    }
    for name, ledger in ledgers.items():
        ids = ledger.select("event_id").unique()
        out[f"{name}_recall"] = _ratio(truth.join(ids, on="event_id", how="semi").height, n)
        out[f"{name}_not_reportable"] = ids.join(truth, on="event_id", how="anti").height
    return out


def _alert_rates(
    j: pl.DataFrame, txn: pl.DataFrame, calls: pl.DataFrame, labels: pl.DataFrame
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Ordinary accounts and callers bothered; per look-alike family its accounts and numbers.

    ``no_criminal_alert``: alerted in a payment whose other side is no criminal's account
    (``CRIMINAL_ROLES``): the false alarms proper, beside every alert."""
    criminal = labels.filter(pl.col("role").is_in(CRIMINAL_ROLES)).get_column("account").unique()
    per_account = (
        _sides(txn)
        .with_columns(
            (pl.col("alert") & ~pl.col("counterparty").is_in(criminal.implode())).alias("no_criminal_alert")
        )
        .group_by("account")
        .agg(
            pl.col("alert").any(), pl.col("warn").any(), pl.col("hold").any(), pl.col("suspicious").any(),
            pl.col("no_criminal_alert").any(),
        )
    )  # fmt: skip
    labelled = labels.select("account").unique()
    ordinary = per_account.join(labelled, on="account", how="anti")
    callers = calls.group_by(pl.col("caller_number").alias("account")).agg(
        pl.col("action").is_in(_CALL_ALERTS).any().alias("warned")
    )
    ordinary_callers = callers.join(labelled, on="account", how="anti")
    alerts = {
        "ordinary_accounts": ordinary.height,
        "ordinary_alerted_share": _ratio(ordinary.get_column("alert").sum(), ordinary.height),
        "ordinary_alerted_no_criminal_share": _ratio(
            ordinary.get_column("no_criminal_alert").sum(), ordinary.height
        ),
        "ordinary_warn_share": _ratio(ordinary.get_column("warn").sum(), ordinary.height),
        "ordinary_hold_share": _ratio(ordinary.get_column("hold").sum(), ordinary.height),
        "ordinary_reported_share": _ratio(ordinary.get_column("suspicious").sum(), ordinary.height),
        "ordinary_callers": ordinary_callers.height,
        "ordinary_callers_warned_share": _ratio(
            ordinary_callers.get_column("warned").sum(), ordinary_callers.height
        ),
    }
    rows = []
    events_alerted = _sides(txn).group_by("event_id").agg(pl.col("alert").any())
    for family in LOOKALIKES:
        fam = labels.filter(pl.col("scenario") == family)
        accs = per_account.join(
            fam.filter(pl.col("role") == "lookalike").select("account").unique(), on="account"
        )
        nums = callers.join(
            fam.filter(pl.col("role") == "lookalike_caller").select("account").unique(), on="account"
        )
        ev = j.filter((pl.col("scenario") == family) & (pl.col("kind") == KIND_TXN)).select("event_id")
        ev_alerted = ev.join(events_alerted, on="event_id", how="left").get_column("alert").fill_null(False)
        rows.append(
            {
                "family": family,
                "cases": j.filter(pl.col("scenario") == family).get_column("scenario_id").n_unique(),
                "accounts": accs.height,
                "alerted_share": _ratio(accs.get_column("alert").sum(), accs.height),
                "alerted_no_criminal_share": _ratio(accs.get_column("no_criminal_alert").sum(), accs.height),
                "warn_share": _ratio(accs.get_column("warn").sum(), accs.height),
                "hold_share": _ratio(accs.get_column("hold").sum(), accs.height),
                "reported_share": _ratio(accs.get_column("suspicious").sum(), accs.height),
                "transactions": ev.height,
                "transactions_alerted_share": _ratio(ev_alerted.sum(), ev.height),
                "callers": nums.height,
                "callers_warned_share": _ratio(nums.get_column("warned").sum(), nums.height),
            }
        )
    schema = {
        "family": pl.String, "cases": pl.Int64, "accounts": pl.Int64, "alerted_share": pl.Float64,
        "alerted_no_criminal_share": pl.Float64, "warn_share": pl.Float64, "hold_share": pl.Float64,
        "reported_share": pl.Float64, "transactions": pl.Int64,
        "transactions_alerted_share": pl.Float64, "callers": pl.Int64, "callers_warned_share": pl.Float64,
    }  # fmt: skip
    return alerts, pl.DataFrame(rows, schema=schema)


def _ratio(num: Any, den: Any) -> float | None:
    return float(num) / float(den) if den else None


# ============================================================================ the table


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:,}"


def format_protection(named: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown tables of one or more runs side by side (``ProtectionMetrics.as_dict()`` each,
    keyed by a run name such as "tune" or "holdout")."""
    names = list(named)
    out: list[str] = []

    def table(title: str, head: list[str], rows: list[list[str]]) -> None:
        out.extend([f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)])
        out.extend("| " + " | ".join(r) + " |" for r in rows)
        out.append("")

    def cell(values: list[str]) -> str:
        return " / ".join(values)

    runs = " / ".join(names)
    by_name = {n: {r["scenario"]: r for r in named[n]["per_scenario"]} for n in names}
    scenarios = sorted({s for n in names for s in by_name[n]})
    victim_rows, mule_rows = [], []
    for s in scenarios:
        rs = [by_name[n].get(s, {}) for n in names]
        if any(r.get("victims") for r in rs):
            victim_rows.append(
                [
                    s,
                    cell([f"{r.get('intervened_first', '-')}/{r.get('victims', '-')}" for r in rs]),
                    cell([_pct(r.get("intervened_first_share")) for r in rs]),
                    cell([_pct(r.get("stopped_share")) for r in rs]),
                    cell([_pct(r.get("held_share")) for r in rs]),
                    cell([_num(r.get("repeats_after_intervention")) for r in rs]),
                ]
            )
        if any(r.get("mules") for r in rs):
            mule_rows.append(
                [
                    s,
                    cell([f"{r.get('mules_stopped', '-')}/{r.get('mules', '-')}" for r in rs]),
                    cell([_pct(r.get("mules_stopped_share")) for r in rs]),
                    cell([f"{r.get('level1_stopped', '-')}/{r.get('level1_mules', '-')}" for r in rs]),
                    cell([_pct(r.get("stoppable_median")) for r in rs]),
                    cell([_pct(r.get("stoppable_mean")) for r in rs]),
                ]
            )
    table(f"Victims ({runs})", ["scenario", "intervened before 1st transfer", "share",
                               "money stopped (STOP/FREEZE)", "money held (HOLD)",
                               "repeat payments after an intervention"], victim_rows)  # fmt: skip
    table(f"Mules ({runs})", ["scenario", "stopped", "share", "level-1 stopped", "still stoppable (median)",
                             "still stoppable (mean)"], mule_rows)  # fmt: skip
    flag = {n: {(r["scenario"], r["role"]): r for r in named[n]["flagged"]} for n in names}
    keys = sorted({k for n in names for k in flag[n]})
    table(f"Organisers flagged, structurers reported ({runs})", ["scenario", "role", "flagged (HOLD+ or STR)",
                                                                  "reported (STR)"], [
        [s, role, cell([f"{flag[n].get((s, role), {}).get('flagged', '-')}/"
                        f"{flag[n].get((s, role), {}).get('accounts', '-')}" for n in names]),
         cell([f"{flag[n].get((s, role), {}).get('reported', '-')}/"
               f"{flag[n].get((s, role), {}).get('accounts', '-')}" for n in names])]
        for s, role in keys
    ])  # fmt: skip
    lv_rows = [
        [
            "reportable transactions",
            cell([_num(named[n]["large_value"].get("reportable_transactions")) for n in names]),
        ],
        ["live flag recall", cell([_pct(named[n]["large_value"].get("live_flag_recall")) for n in names])],
    ]
    ledger_keys = sorted(
        {
            k
            for n in names
            for k in named[n]["large_value"]
            if k.endswith("_recall") and k != "live_flag_recall"
        }
    )
    lv_rows += [
        [
            k.removesuffix("_recall").replace("_", " ") + " recall",
            cell([_pct(named[n]["large_value"].get(k)) for n in names]),
        ]
        for k in ledger_keys
    ]
    table(f"Large-value reports ({runs})", ["", "value"], lv_rows)  # fmt: skip
    a = [named[n]["alerts"] for n in names]
    table(f"Ordinary customers ({runs})", ["", "value"], [
        ["ordinary accounts", cell([_num(x.get("ordinary_accounts")) for x in a])],
        ["alerted (WARN+ or STR)", cell([_pct(x.get("ordinary_alerted_share")) for x in a])],
        ["alerted, no criminal's account in the payment",
         cell([_pct(x.get("ordinary_alerted_no_criminal_share")) for x in a])],
        ["HOLD or stronger", cell([_pct(x.get("ordinary_hold_share")) for x in a])],
        ["ordinary callers warned/blocked", cell([_pct(x.get("ordinary_callers_warned_share")) for x in a])],
    ])  # fmt: skip
    looks = {n: {r["family"]: r for r in named[n]["lookalikes"]} for n in names}
    table(f"Look-alikes ({runs})", ["family", "accounts", "WARN+ or STR", "no criminal in the payment",
                                   "HOLD+", "transactions alerted", "callers warned/blocked"], [
        [f, cell([_num(looks[n].get(f, {}).get("accounts")) for n in names]),
         cell([_pct(looks[n].get(f, {}).get("alerted_share")) for n in names]),
         cell([_pct(looks[n].get(f, {}).get("alerted_no_criminal_share")) for n in names]),
         cell([_pct(looks[n].get(f, {}).get("hold_share")) for n in names]),
         cell([_pct(looks[n].get(f, {}).get("transactions_alerted_share")) for n in names]),
         cell([_pct(looks[n].get(f, {}).get("callers_warned_share")) for n in names])]
        for f in LOOKALIKES
    ])  # fmt: skip
    return "\n".join(out)
