import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PartyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARTY_TYPE_UNSPECIFIED: _ClassVar[PartyType]
    PARTY_TYPE_PERSON: _ClassVar[PartyType]
    PARTY_TYPE_ORGANISATION: _ClassVar[PartyType]
    PARTY_TYPE_CASH_TERMINAL: _ClassVar[PartyType]

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_MOBILE_APP: _ClassVar[Channel]
    CHANNEL_ONLINE_BANKING: _ClassVar[Channel]
    CHANNEL_COUNTER: _ClassVar[Channel]
    CHANNEL_ATM: _ClassVar[Channel]
    CHANNEL_THIRD_PARTY_PAYMENT: _ClassVar[Channel]
    CHANNEL_QR: _ClassVar[Channel]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_ALLOW: _ClassVar[Action]
    ACTION_WARN: _ClassVar[Action]
    ACTION_HOLD: _ClassVar[Action]
    ACTION_STOP_PAYMENT: _ClassVar[Action]
    ACTION_FREEZE: _ClassVar[Action]

class NumberClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NUMBER_CLASS_UNSPECIFIED: _ClassVar[NumberClass]
    NUMBER_CLASS_MOBILE: _ClassVar[NumberClass]
    NUMBER_CLASS_LANDLINE: _ClassVar[NumberClass]
    NUMBER_CLASS_VIRTUAL_OPERATOR: _ClassVar[NumberClass]
    NUMBER_CLASS_INTERNATIONAL: _ClassVar[NumberClass]
    NUMBER_CLASS_SPOOFED_SUSPECT: _ClassVar[NumberClass]

class CallOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_OUTCOME_UNSPECIFIED: _ClassVar[CallOutcome]
    CALL_OUTCOME_RINGING: _ClassVar[CallOutcome]
    CALL_OUTCOME_ANSWERED: _ClassVar[CallOutcome]
    CALL_OUTCOME_UNANSWERED: _ClassVar[CallOutcome]
    CALL_OUTCOME_REJECTED: _ClassVar[CallOutcome]
    CALL_OUTCOME_BLOCKED: _ClassVar[CallOutcome]

class CallAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_ACTION_UNSPECIFIED: _ClassVar[CallAction]
    CALL_ACTION_ALLOW: _ClassVar[CallAction]
    CALL_ACTION_WARN_CALLEE: _ClassVar[CallAction]
    CALL_ACTION_BLOCK: _ClassVar[CallAction]

class EntityKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTITY_KIND_UNSPECIFIED: _ClassVar[EntityKind]
    ENTITY_KIND_ACCOUNT: _ClassVar[EntityKind]
    ENTITY_KIND_PHONE: _ClassVar[EntityKind]
    ENTITY_KIND_DEVICE: _ClassVar[EntityKind]

class CaseRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CASE_ROLE_UNSPECIFIED: _ClassVar[CaseRole]
    CASE_ROLE_SUSPECTED_VICTIM: _ClassVar[CaseRole]
    CASE_ROLE_SUSPECTED_MULE: _ClassVar[CaseRole]
    CASE_ROLE_SUSPECTED_COLLECTOR: _ClassVar[CaseRole]
    CASE_ROLE_CONFIRMED_FRAUD: _ClassVar[CaseRole]
    CASE_ROLE_CLEARED: _ClassVar[CaseRole]

class FeedbackVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_VERDICT_UNSPECIFIED: _ClassVar[FeedbackVerdict]
    FEEDBACK_VERDICT_CONFIRMED_FRAUD: _ClassVar[FeedbackVerdict]
    FEEDBACK_VERDICT_FALSE_ALARM: _ClassVar[FeedbackVerdict]
    FEEDBACK_VERDICT_RELEASED: _ClassVar[FeedbackVerdict]

class CaseFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CASE_FORMAT_UNSPECIFIED: _ClassVar[CaseFormat]
    CASE_FORMAT_GRAPHML: _ClassVar[CaseFormat]
    CASE_FORMAT_GEXF: _ClassVar[CaseFormat]
    CASE_FORMAT_JSON: _ClassVar[CaseFormat]
    CASE_FORMAT_CSV: _ClassVar[CaseFormat]
    CASE_FORMAT_PNG: _ClassVar[CaseFormat]
    CASE_FORMAT_SVG: _ClassVar[CaseFormat]
PARTY_TYPE_UNSPECIFIED: PartyType
PARTY_TYPE_PERSON: PartyType
PARTY_TYPE_ORGANISATION: PartyType
PARTY_TYPE_CASH_TERMINAL: PartyType
CHANNEL_UNSPECIFIED: Channel
CHANNEL_MOBILE_APP: Channel
CHANNEL_ONLINE_BANKING: Channel
CHANNEL_COUNTER: Channel
CHANNEL_ATM: Channel
CHANNEL_THIRD_PARTY_PAYMENT: Channel
CHANNEL_QR: Channel
ACTION_UNSPECIFIED: Action
ACTION_ALLOW: Action
ACTION_WARN: Action
ACTION_HOLD: Action
ACTION_STOP_PAYMENT: Action
ACTION_FREEZE: Action
NUMBER_CLASS_UNSPECIFIED: NumberClass
NUMBER_CLASS_MOBILE: NumberClass
NUMBER_CLASS_LANDLINE: NumberClass
NUMBER_CLASS_VIRTUAL_OPERATOR: NumberClass
NUMBER_CLASS_INTERNATIONAL: NumberClass
NUMBER_CLASS_SPOOFED_SUSPECT: NumberClass
CALL_OUTCOME_UNSPECIFIED: CallOutcome
CALL_OUTCOME_RINGING: CallOutcome
CALL_OUTCOME_ANSWERED: CallOutcome
CALL_OUTCOME_UNANSWERED: CallOutcome
CALL_OUTCOME_REJECTED: CallOutcome
CALL_OUTCOME_BLOCKED: CallOutcome
CALL_ACTION_UNSPECIFIED: CallAction
CALL_ACTION_ALLOW: CallAction
CALL_ACTION_WARN_CALLEE: CallAction
CALL_ACTION_BLOCK: CallAction
ENTITY_KIND_UNSPECIFIED: EntityKind
ENTITY_KIND_ACCOUNT: EntityKind
ENTITY_KIND_PHONE: EntityKind
ENTITY_KIND_DEVICE: EntityKind
CASE_ROLE_UNSPECIFIED: CaseRole
CASE_ROLE_SUSPECTED_VICTIM: CaseRole
CASE_ROLE_SUSPECTED_MULE: CaseRole
CASE_ROLE_SUSPECTED_COLLECTOR: CaseRole
CASE_ROLE_CONFIRMED_FRAUD: CaseRole
CASE_ROLE_CLEARED: CaseRole
FEEDBACK_VERDICT_UNSPECIFIED: FeedbackVerdict
FEEDBACK_VERDICT_CONFIRMED_FRAUD: FeedbackVerdict
FEEDBACK_VERDICT_FALSE_ALARM: FeedbackVerdict
FEEDBACK_VERDICT_RELEASED: FeedbackVerdict
CASE_FORMAT_UNSPECIFIED: CaseFormat
CASE_FORMAT_GRAPHML: CaseFormat
CASE_FORMAT_GEXF: CaseFormat
CASE_FORMAT_JSON: CaseFormat
CASE_FORMAT_CSV: CaseFormat
CASE_FORMAT_PNG: CaseFormat
CASE_FORMAT_SVG: CaseFormat

class ReloadPolicyRequest(_message.Message):
    __slots__ = ("policy_toml",)
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    policy_toml: str
    def __init__(self, policy_toml: _Optional[str] = ...) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("previous_version", "policy_version", "transaction_rules", "call_rules")
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_RULES_FIELD_NUMBER: _ClassVar[int]
    CALL_RULES_FIELD_NUMBER: _ClassVar[int]
    previous_version: str
    policy_version: str
    transaction_rules: int
    call_rules: int
    def __init__(self, previous_version: _Optional[str] = ..., policy_version: _Optional[str] = ..., transaction_rules: _Optional[int] = ..., call_rules: _Optional[int] = ...) -> None: ...

class Money(_message.Message):
    __slots__ = ("minor_units", "currency")
    MINOR_UNITS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    minor_units: int
    currency: str
    def __init__(self, minor_units: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class Party(_message.Message):
    __slots__ = ("account_id", "institution", "party_type", "account_opened_date")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    PARTY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_OPENED_DATE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    institution: str
    party_type: PartyType
    account_opened_date: str
    def __init__(self, account_id: _Optional[str] = ..., institution: _Optional[str] = ..., party_type: _Optional[_Union[PartyType, str]] = ..., account_opened_date: _Optional[str] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("transaction_id", "event_time", "payer", "payee", "amount", "channel", "cash", "cross_border", "device_id", "payer_phone", "memo", "payee_phone")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CASH_FIELD_NUMBER: _ClassVar[int]
    CROSS_BORDER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_PHONE_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    PAYEE_PHONE_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    event_time: _timestamp_pb2.Timestamp
    payer: Party
    payee: Party
    amount: Money
    channel: Channel
    cash: bool
    cross_border: bool
    device_id: str
    payer_phone: str
    memo: str
    payee_phone: str
    def __init__(self, transaction_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payer: _Optional[_Union[Party, _Mapping]] = ..., payee: _Optional[_Union[Party, _Mapping]] = ..., amount: _Optional[_Union[Money, _Mapping]] = ..., channel: _Optional[_Union[Channel, str]] = ..., cash: _Optional[bool] = ..., cross_border: _Optional[bool] = ..., device_id: _Optional[str] = ..., payer_phone: _Optional[str] = ..., memo: _Optional[str] = ..., payee_phone: _Optional[str] = ...) -> None: ...

class TransactionBatch(_message.Message):
    __slots__ = ("transactions", "columnar")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    columnar: bool
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., columnar: _Optional[bool] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "message", "action")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    action: Action
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ...) -> None: ...

class ReportFlags(_message.Message):
    __slots__ = ("large_value", "suspicious", "notify_police")
    LARGE_VALUE_FIELD_NUMBER: _ClassVar[int]
    SUSPICIOUS_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_POLICE_FIELD_NUMBER: _ClassVar[int]
    large_value: bool
    suspicious: bool
    notify_police: bool
    def __init__(self, large_value: _Optional[bool] = ..., suspicious: _Optional[bool] = ..., notify_police: _Optional[bool] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("transaction_id", "action", "reasons", "risk_score", "features", "reports", "policy_version", "server_latency_us", "degraded", "duplicate", "event_time")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    RISK_SCORE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    action: Action
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    risk_score: int
    features: _containers.ScalarMap[str, float]
    reports: ReportFlags
    policy_version: str
    server_latency_us: int
    degraded: bool
    duplicate: bool
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, transaction_id: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., risk_score: _Optional[int] = ..., features: _Optional[_Mapping[str, float]] = ..., reports: _Optional[_Union[ReportFlags, _Mapping]] = ..., policy_version: _Optional[str] = ..., server_latency_us: _Optional[int] = ..., degraded: _Optional[bool] = ..., duplicate: _Optional[bool] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DecisionBatch(_message.Message):
    __slots__ = ("decisions", "columns")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    columns: DecisionColumns
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., columns: _Optional[_Union[DecisionColumns, _Mapping]] = ...) -> None: ...

class ReasonLegend(_message.Message):
    __slots__ = ("policy_version", "reasons")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, policy_version: _Optional[str] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class DecisionColumns(_message.Message):
    __slots__ = ("actions", "risk_scores", "reason_bits", "report_flags", "degraded", "duplicate", "legend_index", "legends", "server_latency_us", "reason_bits_high")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    RISK_SCORES_FIELD_NUMBER: _ClassVar[int]
    REASON_BITS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FLAGS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    LEGEND_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEGENDS_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    REASON_BITS_HIGH_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedScalarFieldContainer[Action]
    risk_scores: _containers.RepeatedScalarFieldContainer[int]
    reason_bits: _containers.RepeatedScalarFieldContainer[int]
    report_flags: _containers.RepeatedScalarFieldContainer[int]
    degraded: _containers.RepeatedScalarFieldContainer[bool]
    duplicate: _containers.RepeatedScalarFieldContainer[bool]
    legend_index: _containers.RepeatedScalarFieldContainer[int]
    legends: _containers.RepeatedCompositeFieldContainer[ReasonLegend]
    server_latency_us: int
    reason_bits_high: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, actions: _Optional[_Iterable[_Union[Action, str]]] = ..., risk_scores: _Optional[_Iterable[int]] = ..., reason_bits: _Optional[_Iterable[int]] = ..., report_flags: _Optional[_Iterable[int]] = ..., degraded: _Optional[_Iterable[bool]] = ..., duplicate: _Optional[_Iterable[bool]] = ..., legend_index: _Optional[_Iterable[int]] = ..., legends: _Optional[_Iterable[_Union[ReasonLegend, _Mapping]]] = ..., server_latency_us: _Optional[int] = ..., reason_bits_high: _Optional[_Iterable[int]] = ...) -> None: ...

class CallEvent(_message.Message):
    __slots__ = ("call_id", "caller_number", "callee_number", "start_time", "duration_seconds", "caller_class", "outcome")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CALLEE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CALLER_CLASS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    caller_number: str
    callee_number: str
    start_time: _timestamp_pb2.Timestamp
    duration_seconds: int
    caller_class: NumberClass
    outcome: CallOutcome
    def __init__(self, call_id: _Optional[str] = ..., caller_number: _Optional[str] = ..., callee_number: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_seconds: _Optional[int] = ..., caller_class: _Optional[_Union[NumberClass, str]] = ..., outcome: _Optional[_Union[CallOutcome, str]] = ...) -> None: ...

class CallReason(_message.Message):
    __slots__ = ("code", "message", "action")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    action: CallAction
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., action: _Optional[_Union[CallAction, str]] = ...) -> None: ...

class CallDecision(_message.Message):
    __slots__ = ("call_id", "action", "reasons", "risk_score", "features", "policy_version", "server_latency_us", "duplicate")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    RISK_SCORE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    action: CallAction
    reasons: _containers.RepeatedCompositeFieldContainer[CallReason]
    risk_score: int
    features: _containers.ScalarMap[str, float]
    policy_version: str
    server_latency_us: int
    duplicate: bool
    def __init__(self, call_id: _Optional[str] = ..., action: _Optional[_Union[CallAction, str]] = ..., reasons: _Optional[_Iterable[_Union[CallReason, _Mapping]]] = ..., risk_score: _Optional[int] = ..., features: _Optional[_Mapping[str, float]] = ..., policy_version: _Optional[str] = ..., server_latency_us: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class EntityRef(_message.Message):
    __slots__ = ("kind", "value")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    kind: EntityKind
    value: str
    def __init__(self, kind: _Optional[_Union[EntityKind, str]] = ..., value: _Optional[str] = ...) -> None: ...

class WatchlistEntry(_message.Message):
    __slots__ = ("entity", "reason", "source", "expires_at")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    entity: EntityRef
    reason: str
    source: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, entity: _Optional[_Union[EntityRef, _Mapping]] = ..., reason: _Optional[str] = ..., source: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateWatchlistRequest(_message.Message):
    __slots__ = ("upsert", "remove")
    UPSERT_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    upsert: _containers.RepeatedCompositeFieldContainer[WatchlistEntry]
    remove: _containers.RepeatedCompositeFieldContainer[EntityRef]
    def __init__(self, upsert: _Optional[_Iterable[_Union[WatchlistEntry, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[EntityRef, _Mapping]]] = ...) -> None: ...

class UpdateWatchlistResponse(_message.Message):
    __slots__ = ("added", "replaced", "removed", "not_found")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    added: int
    replaced: int
    removed: int
    not_found: int
    def __init__(self, added: _Optional[int] = ..., replaced: _Optional[int] = ..., removed: _Optional[int] = ..., not_found: _Optional[int] = ...) -> None: ...

class QueryAccountRequest(_message.Message):
    __slots__ = ("account_id", "recent_decisions_limit")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_DECISIONS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    recent_decisions_limit: int
    def __init__(self, account_id: _Optional[str] = ..., recent_decisions_limit: _Optional[int] = ...) -> None: ...

class CaseMark(_message.Message):
    __slots__ = ("role", "marked_at", "expires_at", "transaction_id", "reason_codes", "mule_level", "source", "note")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MARKED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_CODES_FIELD_NUMBER: _ClassVar[int]
    MULE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    role: CaseRole
    marked_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    transaction_id: str
    reason_codes: _containers.RepeatedScalarFieldContainer[str]
    mule_level: int
    source: str
    note: str
    def __init__(self, role: _Optional[_Union[CaseRole, str]] = ..., marked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., transaction_id: _Optional[str] = ..., reason_codes: _Optional[_Iterable[str]] = ..., mule_level: _Optional[int] = ..., source: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class AccountReport(_message.Message):
    __slots__ = ("account_id", "known", "features", "risk_score", "recent_decisions", "watchlist_hits", "first_seen", "last_seen", "case_marks")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    RISK_SCORE_FIELD_NUMBER: _ClassVar[int]
    RECENT_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    WATCHLIST_HITS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    CASE_MARKS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    known: bool
    features: _containers.ScalarMap[str, float]
    risk_score: int
    recent_decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    watchlist_hits: _containers.RepeatedCompositeFieldContainer[WatchlistEntry]
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    case_marks: _containers.RepeatedCompositeFieldContainer[CaseMark]
    def __init__(self, account_id: _Optional[str] = ..., known: _Optional[bool] = ..., features: _Optional[_Mapping[str, float]] = ..., risk_score: _Optional[int] = ..., recent_decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., watchlist_hits: _Optional[_Iterable[_Union[WatchlistEntry, _Mapping]]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., case_marks: _Optional[_Iterable[_Union[CaseMark, _Mapping]]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("account_id", "transaction_id", "verdict", "note", "expires_at")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    transaction_id: str
    verdict: FeedbackVerdict
    note: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., verdict: _Optional[_Union[FeedbackVerdict, str]] = ..., note: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("accounts_changed", "payee_released")
    ACCOUNTS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PAYEE_RELEASED_FIELD_NUMBER: _ClassVar[int]
    accounts_changed: int
    payee_released: bool
    def __init__(self, accounts_changed: _Optional[int] = ..., payee_released: _Optional[bool] = ...) -> None: ...

class AccountProfile(_message.Message):
    __slots__ = ("account_id", "party_type", "opened_date", "last_active_date", "merchant_category", "payroll", "phone", "institution")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPENED_DATE_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PAYROLL_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    party_type: PartyType
    opened_date: str
    last_active_date: str
    merchant_category: str
    payroll: bool
    phone: str
    institution: str
    def __init__(self, account_id: _Optional[str] = ..., party_type: _Optional[_Union[PartyType, str]] = ..., opened_date: _Optional[str] = ..., last_active_date: _Optional[str] = ..., merchant_category: _Optional[str] = ..., payroll: _Optional[bool] = ..., phone: _Optional[str] = ..., institution: _Optional[str] = ...) -> None: ...

class UpsertAccountsRequest(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[AccountProfile]
    def __init__(self, accounts: _Optional[_Iterable[_Union[AccountProfile, _Mapping]]] = ...) -> None: ...

class UpsertAccountsResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class ExportCaseGraphRequest(_message.Message):
    __slots__ = ("account_id", "phone_number", "transaction_id", "hops", "from_time", "to_time", "max_nodes", "formats")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    phone_number: str
    transaction_id: str
    hops: int
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    max_nodes: int
    formats: _containers.RepeatedScalarFieldContainer[CaseFormat]
    def __init__(self, account_id: _Optional[str] = ..., phone_number: _Optional[str] = ..., transaction_id: _Optional[str] = ..., hops: _Optional[int] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_nodes: _Optional[int] = ..., formats: _Optional[_Iterable[_Union[CaseFormat, str]]] = ...) -> None: ...

class CaseFinding(_message.Message):
    __slots__ = ("detector", "description", "nodes")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    detector: str
    description: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, detector: _Optional[str] = ..., description: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class CaseSummary(_message.Message):
    __slots__ = ("centre", "nodes", "edges", "events", "hops", "from_time", "to_time", "nodes_left_out", "edges_left_out", "hubs_not_expanded", "truncated", "notes", "findings", "identifiers_masked")
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    NODES_LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    EDGES_LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    HUBS_NOT_EXPANDED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_MASKED_FIELD_NUMBER: _ClassVar[int]
    centre: str
    nodes: int
    edges: int
    events: int
    hops: int
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    nodes_left_out: int
    edges_left_out: int
    hubs_not_expanded: _containers.RepeatedScalarFieldContainer[str]
    truncated: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    findings: _containers.RepeatedCompositeFieldContainer[CaseFinding]
    identifiers_masked: bool
    def __init__(self, centre: _Optional[str] = ..., nodes: _Optional[int] = ..., edges: _Optional[int] = ..., events: _Optional[int] = ..., hops: _Optional[int] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nodes_left_out: _Optional[int] = ..., edges_left_out: _Optional[int] = ..., hubs_not_expanded: _Optional[_Iterable[str]] = ..., truncated: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ..., findings: _Optional[_Iterable[_Union[CaseFinding, _Mapping]]] = ..., identifiers_masked: _Optional[bool] = ...) -> None: ...

class CaseGraph(_message.Message):
    __slots__ = ("summary", "graphml", "gexf", "json", "nodes_csv", "edges_csv", "png", "svg")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    GRAPHML_FIELD_NUMBER: _ClassVar[int]
    GEXF_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    NODES_CSV_FIELD_NUMBER: _ClassVar[int]
    EDGES_CSV_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    SVG_FIELD_NUMBER: _ClassVar[int]
    summary: CaseSummary
    graphml: bytes
    gexf: bytes
    json: bytes
    nodes_csv: bytes
    edges_csv: bytes
    png: bytes
    svg: bytes
    def __init__(self, summary: _Optional[_Union[CaseSummary, _Mapping]] = ..., graphml: _Optional[bytes] = ..., gexf: _Optional[bytes] = ..., json: _Optional[bytes] = ..., nodes_csv: _Optional[bytes] = ..., edges_csv: _Optional[bytes] = ..., png: _Optional[bytes] = ..., svg: _Optional[bytes] = ...) -> None: ...

class LargeValueReportRequest(_message.Message):
    __slots__ = ("report_date", "institutions")
    REPORT_DATE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTIONS_FIELD_NUMBER: _ClassVar[int]
    report_date: str
    institutions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, report_date: _Optional[str] = ..., institutions: _Optional[_Iterable[str]] = ...) -> None: ...

class LargeValueRow(_message.Message):
    __slots__ = ("report_date", "account", "institution", "party_type", "category", "direction", "basis", "total_fen", "line_fen", "n_txns", "n_counterparties", "currencies", "transaction_ids", "first_time", "last_time")
    REPORT_DATE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    PARTY_TYPE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    LINE_FEN_FIELD_NUMBER: _ClassVar[int]
    N_TXNS_FIELD_NUMBER: _ClassVar[int]
    N_COUNTERPARTIES_FIELD_NUMBER: _ClassVar[int]
    CURRENCIES_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_FIELD_NUMBER: _ClassVar[int]
    report_date: str
    account: str
    institution: str
    party_type: str
    category: str
    direction: str
    basis: str
    total_fen: int
    line_fen: int
    n_txns: int
    n_counterparties: int
    currencies: _containers.RepeatedScalarFieldContainer[str]
    transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    first_time: _timestamp_pb2.Timestamp
    last_time: _timestamp_pb2.Timestamp
    def __init__(self, report_date: _Optional[str] = ..., account: _Optional[str] = ..., institution: _Optional[str] = ..., party_type: _Optional[str] = ..., category: _Optional[str] = ..., direction: _Optional[str] = ..., basis: _Optional[str] = ..., total_fen: _Optional[int] = ..., line_fen: _Optional[int] = ..., n_txns: _Optional[int] = ..., n_counterparties: _Optional[int] = ..., currencies: _Optional[_Iterable[str]] = ..., transaction_ids: _Optional[_Iterable[str]] = ..., first_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LargeValueReport(_message.Message):
    __slots__ = ("report_date", "rows", "horizon_start", "horizon_end", "timezone_offset_hours", "identifiers_masked", "thresholds_source")
    REPORT_DATE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    HORIZON_END_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_OFFSET_HOURS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_MASKED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    report_date: str
    rows: _containers.RepeatedCompositeFieldContainer[LargeValueRow]
    horizon_start: str
    horizon_end: str
    timezone_offset_hours: int
    identifiers_masked: bool
    thresholds_source: str
    def __init__(self, report_date: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[LargeValueRow, _Mapping]]] = ..., horizon_start: _Optional[str] = ..., horizon_end: _Optional[str] = ..., timezone_offset_hours: _Optional[int] = ..., identifiers_masked: _Optional[bool] = ..., thresholds_source: _Optional[str] = ...) -> None: ...
