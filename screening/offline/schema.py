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
    "GENUINE",
    "KIND_CALL",
    "KIND_TXN",
    "LABELS",
    "LABEL_COLUMNS",
    "LOOKALIKES",
    "NOT_FRAUD",
    "NUMBER_CLASSES",
    "PARTY_TYPES",
    "REGISTRY_PARTY_TYPES",
    "REGISTRY_SCHEMA",
    "SCENARIOS",
]

KIND_TXN = "txn"
KIND_CALL = "call"
PARTY_TYPES = ("person", "organisation", "cash_terminal")
CHANNELS = ("mobile_app", "online_banking", "counter", "atm", "third_party_payment", "qr")
NUMBER_CLASSES = ("mobile", "landline", "virtual_operator", "international", "spoofed_suspect")
# How a call ended, as the operator reports it. One row per call carries the final outcome:
# "answered" with duration_seconds > 0 (talked, then hung up); "unanswered", "rejected" (the callee
# declined) and "blocked" (the operator stopped it) with duration 0; "ringing" (duration 0) is a
# report sent while the call rings. A null outcome keeps the older meaning of the duration alone:
# 0 is ringing, > 0 answered and ended.
CALL_OUTCOMES = ("ringing", "answered", "unanswered", "rejected", "blocked")

# Scenario labels the generator plants ("" is ordinary behaviour). The first six are the original
# families; the later ones each plant a way the fraud escaped screening in an independent test.
SCENARIOS = (
    "telecom_fraud",
    "illegal_fundraising",
    "mule_ring",
    "round_tripping",
    "structuring",
    "large_value_genuine",
    "telecom_fraud_repeat",  # victims who keep paying after a first payment (the fraudster calls back)
    "mule_split_forwarding",  # level-1 mules forward each payment in several pieces within minutes
    "rented_dormant_mule",  # old dormant accounts rented out, waking up to pass victims' money on
    "robocall",  # fresh numbers dialling thousands, mostly unanswered; a few callees become victims
    "pyramid_scheme",  # fixed entry fees up a recruitment tree, a share forwarded up, rebates down
    "ponzi_exit",  # a Ponzi pool moved out in large amounts (controllers' cards, abroad) at the end
    "structuring_thresholds",  # just under every reporting line: cash, transfers, USD, organisations
)
# Benign look-alikes a bank must not alert on, labelled in the same ``scenario`` column. They are
# not fraud: metrics count them apart from SCENARIOS (an alert on them is a false alarm).
LOOKALIKES = (
    "lookalike_shop_settlement",  # a shop's daily takings settled to its owner's personal card
    "lookalike_salary_run",  # an employer (or the boss's card) paying the same staff each month
    "lookalike_courier",  # couriers and delivery riders calling many numbers, mostly answered, short
    "lookalike_family_call",  # a relative calls, then a family transfer follows
    "lookalike_crowdfunding",  # donations for medical bills pooled, then paid to a hospital
    "lookalike_dormant_reactivation",  # a genuinely dormant account woken by its owner
    "lookalike_group_buy",  # a neighbourhood group-buy organiser collecting small sums, paying a supplier
    "lookalike_home_purchase",  # a family pools a down payment, the buyer pays the developer at once
)
LABELS = SCENARIOS + LOOKALIKES
# Planted scenarios that are not fraud: genuine activity the regulation wants reported (a
# large-value report), not alerted. Metrics count an alert on them as a false alarm.
GENUINE = ("large_value_genuine",)
NOT_FRAUD = LOOKALIKES + GENUINE

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
    "payee_phone": pl.String(),  # the payee's phone where the payer's bank knows it, else null
    "memo": pl.String(),
    # calls (null on transactions)
    "caller_number": pl.String(),
    "callee_number": pl.String(),
    "duration_seconds": pl.Int64(),
    "call_outcome": pl.String(),  # one of CALL_OUTCOMES; null: the legacy meaning of the duration
    "caller_class": pl.String(),
}

# Optional label columns of a labelled stream (the generator writes them; replay reads them).
LABEL_COLUMNS: dict[str, pl.DataType] = {
    "scenario": pl.String(),  # "" for ordinary events, else one of LABELS
    "scenario_id": pl.Int64(),  # -1 for ordinary events; one id per planted case
}

# Per-account labels written beside a labelled stream.
ACCOUNT_LABEL_SCHEMA: dict[str, pl.DataType] = {
    "account": pl.String(),
    "scenario": pl.String(),
    "scenario_id": pl.Int64(),
    # victim, mule, mule_level2, mule_level3, cashout, fraud_caller, robocaller, collector,
    # controller, investor, recruiter, member, structurer, ... ; look-alikes: lookalike (the account
    # whose own behaviour is the look-alike), lookalike_caller (its phone), lookalike_party
    "role": pl.String(),
}

REGISTRY_PARTY_TYPES = ("person", "organisation")

# What an institution knows of its own customers' accounts, loaded beside the events (one row per
# account; terminals and accounts abroad are not customers of a reporting institution).
REGISTRY_SCHEMA: dict[str, pl.DataType] = {
    "account": pl.String(),
    "institution": pl.String(),
    "party_type": pl.String(),  # one of REGISTRY_PARTY_TYPES
    "opened_date": pl.Date(),
    "last_active_date": pl.Date(),  # last activity before the event window; null when unknown
    "merchant_category": pl.String(),  # set for merchants and shops, else null
    "payroll": pl.Boolean(),  # the account pays salaries (a payroll agreement with the bank)
    "phone": pl.String(),  # phone on file, null when none
}
