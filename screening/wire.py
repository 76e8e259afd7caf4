"""A ScreenBatch request read straight from its wire bytes into columns.

Reading a ``TransactionBatch`` field by field through protobuf's Python objects cost about 7 µs
per transaction (a Python object per message and per field read), over twenty times the parse
itself: most of the bulk path's time before the engine. Here two small Numba kernels walk the
protobuf wire format instead: one finds where each field of each transaction lies in the
bytes, one gathers each text field of the batch into one buffer, a line break between two
values, which Python decodes and splits once per column.

They read only the plain form: the fields of ``screening.v1`` as written by a protobuf encoder,
each at most once per message. Anything else (an unknown or repeated field, a wire type that is
not the field's, a number out of its type's range, a line break inside a text, bytes that are
not UTF-8, an empty batch) is *doubted*: ``read_batch`` returns None and the caller parses the
message with protobuf as before, which accepts it or names the problem. A doubt costs speed,
never a different answer. ``read_batch_py`` runs the same steps as plain Python: the reference
the kernels are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

__all__ = ["INTS", "KERNELS", "TEXTS", "WireBatch", "read_batch", "read_batch_py"]

# The text fields of a transaction, in the order of the spans (Party fields for payer, payee).
TEXTS = ("transaction_id", "payer_account", "payer_institution", "payer_opened_date",
         "payee_account", "payee_institution", "payee_opened_date", "currency", "device_id",
         "payer_phone", "memo", "payee_phone")
# The number fields of a transaction, in the order of the ints' columns.
INTS = ("seconds", "nanos", "payer_party_type", "payee_party_type", "minor_units", "channel",
        "cash", "cross_border")
_N_TEXT, _N_INT = len(TEXTS), len(INTS)
_T_ID, _T_PAYER, _T_PAYEE, _T_CURRENCY, _T_DEVICE = 0, 1, 4, 7, 8
_I_SECONDS, _I_NANOS, _I_PAYER_TYPE, _I_PAYEE_TYPE, _I_MINOR = 0, 1, 2, 3, 4
_I_CHANNEL, _I_CASH, _I_CROSS = 5, 6, 7

_OK, _DOUBT = 0, 1
_VARINT, _LEN = 0, 2
_INT32_TOP = 1 << 31
_SECONDS_TOP = 1 << 40  # far past the last second a Timestamp may hold (year 9999)
_NEWLINE = 10

# no allocation inside (the caller allocates every array): no runtime needed
_FLAGS: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False}
_jit: Any = njit(**_FLAGS)
_helper: Any = njit(inline="always", **_FLAGS)


def _varint_upto(buf: np.ndarray, pos: int, end: int, max_shift: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos`` read in bytes of 7 bits up to
    ``max_shift`` bits; position -1 when it runs past ``end`` or over that."""
    value = 0
    shift = 0
    while pos < end and shift < max_shift:
        b = int(buf[pos])
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    return 0, -1


def _varint(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """``_varint_upto`` of at most 9 bytes (63 bits: a value the fields here take is smaller,
    and a negative number takes 10)."""
    return _varint_upto(buf, pos, end, 63)


def _small(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """A tag or a length: a varint of at most 5 bytes and below 2**31 (protobuf refuses a
    longer tag or length; a larger tag is no field of these messages), position -1 otherwise."""
    value, pos = _varint_upto(buf, pos, end, 35)
    return (value, pos) if pos >= 0 and value < _INT32_TOP else (0, -1)


def _length(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of the length-delimited value at ``pos``; start -1 when it does not fit."""
    n, pos = _small(buf, pos, end)
    if pos < 0 or n < 0 or n > end - pos:
        return -1, -1
    return pos, pos + n


def _field(buf: np.ndarray, pos: int, end: int, seen: int, last: int) -> tuple[int, int, int, int]:
    """The next field of a message: (number, wire type, position after its tag, ``seen`` with
    its bit); position -1 when the tag is unreadable, its number not 1..``last``, or seen before
    (protobuf would take the last, or merge: left to it)."""
    tag, pos = _small(buf, pos, end)
    field = tag >> 3
    if pos < 0 or field < 1 or field > last or seen & (1 << field):
        return 0, 0, -1, seen
    return field, tag & 7, pos, seen | (1 << field)


def _party(buf: np.ndarray, pos: int, end: int, spans: np.ndarray, ints: np.ndarray, row: int,
           text0: int, int_col: int) -> int:
    """Read a Party at [pos, end) into its three text spans and party type; _DOUBT or _OK."""
    seen = 0
    while pos < end:
        field, wire, pos, seen = _field(buf, pos, end, seen, 4)
        if pos < 0:
            return _DOUBT
        if field == 3:
            if wire != _VARINT:
                return _DOUBT
            value, pos = _varint(buf, pos, end)
            if pos < 0 or value < 0 or value >= _INT32_TOP:
                return _DOUBT
            ints[row, int_col] = value
            continue
        if wire != _LEN:
            return _DOUBT
        start, stop = _length(buf, pos, end)
        if start < 0:
            return _DOUBT
        col = text0 + (field - 1 if field < 3 else 2)  # account, institution, opened date
        spans[row, col, 0] = start
        spans[row, col, 1] = stop
        pos = stop
    return _OK


def _transaction(buf: np.ndarray, pos: int, end: int, spans: np.ndarray, ints: np.ndarray,
                 row: int) -> int:
    """Read one Transaction at [pos, end) into row ``row``; _DOUBT or _OK."""
    seen = 0
    while pos < end:
        field, wire, pos, seen = _field(buf, pos, end, seen, 12)
        if pos < 0:
            return _DOUBT
        if 6 <= field <= 8:  # channel, cash, cross_border
            if wire != _VARINT:
                return _DOUBT
            value, pos = _varint(buf, pos, end)
            if pos < 0:
                return _DOUBT
            if field == 6:
                if value < 0 or value >= _INT32_TOP:
                    return _DOUBT
                ints[row, _I_CHANNEL] = value
            else:
                ints[row, _I_CASH if field == 7 else _I_CROSS] = 1 if value != 0 else 0
            continue
        if wire != _LEN:
            return _DOUBT
        start, stop = _length(buf, pos, end)
        if start < 0:
            return _DOUBT
        pos = stop
        if field == 1 or field >= 9:
            col = _T_ID if field == 1 else _T_DEVICE + field - 9
            spans[row, col, 0] = start
            spans[row, col, 1] = stop
        elif field == 2:  # google.protobuf.Timestamp
            at = start
            got = 0
            while at < stop:
                sub, sub_wire, at, got = _field(buf, at, stop, got, 2)
                if at < 0 or sub_wire != _VARINT:
                    return _DOUBT
                value, at = _varint(buf, at, stop)
                if at < 0 or value >= (_INT32_TOP if sub == 2 else _SECONDS_TOP):
                    return _DOUBT
                ints[row, _I_SECONDS if sub == 1 else _I_NANOS] = value
        elif field == 5:  # Money
            at = start
            got = 0
            while at < stop:
                sub, sub_wire, at, got = _field(buf, at, stop, got, 2)
                if at < 0:
                    return _DOUBT
                if sub == 1:
                    if sub_wire != _VARINT:
                        return _DOUBT
                    value, at = _varint(buf, at, stop)
                    if at < 0 or value < 0:
                        return _DOUBT
                    ints[row, _I_MINOR] = value
                else:
                    if sub_wire != _LEN:
                        return _DOUBT
                    s0, s1 = _length(buf, at, stop)
                    if s0 < 0:
                        return _DOUBT
                    spans[row, _T_CURRENCY, 0] = s0
                    spans[row, _T_CURRENCY, 1] = s1
                    at = s1
        elif field == 3:
            if _party(buf, start, stop, spans, ints, row, _T_PAYER, _I_PAYER_TYPE) != _OK:
                return _DOUBT
        elif _party(buf, start, stop, spans, ints, row, _T_PAYEE, _I_PAYEE_TYPE) != _OK:
            return _DOUBT
    return _OK


def _count(buf: np.ndarray) -> int:
    """Transactions in the batch; -1 when the top level is not the plain form."""
    pos, end, n = 0, len(buf), 0
    seen_columnar = False
    while pos < end:
        tag, pos = _small(buf, pos, end)
        if pos < 0:
            return -1
        if tag == (1 << 3 | _LEN):
            start, stop = _length(buf, pos, end)
            if start < 0:
                return -1
            pos = stop
            n += 1
        elif tag == (2 << 3 | _VARINT) and not seen_columnar:
            seen_columnar = True
            _, pos = _varint(buf, pos, end)
            if pos < 0:
                return -1
        else:
            return -1
    return n


def _scan(buf: np.ndarray, spans: np.ndarray, ints: np.ndarray) -> int:
    """Fill ``spans`` (n, texts, 2) and ``ints`` (n, ints), zeroed by the caller, for a batch
    ``_count`` accepted; returns 1 + the columnar flag, or 0 for a doubt. Also 0 when a text
    holds a line break (the column separator)."""
    pos, end, row = 0, len(buf), 0
    columnar = 0
    while pos < end:
        tag, pos = _small(buf, pos, end)
        if tag == (1 << 3 | _LEN):
            start, stop = _length(buf, pos, end)
            if _transaction(buf, start, stop, spans, ints, row) != _OK:
                return 0
            row += 1
            pos = stop
        else:
            value, pos = _varint(buf, pos, end)
            columnar = 1 if value != 0 else 0
    for r in range(spans.shape[0]):
        for c in range(spans.shape[1]):
            for i in range(spans[r, c, 0], spans[r, c, 1]):
                if buf[i] == _NEWLINE:
                    return 0
    return 1 + columnar


def _gather(buf: np.ndarray, spans: np.ndarray, col: int, out: np.ndarray) -> int:
    """Text column ``col`` into ``out``: the values one after another, a line break between two;
    returns the bytes written."""
    at = 0
    for r in range(spans.shape[0]):
        if r:
            out[at] = _NEWLINE
            at += 1
        for i in range(spans[r, col, 0], spans[r, col, 1]):
            out[at] = buf[i]
            at += 1
    return at


def _jitted(func: Any, **names: Any) -> Any:
    """``func`` compiled with the helpers it calls replaced by their jitted twins."""
    glb = dict(func.__globals__, **names)
    return type(func)(func.__code__, glb, func.__name__, func.__defaults__, func.__closure__)


_varint_upto_jit = _helper(_varint_upto)
_varint_jit = _helper(_jitted(_varint, _varint_upto=_varint_upto_jit))
_small_jit = _helper(_jitted(_small, _varint_upto=_varint_upto_jit))
_length_jit = _helper(_jitted(_length, _small=_small_jit))


_field_jit = _helper(_jitted(_field, _small=_small_jit))
_party_jit = _helper(_jitted(_party, _varint=_varint_jit, _field=_field_jit, _length=_length_jit))
_transaction_jit = _helper(_jitted(_transaction, _varint=_varint_jit, _field=_field_jit,
                                   _length=_length_jit, _party=_party_jit))
_count_jit = _jit(_jitted(_count, _varint=_varint_jit, _small=_small_jit, _length=_length_jit))
_scan_jit = _jit(_jitted(_scan, _varint=_varint_jit, _small=_small_jit, _length=_length_jit,
                         _transaction=_transaction_jit))
_gather_jit = _jit(_gather)
KERNELS = (_count_jit, _scan_jit, _gather_jit)


@dataclass(frozen=True, slots=True)
class WireBatch:
    """A TransactionBatch read from its bytes: its columns (unchecked: ``Converter`` checks
    them), the reply form asked for, and the bytes (protobuf parses them when the checks
    doubt)."""

    raw: bytes
    columnar: bool
    texts: dict[str, list[str]]
    ints: dict[str, list[int]]  # party types, minor units, channel
    cash: list[bool]
    cross_border: list[bool]
    event_time_ms: list[int]

    def __len__(self) -> int:
        return len(self.texts["transaction_id"])


def _read(raw: bytes, max_rows: int, count: Any, scan: Any, gather: Any) -> WireBatch | None:
    buf = np.frombuffer(raw, dtype=np.uint8)
    n = count(buf)
    if n <= 0 or n > max_rows:  # too many: refused by the checks before, nothing allocated
        return None
    spans = np.zeros((n, _N_TEXT, 2), dtype=np.int64)
    ints = np.zeros((n, _N_INT), dtype=np.int64)
    got = scan(buf, spans, ints)
    if got == 0:
        return None
    sizes = (spans[:, :, 1] - spans[:, :, 0]).sum(axis=0)
    out = np.empty(int(sizes.max()) + n, dtype=np.uint8)
    view = memoryview(out)  # type: ignore[arg-type]
    texts: dict[str, list[str]] = {}
    try:
        for c, name in enumerate(TEXTS):
            if sizes[c] == 0:
                texts[name] = [""] * n
                continue
            size = gather(buf, spans, c, out)
            texts[name] = str(view[:size], "utf-8").split("\n")
    except UnicodeDecodeError:
        return None  # protobuf refuses it, naming the request
    nanos = ints[:, _I_NANOS]
    if nanos.max() >= 1_000_000_000:
        return None
    ms = (ints[:, _I_SECONDS] * 1000 + nanos // 1_000_000).tolist()
    values = dict(zip(INTS[2:6], ints[:, 2:6].T.tolist(), strict=True))
    flags = ints[:, _I_CASH:].astype(np.bool_).T.tolist()
    return WireBatch(raw, got == 2, texts, values, flags[0], flags[1], ms)


def read_batch(raw: bytes, max_rows: int = 10_000) -> WireBatch | None:
    """The columns of the TransactionBatch ``raw``; None when the kernels doubt, or it holds
    more than ``max_rows`` transactions (parse it with protobuf then, which names the problem)."""
    return _read(raw, max_rows, _count_jit, _scan_jit, _gather_jit)


def read_batch_py(raw: bytes, max_rows: int = 10_000) -> WireBatch | None:
    """``read_batch`` as plain Python (the same steps, not compiled): the kernels' reference."""
    return _read(raw, max_rows, _count, _scan, _gather)
