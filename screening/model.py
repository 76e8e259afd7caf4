"""Domain objects: validated inputs and the records the engine keeps. No protobuf here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ENTITY_ACCOUNT",
    "ENTITY_DEVICE",
    "ENTITY_PHONE",
    "NEVER",
    "AccountView",
    "CallInput",
    "CallRecord",
    "CaseRequest",
    "DecisionRecord",
    "Party",
    "TxnInput",
    "WatchEntry",
]

# Same numbers as the proto enum EntityKind.
ENTITY_ACCOUNT, ENTITY_PHONE, ENTITY_DEVICE = 1, 2, 3
NEVER = 2**62  # "does not lapse", as epoch milliseconds


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


@dataclass(frozen=True, slots=True)
class CallInput:
    call_id: str
    caller: str  # normalised numbers
    callee: str
    start_ms: int
    duration_s: int
    caller_class: int  # proto NumberClass


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
class AccountView:
    account_id: str
    known: bool
    features: tuple[tuple[str, float], ...]
    risk_score: int
    recent: tuple[DecisionRecord, ...]
    watch: tuple[WatchEntry, ...]
    first_seen_ms: int | None
    last_seen_ms: int | None


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
