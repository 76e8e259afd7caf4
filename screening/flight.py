"""Bulk screening over Arrow Flight: ``DoExchange`` with record batches in, decisions out.

For data platforms and end-of-day files. A record batch holds transactions in the columns of the
native event schema (``screening.offline.schema.EVENT_SCHEMA``: ``event_id``, ``event_time`` as
timestamp[ms, UTC], ``amount_minor`` as int64 minor units, enums as their lower-case names); each
one is read column by column into ``TxnColumns``, checked with ScreenBatch's checks (a refusal
names the row and the column) and screened through ``ScreeningService.screen_columns``: the same
engine, lock, idempotency scope per institution, event journal, audit trail and ledger as
ScreenBatch. Each request batch gets one reply batch (``REPLY_SCHEMA``), in order.

A bad batch is refused whole (nothing of it applied) and ends the exchange with the error;
batches answered before it stand, as ScreenBatch calls made before a refused one do.

Callers: the bearer token in the ``authorization`` header, with the roles ScreenBatch allows.
Mutual TLS is not supported here yet (the server refuses to start Flight under it).

``pyarrow.flight`` is imported by this module: import it only when Flight is configured.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
from google.protobuf.timestamp_pb2 import Timestamp

from screening.auth import PERMISSIONS, Authenticator, Caller
from screening.errors import Conflict, InvalidRequest, PermissionDenied, ScreeningError, Unauthenticated
from screening.model import DecisionRecord, TxnColumns
from screening.policy import ACTION_NAMES
from screening.service import ScreeningService
from screening.v1 import screening_pb2 as pb

__all__ = ["COMMAND", "REPLY_SCHEMA", "REQUEST_COLUMNS", "RPC", "FlightEndpoint",
           "decode_batch", "encode_decisions", "request_schema"]

COMMAND = b"screen"  # the FlightDescriptor command of a screening exchange
RPC = "FlightScreen"  # its name in the audit trail, logs and metrics
# the permission it needs: ScreenBatch's
_METHOD = "/screening.v1.Screening/ScreenBatch"

_UTC_MS = pa.timestamp("ms", tz="UTC")
# the transaction columns of the event schema -> their Arrow type; (required)
REQUEST_COLUMNS: dict[str, tuple[pa.DataType, bool]] = {
    "event_id": (pa.string(), True),
    "event_time": (_UTC_MS, True),
    "payer_account": (pa.string(), True),
    "payer_institution": (pa.string(), False),
    "payer_party_type": (pa.string(), True),
    "payer_opened_date": (pa.date32(), False),
    "payee_account": (pa.string(), True),
    "payee_institution": (pa.string(), False),
    "payee_party_type": (pa.string(), True),
    "payee_opened_date": (pa.date32(), False),
    "amount_minor": (pa.int64(), True),
    "currency": (pa.string(), True),
    "channel": (pa.string(), True),
    "cash": (pa.bool_(), False),
    "cross_border": (pa.bool_(), False),
    "device_id": (pa.string(), False),
    "payer_phone": (pa.string(), False),
    "payee_phone": (pa.string(), False),
    "memo": (pa.string(), False),
}

REPLY_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("action", pa.string()),
    ("risk_score", pa.int32()),
    ("reasons", pa.list_(pa.string())),
    ("large_value", pa.bool_()),
    ("suspicious", pa.bool_()),
    ("notify_police", pa.bool_()),
    ("degraded", pa.bool_()),
    ("duplicate", pa.bool_()),
    ("policy_version", pa.string()),
], metadata={"reasons": "codes of the fired rules, in the policy's rule order",
             "large_value,suspicious,notify_police": "the report flags of the decision"})


def request_schema() -> pa.Schema:
    """The full request schema (every optional column included)."""
    return pa.schema([(name, t) for name, (t, _) in REQUEST_COLUMNS.items()])


def _enum_names(enum: Any, prefix: str) -> tuple[list[str], np.ndarray]:
    """The event schema's names of a proto enum (``PARTY_TYPE_PERSON`` -> ``person``) and their
    numbers, from the generated descriptors."""
    values = [v for v in enum.DESCRIPTOR.values if v.number != 0]
    return ([v.name.removeprefix(prefix).lower() for v in values],
            np.array([v.number for v in values], dtype=np.int64))


_ENUMS = {"payer_party_type": _enum_names(pb.PartyType, "PARTY_TYPE_"),
          "payee_party_type": _enum_names(pb.PartyType, "PARTY_TYPE_"),
          "channel": _enum_names(pb.Channel, "CHANNEL_")}
_ACTIONS = pa.array([ACTION_NAMES.get(i, "") for i in range(max(ACTION_NAMES) + 1)], pa.string())

# a classic validator's field (``transactions[i].payer.account_id``) -> the Arrow column
_FIELD_COLUMNS = {
    "transaction_id": "event_id", "event_time": "event_time",
    "payer": "payer_account", "payer.account_id": "payer_account",
    "payer.institution": "payer_institution", "payer.party_type": "payer_party_type",
    "payer.account_opened_date": "payer_opened_date",
    "payee": "payee_account", "payee.account_id": "payee_account",
    "payee.institution": "payee_institution", "payee.party_type": "payee_party_type",
    "payee.account_opened_date": "payee_opened_date",
    "amount": "amount_minor", "amount.minor_units": "amount_minor", "amount.currency": "currency",
}
_FIELD = re.compile(r"transactions\[(\d+)\]\.(.+)")


def _refused(row: int, column: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"row {row}, column {column}", problem)


def _column(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    """Column ``name`` checked against its type (a compatible type is cast); None when absent."""
    want, required = REQUEST_COLUMNS[name]
    i = batch.schema.get_field_index(name)
    if i < 0:
        if required:
            raise InvalidRequest(f"column {name}", "is required")
        return None
    col = batch.column(i)
    t = col.type
    if want == _UTC_MS:
        if not pa.types.is_timestamp(t) or t.tz not in ("UTC", "+00:00", "Etc/UTC"):
            raise InvalidRequest(f"column {name}", f"must be timestamp[ms, tz=UTC], not {t}")
        return col.cast(_UTC_MS, safe=False) if t.unit != "ms" else col
    if want == pa.string():
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
                or pa.types.is_null(t)):
            raise InvalidRequest(f"column {name}", f"must be a string column, not {t}")
        return col
    if want == pa.date32():
        if pa.types.is_date(t):
            return col.cast(pa.string())  # ISO dates: the classic checks read them so
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
            return col
        raise InvalidRequest(f"column {name}", f"must be date32 (or ISO date strings), not {t}")
    if want == pa.int64():
        if not pa.types.is_integer(t):
            raise InvalidRequest(f"column {name}", f"must be int64 minor units, not {t}")
        return col.cast(pa.int64())
    if not (pa.types.is_boolean(t) or pa.types.is_null(t)):
        raise InvalidRequest(f"column {name}", f"must be boolean, not {t}")
    return col


def _texts(col: pa.Array | None, n: int) -> list[str]:
    """A string column as a list, nulls (and an absent column) as ""."""
    if col is None or col.null_count == n:
        return [""] * n
    if col.null_count:
        col = pc.fill_null(col.cast(pa.string()), "")
    return col.to_pylist()


def _enum(col: pa.Array, name: str) -> np.ndarray:
    """An enum column's proto numbers; null and "" are 0 (the classic "is required")."""
    names, numbers = _ENUMS[name]
    idx = pc.index_in(col.cast(pa.string()), value_set=pa.array(names))
    unknown = pc.and_(pc.is_null(idx), pc.invert(pc.or_(pc.is_null(col), pc.equal(col, ""))))
    if pc.any(unknown).as_py():
        row = int(pc.index(unknown, True).as_py())
        raise _refused(row, name, f"unknown value {col[row].as_py()!r} (known: {', '.join(names)})")
    lookup = np.concatenate([[0], numbers])
    return lookup[pc.fill_null(idx, -1).to_numpy(zero_copy_only=False) + 1]


def decode_batch(batch: pa.RecordBatch, conv: Any) -> TxnColumns:
    """Transactions of ``batch`` as validated columns; raises InvalidRequest naming the row and
    column of the first problem (with ScreenBatch's message for it).

    Each column is read once (numpy for numbers and enums, one ``to_pylist`` for texts) and
    checked by ``Converter.checked_columns``, ScreenBatch's bulk checks; a batch those doubt goes
    row by row through the classic validator, which names the problem or accepts a rare form.
    """
    n = batch.num_rows
    lim = conv.limits
    if n > lim.max_batch:
        raise InvalidRequest("batch", f"more than {lim.max_batch} rows in one batch")
    kind = batch.schema.get_field_index("kind")
    if kind >= 0:
        other = pc.fill_null(pc.not_equal(batch.column(kind).cast(pa.string()), "txn"), True)
        if pc.any(other).as_py():
            row = int(pc.index(other, True).as_py())
            raise _refused(row, "kind", "only transactions (kind 'txn') are screened here")
    cols = {name: _column(batch, name) for name in REQUEST_COLUMNS}
    times = cols["event_time"]
    assert times is not None
    ms = pc.fill_null(times.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).tolist()
    amount = cols["amount_minor"]
    assert amount is not None
    minor = pc.fill_null(amount, 0).to_numpy(zero_copy_only=False).tolist()
    enums = {name: _enum(cols[name], name).tolist() for name in _ENUMS}

    def flags(name: str) -> list[bool]:
        col = cols[name]
        if col is None or col.null_count == n:
            return [False] * n
        return pc.fill_null(col, False).to_pylist()

    texts = {name: _texts(cols[name], n) for name, (t, _) in REQUEST_COLUMNS.items()
             if t in (pa.string(), pa.date32())}
    checked = conv.checked_columns(
        texts["event_id"], ms, texts["payer_account"], texts["payer_institution"],
        enums["payer_party_type"], texts["payer_opened_date"], texts["payee_account"],
        texts["payee_institution"], enums["payee_party_type"], texts["payee_opened_date"],
        minor, texts["currency"], enums["channel"], flags("cash"), flags("cross_border"),
        texts["device_id"], texts["payer_phone"], texts["memo"], texts["payee_phone"],
    ) if n and times.null_count == 0 else None
    if checked is not None:
        return checked
    # doubted: the classic validator, message by message, names the problem (or accepts it)
    has_time = pc.is_valid(times).to_pylist()
    msgs = []
    for i in range(n):
        t = pb.Transaction(
            transaction_id=texts["event_id"][i],
            payer=pb.Party(account_id=texts["payer_account"][i],
                           institution=texts["payer_institution"][i],
                           party_type=enums["payer_party_type"][i],
                           account_opened_date=texts["payer_opened_date"][i]),
            payee=pb.Party(account_id=texts["payee_account"][i],
                           institution=texts["payee_institution"][i],
                           party_type=enums["payee_party_type"][i],
                           account_opened_date=texts["payee_opened_date"][i]),
            amount=pb.Money(minor_units=minor[i], currency=texts["currency"][i]),
            channel=enums["channel"][i], cash=flags("cash")[i], cross_border=flags("cross_border")[i],
            device_id=texts["device_id"][i], payer_phone=texts["payer_phone"][i],
            memo=texts["memo"][i], payee_phone=texts["payee_phone"][i])
        if has_time[i]:
            t.event_time.CopyFrom(Timestamp(seconds=ms[i] // 1000, nanos=ms[i] % 1000 * 1_000_000))
        msgs.append(t)
    try:
        return TxnColumns.from_inputs(conv.batch(pb.TransactionBatch(transactions=msgs)))
    except InvalidRequest as exc:
        m = _FIELD.fullmatch(exc.field)
        if m is None:
            raise InvalidRequest("batch", exc.problem) from None
        field = m.group(2)
        raise _refused(int(m.group(1)), _FIELD_COLUMNS.get(field, field), exc.problem) from None


def encode_decisions(event_ids: list[str], recs: list[DecisionRecord], dups: list[bool],
                     reasons: list[list[str]]) -> pa.RecordBatch:
    """The reply batch: one row per decision, in request order (``REPLY_SCHEMA``)."""
    n = len(recs)
    action = np.fromiter((r.action for r in recs), dtype=np.int64, count=n)
    score = np.fromiter((r.score for r in recs), dtype=np.int32, count=n)
    reports = np.fromiter((r.report_flags for r in recs), dtype=np.int64, count=n)
    degraded = np.fromiter((r.degraded for r in recs), dtype=np.bool_, count=n)
    return pa.RecordBatch.from_arrays([
        pa.array(event_ids, pa.string()),
        _ACTIONS.take(pa.array(action)),
        pa.array(score),
        pa.array(reasons, pa.list_(pa.string())),
        pa.array((reports & 1) != 0),
        pa.array((reports & 2) != 0),
        pa.array((reports & 4) != 0),
        pa.array(degraded),
        pa.array(np.array(dups, dtype=np.bool_)),
        pa.array([r.policy_version for r in recs], pa.string()),
    ], schema=REPLY_SCHEMA)


def _in_columns(exc: ScreeningError) -> ScreeningError:
    """A Conflict named as ScreenBatch names it (``transactions[i].transaction_id``), in rows
    and columns."""
    if isinstance(exc, Conflict):
        m = _FIELD.fullmatch(exc.field)
        if m is not None:
            problem = re.sub(r"transactions\[(\d+)\]", r"row \1", exc.problem)
            return Conflict(f"row {m.group(1)}, column {_FIELD_COLUMNS.get(m.group(2), m.group(2))}",
                            problem)
    return exc


def _flight_error(exc: ScreeningError, where: str) -> Exception:
    """``exc`` as the Flight error of its gRPC status. Flight has no error type of its own for
    INVALID_ARGUMENT, and pyarrow sends any other Python exception (ArrowInvalid included) with
    the server's traceback appended: bad input goes as FlightServerError (gRPC UNKNOWN) whose
    message starts with the status name, ``INVALID_ARGUMENT: batch 0, row 5, column ...``."""
    code, message = exc.code.name, f"{where}{exc}"
    if code == "UNAUTHENTICATED":
        return flight.FlightUnauthenticatedError(message)
    if code == "PERMISSION_DENIED":
        return flight.FlightUnauthorizedError(message)
    if code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
        return flight.FlightUnavailableError(f"{code}: {message}")
    if code == "DEADLINE_EXCEEDED":
        return flight.FlightTimedOutError(message)
    return flight.FlightServerError(f"{code}: {message}")


class _Caller(flight.ServerMiddleware):  # type: ignore[misc]
    def __init__(self, caller: Caller) -> None:
        self.caller = caller


class _AuthMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """The caller of each call from its bearer token, with ScreenBatch's roles."""

    def __init__(self, auth: Authenticator, log: Any) -> None:
        self.auth = auth
        self.log = log

    def start_call(self, info: Any, headers: dict[str, list[str | bytes]]) -> _Caller:
        metadata = [("authorization", v) for v in headers.get("authorization", [])
                    if isinstance(v, str)]
        try:
            caller = self.auth.identify(metadata)
        except Unauthenticated as exc:
            self.log.info("access_denied", method=f"flight {info.method}", outcome="unauthenticated")
            raise flight.FlightUnauthenticatedError(str(exc)) from None
        if caller.role not in PERMISSIONS[_METHOD]:
            self.log.info("access_denied", method=f"flight {info.method}",
                          outcome="permission_denied", role=caller.role)
            raise flight.FlightUnauthorizedError(str(PermissionDenied(
                f"role '{caller.role}' may not screen over Flight (ScreenBatch's roles)")))
        return _Caller(caller)


class _Server(flight.FlightServerBase):  # type: ignore[misc]
    def __init__(self, location: str, service: ScreeningService, log: Any, **kwargs: Any) -> None:
        self.service = service
        self.log = log
        # open exchanges, for the drain at stop (set before the server listens)
        self._running = threading.Condition()
        self._open = 0
        self._stopping = False
        super().__init__(location, middleware={"auth": _AuthMiddlewareFactory(service.auth, log)},
                         **kwargs)

    def do_exchange(self, context: Any, descriptor: flight.FlightDescriptor,
                    reader: flight.MetadataRecordBatchReader,
                    writer: flight.MetadataRecordBatchWriter) -> None:
        with self._running:
            if self._stopping:
                raise flight.FlightUnavailableError("UNAVAILABLE: the server is stopping")
            self._open += 1
        try:
            self._exchange(context, descriptor, reader, writer)
        finally:
            with self._running:
                self._open -= 1
                self._running.notify_all()

    def drain(self, timeout: float) -> bool:
        """Refuse new exchanges and wait up to ``timeout`` s for the open ones to end (grpc's
        shutdown cancels a streaming call still waiting for its client); False if some did
        not."""
        with self._running:
            self._stopping = True
            return self._running.wait_for(lambda: self._open == 0, timeout)

    def _exchange(self, context: Any, descriptor: flight.FlightDescriptor,
                  reader: flight.MetadataRecordBatchReader,
                  writer: flight.MetadataRecordBatchWriter) -> None:
        if descriptor.command != COMMAND:
            raise flight.FlightServerError(f"INVALID_ARGUMENT: descriptor: unknown command "
                                           f"{descriptor.command!r} (expected {COMMAND!r})")
        caller = context.get_middleware("auth").caller
        service = self.service
        writer.begin(REPLY_SCHEMA)
        n = 0
        for chunk in reader:
            batch = chunk.data
            if batch is None:
                continue
            try:
                if batch.num_rows == 0:
                    writer.write_batch(pa.RecordBatch.from_pylist([], REPLY_SCHEMA))
                    n += 1
                    continue
                txns = decode_batch(batch, service.conv)
                recs, dups, reasons = service.screen_columns(txns, caller, RPC)
            except ScreeningError as exc:
                exc = _in_columns(exc)
                code, message = exc.code.name, str(exc)
                self.log.info("rejected", rpc=RPC, code=code, detail=f"batch {n}, {message}")
                if service.metrics is not None:
                    service.metrics.failed(RPC, code)
                raise _flight_error(exc, f"batch {n}, ") from None
            except Exception:
                ref = uuid.uuid4().hex[:12]
                self.log.exception("internal_error", rpc=RPC, ref=ref)
                raise flight.FlightInternalError(f"internal error (reference {ref})") from None
            writer.write_batch(encode_decisions(txns.transaction_id, recs, dups, reasons))
            n += 1


class FlightEndpoint:
    """The Flight server beside the gRPC one: listening once built; ``stop`` drains it."""

    def __init__(self, service: ScreeningService, host: str, port: int, log: Any, *,
                 cert_pem: bytes | None = None, key_pem: bytes | None = None) -> None:
        scheme = "grpc+tls" if cert_pem is not None else "grpc+tcp"
        kwargs: dict[str, Any] = {}
        if cert_pem is not None:
            kwargs["tls_certificates"] = [flight.CertKeyPair(cert=cert_pem, key=key_pem)]
        self._server = _Server(f"{scheme}://{host}:{port}", service, log, **kwargs)
        self.port: int = self._server.port
        self.scheme = scheme

    def stop(self, timeout: float) -> bool:
        """Stop accepting and wait for running exchanges up to ``timeout`` s; False when some
        were still running then (they end with the process)."""
        t0 = time.monotonic()
        drained = self._server.drain(timeout)
        done = threading.Thread(target=self._server.shutdown, daemon=True, name="flight-stop")
        done.start()
        done.join(max(0.0, timeout - (time.monotonic() - t0)))
        return drained and not done.is_alive()
