"""Backtest metrics: what a policy would have stopped, and whom it would have bothered.

Definitions (the same in every report):
- an **alert** is a decision of WARN or stronger, a suspicious-transaction flag, or a call
  decided WARN_CALLEE or BLOCK;
- a **stop** is HOLD, STOP_PAYMENT or FREEZE (the money did not move, or not yet);
- an account is **caught** when it is payer or payee of an alerted transaction (a victim whose
  transfer was stopped is protected; the mule receiving it is flagged); cash terminals
  (ATM / counter accounts) are left out of account counts;
- **money lost** is the amount of a scenario's transfers paid by its victims, investors or
  pyramid members that were not stopped; **money stopped** the amount of those that were (other
  scenario transfers, between fraudsters, are neither: the money was already lost or never the
  public's);
- benign look-alikes (labels in ``LOOKALIKES``) and genuine large-value activity
  (``GENUINE``) get their own rows, but overall precision and recall count them as what they
  are, not fraud: an alert on one is a false alarm (marked ``*`` in the table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from screening.model import fen_text
from screening.offline.schema import LOOKALIKES, NOT_FRAUD

__all__ = ["ALERT_ACTIONS", "STOP_ACTIONS", "BacktestMetrics", "backtest", "format_duration",
           "format_metrics"]

ALERT_ACTIONS = ("WARN", "HOLD", "STOP_PAYMENT", "FREEZE", "WARN_CALLEE", "BLOCK")
STOP_ACTIONS = ("HOLD", "STOP_PAYMENT", "FREEZE")
_LOSS_ROLES = ("victim", "investor", "member")


@dataclass(frozen=True)
class BacktestMetrics:
    per_scenario: pl.DataFrame  # one row per scenario
    overall: Mapping[str, Any]
    per_reason: pl.DataFrame  # precision of each reason code

    def as_dict(self) -> dict[str, Any]:
        return {
            "overall": dict(self.overall),
            "per_scenario": self.per_scenario.to_dicts(),
            "per_reason": self.per_reason.to_dicts(),
        }


def _is_terminal(col: str) -> pl.Expr:
    return pl.col(f"{col.split('_')[0]}_party_type") == "cash_terminal"


def backtest(events: pl.DataFrame, decisions: pl.DataFrame,
             accounts: pl.DataFrame | None = None) -> BacktestMetrics:
    """Score ``decisions`` (from replay) against the labels in ``events`` (and ``accounts``)."""
    if "scenario" not in events.columns:
        raise ValueError("events carry no labels (column 'scenario')")
    ev = events.select(
        "event_id", "kind", "event_time", "payer_account", "payee_account", "payer_party_type",
        "payee_party_type", pl.col("scenario").fill_null(""), pl.col("scenario_id").fill_null(-1),
    )
    d = (decisions.filter(~pl.col("duplicate"))
         .select("event_id", "action", "suspicious", "amount_fen", "reason_codes"))
    j = ev.join(d, on="event_id", how="inner").with_columns(
        (pl.col("action").is_in(ALERT_ACTIONS) | pl.col("suspicious")).alias("alert"),
        pl.col("action").is_in(STOP_ACTIONS).alias("stop"),
    )
    txn = j.filter(pl.col("kind") == "txn")

    # accounts and their labels
    parties = pl.concat([
        txn.filter(~_is_terminal("payer_account")).select(
            pl.col("payer_account").alias("account"), "alert", "scenario"),
        txn.filter(~_is_terminal("payee_account")).select(
            pl.col("payee_account").alias("account"), "alert", "scenario"),
    ])
    if accounts is not None and accounts.height:
        labelled = accounts.select("account", "scenario").unique("account", keep="first")
    else:
        labelled = parties.filter(pl.col("scenario") != "").select("account", "scenario").unique(
            "account", keep="first")
    acct = (parties.group_by("account").agg(pl.col("alert").any())
            .join(labelled, on="account", how="left").with_columns(pl.col("scenario").fill_null("")))

    rows = []
    scenarios = sorted(s for s in j.get_column("scenario").unique().to_list() if s)
    roles = (accounts.select("account", "scenario", "role") if accounts is not None
             and "role" in accounts.columns else None)
    for s in scenarios:
        se = j.filter(pl.col("scenario") == s)
        sa = acct.filter(pl.col("scenario") == s)
        st = se.filter(pl.col("kind") == "txn")
        if roles is not None:
            payers = roles.filter((pl.col("scenario") == s) & pl.col("role").is_in(_LOSS_ROLES))
            loss = st.join(payers.select(pl.col("account").alias("payer_account")),
                           on="payer_account", how="semi")
        else:
            loss = st
        per_case = (se.group_by("scenario_id").agg(
            pl.col("event_time").min().alias("first"),
            pl.col("event_time").filter(pl.col("stop")).min().alias("first_stop"),
            pl.col("alert").any().alias("alerted"),
        ).with_columns(((pl.col("first_stop") - pl.col("first")).dt.total_seconds() / 60)
                       .alias("minutes")))
        rows.append({
            "scenario": s,
            "cases": per_case.height,
            "cases_alerted": int(per_case.get_column("alerted").sum()),
            "cases_stopped": int(per_case.get_column("first_stop").is_not_null().sum()),
            "accounts": sa.height,
            "accounts_caught": int(sa.get_column("alert").sum()),
            "account_recall": _ratio(sa.get_column("alert").sum(), sa.height),
            "events": se.height,
            "event_recall": _ratio(se.get_column("alert").sum(), se.height),
            "median_minutes_to_stop": per_case.get_column("minutes").median(),
            "money_stopped_fen": int(loss.filter(pl.col("stop")).get_column("amount_fen").sum()),
            "money_lost_fen": int(loss.filter(~pl.col("stop")).get_column("amount_fen").sum()),
        })
    per_scenario = pl.DataFrame(rows, schema={
        "scenario": pl.String, "cases": pl.Int64, "cases_alerted": pl.Int64,
        "cases_stopped": pl.Int64, "accounts": pl.Int64, "accounts_caught": pl.Int64,
        "account_recall": pl.Float64, "events": pl.Int64, "event_recall": pl.Float64,
        "median_minutes_to_stop": pl.Float64, "money_stopped_fen": pl.Int64,
        "money_lost_fen": pl.Int64})

    fraud = (pl.col("scenario") != "") & ~pl.col("scenario").is_in(NOT_FRAUD)
    looks = pl.col("scenario").is_in(LOOKALIKES)
    alerted_events = j.filter(pl.col("alert"))
    alerted_accts = acct.filter(pl.col("alert"))
    ordinary_accts = acct.filter(pl.col("scenario") == "")
    ordinary_events = j.filter(pl.col("scenario") == "")
    overall = {
        "events": j.height,
        "alerts": alerted_events.height,
        "event_precision": _ratio(alerted_events.select(fraud.sum()).item(), alerted_events.height),
        "event_recall": _ratio(j.filter(fraud).get_column("alert").sum(), j.filter(fraud).height),
        "account_precision": _ratio(alerted_accts.select(fraud.sum()).item(), alerted_accts.height),
        "account_recall": _ratio(acct.filter(fraud).get_column("alert").sum(), acct.filter(fraud).height),
        "ordinary_accounts": ordinary_accts.height,
        "ordinary_account_alert_rate": _ratio(ordinary_accts.get_column("alert").sum(),
                                              ordinary_accts.height),
        "ordinary_event_alert_rate": _ratio(ordinary_events.get_column("alert").sum(),
                                            ordinary_events.height),
        "lookalike_account_alert_rate": _ratio(acct.filter(looks).get_column("alert").sum(),
                                               acct.filter(looks).height),
        "lookalike_event_alert_rate": _ratio(j.filter(looks).get_column("alert").sum(),
                                             j.filter(looks).height),
    }
    per_reason = (j.filter(pl.col("reason_codes").list.len() > 0).explode("reason_codes")
                  .group_by("reason_codes").agg(
                      pl.len().alias("fired"),
                      fraud.sum().alias("on_scenario_events"))
                  .with_columns((pl.col("on_scenario_events") / pl.col("fired")).alias("precision"))
                  .rename({"reason_codes": "reason"}).sort("fired", descending=True))
    return BacktestMetrics(per_scenario, overall, per_reason)


def _ratio(num: Any, den: Any) -> float | None:
    return float(num) / float(den) if den else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def format_duration(minutes: float | None) -> str:
    """A duration for people: ``42.5 min`` under an hour, ``1.6 h`` under a day, else ``3.0 d``
    (``-`` for none)."""
    if minutes is None:
        return "-"
    if abs(minutes) < 60:
        return f"{minutes:.1f} min"
    if abs(minutes) < 24 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / (24 * 60):,.1f} d"


def format_metrics(named: Mapping[str, BacktestMetrics]) -> str:
    """A plain-text table, one column block per policy (side by side when there are two)."""
    names = list(named)
    lines = []
    block = "cases stop  acct-rec  evt-rec   to stop"  # "to stop": median, case start to first stop
    width = len(block)
    scenarios = sorted({s for m in named.values() for s in m.per_scenario.get_column("scenario")})
    # a benign look-alike's "recall" columns count false alarms: marked, explained below
    labels = {s: s + " *" if s in NOT_FRAUD else s for s in scenarios}
    first = max([22, *map(len, labels.values())])  # the longest name sets the column
    head = f"{'scenario':{first}}" + "".join(f" | {n[:width]:{width}}" for n in names)
    sub = f"{'':{first}}" + f" | {block}" * len(names)
    lines += [head, sub, "-" * len(sub)]
    for s in scenarios:
        row = f"{labels[s]:{first}}"
        for n in names:
            r = named[n].per_scenario.filter(pl.col("scenario") == s).to_dicts()
            if not r:
                row += f" | {'':{width}}"
                continue
            x = r[0]
            to_stop = format_duration(x["median_minutes_to_stop"])
            row += (f" | {x['cases']:5d} {x['cases_stopped']:4d}  {_pct(x['account_recall']):>8}  "
                    f"{_pct(x['event_recall']):>7}  {to_stop:>8}")
        lines.append(row)
    if any(s in NOT_FRAUD for s in scenarios):
        lines.append("* not fraud (a benign look-alike, or genuine large-value activity to report, "
                     "not alert): acct-rec / evt-rec are the share of its accounts / transactions "
                     "alerted, false alarms to keep low, and stop its cases stopped in error")
    lines.append("")
    for key in ("event_precision", "account_precision", "account_recall",
                "ordinary_account_alert_rate", "ordinary_event_alert_rate",
                "lookalike_account_alert_rate"):
        lines.append(f"{key:30}" + "".join(f" | {_pct(named[n].overall[key]):>10}" for n in names))
    for n in names:
        m = named[n].per_scenario
        stopped = int(m.get_column("money_stopped_fen").sum())
        lost = int(m.get_column("money_lost_fen").sum())
        lines.append(f"{n}: money stopped ¥{fen_text(stopped)}, money lost ¥{fen_text(lost)} "
                     f"(victim/investor/member transfers)")
    return "\n".join(lines)
