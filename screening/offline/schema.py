"""The event file schema: one row per transaction or call, as Parquet or CSV.

The columns mirror the gRPC messages (``Transaction`` and ``CallEvent``) so that a file replayed
offline and the same events sent to the live service mean the same thing. Enum columns hold the
lower-case proto value name without its prefix (``PARTY_TYPE_PERSON`` -> ``person``).
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "ACCOUNT_LABEL_SCHEMA",
    "CALL_OUTCOMES",
    "CHANNELS",
    "EVENT_SCHEMA",
    "KIND_CALL",
    "KIND_TXN",
    "LABEL_COLUMNS",
    "NUMBER_CLASSES",
    "PARTY_TYPES",
    "REGISTRY_SCHEMA",
    "SCENARIOS",
]

KIND_TXN = "txn"
KIND_CALL = "call"
PARTY_TYPES = ("person", "organisation", "cash_terminal")
CHANNELS = ("mobile_app", "online_banking", "counter", "atm", "third_party_payment", "qr")
NUMBER_CLASSES = ("mobile", "landline", "virtual_operator", "international", "spoofed_suspect")
CALL_OUTCOMES = ("ringing", "answered", "unanswered", "rejected", "blocked")

# Scenario labels the generator plants ("" is ordinary behaviour).
SCENARIOS = (
    "telecom_fraud",
    "illegal_fundraising",
    "mule_ring",
    "round_tripping",
    "structuring",
    "large_value_genuine",
)

_UTC_MS = pl.Datetime("ms", "UTC")

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),  # transaction_id or call_id
    "kind": pl.String(),  # "txn" | "call"
    "event_time": _UTC_MS,  # Transaction.event_time / CallEvent.start_time
    # transactions (null on calls)
    "payer_account": pl.String(),
    "payer_institution": pl.String(),
    "payer_party_type": pl.String(),
    "payer_opened_date": pl.Date(),
    "payee_account": pl.String(),
    "payee_institution": pl.String(),
    "payee_party_type": pl.String(),
    "payee_opened_date": pl.Date(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "channel": pl.String(),
    "cash": pl.Boolean(),
    "cross_border": pl.Boolean(),
    "device_id": pl.String(),
    "payer_phone": pl.String(),
    "memo": pl.String(),
    # calls (null on transactions)
    "caller_number": pl.String(),
    "callee_number": pl.String(),
    "duration_seconds": pl.Int64(),
    "caller_class": pl.String(),
    # optional: the payee's phone (transactions), how the call went (calls; null: inferred from
    # duration_seconds, 0 ringing, > 0 answered and ended)
    "payee_phone": pl.String(),
    "call_outcome": pl.String(),
}

# Optional label columns of a labelled stream (the generator writes them; replay reads them).
LABEL_COLUMNS: dict[str, pl.DataType] = {
    "scenario": pl.String(),  # "" for ordinary events, else one of SCENARIOS
    "scenario_id": pl.Int64(),  # -1 for ordinary events; one id per planted case
}

# Per-account labels written beside a labelled stream.
ACCOUNT_LABEL_SCHEMA: dict[str, pl.DataType] = {
    "account": pl.String(),
    "scenario": pl.String(),
    "scenario_id": pl.Int64(),
    "role": pl.String(),  # victim, mule, collector, investor, ring_member, structurer, ...
}

# The account registry (``registry.parquet`` beside the events; ``screening accounts load``):
# what a bank knows of its customers. Null: unknown.
REGISTRY_SCHEMA: dict[str, pl.DataType] = {
    "account": pl.String(),
    "institution": pl.String(),
    "party_type": pl.String(),  # person | organisation
    "opened_date": pl.Date(),
    "last_active_date": pl.Date(),  # last activity before the events (dormancy)
    "merchant_category": pl.String(),  # set: a merchant
    "payroll": pl.Boolean(),  # the account pays salaries
    "phone": pl.String(),  # on file
}
