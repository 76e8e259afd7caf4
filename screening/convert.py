"""Protobuf <-> domain objects, with all request validation.

The only module besides the servicer that imports the generated ``screening.v1`` code. Every
problem raises ``InvalidRequest`` naming the field (``transactions[3].amount.minor_units``),
before the engine sees the request, so a rejected request changes no state.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl
from google.protobuf.timestamp_pb2 import Timestamp

from features.layout import split_reasons
from features.state import SUM_MAX, TIME_MAX_MS
from screening.config import Settings
from screening.errors import InvalidRequest
from screening.ledger import day_text, parse_day
from screening.masking import Masker
from screening.model import (
    NEVER,
    AccountProfile,
    AccountView,
    CallInput,
    CallRecord,
    CaseMark,
    CaseRequest,
    DecisionRecord,
    Feedback,
    Party,
    TxnColumns,
    TxnInput,
    WatchEntry,
)
from screening.offline.reports import LARGE_VALUE_SCHEMA
from screening.policy import Policy
from screening.v1 import screening_pb2 as pb
from screening.wire import WireBatch

__all__ = ["Converter", "case_files", "case_graph_message", "large_value_frame",
           "large_value_message", "masked_or_clear", "ms_to_timestamp", "normalise_phone"]

# matched with fullmatch: "$" would also match before a final newline, and "ACC1\n" would be
# accepted as an account other than "ACC1" (a watchlisted payee escaping its listing)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_PHONE_CHARS = re.compile(r"[+0-9 ()\-.]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ISO_CURRENCY = re.compile(r"[A-Z]{3}")
# what may not be in a device id besides _CONTROL: tab, line breaks and invisible format
# characters (zero-width space, joiners, BOM), which would make a listed device another one
_DEVICE_BAD = re.compile(r"[\t\n\r\x85\u00ad\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_MAX_EXPIRY_MS = TIME_MAX_MS
# ids joined by newlines, all valid (``_ID`` each): one regex call checks a whole column
_IDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*(?:\n[A-Za-z0-9][A-Za-z0-9._:/@+-]*)*")
# a batch's columns, read with one C call per message (upb builds an object per field access)
_TXN_FIELDS = operator.attrgetter("transaction_id", "channel", "cash", "cross_border",
                                  "device_id", "payer_phone", "memo", "payee_phone", "payer",
                                  "payee", "amount", "event_time")
_PARTY_FIELDS = operator.attrgetter("account_id", "institution", "party_type",
                                    "account_opened_date")
_AMOUNT_FIELDS = operator.attrgetter("minor_units", "currency")
_TIME_FIELDS = operator.attrgetter("seconds", "nanos")


def _enum_values(enum: object) -> frozenset[int]:
    return frozenset(v.number for v in enum.DESCRIPTOR.values if v.number != 0)  # type: ignore[attr-defined]


_PARTY_TYPES = _enum_values(pb.PartyType)
_CHANNELS = _enum_values(pb.Channel)
_NUMBER_CLASSES = _enum_values(pb.NumberClass)
_ENTITY_KINDS = _enum_values(pb.EntityKind)
_OUTCOMES = _enum_values(pb.CallOutcome)
_VERDICTS = _enum_values(pb.FeedbackVerdict)
_NOT_CONNECTED = frozenset({pb.CALL_OUTCOME_UNANSWERED, pb.CALL_OUTCOME_REJECTED,
                            pb.CALL_OUTCOME_BLOCKED})
# CaseFormat enum value -> screening.case format name
_CASE_FORMATS = {pb.CASE_FORMAT_GRAPHML: "graphml", pb.CASE_FORMAT_GEXF: "gexf",
                 pb.CASE_FORMAT_JSON: "json", pb.CASE_FORMAT_CSV: "csv",
                 pb.CASE_FORMAT_PNG: "png", pb.CASE_FORMAT_SVG: "svg"}
_CASE_FILE_FIELDS = {"case.graphml": "graphml", "case.gexf": "gexf", "case.json": "json",
                     "nodes.csv": "nodes_csv", "edges.csv": "edges_csv", "case.png": "png",
                     "case.svg": "svg"}
_DAY_MS = 86_400_000
_MAX_REPORT_INSTITUTIONS = 100


def normalise_phone(raw: str) -> str | None:
    """E.164-style form used as the phone's identity; None when it is not a phone number.

    Separators go; a leading 00 becomes +; an 11-digit mainland mobile (1xxxxxxxxxx) gets +86.
    """
    if not raw or not _PHONE_CHARS.fullmatch(raw):
        return None
    digits = re.sub(r"[ ()\-.]", "", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    body = digits[1:] if digits.startswith("+") else digits
    if not body.isdigit() or not 3 <= len(body) <= 20:
        return None
    if not digits.startswith("+") and len(body) == 11 and body.startswith("1"):
        return "+86" + body
    return digits


_cached_phone = functools.lru_cache(maxsize=65_536)(normalise_phone)


@functools.lru_cache(maxsize=65_536)
def _date_ms(text: str) -> int | None:
    """Midnight UTC of an ISO date as epoch ms; None when it is not YYYY-MM-DD from 1900 on."""
    if len(text) != 10:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    if day.year < 1900:
        return None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1000


def ms_to_timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


class Converter:
    """Validates requests into domain objects and renders records back into messages."""

    def __init__(self, settings: Settings, policy: Policy, clock_ms: Callable[[], int],
                 policy_for: Callable[[str], Policy] | None = None) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.policy = policy
        # the policy a decision was made under, by its version (the engine's, across swaps)
        self.policy_for = policy_for or (lambda _version: self.policy)
        self.clock_ms = clock_ms
        # by (policy version, reason bits): the fired rules' codes and Reason messages, and by
        # version the legend of a columnar reply (a policy never changes under its version)
        self._codes: dict[tuple[str, int], list[str]] = {}
        self._reasons: dict[tuple[str, int], list[pb.Reason]] = {}
        self._legends: dict[str, pb.ReasonLegend] = {}
        self._min_ms = int(dt.datetime.fromisoformat(self.limits.min_event_time)
                           .replace(tzinfo=dt.UTC).timestamp() * 1000)

    # ------------------------------------------------------------------ field checks
    def _id(self, value: str, field: str) -> str:
        if not value:
            raise InvalidRequest(field, "is required")
        if len(value) > self.limits.max_id_length:
            raise InvalidRequest(field, f"longer than {self.limits.max_id_length} characters")
        if not _ID.fullmatch(value):
            raise InvalidRequest(field, "may hold only letters, digits and . _ : / @ + -")
        return value

    def _text(self, value: str, field: str, limit: int, required: bool = False) -> str:
        if required and not value:
            raise InvalidRequest(field, "is required")
        if len(value) > limit:
            raise InvalidRequest(field, f"longer than {limit} characters")
        if _CONTROL.search(value):
            raise InvalidRequest(field, "contains control characters")
        return value

    def _time(self, ts: Timestamp, present: bool, field: str) -> int:
        if not present:
            raise InvalidRequest(field, "is required")
        if not 0 <= ts.nanos < 1_000_000_000:
            raise InvalidRequest(field, "nanos out of range")
        ms = ts.seconds * 1000 + ts.nanos // 1_000_000
        if ms < self._min_ms:
            raise InvalidRequest(field, f"before {self.limits.min_event_time}")
        skew = self.limits.max_future_skew_seconds
        if ms > self.clock_ms() + skew * 1000:
            raise InvalidRequest(field, f"more than {skew} s in the future")
        return ms

    def _device(self, value: str, field: str, required: bool = False) -> str:
        """A device id: text as ``_text``, and no whitespace at either end, tab, line break or
        invisible format character anywhere, so that a listed device cannot come back as
        "another" device that only differs in characters nobody sees."""
        value = self._text(value, field, self.limits.max_text_length, required=required)
        if value != value.strip():
            raise InvalidRequest(field, "has whitespace at its start or end")
        if _DEVICE_BAD.search(value):
            raise InvalidRequest(field, "contains a tab, line break or invisible character")
        return value

    @staticmethod
    def _enum(value: int, allowed: frozenset[int], field: str) -> int:
        if value == 0:
            raise InvalidRequest(field, "is required (UNSPECIFIED is not allowed)")
        if value not in allowed:
            raise InvalidRequest(field, f"unknown enum value {value}")
        return value

    def _phone(self, raw: str, field: str, required: bool) -> str:
        if not raw:
            if required:
                raise InvalidRequest(field, "is required")
            return ""
        if len(raw) > 32:
            raise InvalidRequest(field, "longer than 32 characters")
        phone = normalise_phone(raw)
        if phone is None:
            raise InvalidRequest(field, "is not a phone number (digits, optional +, 3-20 digits)")
        return phone

    def _party(self, p: pb.Party, present: bool, field: str, event_ms: int) -> Party:
        if not present:
            raise InvalidRequest(field, "is required")
        opened: int | None = None
        if p.account_opened_date:
            opened = _date_ms(p.account_opened_date)
            if opened is None:
                raise InvalidRequest(f"{field}.account_opened_date",
                                     "must be an ISO date YYYY-MM-DD, 1900 or later")
            if opened > event_ms + 86_400_000:
                raise InvalidRequest(f"{field}.account_opened_date", "is after the event time")
        return Party(
            account_id=self._id(p.account_id, f"{field}.account_id"),
            institution=self._text(p.institution, f"{field}.institution",
                                   self.limits.max_text_length),
            party_type=self._enum(p.party_type, _PARTY_TYPES, f"{field}.party_type"),
            opened_ms=opened,
        )

    # ------------------------------------------------------------------ requests
    def transaction(self, t: pb.Transaction, prefix: str = "") -> TxnInput:
        f = prefix
        tid = self._id(t.transaction_id, f + "transaction_id")
        event_ms = self._time(t.event_time, t.HasField("event_time"), f + "event_time")
        payer = self._party(t.payer, t.HasField("payer"), f + "payer", event_ms)
        payee = self._party(t.payee, t.HasField("payee"), f + "payee", event_ms)
        if payer.account_id == payee.account_id:
            raise InvalidRequest(f + "payee.account_id", "is the same account as the payer")
        # a cash terminal is the cash side of a deposit or withdrawal (the contract): one side
        # at most, on a cash transaction; rules about customers (mules, victims) skip it, so a
        # transfer that called its payee a terminal would skip them
        for side, party in (("payer", payer), ("payee", payee)):
            if party.party_type == pb.PARTY_TYPE_CASH_TERMINAL and not t.cash:
                raise InvalidRequest(f + side + ".party_type",
                                     "CASH_TERMINAL is the cash side of a deposit or withdrawal: "
                                     "only on a cash transaction (cash = true)")
        if payer.party_type == payee.party_type == pb.PARTY_TYPE_CASH_TERMINAL:
            raise InvalidRequest(f + "payee.party_type",
                                 "CASH_TERMINAL on both sides: one side of a deposit or "
                                 "withdrawal is the customer")
        if not t.HasField("amount"):
            raise InvalidRequest(f + "amount", "is required")
        minor = t.amount.minor_units
        if minor <= 0:
            raise InvalidRequest(f + "amount.minor_units", "must be > 0 (integer minor units)")
        if minor > self.limits.max_amount_minor:
            raise InvalidRequest(f + "amount.minor_units",
                                 f"larger than {self.limits.max_amount_minor}")
        code = t.amount.currency
        if not _ISO_CURRENCY.fullmatch(code):
            raise InvalidRequest(f + "amount.currency", "must be a 3-letter ISO 4217 code")
        currency = self.settings.currency(code)
        if currency is None:
            known = ", ".join(sorted(self.settings.currencies))
            raise InvalidRequest(f + "amount.currency", f"unknown currency {code} (known: {known})")
        fen = currency.to_fen(minor)
        if fen > SUM_MAX:  # the kernels' sums saturate there (a rate from config can pass it)
            raise InvalidRequest(f + "amount.minor_units",
                                 f"worth more than {SUM_MAX} fen at the {code} rate")
        return TxnInput(
            transaction_id=tid,
            event_time_ms=event_ms,
            payer=payer,
            payee=payee,
            amount_minor=minor,
            currency=code,
            amount_fen=max(1, fen),
            channel=self._enum(t.channel, _CHANNELS, f + "channel"),
            cash=t.cash,
            cross_border=t.cross_border,
            device_id=self._device(t.device_id, f + "device_id"),
            payer_phone=self._phone(t.payer_phone, f + "payer_phone", required=False),
            memo=self._text(t.memo.replace("\n", " ").replace("\t", " ").replace("\r", " "),
                            f + "memo", self.limits.max_memo_length),
            payee_phone=self._phone(t.payee_phone, f + "payee_phone", required=False),
        )

    def batch(self, b: pb.TransactionBatch) -> list[TxnInput]:
        n = len(b.transactions)
        if n == 0:
            raise InvalidRequest("transactions", "is empty")
        if n > self.limits.max_batch:
            raise InvalidRequest("transactions", f"more than {self.limits.max_batch} in one batch")
        return [self.transaction(t, f"transactions[{i}].") for i, t in enumerate(b.transactions)]

    def batch_columns(self, b: pb.TransactionBatch) -> TxnColumns:
        """``batch`` as columns: the same validation, column by column.

        Each check runs once over a whole column (a regex over the joined ids, min and max of
        the numbers, sets of the enums); a batch one of them doubts (a refusal, or a rare form
        such as a memo with line breaks) goes through ``batch`` itself, which accepts it or names
        the field and index of the first problem, exactly as for a classic request.
        """
        n = len(b.transactions)
        if n == 0 or n > self.limits.max_batch:
            self.batch(b)  # raises, naming the problem
        cols = self._columns(list(b.transactions)) if self._min_ms > 0 else None
        return cols if cols is not None else TxnColumns.from_inputs(self.batch(b))

    def wire_columns(self, w: WireBatch) -> TxnColumns | None:
        """The columns of a batch read from its bytes (``screening.wire``) when every bulk check
        of ``batch_columns`` passes; None when one doubts."""
        if len(w) > self.limits.max_batch:
            return None
        t, i = w.texts, w.ints
        return self.checked_columns(
            t["transaction_id"], w.event_time_ms, t["payer_account"], t["payer_institution"],
            i["payer_party_type"], t["payer_opened_date"], t["payee_account"],
            t["payee_institution"], i["payee_party_type"], t["payee_opened_date"],
            i["minor_units"], t["currency"], i["channel"], w.cash, w.cross_border,
            t["device_id"], t["payer_phone"], t["memo"], t["payee_phone"])

    def _columns(self, txns: list[pb.Transaction]) -> TxnColumns | None:
        """The columns of ``txns`` when every bulk check passes; None when one doubts.

        A missing message field reads as its defaults, which fail these checks (an empty id,
        amount 0, event time 0), so ``batch`` names it."""
        (tids, channels, cash, cross, devices, payer_phones, memos, payee_phones, payers, payees,
         amounts, times) = zip(*map(_TXN_FIELDS, txns), strict=True)
        pa, pi, pt, pd = zip(*map(_PARTY_FIELDS, payers), strict=True)
        qa, qi, qt, qd = zip(*map(_PARTY_FIELDS, payees), strict=True)
        minor, currency = zip(*map(_AMOUNT_FIELDS, amounts), strict=True)
        secs, nanos = zip(*map(_TIME_FIELDS, times), strict=True)
        if min(nanos) < 0 or max(nanos) >= 1_000_000_000:
            return None
        ms = [s * 1000 + ns // 1_000_000 for s, ns in zip(secs, nanos, strict=True)]
        return self.checked_columns(
            tids, ms, pa, pi, pt, pd, qa, qi, qt, qd, minor, currency, channels, cash, cross,
            devices, payer_phones, memos, payee_phones)

    def checked_columns(self, tids: Sequence[str], ms: list[int], pa: Sequence[str],
                        pi: Sequence[str], pt: Sequence[int], pd: Sequence[str],
                        qa: Sequence[str], qi: Sequence[str], qt: Sequence[int],
                        qd: Sequence[str], minor: Sequence[int], currency: Sequence[str],
                        channels: Sequence[int], cash: Sequence[bool], cross: Sequence[bool],
                        devices: Sequence[str], payer_phones: Sequence[str], memos: Sequence[str],
                        payee_phones: Sequence[str]) -> TxnColumns | None:
        """The bulk checks of ``batch_columns`` over columns already read (from a message, or
        from an Arrow record batch): the columns when every check passes, None when one doubts
        (then the caller names the problem through ``batch``). Absent values are the message
        defaults: "" for texts and dates, 0 for enums and numbers, which these checks doubt
        while the earliest event time allowed is after 1970."""
        if self._min_ms <= 0:
            return None
        lim = self.limits
        for ids in (tids, pa, qa):
            joined = "\n".join(ids)
            if (max(map(len, ids)) > lim.max_id_length or joined.count("\n") != len(ids) - 1
                    or not _IDS.fullmatch(joined)):
                return None
        if any(map(operator.eq, pa, qa)):
            return None
        if min(ms) < self._min_ms or max(ms) > self.clock_ms() + lim.max_future_skew_seconds * 1000:
            return None
        types = set(pt) | set(qt)
        if not types <= _PARTY_TYPES or not set(channels) <= _CHANNELS:
            return None
        if pb.PARTY_TYPE_CASH_TERMINAL in types and any(
                (a == pb.PARTY_TYPE_CASH_TERMINAL or b == pb.PARTY_TYPE_CASH_TERMINAL)
                and (not c or a == b) for a, b, c in zip(pt, qt, cash, strict=True)):
            return None  # a terminal only on one side of a cash transaction
        if min(minor) <= 0 or max(minor) > lim.max_amount_minor:
            return None
        to_fen = {}
        for code in set(currency):
            rate = self.settings.currency(code) if _ISO_CURRENCY.fullmatch(code) else None
            if rate is None:
                return None
            to_fen[code] = rate.to_fen
        opened: list[list[int | None]] = []
        for dates in (pd, qd):
            if not any(dates):
                opened.append([None] * len(ms))
                continue
            days: list[int | None] = [_date_ms(d) if d else None for d in dates]
            if any(d is None for d, text in zip(days, dates, strict=True) if text):
                return None
            if any(d is not None and d > t + 86_400_000 for d, t in zip(days, ms, strict=True)):
                return None
            opened.append(days)
        text_limit = lim.max_text_length
        for texts in (pi, qi, devices):
            if max(map(len, texts)) > text_limit or _CONTROL.search("".join(texts)):
                return None
        if any(devices) and (_DEVICE_BAD.search("".join(devices))
                             or any(d != d.strip() for d in devices)):
            return None
        memo = list(memos)
        if any(c in m for m in memo if m for c in "\n\t\r"):
            memo = [m.replace("\n", " ").replace("\t", " ").replace("\r", " ") for m in memo]
        if max(map(len, memo)) > lim.max_memo_length or _CONTROL.search("".join(memo)):
            return None
        phones: list[list[str]] = []
        for raw in (payer_phones, payee_phones):
            if not any(raw):
                phones.append([""] * len(ms))
                continue
            if max(map(len, raw)) > 32:
                return None
            norm = [_cached_phone(x) if x else "" for x in raw]
            if None in norm:
                return None
            phones.append(norm)  # type: ignore[arg-type]  # None ruled out just above
        fen = [to_fen[c](m) for m, c in zip(minor, currency, strict=True)]
        if max(fen) > SUM_MAX:  # what the kernels' sums saturate at
            return None
        return TxnColumns(
            list(tids), ms, list(pa), list(pi), list(pt), opened[0], list(qa), list(qi), list(qt),
            opened[1], list(minor), list(currency), [max(1, f) for f in fen],
            list(channels), list(cash), list(cross), list(devices), phones[0], memo, phones[1])

    def call(self, c: pb.CallEvent) -> CallInput:
        caller = self._phone(c.caller_number, "caller_number", required=True)
        callee = self._phone(c.callee_number, "callee_number", required=True)
        if caller == callee:
            raise InvalidRequest("callee_number", "is the same number as the caller")
        if c.duration_seconds < 0:
            raise InvalidRequest("duration_seconds", "must be >= 0 (0 while ringing)")
        if c.duration_seconds > 7 * 86_400:
            raise InvalidRequest("duration_seconds", "longer than 7 days")
        outcome = c.outcome
        if outcome != pb.CALL_OUTCOME_UNSPECIFIED and outcome not in _OUTCOMES:
            raise InvalidRequest("outcome", f"unknown enum value {outcome}")
        if c.duration_seconds > 0 and (outcome in _NOT_CONNECTED
                                       or outcome == pb.CALL_OUTCOME_RINGING):
            raise InvalidRequest("duration_seconds", "must be 0 for a call that is ringing or "
                                 "never connected (outcome)")
        return CallInput(
            call_id=self._id(c.call_id, "call_id"),
            caller=caller,
            callee=callee,
            start_ms=self._time(c.start_time, c.HasField("start_time"), "start_time"),
            duration_s=c.duration_seconds,
            caller_class=self._enum(c.caller_class, _NUMBER_CLASSES, "caller_class"),
            outcome=outcome,
        )

    def feedback(self, req: pb.FeedbackRequest, source: str) -> Feedback:
        subject = req.WhichOneof("subject")
        if subject is None:
            raise InvalidRequest("subject", "is required: account_id or transaction_id")
        verdict = self._enum(req.verdict, _VERDICTS, "verdict")
        expires: int | None = None
        if req.HasField("expires_at"):
            if verdict == pb.FEEDBACK_VERDICT_RELEASED:
                raise InvalidRequest("expires_at", "does not apply to RELEASED")
            e = req.expires_at
            if not 0 <= e.nanos < 1_000_000_000:
                raise InvalidRequest("expires_at", "nanos out of range")
            expires = e.seconds * 1000 + e.nanos // 1_000_000
            if not self.clock_ms() < expires <= _MAX_EXPIRY_MS:
                raise InvalidRequest("expires_at", "must be in the future, before the year 10000")
        value = self._id(getattr(req, subject), subject)
        return Feedback(
            account_id=value if subject == "account_id" else "",
            transaction_id=value if subject == "transaction_id" else "",
            verdict=verdict,
            note=self._text(req.note, "note", self.limits.max_text_length),
            expires_ms=expires,
            source=source,
        )

    def accounts(self, req: pb.UpsertAccountsRequest) -> list[AccountProfile]:
        n = len(req.accounts)
        if n == 0:
            raise InvalidRequest("accounts", "is empty")
        if n > self.limits.max_batch:
            raise InvalidRequest("accounts", f"more than {self.limits.max_batch} in one request")
        out = []
        seen: set[str] = set()
        for i, a in enumerate(req.accounts):
            f = f"accounts[{i}]."
            account_id = self._id(a.account_id, f + "account_id")
            if account_id in seen:
                raise InvalidRequest(f + "account_id", "appears twice in this request")
            seen.add(account_id)
            party = a.party_type
            if party != 0 and party not in _PARTY_TYPES:
                raise InvalidRequest(f + "party_type", f"unknown enum value {party}")
            dates: list[int | None] = []
            for name in ("opened_date", "last_active_date"):
                text = getattr(a, name)
                ms = _date_ms(text) if text else None
                if text and ms is None:
                    raise InvalidRequest(f + name, "must be an ISO date YYYY-MM-DD, 1900 or later")
                if ms is not None and ms > self.clock_ms() + 86_400_000:
                    raise InvalidRequest(f + name, "is in the future")
                dates.append(ms)
            out.append(AccountProfile(
                account_id=account_id, party_type=party, opened_ms=dates[0],
                last_active_ms=dates[1],
                merchant_category=self._text(a.merchant_category, f + "merchant_category", 64),
                payroll=a.payroll,
                phone=self._phone(a.phone, f + "phone", required=False),
                institution=self._text(a.institution, f + "institution",
                                       self.limits.max_text_length)))
        return out

    def _entity(self, ref: pb.EntityRef, field: str) -> tuple[int, str]:
        kind = self._enum(ref.kind, _ENTITY_KINDS, f"{field}.kind")
        if kind == pb.ENTITY_KIND_PHONE:
            return kind, self._phone(ref.value, f"{field}.value", required=True)
        if kind == pb.ENTITY_KIND_DEVICE:
            return kind, self._device(ref.value, f"{field}.value", required=True)
        return kind, self._id(ref.value, f"{field}.value")

    def watchlist(self, req: pb.UpdateWatchlistRequest
                  ) -> tuple[list[WatchEntry], list[tuple[int, str]]]:
        if not req.upsert and not req.remove:
            raise InvalidRequest("upsert", "nothing to do: upsert and remove are both empty")
        if len(req.upsert) + len(req.remove) > self.limits.max_batch:
            raise InvalidRequest("upsert", f"more than {self.limits.max_batch} entries")
        now = self.clock_ms()
        upserts = []
        seen: set[tuple[int, str]] = set()
        for i, e in enumerate(req.upsert):
            field = f"upsert[{i}]"
            if not e.HasField("entity"):
                raise InvalidRequest(f"{field}.entity", "is required")
            kind, value = self._entity(e.entity, f"{field}.entity")
            if (kind, value) in seen:
                raise InvalidRequest(f"{field}.entity", "listed twice in one request")
            seen.add((kind, value))
            expires = NEVER
            if e.HasField("expires_at"):
                if not 0 <= e.expires_at.nanos < 1_000_000_000:
                    raise InvalidRequest(f"{field}.expires_at", "nanos out of range")
                expires = e.expires_at.seconds * 1000 + e.expires_at.nanos // 1_000_000
                if expires <= now:
                    raise InvalidRequest(f"{field}.expires_at", "is in the past")
                if expires > TIME_MAX_MS:
                    raise InvalidRequest(f"{field}.expires_at",
                                         "after the year 9999 (leave it out for no expiry)")
            upserts.append(WatchEntry(
                kind=kind, value=value,
                reason=self._text(e.reason, f"{field}.reason", 256, required=True),
                source=self._text(e.source, f"{field}.source", self.limits.max_text_length,
                                  required=True),
                expires_ms=expires,
            ))
        removes = []
        for i, r in enumerate(req.remove):
            key = self._entity(r, f"remove[{i}]")
            if key in seen:
                raise InvalidRequest(f"remove[{i}]", "also in upsert")
            removes.append(key)
        return upserts, removes

    def query(self, req: pb.QueryAccountRequest) -> tuple[str, int]:
        limit = req.recent_decisions_limit or 10
        if not 0 < limit <= 100:
            raise InvalidRequest("recent_decisions_limit", "must be 0..100")
        return self._id(req.account_id, "account_id"), limit

    def large_value_request(self, req: pb.LargeValueReportRequest) -> tuple[int, list[str]]:
        """(local day, institutions asked for) of a GetLargeValueReport request."""
        if not req.report_date:
            raise InvalidRequest("report_date", "is required: a local day, YYYY-MM-DD")
        day = parse_day(req.report_date)
        if day is None:
            raise InvalidRequest("report_date", f"must be a date YYYY-MM-DD, got "
                                 f"{req.report_date[:32]!r}")
        if len(req.institutions) > _MAX_REPORT_INSTITUTIONS:
            raise InvalidRequest("institutions", f"more than {_MAX_REPORT_INSTITUTIONS}")
        return day, [self._text(v, f"institutions[{i}]", self.limits.max_text_length, required=True)
                     for i, v in enumerate(req.institutions)]

    def case_request(self, req: pb.ExportCaseGraphRequest) -> CaseRequest:
        """Validate an ExportCaseGraph request: centre, hops, time range, node cap, formats."""
        g = self.settings.graph
        centre = req.WhichOneof("centre")
        if centre == "account_id":
            value = self._id(req.account_id, "account_id")
        elif centre == "phone_number":
            value = self._phone(req.phone_number, "phone_number", required=True)
        elif centre == "transaction_id":
            value = self._id(req.transaction_id, "transaction_id")
        else:
            raise InvalidRequest("centre", "one of account_id, phone_number or transaction_id "
                                 "is required")
        hops = req.hops or 2
        if not 1 <= hops <= g.export_max_hops:
            raise InvalidRequest("hops", f"must be 1..{g.export_max_hops} (0 means 2), got {req.hops}")
        to_ms = (self._time(req.to_time, True, "to_time") if req.HasField("to_time")
                 else self.clock_ms())
        from_ms = (self._time(req.from_time, True, "from_time") if req.HasField("from_time")
                   else to_ms - 30 * _DAY_MS)
        if from_ms >= to_ms:
            raise InvalidRequest("from_time", "must be before to_time")
        if to_ms - from_ms > g.export_max_days * _DAY_MS:
            raise InvalidRequest("from_time", f"time range longer than {g.export_max_days:g} days")
        max_nodes = req.max_nodes or g.export_default_nodes
        if not 1 <= max_nodes <= g.export_max_nodes:
            raise InvalidRequest("max_nodes", f"must be 1..{g.export_max_nodes} (0 means "
                                 f"{g.export_default_nodes}), got {req.max_nodes}")
        formats = []
        for i, f in enumerate(req.formats):
            name = _CASE_FORMATS.get(f)
            if name is None:
                raise InvalidRequest(f"formats[{i}]", "UNSPECIFIED is not allowed" if f == 0
                                     else f"unknown enum value {f}")
            formats.append(name)
        return CaseRequest(centre=centre, value=value, hops=hops, from_ms=from_ms, to_ms=to_ms,
                           max_nodes=max_nodes,
                           formats=tuple(dict.fromkeys(formats)) or tuple(_CASE_FORMATS.values()))

    # ------------------------------------------------------------------ responses
    def reason_codes(self, rec: DecisionRecord) -> list[str]:
        """The codes of the rules ``rec`` fired, in policy order, by the policy it was made under
        (the list is shared: do not change it)."""
        key = (rec.policy_version, rec.reason_bits)
        codes = self._codes.get(key)
        if codes is None:
            codes = [r.code for r in self.policy_for(rec.policy_version).fired(rec.reason_bits)]
            if len(self._codes) >= 65_536:
                self._codes.clear()
            self._codes[key] = codes
        return codes

    def _reasons_of(self, rec: DecisionRecord) -> list[pb.Reason]:
        key = (rec.policy_version, rec.reason_bits)
        found = self._reasons.get(key)
        if found is None:
            found = [pb.Reason(code=r.code, message=r.message, action=r.action)  # type: ignore[arg-type]
                     for r in self.policy_for(rec.policy_version).fired(rec.reason_bits)]
            if len(self._reasons) >= 65_536:
                self._reasons.clear()
            self._reasons[key] = found
        return found

    def decision(self, rec: DecisionRecord, duplicate: bool,
                 latency_us: int | None = None) -> pb.Decision:
        """The Decision message of ``rec`` (``latency_us``: the call's, else the record's)."""
        msg = pb.Decision()
        self._fill(msg, rec, duplicate, rec.latency_us if latency_us is None else latency_us)
        return msg

    def decision_batch(self, recs: Sequence[DecisionRecord], duplicates: Sequence[bool],
                       latency_us: int) -> pb.DecisionBatch:
        """The classic ScreenBatch reply: one Decision per record, built in place."""
        out = pb.DecisionBatch()
        add, fill = out.decisions.add, self._fill
        for rec, dup in zip(recs, duplicates, strict=True):
            fill(add(), rec, dup, latency_us)
        return out

    def _fill(self, msg: pb.Decision, rec: DecisionRecord, duplicate: bool,
              latency_us: int) -> None:
        # Fields are set in place and left out when empty: with upb, building the message from
        # keyword arguments (empty lists and maps included) and copying it in costs several
        # times more. The bytes are the same (reports is present, as before, when all false).
        msg.transaction_id = rec.transaction_id
        msg.action = rec.action  # type: ignore[assignment]
        msg.risk_score = rec.score
        msg.policy_version = rec.policy_version
        msg.server_latency_us = latency_us
        if rec.degraded:
            msg.degraded = True
        if duplicate:
            msg.duplicate = True
        ms = rec.event_time_ms
        msg.event_time.seconds, msg.event_time.nanos = ms // 1000, ms % 1000 * 1_000_000
        if rec.reason_bits:
            msg.reasons.extend(self._reasons_of(rec))
        if rec.features:
            msg.features.update(rec.features)
        flags = rec.report_flags
        reports = msg.reports
        if flags & 7:
            reports.large_value, reports.suspicious, reports.notify_police = (
                bool(flags & 1), bool(flags & 2), bool(flags & 4))
        else:
            reports.SetInParent()

    def legend(self, version: str) -> pb.ReasonLegend:
        """Every rule of policy ``version`` in bit order (a columnar reply's legend)."""
        found = self._legends.get(version)
        if found is None:
            rules = self.policy_for(version).txn_rules
            found = pb.ReasonLegend(policy_version=version, reasons=[
                pb.Reason(code=r.code, message=r.message, action=r.action)  # type: ignore[arg-type]
                for r in rules])
            if len(self._legends) >= 64:
                self._legends.clear()
            self._legends[version] = found
        return found

    def decision_columns(self, recs: Sequence[DecisionRecord], duplicates: Sequence[bool],
                         latency_us: int) -> pb.DecisionColumns:
        """The decisions of a batch as one DecisionColumns message (see the proto)."""
        versions: dict[str, int] = {}
        index = [versions.setdefault(r.policy_version, len(versions)) for r in recs]
        words = [split_reasons(r.reason_bits) for r in recs]
        low, high = [w[0] for w in words], [w[1] for w in words]
        return pb.DecisionColumns(
            actions=[r.action for r in recs],  # type: ignore[misc]
            risk_scores=[r.score for r in recs],
            reason_bits=low,
            reason_bits_high=high if any(high) else (),  # empty: older clients read low only
            report_flags=[r.report_flags for r in recs],
            degraded=[r.degraded for r in recs],
            duplicate=duplicates,
            legend_index=index if len(versions) > 1 else (),
            legends=[self.legend(v) for v in versions],
            server_latency_us=latency_us)

    def call_decision(self, rec: CallRecord, duplicate: bool) -> pb.CallDecision:
        return pb.CallDecision(
            call_id=rec.call_id,
            action=rec.action,  # type: ignore[arg-type]
            reasons=[pb.CallReason(code=r.code, message=r.message, action=r.action)  # type: ignore[arg-type]
                     for r in self.policy_for(rec.policy_version).fired(rec.reason_bits,
                                                                         calls=True)],
            risk_score=rec.score,
            features=dict(rec.features),
            policy_version=rec.policy_version,
            server_latency_us=rec.latency_us,
            duplicate=duplicate,
        )

    def watch_entry(self, e: WatchEntry, show: Callable[[str], str]) -> pb.WatchlistEntry:
        msg = pb.WatchlistEntry(entity=pb.EntityRef(kind=e.kind, value=show(e.value)),  # type: ignore[arg-type]
                                reason=e.reason, source=e.source)
        if e.expires_ms < NEVER:
            msg.expires_at.CopyFrom(ms_to_timestamp(e.expires_ms))
        return msg

    @staticmethod
    def case_mark(m: CaseMark) -> pb.CaseMark:
        msg = pb.CaseMark(role=m.role, transaction_id=m.transaction_id,  # type: ignore[arg-type]
                          reason_codes=list(m.reason_codes), mule_level=m.mule_level,
                          source=m.source, note=m.note)
        msg.marked_at.CopyFrom(ms_to_timestamp(m.marked_ms))
        if m.expires_ms < NEVER:
            msg.expires_at.CopyFrom(ms_to_timestamp(m.expires_ms))
        return msg

    def account(self, view: AccountView, show: Callable[[str], str]) -> pb.AccountReport:
        msg = pb.AccountReport(
            account_id=show(view.account_id),
            known=view.known,
            features=dict(view.features),
            risk_score=view.risk_score,
            recent_decisions=[self.decision(r, False) for r in view.recent],
            watchlist_hits=[self.watch_entry(e, show) for e in view.watch],
            case_marks=[self.case_mark(m) for m in view.case_marks],
        )
        if view.first_seen_ms is not None:
            msg.first_seen.CopyFrom(ms_to_timestamp(view.first_seen_ms))
        if view.last_seen_ms is not None:
            msg.last_seen.CopyFrom(ms_to_timestamp(view.last_seen_ms))
        return msg


def identity(value: str) -> str:
    return value


def masked_or_clear(masker: Masker, clear: bool) -> Callable[[str], str]:
    return identity if clear else masker



def large_value_message(frame: pl.DataFrame, *, day: int, horizon: tuple[int, int] | None,
                        tz_offset_hours: int, show: Callable[[str], str], masked: bool,
                        source: str) -> pb.LargeValueReport:
    """The GetLargeValueReport reply: ``frame`` (``LARGE_VALUE_SCHEMA`` rows), accounts shown
    through ``show`` (masked or clear)."""
    times = frame.with_columns(pl.col("first_time", "last_time").dt.epoch("ms"))
    rows = [pb.LargeValueRow(
        report_date=r["report_date"].isoformat(), account=show(r["account"]),
        institution=r["institution"] or "", party_type=r["party_type"], category=r["category"],
        direction=r["direction"], basis=r["basis"], total_fen=r["total_fen"], line_fen=r["line_fen"],
        n_txns=r["n_txns"], n_counterparties=r["n_counterparties"], currencies=r["currencies"],
        transaction_ids=r["event_ids"], first_time=ms_to_timestamp(r["first_time"]),
        last_time=ms_to_timestamp(r["last_time"])) for r in times.iter_rows(named=True)]
    return pb.LargeValueReport(
        report_date=day_text(day), rows=rows,
        horizon_start=day_text(horizon[0]) if horizon is not None else "",
        horizon_end=day_text(horizon[1]) if horizon is not None else "",
        timezone_offset_hours=tz_offset_hours, identifiers_masked=masked, thresholds_source=source)


def large_value_frame(msg: pb.LargeValueReport) -> pl.DataFrame:
    """A GetLargeValueReport reply as the offline report's frame (``LARGE_VALUE_SCHEMA``)."""
    cols: dict[str, list[Any]] = {name: [] for name in LARGE_VALUE_SCHEMA}
    for r in msg.rows:
        for name in ("account", "party_type", "category", "direction", "basis", "total_fen",
                     "line_fen", "n_txns", "n_counterparties"):
            cols[name].append(getattr(r, name))
        cols["report_date"].append(dt.date.fromisoformat(r.report_date))
        cols["institution"].append(r.institution or None)
        cols["currencies"].append(list(r.currencies))
        cols["event_ids"].append(list(r.transaction_ids))
        cols["first_time"].append(r.first_time.ToMilliseconds())
        cols["last_time"].append(r.last_time.ToMilliseconds())
    frame = pl.DataFrame(cols, schema={**LARGE_VALUE_SCHEMA, "first_time": pl.Int64(),
                                       "last_time": pl.Int64()})
    return frame.with_columns(pl.col("first_time", "last_time").cast(pl.Datetime("ms"))
                              .dt.replace_time_zone("UTC"))


def case_graph_message(files: Mapping[str, bytes], g: Any, found: Sequence[Any], req: CaseRequest,
                       masked: bool) -> pb.CaseGraph:
    """The ExportCaseGraph response: summary of the MultiDiGraph ``g`` and the rendered files."""
    meta = g.graph
    summary = pb.CaseSummary(
        centre=str(meta.get("centre", "")),
        nodes=g.number_of_nodes(),
        edges=g.number_of_edges(),
        events=int(meta.get("transactions", 0)),
        hops=req.hops,
        from_time=ms_to_timestamp(req.from_ms),
        to_time=ms_to_timestamp(req.to_ms),
        nodes_left_out=int(meta.get("nodes_left_out", 0)),
        edges_left_out=int(meta.get("edges_left_out", 0)),
        hubs_not_expanded=[h for h in str(meta.get("hubs_not_expanded", "")).split(";") if h],
        truncated=bool(meta.get("truncated", False)),
        notes=[n for n in str(meta.get("notes", "")).split("; ") if n],
        findings=[pb.CaseFinding(detector=f.detector, description=f.description,
                                 nodes=list(f.nodes)) for f in found],
        identifiers_masked=masked,
    )
    msg = pb.CaseGraph(summary=summary)
    for name, content in files.items():
        setattr(msg, _CASE_FILE_FIELDS[name], content)
    return msg


def case_files(msg: pb.CaseGraph) -> dict[str, bytes]:
    """The files carried by an ExportCaseGraph response, by file name (empty ones left out)."""
    return {name: getattr(msg, f) for name, f in _CASE_FILE_FIELDS.items() if getattr(msg, f)}
