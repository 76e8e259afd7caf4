"""Daily regulatory reports from an event file: large-value and suspicious transactions.

Pure polars functions; the CLI (``screening report large-value|suspicious``) reads the files, calls
them and writes the result with :func:`write_report`.

Large-value transactions (PBOC Order [2016] No. 3, Article 5). A customer's transactions of one
local day are summed per category and per direction, and every sum at or over its line (``>=``) is
one report row listing the transactions that make it up:

* ``cash``: cash deposits, withdrawals and other cash receipts and payments (``cash`` is true);
* ``organisation_transfer``: transfers of a non-natural-person customer, domestic or cross-border;
* ``person_domestic_transfer`` / ``person_cross_border_transfer``: transfers of a natural person.

Interpretation, stated once here and in the final report to the lead:

* the customer is the account (the event schema has no customer id to join a customer's
  accounts). Every side of a transaction that is not a ``cash_terminal`` is a customer and is
  reported for its own side: the payer under ``out``, the payee under ``in``. For a cash
  deposit or withdrawal that leaves the account holder only (a cash row between two customer
  accounts, e.g. a cash remittance, is cash for both); the category comes from the side's party
  type and the transaction's ``cash``/``cross_border`` flags.
* "cumulative ... counted per customer, receipts or payments one-sided" (Article 5): receipts and
  payments are summed apart, never netted, so a row has a ``direction``.
* CNY and foreign currency are summed apart (``basis``): CNY transactions against the CNY lines,
  all other currencies together (converted to CNY fen with the settings' integer rates, exactly
  as replay does) against the USD-equivalent lines converted to fen at the settings' USD rate.
* the local day starts at 00:00 UTC+8 unless the thresholds say otherwise; duplicates of an
  ``event_id`` count once (the earliest, as replay decides them).

Suspicious transactions: one case per subject account per local day, built from the decisions of
a replay (suspicious flag set) and the event file. The subject of a reason is the side named in
:data:`SUBJECT_SIDE`, else the side its rule's marks suspect (:func:`marked_side`: a rule that
protects the payer as a victim, or makes the payee a mule or collector, is about the payee), else
the payer; a cash terminal is never a subject, so a reason that points at one falls on the other
side. A transaction whose reasons point at both sides appears in two cases, each with its own
reasons.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import types
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from features.layout import Mark
from screening.config import Settings
from screening.errors import ConfigError, InputFileError
from screening.lines import BASE_CURRENCY, CATEGORIES, Lines, parse_lines
from screening.model import fen_text
from screening.offline.events import (
    _cast,
    _to_fen,
    conform,
    read_table,
    validate_events,
    write_frame,
)
from screening.offline.replay import DECISION_SCHEMA
from screening.offline.schema import KIND_TXN
from screening.policy import ACTIONS, REPORT_FLAGS, Policy, load_policy, parse_policy

__all__ = [
    "CATEGORIES",
    "DEFAULT_SUBJECT_SIDE",
    "LARGE_VALUE_SCHEMA",
    "SUBJECT_SIDE",
    "SUSPICIOUS_SCHEMA",
    "TRANSACTION_COLUMNS",
    "Lines",
    "ReportThresholds",
    "format_large_value",
    "large_value_report",
    "large_value_rows",
    "load_thresholds",
    "read_decisions",
    "suspicious_report",
    "thresholds_from_policy",
    "write_report",
]

_TERMINAL = "cash_terminal"
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_UTC_MS = pl.Datetime("ms", "UTC")

LARGE_VALUE_SCHEMA: dict[str, pl.DataType] = {
    "report_date": pl.Date(),  # local day (UTC + timezone_offset_hours)
    "account": pl.String(),  # the customer, in clear
    "institution": pl.String(),
    "party_type": pl.String(),  # person | organisation
    "category": pl.String(),  # one of CATEGORIES
    "direction": pl.String(),  # in (receipts) | out (payments)
    "basis": pl.String(),  # CNY | foreign
    "total_fen": pl.Int64(),  # sum of the day's transactions of this row, CNY fen
    "line_fen": pl.Int64(),  # the line applied, CNY fen (foreign: the USD line converted)
    "n_txns": pl.UInt32(),
    "n_counterparties": pl.UInt32(),
    "currencies": pl.List(pl.String()),
    "event_ids": pl.List(pl.String()),  # in event-time order
    "first_time": _UTC_MS,
    "last_time": _UTC_MS,
}

SUSPICIOUS_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),  # STR-<yyyymmdd>-<nnnn>, numbered per day by first time
    "report_date": pl.Date(),
    "subject_account": pl.String(),  # in clear: the report goes to the regulator
    "subject_institution": pl.String(),
    "subject_party_type": pl.String(),
    "reason_codes": pl.List(pl.String()),  # sorted, unique
    "action": pl.String(),  # strongest action taken on the case's transactions
    "max_risk_score": pl.Int32(),
    "notify_police": pl.Boolean(),
    "n_txns": pl.UInt32(),
    "total_fen": pl.Int64(),
    "paid_fen": pl.Int64(),  # of which the subject paid
    "received_fen": pl.Int64(),  # of which the subject received
    "n_counterparties": pl.UInt32(),
    "first_time": _UTC_MS,
    "last_time": _UTC_MS,
    "event_ids": pl.List(pl.String()),
    "narrative": pl.String(),
}

# Which side of the transaction a reason is about. Watchlist hits are about the listed side; the
# telecom-fraud rules fire on the victim's payment but the suspect is the receiving account; mule,
# Ponzi and structuring rules describe the payer's behaviour, their deposit twins the payee's.
SUBJECT_SIDE: Mapping[str, str] = types.MappingProxyType({
    "PAYER_WATCHLISTED": "payer",
    "PAYEE_WATCHLISTED": "payee",
    "DEVICE_WATCHLISTED": "payer",
    "PAYER_PHONE_WATCHLISTED": "payer",
    "CALL_FROM_WATCHLISTED_THEN_TRANSFER": "payee",
    "CALL_THEN_TRANSFER_LARGE": "payee",
    "CALL_THEN_TRANSFER": "payee",
    "MULE_PASS_THROUGH": "payer",
    "RAPID_FAN_OUT": "payer",
    "MULE_CONDUIT": "payer",
    "NEW_ACCOUNT_LARGE_INFLOW": "payee",
    "FUNDRAISING_COLLECTOR": "payee",
    "PONZI_RETURNS": "payer",
    "STRUCTURING": "payer",
    "STRUCTURING_DEPOSITS": "payee",
    # decisions of policy 2026.12.5 and earlier (the week's rules before they replaced the day's)
    "STRUCTURING_WEEK": "payer",
    "STRUCTURING_DEPOSITS_WEEK": "payee",
})
# Codes neither listed nor marking a side (a custom policy's rules): the payer, whose bank
# screens the payment.
DEFAULT_SUBJECT_SIDE = "payer"
_PAYER_SUSPECTED = Mark.PAYER_MULE | Mark.PAYER_COLLECTOR
_PAYEE_SUSPECTED = Mark.PAYER_VICTIM | Mark.PAYEE_MULE | Mark.PAYEE_COLLECTOR


def marked_side(marks: int) -> str | None:
    """The side a rule's marks suspect: the payer when it makes the payer a mule or collector
    (a Ponzi pool paid to a controller is the collector's case), else the payee when it protects
    the payer as a victim or makes the payee a suspect (the victim is no subject of a suspicious
    report: the account it was paying is), else none."""
    if marks & _PAYER_SUSPECTED:
        return "payer"
    if marks & _PAYEE_SUSPECTED:
        return "payee"
    return None

_LARGE_VALUE_COLUMNS = ("event_id", "event_time", "payer_account", "payer_party_type", "payee_account",
                        "payee_party_type", "amount_minor", "currency", "cash", "cross_border")
# What large_value_rows reads of a transaction (besides what _transactions adds: amount_fen).
TRANSACTION_COLUMNS = ("event_id", "event_time", "payer_account", "payer_party_type",
                       "payer_institution", "payee_account", "payee_party_type", "payee_institution",
                       "amount_fen", "currency", "cash", "cross_border")
_SUSPICIOUS_EVENT_COLUMNS = ("event_id", "event_time", "payer_account", "payer_party_type",
                             "payee_account", "payee_party_type", "amount_minor", "currency")
_DECISION_REQUIRED = ("event_id", "event_time", "action", "reason_codes", "suspicious", "amount_fen")
_DECISION_OPTIONAL: Mapping[str, Any] = {"kind": KIND_TXN, "risk_score": 0, "notify_police": False,
                                         "duplicate": False}
_FORMATS = ("csv", "parquet")


# ================================================================================ thresholds


@dataclass(frozen=True, kw_only=True)
class ReportThresholds:
    """Large-value lines: CNY transactions against ``cny_fen``, foreign ones against the USD lines."""

    cny_fen: Lines
    foreign_usd_cents: Lines
    timezone_offset_hours: int = 8
    source: str = ""  # where the lines were read from, for the report's audit trail

    def lines_fen(self, settings: Settings) -> dict[tuple[str, str], int]:
        """(category, basis) -> line in CNY fen; foreign lines at the settings' USD rate."""
        out = {(c, BASE_CURRENCY): self.cny_fen.of(c) for c in CATEGORIES}
        usd = settings.currency("USD")
        if usd is not None:
            out.update({(c, "foreign"): usd.to_fen(self.foreign_usd_cents.of(c)) for c in CATEGORIES})
        return out


def load_thresholds(path: Path | None = None) -> ReportThresholds:
    """Read the lines from a report thresholds file or straight from a policy file.

    ``None`` reads ``report_thresholds.toml`` shipped in the package. A report thresholds file
    (``[large_value]``) holds the foreign-currency lines and names the policy whose
    ``[thresholds]`` hold the CNY lines; a policy file (``[policy]``/``[thresholds]``) gives its
    own CNY lines and time zone, with the shipped foreign-currency lines. Either way the CNY
    numbers live in one place, the policy, where the live large_value rules read them too.
    """
    if path is None:
        text = resources.files("screening").joinpath("report_thresholds.toml").read_text("utf-8")
        return _from_report_file(_toml(text, "report_thresholds.toml"), "report_thresholds.toml", None)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: thresholds file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    data = _toml(text, str(path))
    if "large_value" in data:
        return _from_report_file(data, str(path), path.parent)
    if "policy" in data or "thresholds" in data:
        return thresholds_from_policy(parse_policy(text, str(path)))
    raise ConfigError(f"{path}: neither a report thresholds file ([large_value]) nor a policy file "
                      "([policy], [thresholds])")


def thresholds_from_policy(policy: Policy, *, foreign_usd_cents: Lines | None = None,
                           timezone_offset_hours: int | None = None) -> ReportThresholds:
    """The CNY lines of ``policy``'s [thresholds] (foreign lines: the shipped ones by default)."""
    where = f"{policy.source}: [thresholds]"
    cny = parse_lines(policy.thresholds, where, strict=False)
    if foreign_usd_cents is None:
        foreign_usd_cents = load_thresholds().foreign_usd_cents
    tz = policy.params.timezone_offset_hours if timezone_offset_hours is None else timezone_offset_hours
    return ReportThresholds(cny_fen=cny, foreign_usd_cents=foreign_usd_cents, timezone_offset_hours=tz,
                            source=where)


def _toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _from_report_file(data: Mapping[str, Any], origin: str, base: Path | None) -> ReportThresholds:
    extra = sorted(set(data) - {"large_value"})
    if extra:
        raise ConfigError(f"{origin}: unknown table [{extra[0]}] (a thresholds file has [large_value])")
    table = data["large_value"]
    if not isinstance(table, Mapping):
        raise ConfigError(f"{origin}: [large_value] must be a table")
    unknown = sorted(set(table) - {"cny_lines_from", "timezone_offset_hours", "foreign_currency"})
    if unknown:
        raise ConfigError(f"{origin}: [large_value] unknown key '{unknown[0]}'")
    src = table.get("cny_lines_from")
    if not isinstance(src, str) or not src:
        raise ConfigError(f"{origin}: [large_value] cny_lines_from must name a policy file or \"default\"")
    policy = load_policy(None if src == "default" else (base / src if base is not None else Path(src)))
    foreign = parse_lines(table.get("foreign_currency"), f"{origin}: [large_value.foreign_currency]",
                     strict=True)
    tz = table.get("timezone_offset_hours")
    if tz is not None and (not isinstance(tz, int) or isinstance(tz, bool) or not -14 <= tz <= 14):
        raise ConfigError(f"{origin}: [large_value] timezone_offset_hours must be an integer in -14..14")
    found = thresholds_from_policy(policy, foreign_usd_cents=foreign, timezone_offset_hours=tz)
    return ReportThresholds(cny_fen=found.cny_fen, foreign_usd_cents=foreign,
                            timezone_offset_hours=found.timezone_offset_hours,
                            source=f"{origin} (CNY lines: {found.source})")


# ================================================================================ large value


def large_value_report(events: pl.DataFrame, thresholds: ReportThresholds, settings: Settings, *,
                       institutions: Collection[str] | None = None,
                       origin: str = "events") -> pl.DataFrame:
    """Large-value report rows: per customer, local day, category, direction and basis, at or over the line.

    ``institutions``, when given, keeps customers of those institutions only (a bank reports its
    own customers; an event file may hold the other side's accounts too). The frame follows
    :data:`LARGE_VALUE_SCHEMA`, sorted by day, account, category, direction and basis.
    """
    txn = _transactions(events, settings, origin, _LARGE_VALUE_COLUMNS)
    return large_value_rows(txn, thresholds, settings, institutions=institutions)


def large_value_rows(txn: pl.DataFrame, thresholds: ReportThresholds, settings: Settings, *,
                     institutions: Collection[str] | None = None) -> pl.DataFrame:
    """The report rows of checked transactions, one row per transaction and unique ids.

    The one grouping behind both the offline report (``txn`` from an event file) and the live
    ledger's (``txn`` from ``screening.ledger``): columns :data:`TRANSACTION_COLUMNS`, party
    types as in the event schema, ``amount_fen`` in CNY fen, institutions null when unknown.
    """
    sides = _sides(txn)
    if institutions is not None:
        sides = sides.filter(pl.col("institution").is_in(list(institutions)))
    party = pl.col("party_type")
    sides = sides.with_columns(
        _local_day(thresholds.timezone_offset_hours).alias("report_date"),
        pl.when(pl.col("cash")).then(pl.lit("cash"))
        .when(party == "organisation").then(pl.lit("organisation_transfer"))
        .when(pl.col("cross_border")).then(pl.lit("person_cross_border_transfer"))
        .otherwise(pl.lit("person_domestic_transfer")).alias("category"),
        pl.when(pl.col("currency") == BASE_CURRENCY).then(pl.lit(BASE_CURRENCY))
        .otherwise(pl.lit("foreign")).alias("basis"),
    )
    if settings.currency("USD") is None and (sides.get_column("basis") == "foreign").any():
        raise ConfigError("settings [currencies] has no USD rate: the foreign-currency lines need it")
    line_frame = pl.DataFrame(
        [(c, b, v) for (c, b), v in thresholds.lines_fen(settings).items()],
        schema={"category": pl.String(), "basis": pl.String(), "line_fen": pl.Int64()}, orient="row")
    keys = ["report_date", "account", "party_type", "category", "direction", "basis"]
    grouped = (
        sides.sort("event_time", "event_id")
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("institution").first(),
            pl.col("amount_fen").sum().alias("total_fen"),
            pl.len().alias("n_txns"),
            pl.col("counterparty").n_unique().alias("n_counterparties"),
            pl.col("currency").unique().sort().alias("currencies"),
            pl.col("event_id").alias("event_ids"),
            pl.col("event_time").min().alias("first_time"),
            pl.col("event_time").max().alias("last_time"),
        )
    )
    out = (grouped.join(line_frame, on=["category", "basis"], how="inner")
           .filter(pl.col("total_fen") >= pl.col("line_fen"))
           .sort("report_date", "account", "category", "direction", "basis"))
    return out.select(list(LARGE_VALUE_SCHEMA)).cast(LARGE_VALUE_SCHEMA)  # type: ignore[arg-type]


def format_large_value(frame: pl.DataFrame, *, limit: int = 20) -> str:
    """The first ``limit`` rows of a large-value report as a table for people.

    Amounts in yuan with two decimals (``12,345.67 CNY``, formatted from the integer fen, never
    through a float), times ISO-8601 UTC with a Z to the second, as the case files write them.
    The files keep integer fen (``total_fen``, ``line_fen``); this is display only.
    """
    head = ("date", "account", "category", "dir", "basis", "total", "line", "txns", "first (UTC)",
            "last (UTC)")
    rows = [(r["report_date"].isoformat(), r["account"], r["category"], r["direction"], r["basis"],
             f"{fen_text(r['total_fen'])} CNY", f"{fen_text(r['line_fen'])} CNY", f"{r['n_txns']:,}",
             _utc_z(r["first_time"]), _utc_z(r["last_time"]))
            for r in frame.head(max(limit, 0)).iter_rows(named=True)]
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in (head, *rows)) for i in range(len(head))]
    right = {5, 6, 7}  # amounts and counts line up on the right

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(head), *(line(row) for row in rows)]
    if frame.height > len(rows):
        out.append(f"... and {frame.height - len(rows):,} more row(s), in the files")
    return "\n".join(out)


def _utc_z(when: dt.datetime) -> str:
    """``2026-11-27T02:00:00Z``: ISO-8601 in UTC with a Z (not ``+0000``), to the second."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _transactions(events: pl.DataFrame, settings: Settings, origin: str,
                  required: Sequence[str]) -> pl.DataFrame:
    """Checked transactions, first occurrence of each id (as replay keeps it), with ``amount_fen``."""
    missing = [c for c in required if c not in events.columns]
    if missing:
        raise InputFileError(f"{origin}: missing column {missing[0]}")
    frame = validate_events(conform(events, origin), settings, origin)
    frame = frame.sort("event_time", "_row").filter(pl.col("event_id").is_first_distinct())
    txn = frame.filter(pl.col("kind") == KIND_TXN)
    return txn.with_columns(
        pl.Series("amount_fen", _to_fen(txn, settings), dtype=pl.Int64),
        pl.col("cash").fill_null(False),
        pl.col("cross_border").fill_null(False),
    )


def _sides(txn: pl.DataFrame) -> pl.DataFrame:
    """Each transaction once per customer side: payer as ``out``, payee as ``in``; no terminals."""
    common = ["event_id", "event_time", "amount_fen", "currency", "cash", "cross_border"]

    def side(me: str, other: str, direction: str) -> pl.DataFrame:
        return txn.select(
            *common,
            pl.col(f"{me}_account").alias("account"),
            pl.col(f"{me}_party_type").alias("party_type"),
            pl.col(f"{me}_institution").alias("institution"),
            pl.col(f"{other}_account").alias("counterparty"),
            pl.lit(direction).alias("direction"),
        )

    both = pl.concat([side("payer", "payee", "out"), side("payee", "payer", "in")])
    return both.filter(pl.col("party_type") != _TERMINAL)


def _local_day(offset_hours: int) -> pl.Expr:
    """The local calendar day of ``event_time`` (days start at 00:00 UTC+offset)."""
    ms = pl.col("event_time").dt.epoch("ms") + offset_hours * _HOUR_MS
    return (ms // _DAY_MS).cast(pl.Int32).cast(pl.Date)


# ================================================================================ suspicious


def suspicious_report(decisions: pl.DataFrame, events: pl.DataFrame, policy: Policy, *,
                      settings: Settings | None = None,
                      subject_sides: Mapping[str, str] | None = None,
                      origin: str = "decisions", events_origin: str = "events") -> pl.DataFrame:
    """Suspicious-transaction cases: one per subject account per local day, with a narrative.

    ``decisions`` is a replay's decisions frame (or :func:`read_decisions` of its file), ``events``
    the event file replayed, ``policy`` the policy that decided them: its messages word the
    narrative, its time zone sets the day and its rules' marks the subject of a code
    :data:`SUBJECT_SIDE` does not list. ``subject_sides`` adds to or overrides both. The frame
    follows :data:`SUSPICIOUS_SCHEMA`, sorted by case id.
    """
    settings = Settings() if settings is None else settings
    by_marks = {r.code: side for r in policy.txn_rules if (side := marked_side(r.marks)) is not None}
    sides = {**by_marks, **SUBJECT_SIDE, **(subject_sides or {})}
    bad_side = sorted(c for c, s in sides.items() if s not in ("payer", "payee"))
    if bad_side:
        raise ValueError(f"subject side of {bad_side[0]} must be 'payer' or 'payee'")
    tz = policy.params.timezone_offset_hours

    dec = _conform_decisions(decisions, origin)
    dec = (dec.filter((pl.col("kind") == KIND_TXN) & pl.col("suspicious") & ~pl.col("duplicate"))
           .unique("event_id", keep="first", maintain_order=True))
    txn = _transactions(events, settings, events_origin, _SUSPICIOUS_EVENT_COLUMNS)
    lost = dec.join(txn, on="event_id", how="anti")
    if lost.height:
        raise InputFileError(f"{origin}: column event_id: {lost.height} suspicious decision(s) not in "
                             f"{events_origin}, first {lost.get_column('event_id')[0]!r}")
    rank = dict(ACTIONS)
    bad_action = dec.filter(~pl.col("action").is_in(list(rank)))
    if bad_action.height:
        raise InputFileError(f"{origin}: column action: {bad_action.get_column('action')[0]!r} is not "
                             f"one of {', '.join(rank)}")

    reasons = _suspicious_reasons(dec, policy, origin)
    subject_is_payer = (
        pl.when(pl.col("side") == "payer").then(pl.col("payer_party_type") != _TERMINAL)
        .otherwise(pl.col("payee_party_type") == _TERMINAL))

    def pick(field: str) -> pl.Expr:
        return (pl.when(pl.col("role") == "payer").then(pl.col(f"payer_{field}"))
                .otherwise(pl.col(f"payee_{field}")))

    rows = (
        reasons.with_columns(
            pl.col("code").replace_strict(sides, default=DEFAULT_SUBJECT_SIDE, return_dtype=pl.String)
            .alias("side"))
        .join(txn.select("event_id", "payer_account", "payer_party_type", "payer_institution",
                         "payee_account", "payee_party_type", "payee_institution"), on="event_id")
        .with_columns(pl.when(subject_is_payer).then(pl.lit("payer")).otherwise(pl.lit("payee"))
                      .alias("role"))
        .select(
            "event_id", "code", "role",
            pick("account").alias("subject_account"),
            pick("institution").alias("subject_institution"),
            pick("party_type").alias("subject_party_type"),
            pl.when(pl.col("role") == "payer").then(pl.col("payee_account"))
            .otherwise(pl.col("payer_account")).alias("counterparty"),
        )
    )
    per_txn = (
        rows.group_by("event_id", "subject_account", maintain_order=True)
        .agg(pl.col("code").alias("codes"),
             pl.col("role", "subject_institution", "subject_party_type", "counterparty").first())
        .join(dec.select("event_id", "event_time", "action", "risk_score", "notify_police", "amount_fen"),
              on="event_id")
        .with_columns(_local_day(tz).alias("report_date"),
                      pl.col("action").replace_strict(rank, return_dtype=pl.Int64).alias("rank"))
    )
    paid = pl.col("role") == "payer"
    cases = (
        per_txn.sort("event_time", "event_id")
        .group_by("subject_account", "report_date", maintain_order=True)
        .agg(
            pl.col("subject_institution", "subject_party_type").first(),
            pl.col("codes").list.explode(keep_nulls=False, empty_as_null=False).unique().sort()
            .alias("reason_codes"),
            pl.col("rank").max(),
            pl.col("risk_score").max().alias("max_risk_score"),
            pl.col("notify_police").any(),
            pl.len().alias("n_txns"),
            pl.col("amount_fen").sum().alias("total_fen"),
            pl.col("amount_fen").filter(paid).sum().alias("paid_fen"),
            pl.col("amount_fen").filter(~paid).sum().alias("received_fen"),
            paid.sum().alias("n_paid"),
            (~paid).sum().alias("n_received"),
            pl.col("counterparty").n_unique().alias("n_counterparties"),
            pl.col("event_time").min().alias("first_time"),
            pl.col("event_time").max().alias("last_time"),
            pl.col("event_id").alias("event_ids"),
        )
        .with_columns(pl.col("rank").replace_strict({v: k for k, v in rank.items()}, return_dtype=pl.String)
                      .alias("action"))
        .sort("report_date", "first_time", "subject_account")
        .with_columns(
            (pl.lit("STR-") + pl.col("report_date").dt.strftime("%Y%m%d") + pl.lit("-")
             + (pl.int_range(pl.len()).over("report_date") + 1).cast(pl.String).str.zfill(4))
            .alias("case_id"))
    )
    cases = cases.join(_day_activity(txn, cases, tz), on=["subject_account", "report_date"], how="left")
    messages = {r.code: r.message for r in policy.txn_rules}
    narratives = [_narrative(case, messages, tz) for case in cases.iter_rows(named=True)]
    cases = cases.with_columns(pl.Series("narrative", narratives, dtype=pl.String))
    return cases.select(list(SUSPICIOUS_SCHEMA)).cast(SUSPICIOUS_SCHEMA)  # type: ignore[arg-type]


def _suspicious_reasons(dec: pl.DataFrame, policy: Policy, origin: str) -> pl.DataFrame:
    """(event_id, code) of the reasons that report suspicious under ``policy``; refuses a mismatch."""
    flag = REPORT_FLAGS["suspicious"]
    rules = pl.DataFrame({"code": [r.code for r in policy.txn_rules],
                          "suspicious": [bool(r.report_flags & flag) for r in policy.txn_rules]},
                         schema={"code": pl.String(), "suspicious": pl.Boolean()})
    reasons = (dec.select("event_id", pl.col("reason_codes").alias("code")).explode("code")
               .drop_nulls("code"))
    unknown = reasons.join(rules, on="code", how="anti")
    if unknown.height:
        raise InputFileError(
            f"{origin}: column reason_codes: {unknown.get_column('code')[0]!r} is not a rule of policy "
            f"{policy.version} (were the decisions made with another policy?)")
    reasons = reasons.join(rules.filter(pl.col("suspicious")), on="code", how="semi")
    orphan = dec.join(reasons, on="event_id", how="anti")
    if orphan.height:
        raise InputFileError(
            f"{origin}: column reason_codes: event {orphan.get_column('event_id')[0]!r} is flagged "
            f"suspicious but none of its reasons reports suspicious in policy {policy.version}")
    return reasons


def _day_activity(txn: pl.DataFrame, cases: pl.DataFrame, tz: int) -> pl.DataFrame:
    """All of a subject's transactions that day (flagged or not): counts, sums, counterparties."""
    sides = (_sides(txn).with_columns(_local_day(tz).alias("report_date"))
             .rename({"account": "subject_account"})
             .join(cases.select("subject_account", "report_date"), on=["subject_account", "report_date"],
                   how="semi"))
    inflow, outflow = pl.col("direction") == "in", pl.col("direction") == "out"
    return sides.group_by("subject_account", "report_date").agg(
        inflow.sum().alias("day_in_n"),
        pl.col("amount_fen").filter(inflow).sum().alias("day_in_fen"),
        pl.col("counterparty").filter(inflow).n_unique().alias("day_payers"),
        outflow.sum().alias("day_out_n"),
        pl.col("amount_fen").filter(outflow).sum().alias("day_out_fen"),
        pl.col("counterparty").filter(outflow).n_unique().alias("day_payees"),
    )


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _utc_label(offset_hours: int) -> str:
    return "UTC" if offset_hours == 0 else f"UTC{offset_hours:+d}"


def _narrative(case: Mapping[str, Any], messages: Mapping[str, str], tz: int) -> str:
    """A few plain sentences: when, who, how much, the day around it, and why."""
    shift = dt.timedelta(hours=tz)
    first = (case["first_time"] + shift).strftime("%H:%M")
    last = (case["last_time"] + shift).strftime("%H:%M")
    day = case["report_date"].isoformat()
    when = (f"At {first} ({_utc_label(tz)}) on {day}" if first == last
            else f"Between {first} and {last} ({_utc_label(tz)}) on {day}")
    flagged = []
    if case["n_paid"]:
        flagged.append(f"made {_count(case['n_paid'], 'flagged payment')} totalling "
                       f"{fen_text(case['paid_fen'])} CNY")
    if case["n_received"]:
        flagged.append(f"received {_count(case['n_received'], 'flagged payment')} totalling "
                       f"{fen_text(case['received_fen'])} CNY")
    who = f"account {case['subject_account']} ({case['subject_party_type']})"
    text = (f"{when} {who} {' and '.join(flagged)}, with "
            f"{_count(case['n_counterparties'], 'counterparty', 'counterparties')}.")
    got = (f"received {_count(case['day_in_n'], 'payment')} totalling {fen_text(case['day_in_fen'])} CNY "
           f"from {_count(case['day_payers'], 'payer')}" if case["day_in_n"] else "received nothing")
    gave = (f"made {_count(case['day_out_n'], 'payment')} totalling {fen_text(case['day_out_fen'])} CNY "
            f"to {_count(case['day_payees'], 'payee')}" if case["day_out_n"] else "made no payments")
    reasons = "; ".join(f"{code} ({messages[code].rstrip('.')})" for code in case["reason_codes"])
    police = ", police notification requested" if case["notify_police"] else ""
    return (f"{text} That day it {got} and {gave}. Reasons: {reasons}. "
            f"Strongest action: {case['action']}{police}.")


# ================================================================================ files


def read_decisions(path: Path) -> pl.DataFrame:
    """Read a replay's decisions file (Parquet, or CSV with ';'-joined reason codes)."""
    return _conform_decisions(read_table(path), str(path))


def _conform_decisions(frame: pl.DataFrame, origin: str) -> pl.DataFrame:
    """Cast to the decision columns a report needs, naming the first column that does not fit."""
    missing = [c for c in _DECISION_REQUIRED if c not in frame.columns]
    if missing:
        raise InputFileError(f"{origin}: missing column {missing[0]}")
    cols: list[pl.Expr] = []
    for name in (*_DECISION_REQUIRED, *_DECISION_OPTIONAL):
        dtype = DECISION_SCHEMA[name]
        if name not in frame.columns:
            cols.append(pl.lit(_DECISION_OPTIONAL[name], dtype=dtype).alias(name))
        elif name == "reason_codes":
            cols.append(_codes_column(frame.get_column(name), origin))
        else:
            cols.append(_cast(frame, name, dtype, origin, "UTC"))
    out = frame.select(cols)
    for name in _DECISION_REQUIRED:
        nulls = out.get_column(name).null_count()
        if nulls and name != "reason_codes":
            raise InputFileError(f"{origin}: column {name}: missing value in {nulls} row(s)")
    return out.with_columns(pl.col(c).fill_null(v) for c, v in _DECISION_OPTIONAL.items())


def _codes_column(col: pl.Series, origin: str) -> pl.Expr:
    """Reason codes as a list: a list column as is, CSV text split at ';' (empty text: none)."""
    if isinstance(col.dtype, pl.List) and col.dtype.inner in (pl.String, pl.Null):
        return pl.lit(col.cast(pl.List(pl.String())).fill_null([])).alias(col.name)
    if col.dtype in (pl.String, pl.Null):
        split = (col.cast(pl.String).fill_null("").str.split(";")
                 .list.eval(pl.element().filter(pl.element() != "")))
        return pl.lit(split).alias(col.name)
    raise InputFileError(f"{origin}: column {col.name}: expected a list of codes or ';'-joined text, "
                         f"got {col.dtype}")


def write_report(frame: pl.DataFrame, out_base: Path,
                 formats: Sequence[str] = _FORMATS) -> list[Path]:
    """Write ``<out_base>.csv`` and/or ``<out_base>.parquet`` atomically; returns the paths.

    CSV joins list columns with ';', so a list element holding ';' would not read back: refused.
    CSV times are UTC with a Z (``2026-11-27T02:00:00.000Z``); money stays integer fen.
    """
    unknown = [f for f in formats if f not in _FORMATS]
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r} (formats: {', '.join(_FORMATS)})")
    if "csv" in formats:
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.List) and frame.get_column(name).list.eval(
                    pl.element().cast(pl.String).str.contains(";", literal=True)).list.any().any():
                raise ValueError(f"column {name}: a value holds ';', the CSV list separator")
    paths = [out_base.with_name(f"{out_base.name}.{fmt}") for fmt in formats]
    for path in paths:
        write_frame(frame, path)
    return paths
