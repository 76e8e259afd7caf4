"""The request fingerprint: stable across processes, equal for equal requests, and able to name
the field group a different request changed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from screening.idempotency import (
    FINGERPRINT_BYTES,
    differing_field,
    differing_input,
    fingerprint,
    same_fingerprint,
    same_payment,
)
from screening.model import DecisionRecord, Party, TxnInput

BASE = TxnInput("t-1", 1_700_000_000_000, Party("6222000011112222", "ICBC", 1, 1_400_000_000_000),
                Party("6217000033334444", "CCB", 2, None), 123_456, "CNY", 123_456, 3, False, True,
                "dev-1", "+8613800001111", "rent")


def _record(t: TxnInput) -> DecisionRecord:
    return DecisionRecord(t.transaction_id, 0, t.event_time_ms, 1, 0, 0, 0, (), "p", 0, False,
                          t.payer.account_id, t.payee.account_id, "bank-a", fingerprint(t))


def test_fingerprint_is_the_same_in_every_process() -> None:
    """A checkpoint outlives the process: the value may not depend on hash randomisation
    (a golden value; change it only with the checkpoint format version)."""
    assert fingerprint(BASE).hex() == "e8155517e83577674c83d4030258454a"
    assert len(fingerprint(BASE)) == FINGERPRINT_BYTES
    assert fingerprint(replace(BASE, transaction_id="t-2")) == fingerprint(BASE)


@pytest.mark.parametrize(("change", "field"), [
    ({"payer": replace(BASE.payer, account_id="6222000099998888")}, "payer"),
    ({"payer": replace(BASE.payer, institution="ABC")}, "payer"),
    ({"payer": replace(BASE.payer, opened_ms=None)}, "payer"),
    ({"payee": replace(BASE.payee, party_type=1)}, "payee"),
    ({"amount_minor": 123_457}, "amount"),
    ({"currency": "USD"}, "amount"),
    ({"event_time_ms": BASE.event_time_ms + 1}, "event_time"),
    ({"channel": 4}, "channel"),
    ({"cash": True}, "cash or cross_border"),
    ({"cross_border": False}, "cash or cross_border"),
    ({"device_id": "dev-2"}, "device_id"),
    ({"payer_phone": ""}, "payer_phone"),
    ({"memo": "rent."}, "memo"),
])
def test_each_field_is_bound_and_named(change: dict[str, object], field: str) -> None:
    other = replace(BASE, **change)  # type: ignore[arg-type]
    fp = fingerprint(other)
    assert not same_fingerprint(fp, fingerprint(BASE))
    assert not same_payment(_record(BASE), other, fp)
    assert differing_field(_record(BASE), other, fp) == field
    assert differing_input(BASE, other) == field


def test_a_record_without_fingerprint_is_compared_by_what_it_holds() -> None:
    """Records of format-1 checkpoints: payer, payee and event time decide."""
    legacy = replace(_record(BASE), fingerprint=b"")
    assert same_payment(legacy, replace(BASE, memo="other"), fingerprint(BASE))
    other = replace(BASE, event_time_ms=1)
    assert not same_payment(legacy, other, fingerprint(other))
    assert differing_field(legacy, other, fingerprint(other)) == "event_time"
