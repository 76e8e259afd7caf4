"""Domain objects: validated inputs and the records the engine keeps. No protobuf here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    "TxnColumns",
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


_COLUMNS = ("transaction_id", "event_time_ms", "payer_account", "payer_institution",
            "payer_type", "payer_opened_ms", "payee_account", "payee_institution", "payee_type",
            "payee_opened_ms", "amount_minor", "currency", "amount_fen", "channel", "cash",
            "cross_border", "device_id", "payer_phone", "memo", "payee_phone")


@dataclass(slots=True)
class TxnColumns:
    """Validated transactions as columns, one list per field, in request order: the bulk form
    of a ``Sequence[TxnInput]`` (ScreenBatch decodes into it; the engine screens it).

    A transaction as an object (``row``) is built only where one is wanted: a refusal that names
    the differing field, a shadow sink, the event journal.
    """

    transaction_id: list[str]
    event_time_ms: list[int]
    payer_account: list[str]
    payer_institution: list[str]
    payer_type: list[int]
    payer_opened_ms: list[int | None]
    payee_account: list[str]
    payee_institution: list[str]
    payee_type: list[int]
    payee_opened_ms: list[int | None]
    amount_minor: list[int]
    currency: list[str]
    amount_fen: list[int]
    channel: list[int]
    cash: list[bool]
    cross_border: list[bool]
    device_id: list[str]
    payer_phone: list[str]
    memo: list[str]
    payee_phone: list[str]

    def __len__(self) -> int:
        return len(self.transaction_id)

    def row(self, i: int) -> TxnInput:
        """Transaction ``i`` as a ``TxnInput``."""
        return TxnInput(
            transaction_id=self.transaction_id[i], event_time_ms=self.event_time_ms[i],
            payer=Party(self.payer_account[i], self.payer_institution[i], self.payer_type[i],
                        self.payer_opened_ms[i]),
            payee=Party(self.payee_account[i], self.payee_institution[i], self.payee_type[i],
                        self.payee_opened_ms[i]),
            amount_minor=self.amount_minor[i], currency=self.currency[i],
            amount_fen=self.amount_fen[i], channel=self.channel[i], cash=self.cash[i],
            cross_border=self.cross_border[i], device_id=self.device_id[i],
            payer_phone=self.payer_phone[i], memo=self.memo[i], payee_phone=self.payee_phone[i])

    def rows(self) -> list[TxnInput]:
        return [self.row(i) for i in range(len(self))]

    def __iter__(self) -> Iterator[TxnInput]:
        return (self.row(i) for i in range(len(self)))

    def take(self, idx: Sequence[int]) -> TxnColumns:
        """The transactions at ``idx``, in that order."""
        return TxnColumns(*([col[i] for i in idx] for col in self._columns()))

    def slice(self, start: int, stop: int) -> TxnColumns:
        """The transactions ``start`` to ``stop`` (a view's cost: list slices)."""
        return TxnColumns(*(col[start:stop] for col in self._columns()))

    def _columns(self) -> tuple[list, ...]:  # type: ignore[type-arg]
        return tuple(getattr(self, name) for name in _COLUMNS)

    @classmethod
    def from_inputs(cls, txns: Sequence[TxnInput]) -> TxnColumns:
        return cls(
            [t.transaction_id for t in txns], [t.event_time_ms for t in txns],
            [t.payer.account_id for t in txns], [t.payer.institution for t in txns],
            [t.payer.party_type for t in txns], [t.payer.opened_ms for t in txns],
            [t.payee.account_id for t in txns], [t.payee.institution for t in txns],
            [t.payee.party_type for t in txns], [t.payee.opened_ms for t in txns],
            [t.amount_minor for t in txns], [t.currency for t in txns],
            [t.amount_fen for t in txns], [t.channel for t in txns], [t.cash for t in txns],
            [t.cross_border for t in txns], [t.device_id for t in txns],
            [t.payer_phone for t in txns], [t.memo for t in txns],
            [t.payee_phone for t in txns])


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


@dataclass(slots=True)  # immutable by convention: a frozen init costs 3x, once per decision
class DecisionRecord:
    """What the engine decided for one transaction; rendered to a proto Decision on the way out.

    Never changed once made (``DecisionLog.by_seq`` reads records without the engine's lock).
    """

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
    # the entry's owner: the institution that services the account ("": none, an entry of an
    # earlier build; see ``screening.auth.registry_owners``)
    institution: str = ""


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
