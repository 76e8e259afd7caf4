"""ScreenBatch read from its wire bytes: the kernels against their plain-Python reference and
against protobuf's own parse, on labelled streams, arbitrary messages and arbitrary bytes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screening.config import load_settings
from screening.convert import Converter
from screening.offline.messages import to_requests
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb
from screening.wire import WireBatch, read_batch, read_batch_py

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_TEXT = st.one_of(st.just(""), st.text(max_size=12),
                  st.sampled_from(["CNY", "USD", "A0001", "2024-01-31", "a\nb", "+8613800000000"]))


def _columns_of(msg: pb.TransactionBatch) -> dict[str, Any]:
    """What protobuf's parse holds, in the form ``WireBatch`` gives it."""
    ts = list(msg.transactions)
    return {
        "columnar": msg.columnar,
        "texts": {
            "transaction_id": [t.transaction_id for t in ts],
            "payer_account": [t.payer.account_id for t in ts],
            "payer_institution": [t.payer.institution for t in ts],
            "payer_opened_date": [t.payer.account_opened_date for t in ts],
            "payee_account": [t.payee.account_id for t in ts],
            "payee_institution": [t.payee.institution for t in ts],
            "payee_opened_date": [t.payee.account_opened_date for t in ts],
            "currency": [t.amount.currency for t in ts],
            "device_id": [t.device_id for t in ts],
            "payer_phone": [t.payer_phone for t in ts],
            "memo": [t.memo for t in ts],
            "payee_phone": [t.payee_phone for t in ts],
        },
        "ints": {
            "payer_party_type": [t.payer.party_type for t in ts],
            "payee_party_type": [t.payee.party_type for t in ts],
            "minor_units": [t.amount.minor_units for t in ts],
            "channel": [t.channel for t in ts],
        },
        "cash": [t.cash for t in ts],
        "cross_border": [t.cross_border for t in ts],
        "event_time_ms": [t.event_time.seconds * 1000 + t.event_time.nanos // 1_000_000
                          for t in ts],
    }


def _as_dict(w: WireBatch) -> dict[str, Any]:
    return {"columnar": w.columnar, "texts": w.texts, "ints": w.ints, "cash": w.cash,
            "cross_border": w.cross_border, "event_time_ms": w.event_time_ms}


def _check(raw: bytes) -> WireBatch | None:
    """The kernels and the reference agree; what they read is what protobuf parses."""
    got = read_batch(raw)
    assert got == read_batch_py(raw)
    if got is not None:
        assert _as_dict(got) == _columns_of(pb.TransactionBatch.FromString(raw))
    return got


@st.composite
def _party(draw: st.DrawFn) -> pb.Party:
    return pb.Party(account_id=draw(_TEXT), institution=draw(_TEXT),
                    party_type=draw(st.one_of(st.sampled_from([0, 1, 2, 3]), _INT32)),
                    account_opened_date=draw(_TEXT))


@st.composite
def _transaction(draw: st.DrawFn) -> pb.Transaction:
    t = pb.Transaction(
        transaction_id=draw(_TEXT), channel=draw(st.one_of(st.integers(0, 6), _INT32)),
        cash=draw(st.booleans()), cross_border=draw(st.booleans()), device_id=draw(_TEXT),
        payer_phone=draw(_TEXT), memo=draw(_TEXT), payee_phone=draw(_TEXT))
    if draw(st.booleans()):
        t.event_time.seconds = draw(st.one_of(st.integers(0, 4_000_000_000), _INT64))
        t.event_time.nanos = draw(st.one_of(st.integers(0, 999_999_999), _INT32))
    if draw(st.booleans()):
        t.payer.CopyFrom(draw(_party()))
    if draw(st.booleans()):
        t.payee.CopyFrom(draw(_party()))
    if draw(st.booleans()):
        t.amount.minor_units = draw(st.one_of(st.integers(0, 10**12), _INT64))
        t.amount.currency = draw(_TEXT)
    return t


_BATCH = st.builds(lambda ts, c: pb.TransactionBatch(transactions=ts, columnar=c),
                   st.lists(_transaction(), max_size=6), st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BATCH)
def test_any_batch_is_read_as_protobuf_parses_it_or_doubted(batch: pb.TransactionBatch) -> None:
    raw = batch.SerializeToString()
    got = _check(raw)
    texts = _columns_of(batch)["texts"].values()
    no_break = all("\n" not in value for column in texts for value in column)
    # the plain form is read, not doubted: a number out of range, a line break or an empty
    # batch are what is left to protobuf
    in_range = all(t.payer.party_type >= 0 and t.payee.party_type >= 0 and t.channel >= 0
                   and t.amount.minor_units >= 0 and 0 <= t.event_time.seconds < 2**40
                   and 0 <= t.event_time.nanos < 1_000_000_000 for t in batch.transactions)
    assert (got is not None) == (len(batch.transactions) > 0 and no_break and in_range)


@settings(max_examples=300, deadline=None)
@given(_BATCH, st.data())
def test_bytes_changed_at_random_are_read_as_protobuf_parses_them_or_doubted(
        batch: pb.TransactionBatch, data: st.DataObject) -> None:
    raw = bytearray(batch.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "append", "insert"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        elif op == "append":
            raw += data.draw(st.binary(max_size=8))
        else:
            i = data.draw(st.integers(0, len(raw)))
            raw[i:i] = data.draw(st.binary(max_size=4))
    try:
        pb.TransactionBatch.FromString(bytes(raw))
    except DecodeError:
        assert read_batch(bytes(raw)) is None and read_batch_py(bytes(raw)) is None
        return
    _check(bytes(raw))


def test_what_protobuf_keeps_but_the_plain_form_has_not_is_doubted() -> None:
    """Unknown fields, a field twice (protobuf: the last, or merged), a submessage field of
    the wrong wire type: left to protobuf."""
    t = pb.Transaction(transaction_id="t-1", memo="m")
    t.amount.minor_units = 5
    plain = pb.TransactionBatch(transactions=[t]).SerializeToString()
    assert _check(plain) is not None
    inner = t.SerializeToString()
    doubted = [
        plain + b"\x98\x06\x01",  # field 99, varint, at the top
        plain + b"\x10\x01\x10\x00",  # columnar twice
        pb.TransactionBatch(transactions=[pb.Transaction.FromString(inner + b"\x98\x06\x01")])
        .SerializeToString(),  # an unknown field inside a transaction
        b"\x0a" + bytes([len(inner) * 2]) + inner + inner,  # every field of it twice
        b"\x0a\x02\x18\x01",  # the payer (a message) as a varint
    ]
    for raw in doubted:
        assert _check(raw) is None, raw
        pb.TransactionBatch.FromString(raw)  # protobuf takes each of them
    assert _check(b"\x0a\x02\x30\x05") is not None  # channel 5 alone: plain, read
    assert _check(b"") is None  # an empty batch: protobuf's validation names it


def test_an_over_long_tag_or_length_protobuf_refuses_is_doubted() -> None:
    """A tag or length written in more than five bytes: protobuf refuses the message, and the
    reader leaves it to protobuf (which names it), as it does a batch over the row limit."""
    inner = pb.Transaction(transaction_id="t-1").SerializeToString()
    for raw in (b"\x8a\x80\x80\x80\x80\x00" + bytes([len(inner)]) + inner,  # tag 1 in 6 bytes
                b"\x0a" + bytes([0x80 | len(inner)]) + b"\x80\x80\x80\x80\x00" + inner):
        assert _check(raw) is None
        with pytest.raises(DecodeError):
            pb.TransactionBatch.FromString(raw)
    five = b"\x8a\x80\x80\x80\x00" + bytes([len(inner)]) + inner  # 5 bytes: protobuf takes it
    assert _check(five) is not None
    three = pb.TransactionBatch(transactions=[pb.Transaction(transaction_id=f"t-{i}")
                                              for i in range(3)]).SerializeToString()
    assert read_batch(three, max_rows=3) is not None
    assert read_batch(three, max_rows=2) is None and read_batch_py(three, max_rows=2) is None


@pytest.fixture(scope="module")
def stream_bytes() -> list[bytes]:
    frame = generate(SynthConfig(seed=11, n_persons=150, n_organisations=10, days=7,
                                 scenario_rate=0.2)).events
    txns = [r for r in to_requests(frame) if isinstance(r, pb.Transaction)]
    return [pb.TransactionBatch(transactions=txns[i:i + 250]).SerializeToString()
            for i in range(0, len(txns), 250)]


def test_a_labelled_stream_gives_the_columns_protobuf_gives(stream_bytes: list[bytes]) -> None:
    """Every batch of a labelled stream is read (none doubted), and the checked columns equal
    those of ScreenBatch's protobuf path, transaction for transaction."""
    conv = Converter(load_settings(), load_policy(), lambda: time.time_ns() // 1_000_000)
    for raw in stream_bytes:
        got = _check(raw)
        assert got is not None
        cols = conv.wire_columns(got)
        assert cols is not None
        assert cols == conv.batch_columns(pb.TransactionBatch.FromString(raw))
