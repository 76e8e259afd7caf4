"""Domain objects: validated inputs and the records the engine keeps. No protobuf here."""

from __future__ import annotations

from dataclasses import dataclass

from features.layout import CallOutcome

__all__ = [
    "ENTITY_ACCOUNT",
    "ENTITY_DEVICE",
    "ENTITY_PHONE",
    "NEVER",
    "ROLE_CLEARED",
    "ROLE_CONFIRMED_FRAUD",
    "ROLE_SUSPECTED_COLLECTOR",
    "ROLE_SUSPECTED_MULE",
    "ROLE_SUSPECTED_VICTIM",
    "VERDICT_CONFIRMED_FRAUD",
    "VERDICT_FALSE_ALARM",
    "VERDICT_RELEASED",
    "AccountProfile",
    "AccountView",
    "CallInput",
    "CallRecord",
    "CaseMark",
    "CaseRequest",
    "DecisionRecord",
    "Feedback",
    "Party",
    "TxnInput",
    "WatchEntry",
    "fen_text",
]

# Same numbers as the proto enum EntityKind.
ENTITY_ACCOUNT, ENTITY_PHONE, ENTITY_DEVICE = 1, 2, 3
NEVER = 2**62  # "does not lapse", as epoch milliseconds
# Same numbers as the proto enums CaseRole and FeedbackVerdict.
(ROLE_SUSPECTED_VICTIM, ROLE_SUSPECTED_MULE, ROLE_SUSPECTED_COLLECTOR, ROLE_CONFIRMED_FRAUD,
 ROLE_CLEARED) = 1, 2, 3, 4, 5
VERDICT_CONFIRMED_FRAUD, VERDICT_FALSE_ALARM, VERDICT_RELEASED = 1, 2, 3


@dataclass(frozen=True, slots=True)
class Party:
    account_id: str
    institution: str
    party_type: int  # proto PartyType: 1 person, 2 organisation
    opened_ms: int | None  # midnight UTC of the opening date


@dataclass(frozen=True, slots=True)
class TxnInput:
    transaction_id: str
    event_time_ms: int
    payer: Party
    payee: Party
    amount_minor: int
    currency: str
    amount_fen: int  # converted to CNY fen (integer, round half up)
    channel: int
    cash: bool
    cross_border: bool
    device_id: str
    payer_phone: str  # normalised; "" when unknown
    memo: str
    payee_phone: str = ""  # normalised; "" when unknown


@dataclass(frozen=True, slots=True)
class CallInput:
    call_id: str
    caller: str  # normalised numbers
    callee: str
    start_ms: int
    duration_s: int
    caller_class: int  # proto NumberClass
    outcome: int = 0  # proto CallOutcome (0: not given)

    @property
    def ended(self) -> bool:
        """This report ends the call (talk time known, or it never connected)."""
        if self.outcome in (CallOutcome.UNANSWERED, CallOutcome.REJECTED, CallOutcome.BLOCKED):
            return True
        return self.duration_s > 0


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What the engine decided for one transaction; rendered to a proto Decision on the way out."""

    transaction_id: str
    seq: int
    event_time_ms: int
    action: int
    reason_bits: int
    score: int
    report_flags: int
    features: tuple[tuple[str, float], ...]
    policy_version: str
    latency_us: int
    degraded: bool
    payer: str = ""
    payee: str = ""
    # who sent it (``screening.idempotency``: ids are remembered per calling institution)
    scope: str = ""
    # ``screening.idempotency.fingerprint`` of the request (b"" in format-1 checkpoints)
    fingerprint: bytes = b""
    marks: int = 0  # features.layout.Mark bits: what the decision concluded about the parties


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    action: int
    reason_bits: int
    score: int
    features: tuple[tuple[str, float], ...]
    policy_version: str
    latency_us: int


@dataclass(frozen=True, slots=True)
class WatchEntry:
    kind: int
    value: str
    reason: str
    source: str
    expires_ms: int  # NEVER when it does not lapse


@dataclass(frozen=True, slots=True)
class CaseMark:
    """One conclusion about an account: from a decision (``transaction_id``, reasons) or feedback."""

    role: int  # ROLE_*
    marked_ms: int
    expires_ms: int
    transaction_id: str = ""
    reason_codes: tuple[str, ...] = ()
    mule_level: int = 0
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Feedback:
    """A validated SubmitFeedback: on an account or on a remembered transaction."""

    account_id: str  # "" when on a transaction
    transaction_id: str  # "" when on an account
    verdict: int  # VERDICT_*
    note: str
    expires_ms: int | None  # None: the verdict's default
    source: str = ""  # who gave it (the caller's name)
    scope: str = ""  # the caller's idempotency scope: whose transaction ids it names


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """What the account registry says about one account."""

    account_id: str
    party_type: int  # proto PartyType (0: not given)
    opened_ms: int | None
    last_active_ms: int | None
    merchant_category: str
    payroll: bool
    phone: str  # normalised; "" when unknown


@dataclass(frozen=True, slots=True)
class AccountView:
    account_id: str
    known: bool
    features: tuple[tuple[str, float], ...]
    risk_score: int
    recent: tuple[DecisionRecord, ...]
    watch: tuple[WatchEntry, ...]
    first_seen_ms: int | None
    last_seen_ms: int | None
    case_marks: tuple[CaseMark, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A validated ExportCaseGraph request."""

    centre: str  # "account_id" | "phone_number" | "transaction_id" (the request field)
    value: str  # normalised (phone numbers in E.164 form)
    hops: int
    from_ms: int
    to_ms: int
    max_nodes: int
    formats: tuple[str, ...]  # of screening.case.FORMATS


def fen_text(fen: int) -> str:
    """Integer fen for people, ``12,345.67`` (no float on the way)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"
