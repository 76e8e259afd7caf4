"""Event-file rows as API requests: send a file to a live server exactly as banks would.

Used to check that replay and the live service decide alike, and to drive load in benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from screening.client import call_event, transaction
from screening.offline.schema import CALL_OUTCOMES, CHANNELS, KIND_TXN, NUMBER_CLASSES, PARTY_TYPES
from screening.v1 import screening_pb2 as pb

__all__ = ["to_requests"]


def _ms(value: object) -> int:
    return int(value.timestamp() * 1000)  # type: ignore[attr-defined]


def to_requests(frame: pl.DataFrame) -> Iterator[pb.Transaction | pb.CallEvent]:
    """One request per row, in the frame's order (calls report their final duration once)."""
    for r in frame.iter_rows(named=True):
        when = _ms(r["event_time"])
        if r["kind"] == KIND_TXN:
            yield transaction(
                r["event_id"], when, r["payer_account"], r["payee_account"], r["amount_minor"],
                currency=r["currency"],
                channel=CHANNELS.index(r["channel"]) + 1,
                payer_type=PARTY_TYPES.index(r["payer_party_type"]) + 1,
                payee_type=PARTY_TYPES.index(r["payee_party_type"]) + 1,
                payer_opened=r["payer_opened_date"].isoformat() if r["payer_opened_date"] else "",
                payee_opened=r["payee_opened_date"].isoformat() if r["payee_opened_date"] else "",
                institution=r["payer_institution"] or "",
                cash=bool(r["cash"]), cross_border=bool(r["cross_border"]),
                device_id=r["device_id"] or "", payer_phone=r["payer_phone"] or "",
                memo=r["memo"] or "", payee_phone=r.get("payee_phone") or "",
            )
        else:
            yield call_event(r["event_id"], when, r["caller_number"], r["callee_number"],
                             duration_seconds=int(r["duration_seconds"]),
                             caller_class=NUMBER_CLASSES.index(r["caller_class"]) + 1,
                             outcome=(CALL_OUTCOMES.index(r["call_outcome"]) + 1
                                      if r.get("call_outcome") else 0))
