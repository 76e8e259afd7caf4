"""The checkpoint format: a versioned, checksummed container of .npy arrays, Arrow tables, JSON.

    offset 0    b"SCRNCKPT"              magic
           8    u16 little-endian        format version (``FORMAT_VERSION``)
          10    u32 little-endian        header length H
          14    32 bytes                 sha256 of the header
          46    H bytes, JSON            the header
      46 + H    the parts, back to back (offsets in the header count from here)

The header holds the format version, when the checkpoint was taken, the policy version, the
last watchlist-journal entry it includes, counts (accounts, phones, devices, relationships,
graph edges, decisions, calls, watchlist entries) and, per part, its name, kind, offset, size
and sha256. Arrays are ``.npy`` (exactly ``np.save``'s bytes, read back with
``np.load(allow_pickle=False)``); id lists and records are Arrow IPC streams; the rest is
JSON. Nothing is ever unpickled: the store is a trust boundary. A checkpoint of another format
version, or one whose header or any part fails its checksum, is refused with a
``CheckpointError`` naming the file or key.

Versions: 2 added the calling institution (``scope``) and the request fingerprint to each
remembered decision, and the scope to each remembered call; decision memory (more account and
phone columns, a phone count channel, ``features.meta`` in place of ``features.pair_meta``, each
decision's ``marks``, a ``feedback`` part) and the report ledger (``ledger.*`` parts). Version 1
is still read: its feature arrays are widened with the new columns' empty values, its
decisions and calls restore in the default scope without fingerprints or marks (a repeated id is
then compared by payer, payee and event time, see ``screening.idempotency``), and it has no
feedback and no ledger. In version 2 an id list may also hold the empty string: a free id (an
entity evicted at a cap, whose id the next new entity gets; ``screening.engine.Interner``).
A version-2 checkpoint without the ledger parts restores with an empty ledger (the restore says
so); one with only some of them is refused. The ``registry.owners`` part (account, institution:
the owner of each account registry entry) came later within version 2: a checkpoint without it
restores every entry ownerless (the first institution to upsert one owns it). So did the
``reason_bits_high`` column of the decision and call records (rules 63 and up, for policies of
more than 63 rules; written only when a record of the part fired one, so that an earlier build
still reads the checkpoint of a smaller policy): a part without it has none of those rules fired.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import math
import struct
import typing
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from features import _kernels as k
from features.layout import join_reasons, split_reasons
from features.state import TIME_MAX_MS, TIME_MIN_MS, FeatureState
from screening.engine import CallEntry, EngineSnapshot
from screening.errors import CheckpointError
from screening.idempotency import DEFAULT_SCOPE
from screening.ledger import LedgerSnapshot
from screening.model import (
    NEVER,
    AccountProfile,
    CallRecord,
    DecisionRecord,
    Feedback,
    WatchEntry,
)
from screening.store._base import CheckpointReader, Piece

__all__ = ["FORMAT_VERSION", "LEDGER_PARTS", "Encoded", "Header", "PartInfo", "decode",
           "decode_ledger", "encode", "feedback_row", "parse_feedback_row", "parse_kind",
           "parse_profile_row", "parse_watch_row", "profile_row", "read_header", "watch_row"]

FORMAT_VERSION = 2
#: versions this build reads (and what each lacks: see the module docstring)
READ_VERSIONS = (1, 2)
# fields of a decision record and columns of the calls part that version 1 did not have
_V1_MISSING = {"scope": DEFAULT_SCOPE, "fingerprint": b"", "marks": 0}
MAGIC = b"SCRNCKPT"
_PREFIX = struct.Struct("<8sHI32s")
_MAX_HEADER = 64 << 20
_NPY_MAGIC = b"\x93NUMPY"
LEDGER_PARTS = ("ledger.meta", "ledger.days", "ledger.rows", "ledger.ids", "ledger.names")


@dataclass(frozen=True)
class PartInfo:
    name: str
    kind: str  # "npy" | "arrow" | "json"
    offset: int  # in the header: from the first part; once read: from the container's start
    size: int
    sha256: str


@dataclass(frozen=True)
class Header:
    """What a checkpoint says about itself (read without reading the parts)."""

    where: str
    format: int
    created_ms: int
    policy_version: str
    journal_seq: int
    counts: dict[str, int]
    parts: tuple[PartInfo, ...]
    size: int
    # the last event-journal entry the checkpoint includes (0: none, or an earlier build)
    event_seq: int = 0


@dataclass(frozen=True)
class Encoded:
    """A checkpoint ready to write: ``pieces`` concatenated are the container's bytes."""

    pieces: list[Piece]
    size: int
    counts: dict[str, int]


# ------------------------------------------------------------------ encoding
def encode(snap: EngineSnapshot) -> Encoded:
    """The checkpoint of ``snap``. Arrays are not copied (memoryviews of the snapshot's)."""
    parts: list[tuple[str, str, list[Piece]]] = [
        ("meta", "json", _json({"next_seq": snap.next_seq, "capacities": snap.capacities})),
        ("ids.accounts", "arrow", _ids(snap.accounts)),
        ("ids.phones", "arrow", _ids(snap.phones)),
        ("ids.devices", "arrow", _ids(snap.devices)),
        ("decisions", "arrow", _arrow(_records_table(snap.decisions, DecisionRecord))),
        ("calls", "arrow", _arrow(pa.table(
            {name: pa.array([c[i] for c in snap.calls], pa.large_string())
             for i, name in _CALL_COLUMNS}))),
        ("calls.records", "arrow", _arrow(_call_records(snap.calls))),
        ("watchlist", "json", _json([watch_row(e) for e in snap.watch])),
        ("feedback", "json", _json([[name, *feedback_row(at, fb)] for name, at, fb in snap.feedback])),
        ("registry.owners", "arrow", _arrow(pa.table({
            "account": pa.array([a for a, _ in snap.owners], pa.large_string()),
            "institution": pa.array([i for _, i in snap.owners], pa.large_string())}))),
    ]
    parts += [(name, "npy", _npy(arr)) for name, arr in snap.arrays.items()]
    led = snap.ledger
    if led is not None:
        parts += [("ledger.meta", "npy", _npy(led.meta)), ("ledger.days", "npy", _npy(led.days)),
                  ("ledger.rows", "npy", _npy(led.rows)), ("ledger.ids", "arrow", _ids(led.ids)),
                  ("ledger.names", "json", _json({"institutions": led.institutions,
                                                  "currencies": led.currencies}))]
    infos: list[dict[str, Any]] = []
    offset = 0
    for name, kind, pieces in parts:
        digest = hashlib.sha256()
        size = 0
        for p in pieces:
            digest.update(p)
            size += memoryview(p).nbytes
        infos.append({"name": name, "kind": kind, "offset": offset, "size": size,
                      "sha256": digest.hexdigest()})
        offset += size
    counts = snap.counts()
    header = json.dumps({"format": FORMAT_VERSION, "created_ms": snap.created_ms,
                         "policy_version": snap.policy_version, "journal_seq": snap.journal_seq,
                         "event_seq": snap.event_seq, "counts": counts, "parts": infos}).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), hashlib.sha256(header).digest())
    out: list[Piece] = [prefix, header]
    for _, _, pieces in parts:
        out += pieces
    return Encoded(out, len(prefix) + len(header) + offset, counts)


def _json(obj: object) -> list[Piece]:
    return [json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()]


def _npy(arr: np.ndarray) -> list[Piece]:
    arr = np.ascontiguousarray(arr)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
    return [head.getvalue(), arr.reshape(-1).view(np.uint8).data]


def _arrow(table: pa.Table) -> list[Piece]:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return [memoryview(sink.getvalue())]


def _ids(names: Sequence[str]) -> list[Piece]:
    return _arrow(pa.table({"id": pa.array(names, pa.large_string())}))


_SCALARS = {str: pa.large_string(), int: pa.int64(), bool: pa.bool_(), bytes: pa.binary()}
# a record's reason_bits (one int, bit i: rule i) is two int64 columns: rules 0..62 in
# reason_bits, 63 and up in this one (added within version 2, and written only when one of the
# part's records fired such a rule: a part without it has none)
_HIGH = "reason_bits_high"
# the calls part: (CallEntry index, column), scope last (version 2)
_CALL_COLUMNS = ((0, "call_id"), (1, "caller"), (2, "callee"), (5, "scope"))


def _record_schema(cls: type[Any], extra: dict[str, pa.DataType] | None = None,
                   without: Collection[str] = ()) -> pa.Schema:
    """Arrow columns for records of dataclass ``cls``: ``extra`` first, then one per field
    (``features`` as two list columns, names and values), leaving out the fields ``without``."""
    fields = [pa.field(name, t) for name, t in (extra or {}).items()]
    for name, hint in typing.get_type_hints(cls).items():
        if name in without:
            continue
        if name == "features":
            fields += [pa.field("feature_names", pa.list_(pa.string())),
                       pa.field("feature_values", pa.list_(pa.float64()))]
        else:
            fields.append(pa.field(name, _SCALARS[hint]))
        if name == "reason_bits" and _HIGH not in without:
            fields.append(pa.field(_HIGH, pa.int64()))
    return pa.schema(fields)


def _records_table(records: Sequence[Any], cls: type[Any],
                   extra: dict[str, tuple[pa.DataType, list[Any]]] | None = None) -> pa.Table:
    extra = extra or {}
    # the high reason word only when a rule past the 63rd fired: a checkpoint of a policy of at
    # most 63 rules stays readable by a build from before the second word (a rollback)
    words = [split_reasons(r.reason_bits) for r in records] if hasattr(cls, "reason_bits") else []
    wide = any(high for _, high in words)
    schema = _record_schema(cls, {name: t for name, (t, _) in extra.items()},
                            without=() if wide else (_HIGH,))
    cols: dict[str, pa.Array] = {name: pa.array(v, t) for name, (t, v) in extra.items()}
    for f in dataclasses.fields(cls):
        if f.name == "features":
            # flat values and offsets: most records have no features, so no list per record
            offsets = np.zeros(len(records) + 1, dtype=np.int32)
            np.cumsum([len(r.features) for r in records], out=offsets[1:])
            off = pa.array(offsets, pa.int32())
            cols["feature_names"] = pa.ListArray.from_arrays(
                off, pa.array([n for r in records for n, _ in r.features], pa.string()))
            cols["feature_values"] = pa.ListArray.from_arrays(
                off, pa.array([v for r in records for _, v in r.features], pa.float64()))
        elif f.name == "reason_bits":  # one int per record, two int64 words in the table
            cols[f.name] = pa.array([low for low, _ in words], pa.int64())
            if wide:
                cols[_HIGH] = pa.array([high for _, high in words], pa.int64())
        else:
            cols[f.name] = pa.array([getattr(r, f.name) for r in records],
                                    schema.field(f.name).type)
    return pa.Table.from_pydict(cols, schema=schema)


_CALL_EXTRA = {"call": pa.int64(), "ended": pa.bool_()}


def _call_records(calls: Sequence[CallEntry]) -> pa.Table:
    """One row per call record: the index of its call and whether it is the hang-up report."""
    owner: list[int] = []
    ended: list[bool] = []
    recs: list[CallRecord] = []
    for i, (_, _, _, ringing, hung_up, _) in enumerate(calls):
        for flag, rec in ((False, ringing), (True, hung_up)):
            if rec is not None:
                owner.append(i)
                ended.append(flag)
                recs.append(rec)
    return _records_table(recs, CallRecord, {"call": (pa.int64(), owner),
                                             "ended": (pa.bool_(), ended)})


# ------------------------------------------------------------------ decoding
def read_header(reader: CheckpointReader) -> Header:
    """The header of the checkpoint behind ``reader``, checked (magic, version, checksum)."""
    where = reader.where
    raw = reader.read(0, _PREFIX.size)
    if len(raw) < _PREFIX.size or raw[:8] != MAGIC:
        raise CheckpointError(f"checkpoint {where}: not a screening checkpoint (bad magic bytes)")
    _, version, hlen, digest = _PREFIX.unpack(raw)
    if version not in READ_VERSIONS:
        raise CheckpointError(
            f"checkpoint {where}: format version {version}, this build reads versions "
            f"{', '.join(map(str, READ_VERSIONS))}; move it away (or delete it) to start from an "
            "empty state")
    if hlen > _MAX_HEADER or _PREFIX.size + hlen > reader.size:
        raise CheckpointError(f"checkpoint {where}: corrupted or truncated (header length {hlen}, "
                              f"{reader.size} bytes stored)")
    header = reader.read(_PREFIX.size, hlen)
    if hashlib.sha256(header).digest() != digest:
        raise CheckpointError(f"checkpoint {where}: corrupted (header checksum mismatch)")
    try:
        obj = json.loads(header, parse_constant=_no_constant)
        parts = tuple(PartInfo(str(p["name"]), str(p["kind"]), _int(p["offset"], "offset", 0),
                               _int(p["size"], "size", 0), str(p["sha256"])) for p in obj["parts"])
        if len({p.name for p in parts}) != len(parts):
            raise ValueError("a part name appears twice")
        out = Header(where=where, format=_int(obj["format"], "format"),
                     created_ms=_int(obj["created_ms"], "created_ms"),
                     policy_version=str(obj["policy_version"]),
                     journal_seq=_int(obj["journal_seq"], "journal_seq", 0, 2**53),
                     counts={str(k): _int(v, f"counts.{k}", 0) for k, v in obj["counts"].items()},
                     parts=parts, size=reader.size,
                     event_seq=_int(obj.get("event_seq", 0), "event_seq", 0, 2**53))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {where}: malformed header ({exc})") from None
    if out.format != version:
        raise CheckpointError(f"checkpoint {where}: header says format {out.format}, "
                              f"prefix says {version}")
    body = _PREFIX.size + hlen
    parts = tuple(dataclasses.replace(p, offset=body + p.offset) for p in parts)
    out = dataclasses.replace(out, parts=parts)
    for p in parts:
        if p.offset < body or p.size < 0 or p.offset + p.size > reader.size:
            raise CheckpointError(f"checkpoint {reader.where_at(min(p.offset, reader.size))}: "
                                  f"truncated or corrupted (part {p.name} lies outside the "
                                  f"{reader.size} bytes stored)")
    return out


def decode(reader: CheckpointReader) -> tuple[Header, EngineSnapshot]:
    """Read and check every part; the engine state the checkpoint holds."""
    header = read_header(reader)
    parts, arrays = _read_parts(reader, header, None)
    try:
        snap = _snapshot(header, parts, arrays)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, pa.ArrowException) as exc:
        raise CheckpointError(f"checkpoint {header.where}: inconsistent content ({exc})") from None
    return header, snap


def decode_ledger(reader: CheckpointReader) -> tuple[Header, LedgerSnapshot | None, list[str]]:
    """Only the report ledger and the account ids (what a report needs), checked like
    :func:`decode` (checksums, kinds); None when the checkpoint has no ledger."""
    header = read_header(reader)
    parts, arrays = _read_parts(reader, header, {"ids.accounts", *LEDGER_PARTS})
    try:
        ids_schema = pa.schema([pa.field("id", pa.large_string())])
        accounts = _column(parts, "ids.accounts", ids_schema).column("id").to_pylist()
        ledger = _ledger(parts, arrays)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, pa.ArrowException) as exc:
        raise CheckpointError(f"checkpoint {header.where}: inconsistent content ({exc})") from None
    return header, ledger, accounts


def _read_parts(reader: CheckpointReader, header: Header, names: set[str] | None
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The parts named (None: all), each checked against its checksum: (tables and JSON, arrays)."""
    parts: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for p in header.parts:
        if names is not None and p.name not in names:
            continue
        data = reader.read(p.offset, p.size)
        where = reader.where_at(p.offset)
        if len(data) != p.size:
            raise CheckpointError(f"checkpoint {where}: truncated (part {p.name})")
        if hashlib.sha256(data).hexdigest() != p.sha256:
            raise CheckpointError(f"checkpoint {where}: corrupted (part {p.name} checksum mismatch)")
        try:
            if p.kind == "npy":
                arrays[p.name] = _load_npy(data)
            elif p.kind == "arrow":
                parts[p.name] = _load_arrow(data)
            elif p.kind == "json":
                parts[p.name] = json.loads(data, parse_constant=_no_constant)
            else:
                raise ValueError(f"unknown kind {p.kind!r}")
        except (ValueError, pa.ArrowException) as exc:
            raise CheckpointError(f"checkpoint {where}: part {p.name}: {exc}") from None
    return parts, arrays


def _load_npy(data: bytes) -> np.ndarray:
    """The array in ``data`` (a view, uncopied). The header's shape must account for exactly the
    bytes that follow it, checked before anything is allocated for it."""
    if not data.startswith(_NPY_MAGIC):
        raise ValueError("not a .npy array")
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f".npy version {version} is not read")
    except Exception as exc:  # numpy parses the header as Python literals: tokenizer errors too
        raise ValueError(f"malformed .npy header ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or fortran:
        raise ValueError(f"not a plain numeric C-order array ({dtype}; allow_pickle is off)")
    count = math.prod(shape)
    start = fp.tell()
    if count * dtype.itemsize != len(data) - start:
        raise ValueError(f"shape {list(shape)} of {dtype} needs {count * dtype.itemsize} bytes, "
                         f"{len(data) - start} stored")
    return np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(shape)


def _load_arrow(data: bytes) -> pa.Table:
    table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    table.validate(full=True)
    return table


def _no_high(parts: dict[str, Any], name: str) -> dict[str, int]:
    """``{_HIGH: 0}`` when records part ``name`` has no high reason word (none of its records
    fired a rule past the 63rd, or an earlier build wrote it), else nothing."""
    table = parts.get(name)
    return {} if isinstance(table, pa.Table) and _HIGH in table.column_names else {_HIGH: 0}


def _column(parts: dict[str, Any], name: str, schema: pa.Schema) -> pa.Table:
    table = _part(parts, name, pa.Table)
    if not table.schema.equals(schema):
        raise ValueError(f"part {name}: columns {table.schema.names}, expected {schema.names}")
    if any(col.null_count for col in table.columns):
        raise ValueError(f"part {name}: missing values")
    return table


def _rows(table: pa.Table, cls: type[Any], missing: dict[str, Any] | None = None) -> list[Any]:
    """Records of dataclass ``cls``, one per row; fields named in ``missing`` (columns an older
    version did not have) take the value given there."""
    cols: list[list[Any]] = []
    for f in dataclasses.fields(cls):
        if missing and f.name in missing:
            cols.append([missing[f.name]] * table.num_rows)
        elif f.name == "scope":
            cols.append(_interned(table.column(f.name)))
        elif f.name == "features":
            names = table.column("feature_names").combine_chunks()
            values = table.column("feature_values").combine_chunks()
            if names.null_count or values.null_count or not np.array_equal(
                    names.offsets.to_numpy(), values.offsets.to_numpy()):
                raise ValueError("feature names and values do not pair up")
            offsets = (names.offsets.to_numpy() - names.offsets[0].as_py()).tolist()
            pairs = list(zip(names.flatten().to_pylist(), values.flatten().to_numpy().tolist(),
                             strict=True))
            cols.append([tuple(pairs[a:b]) if b > a else () for a, b in itertools.pairwise(offsets)])
        elif f.name == "reason_bits" and _HIGH in table.column_names:
            cols.append([join_reasons(lo, hi) for lo, hi in zip(
                _pylist(table.column(f.name)), _pylist(table.column(_HIGH)), strict=True)])
        else:
            cols.append(_pylist(table.column(f.name)))
    return [cls(*row) for row in zip(*cols, strict=True)]


def _interned(col: pa.ChunkedArray) -> list[str]:
    """A string column with few distinct values (scopes) as one str object per value, not per row."""
    arr = col.combine_chunks().dictionary_encode()
    names = arr.dictionary.to_pylist()
    return [names[i] for i in arr.indices.to_numpy(zero_copy_only=False).tolist()]


def _pylist(col: pa.ChunkedArray) -> list[Any]:
    """Python values of a column (through numpy for numbers: several times faster)."""
    if col.null_count == 0 and (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
        return list(col.to_numpy().tolist())
    return list(col.to_pylist())


def _part(parts: dict[str, Any], name: str, kind: type) -> Any:
    if name not in parts:
        raise ValueError(f"part {name} missing")
    if not isinstance(parts[name], kind):
        raise ValueError(f"part {name}: a {type(parts[name]).__name__}, expected a {kind.__name__}")
    return parts[name]


def _widen_v1(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Version-1 feature arrays in this build's shapes: the columns decision memory added get
    the values of a fresh row (nothing remembered), and ``pair_meta`` becomes ``meta`` (the
    earliest event time: the earliest first-seen time of any account or phone)."""
    out = dict(arrays)
    widths = {"features.accounts.sc": (k.N_ACC_SCALAR, 16), "features.phones.sc": (k.N_PHONE_SCALAR, 6)}
    fresh = {"features.accounts.sc": _fresh_row("accounts", "sc"),
             "features.phones.sc": _fresh_row("phones", "sc")}
    for name, (width, old) in widths.items():
        arr = arrays.get(name)
        if arr is None or arr.ndim != 2 or arr.shape[1] != old:
            continue  # left to the restore's checks, which name what does not fit
        wide = np.empty((arr.shape[0], width), dtype=arr.dtype)
        wide[:, :old] = arr
        wide[:, old:] = fresh[name][old:]
        out[name] = wide
    cnt = arrays.get("features.phones.cnt")
    if cnt is not None and cnt.ndim == 3 and cnt.shape[2] == k.N_PHONE_COUNT - 1:
        wide_cnt = np.zeros((*cnt.shape[:2], k.N_PHONE_COUNT), dtype=cnt.dtype)
        wide_cnt[:, :, :cnt.shape[2]] = cnt
        out["features.phones.cnt"] = wide_cnt
    pair_meta = out.pop("features.pair_meta", None)
    if pair_meta is not None and pair_meta.shape == (1,):
        meta = np.full(k.N_META, int(k.NO_TIME), dtype=np.int64)
        meta[k.META_PAIRS] = pair_meta[0]
        firsts = [a[:, col] for a, col in ((arrays.get("features.accounts.sc"), k.SC_FIRST),
                                           (arrays.get("features.phones.sc"), k.PSC_FIRST))
                  if a is not None and a.ndim == 2 and a.shape[1] > col]
        seen = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
        seen = seen[seen != k.NO_TIME]
        if seen.size:
            meta[k.META_FIRST_TS] = int(seen.min())
        out["features.meta"] = meta
    return out


def _fresh_row(kind: str, name: str) -> np.ndarray:
    """The empty row of a kind's array (what a never-seen entity holds)."""
    row: np.ndarray = FeatureState.create(1, 1, 1, 16).arrays()[f"{kind}.{name}"][0]
    return row


def _snapshot(header: Header, parts: dict[str, Any], arrays: dict[str, np.ndarray]) -> EngineSnapshot:
    meta = _part(parts, "meta", dict)
    if not isinstance(meta.get("capacities"), dict):
        raise ValueError("part meta: capacities is not an object")
    ids_schema = pa.schema([pa.field("id", pa.large_string())])
    ids = {kind: _column(parts, f"ids.{kind}", ids_schema).column("id").to_pylist()
           for kind in ("accounts", "phones", "devices")}
    missing = _V1_MISSING if header.format == 1 else {}
    if header.format == 1:
        arrays = _widen_v1(arrays)
    without = {**missing, **_no_high(parts, "decisions")}
    decisions = _rows(_column(parts, "decisions", _record_schema(DecisionRecord, without=without)),
                      DecisionRecord, missing)
    names = [n for _, n in _CALL_COLUMNS if n not in missing]
    call_table = _column(parts, "calls", pa.schema([pa.field(n, pa.large_string()) for n in names]))
    scopes = (_interned(call_table.column("scope")) if "scope" in names
              else [DEFAULT_SCOPE] * call_table.num_rows)
    calls: list[list[Any]] = [[c, a, b, None, None, s] for c, a, b, s in zip(
        *(call_table.column(n).to_pylist() for n in ("call_id", "caller", "callee")), scopes,
        strict=True)]
    rec_table = _column(parts, "calls.records", _record_schema(
        CallRecord, _CALL_EXTRA, without=_no_high(parts, "calls.records")))
    for owner, ended, rec in zip(rec_table.column("call").to_pylist(),
                                 rec_table.column("ended").to_pylist(),
                                 _rows(rec_table, CallRecord), strict=True):
        if owner is None or not 0 <= owner < len(calls) or ended is None:
            raise ValueError(f"part calls.records: call {owner} of {len(calls)}")
        calls[owner][4 if ended else 3] = rec
    watch = [parse_watch_row(row, "part watchlist") for row in _part(parts, "watchlist", list)]
    feedback = []
    for row in _part(parts, "feedback", list) if header.format > 1 else []:
        if not isinstance(row, list) or not row or not isinstance(row[0], str):
            raise ValueError(f"part feedback: entry {row!r} is not [account, ...]")
        feedback.append((row[0], *parse_feedback_row(row[1:], "part feedback")))
    caps: dict[str, int] = {str(k): _int(v, f"capacities.{k}") for k, v in meta["capacities"].items()}
    ledger = _ledger(parts, arrays)
    owners: list[tuple[str, str]] = []
    if "registry.owners" in parts:  # absent: a checkpoint of an earlier build
        table = _column(parts, "registry.owners", pa.schema([pa.field("account", pa.large_string()),
                                                             pa.field("institution", pa.large_string())]))
        owners = list(zip(table.column("account").to_pylist(),
                          table.column("institution").to_pylist(), strict=True))
    return EngineSnapshot(
        created_ms=header.created_ms,
        policy_version=header.policy_version,
        arrays=arrays,
        capacities=caps,
        accounts=ids["accounts"],
        phones=ids["phones"],
        devices=ids["devices"],
        decisions=decisions,
        next_seq=_int(meta.get("next_seq"), "next_seq", 0),
        calls=[(c[0], c[1], c[2], c[3], c[4], c[5]) for c in calls],
        watch=watch,
        journal_seq=header.journal_seq,
        event_seq=header.event_seq,
        feedback=feedback,
        ledger=ledger,
        owners=owners,
    )


def _ledger(parts: dict[str, Any], arrays: dict[str, np.ndarray]) -> LedgerSnapshot | None:
    """The ledger parts (taken out of ``arrays``); None when there are none at all. Shapes and
    values are the engine's to check (``Ledger.restored``)."""
    found = [n for n in LEDGER_PARTS if n in parts or n in arrays]
    if not found:
        return None
    missing = [n for n in LEDGER_PARTS if n not in found]
    if missing:
        raise ValueError(f"part {missing[0]} missing (the checkpoint has {', '.join(found)})")
    names = _part(parts, "ledger.names", dict)
    lists = [names.get(key) for key in ("institutions", "currencies")]
    if set(names) != {"institutions", "currencies"} or not all(isinstance(v, list) for v in lists):
        raise ValueError("part ledger.names: expected lists institutions and currencies")
    ids = _column(parts, "ledger.ids", pa.schema([pa.field("id", pa.large_string())]))
    return LedgerSnapshot(meta=arrays.pop("ledger.meta"), days=arrays.pop("ledger.days"),
                          rows=arrays.pop("ledger.rows"), ids=ids.column("id").to_pylist(),
                          institutions=lists[0], currencies=lists[1])


def watch_row(e: WatchEntry) -> list[object]:
    """A watchlist entry as stored, in checkpoints and in the watchlist journal."""
    return [e.kind, e.value, e.reason, e.source, e.expires_ms]


def feedback_row(at_ms: int, fb: Feedback) -> list[object]:
    """Feedback as stored, in checkpoints and in the journal."""
    return [at_ms, fb.account_id, fb.transaction_id, fb.verdict, fb.note, fb.expires_ms, fb.source]


def parse_feedback_row(row: object, where: str) -> tuple[int, Feedback]:
    """``feedback_row``'s inverse, checked."""
    if not isinstance(row, list) or len(row) != 7:
        raise ValueError(f"{where}: entry {row!r} is not [at, account, transaction, verdict, "
                         "note, expires, source]")
    at, account, txn, verdict, note, expires, source = row
    if not all(isinstance(x, str) for x in (account, txn, note, source)) or not (account or txn):
        raise ValueError(f"{where}: entry {row!r} is malformed")
    if verdict not in (1, 2, 3) or isinstance(verdict, bool):
        raise ValueError(f"{where}: entry {row!r} has an unknown verdict")
    exp = None if expires is None else _int(expires, f"{where} expires", TIME_MIN_MS, TIME_MAX_MS)
    return (_int(at, f"{where} at", TIME_MIN_MS, TIME_MAX_MS),
            Feedback(account_id=account, transaction_id=txn, verdict=verdict, note=note,
                     expires_ms=exp, source=source))


def profile_row(p: AccountProfile) -> list[object]:
    """An account-registry entry as stored in the journal."""
    return [p.account_id, p.party_type, p.opened_ms, p.last_active_ms, p.merchant_category,
            p.payroll, p.phone, p.institution]


def parse_profile_row(row: object, where: str) -> AccountProfile:
    """``profile_row``'s inverse, checked."""
    if not isinstance(row, list) or len(row) != 8:
        raise ValueError(f"{where}: entry {row!r} is not [account, party type, opened, last "
                         "active, merchant category, payroll, phone, institution]")
    account, party, opened, active, merchant, payroll, phone, institution = row
    if (not all(isinstance(x, str) for x in (account, merchant, phone, institution))
            or not account or not isinstance(payroll, bool)):
        raise ValueError(f"{where}: entry {row!r} is malformed")
    return AccountProfile(
        account_id=account, party_type=_int(party, f"{where} party type", 0, 2**31 - 1),
        opened_ms=None if opened is None else _int(opened, f"{where} opened", TIME_MIN_MS,
                                                   TIME_MAX_MS),
        last_active_ms=None if active is None else _int(active, f"{where} last active",
                                                        TIME_MIN_MS, TIME_MAX_MS),
        merchant_category=merchant, payroll=payroll, phone=phone, institution=institution)


def parse_watch_row(row: object, where: str) -> WatchEntry:
    """``watch_row``'s inverse, checked. Earlier builds took any future expiry: past the year
    9999 it reads as never."""
    if not isinstance(row, list) or len(row) != 5:
        raise ValueError(f"{where}: entry {row!r} is not [kind, value, reason, source, expires]")
    kind, value, reason, source, expires = row
    if not _is_kind(kind) or not all(isinstance(x, str) for x in (value, reason, source)):
        raise ValueError(f"{where}: entry {row!r} is malformed")
    ms = _int(expires, "watchlist expires", -(2**63), 2**63 - 1)
    if ms < TIME_MIN_MS:
        raise ValueError(f"watchlist: an entry expires at {ms}, outside years 1 to 9999")
    return WatchEntry(kind, value, reason, source, NEVER if ms > TIME_MAX_MS else ms)


def _is_kind(v: object) -> typing.TypeGuard[int]:
    """A stored watchlist entity kind (1 account, 2 phone, 3 device)."""
    return type(v) is int and v in (1, 2, 3)


def parse_kind(v: object) -> int:
    if not _is_kind(v):
        raise ValueError(f"unknown entity kind {v!r}")
    return v


def _int(v: object, name: str, low: int = -(2**62), high: int = 2**62) -> int:
    """``v`` if it is an integer in [low, high] (a JSON float, string or bool is not); the
    bounds leave the counters that continue from it room before int64 overflows (the journal
    number: before Redis' Lua, whose numbers are doubles, rounds it)."""
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"{name}: {v!r}, expected an integer in [{low}, {high}]")
    return v


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number here")

