"""``python -m bench.fuzz``: hostile input through a real channel, and what it must never do.

Starts the service in a process of its own (``bench._fuzz_server``; or uses ``--server ADDR``)
and sends it, through a real gRPC channel with the method's own role token, requests of every
RPC in rounds of one to ten, each round of one kind (``flavor``):

    generic   messages built field by field from the request's descriptor (hypothesis):
              strings empty, unicode, NUL and control characters, up to 1 MB; integers at
              their boundaries; enums known and unknown; repeated fields empty, long (10,001)
              and repeated; nested messages; timestamps from year 1 to far future, bad nanos
    mutated   a valid request with one to three fields changed to such values, or cleared
    valid     a valid request (builds up state: payments, calls, watchlist, feedback, registry);
              for ReloadPolicy the shipped policy, or it with one value of any TOML type put
              in place of one of its values
    raw       bytes that are not the message: random, truncated, bit-flipped, another method's
              message, unknown fields, deep nesting, and (rarely) a message over the server's
              ``max_message_bytes``
    stream    ScreenStream with valid, mutated and raw messages, a bad one mid-stream
    tokens    no token, wrong tokens and schemes, another role's token

Every call uses identity serializers (``channel.unary_unary`` / ``stream_stream`` with bytes),
so the server's own decoding is what is tested. A **failure** is any of: status INTERNAL,
UNKNOWN, UNAVAILABLE, CANCELLED, DATA_LOSS or UNIMPLEMENTED; a client deadline missed (a hang);
a reply that does not decode as the method's reply; details or trailing metadata with a stack
trace (``Traceback``, ``File "``, an exception's repr, grpc's "Exception calling application");
a wrong token or role not refused UNAUTHENTICATED / PERMISSION_DENIED, an oversize message not
RESOURCE_EXHAUSTED; the server process dying; a health check failing; an ``internal_error`` in
the server's log; and the **state check**: the engine's state digest (``screening.digest``,
taken between rounds) must not change over a round whose requests were all refused or only read
(QueryAccount, ExportCaseGraph, GetLargeValueReport), and must change over a round in which a
new payment or call was accepted. With ``--server`` the digest is the QueryAccount reports of
the fuzzer's accounts instead (police token).

Writes a summary (counts per RPC and per flavor per status, requests/s, failures with the
request that caused each) to ``--out`` (JSON) and exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import grpc
import hypothesis
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

from bench._inproc import git_commit, git_dirty
from screening.auth import PERMISSIONS, ROLES
from screening.client import timestamp
from screening.config import LimitSettings, ServerSettings
from screening.policy import default_policy_text
from screening.rpc import SERVICE
from screening.v1 import screening_pb2 as pb

__all__ = ["Failure", "FuzzRequest", "Fuzzer", "build_parser", "leaks", "main",
           "problems_of", "valid_request"]

# what draws a value from a strategy: hypothesis's ``data.draw`` or a composite's ``draw``
Draw = Callable[..., Any]
PREFIX = "/screening.v1.Screening/"
METHODS = [m.name for m in SERVICE.methods]
REQUEST = {m.name: getattr(pb, m.input_type.name) for m in SERVICE.methods}
REPLY = {m.name: getattr(pb, m.output_type.name) for m in SERVICE.methods}
STREAMING = {m.name for m in SERVICE.methods if m.client_streaming}
ALLOWED = {name: PERMISSIONS[PREFIX + name] for name in METHODS}
READ_ONLY = frozenset({"QueryAccount", "ExportCaseGraph", "GetLargeValueReport"})
FLAVORS = ("generic", "mutated", "valid", "raw", "stream", "tokens")

# statuses a hostile request may get; anything else is a failure
EXPECTED = frozenset({"OK", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
                      "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                      "OUT_OF_RANGE", "DEADLINE_EXCEEDED"})
_LEAKS = [
    ("traceback", re.compile(r"Traceback \(most recent call last\)|Traceback")),
    ("source line", re.compile(r'File "')),
    ("exception repr", re.compile(r"\b[A-Z][A-Za-z0-9_]*(Error|Exception|Warning)\(")),
    ("class repr", re.compile(r"<class '|<[A-Za-z_.]+ object at 0x")),
    ("grpc handler exception", re.compile(r"Exception (calling application|iterating responses|"
                                          r"deserializing)")),
]
_LIMITS = LimitSettings()
MAX_MESSAGE = ServerSettings().max_message_bytes

# the fuzzer's own entities: valid requests name these, so mutations meet existing state
ACCOUNTS = [f"fz{n:03d}" for n in range(40)] + ["6222000011112222", "a.b_c:d/e@f+g-h",
                                                 "X" * _LIMITS.max_id_length]
PHONES = [f"+86138001380{n:02d}" for n in range(24)] + ["13900139000", "0044 20 7946 0000"]
DEVICES = ["dev-1", "dev-2", "设备-3", "d" * _LIMITS.max_text_length]
INSTITUTIONS = ["BANK01", "BANK02", "PAY01", ""]


# ------------------------------------------------------------------ generic values
_SIZES = [0, 1, 2, 3, 10, 11, 21, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511,
          512, 513, 4097, 65_537, 1 << 20]
_SPECIAL_TEXT = ["", " ", "\x00", "a\x00b", "\t", "\n", "\r\n", "\x7f", "\u202e", "\ufeff",
                 "\u2028", "𝕏𝕐", "汉字", "NaN", "-1", "0", "+", "++86", "00", "+0", "()",
                 "1" * 21, "+" + "9" * 20, "2026-02-30", "2026-12-06", "1899-12-31",
                 "9999-12-31", "0000-01-01", "2026-12-06T00:00:00", "CNY", "cny", "USD", "XXX",
                 "EUR\x00", "../../etc/passwd", "%s%n", "'; DROP TABLE x;--", "${jndi:x}",
                 "<svg onload=1>", "a" * 64, "a" * 65, "-a", ".a", "a b"]
TEXT: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(ACCOUNTS + PHONES + DEVICES + INSTITUTIONS + _SPECIAL_TEXT),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x9f, categories=["Cc"]), max_size=6),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["A", "9", "é", "汉", "\x00", "😀", "+1"]),
              st.sampled_from(_SIZES)),
)
_BOUNDS32 = [0, 1, -1, 2, 100, 101, 2000, 2001, 7 * 86_400, 7 * 86_400 + 1, 2**31 - 1, -2**31,
             2**15, 2**16]
_BOUNDS64 = [*_BOUNDS32, 2**63 - 1, -2**63, 2**53 + 1, 10**15, 10**15 + 1, 2**32, -2**32]
INT32 = st.one_of(st.sampled_from(_BOUNDS32), st.integers(-2**31, 2**31 - 1))
INT64 = st.one_of(st.sampled_from(_BOUNDS64), st.integers(-2**63, 2**63 - 1))
UINT32 = st.one_of(st.sampled_from([0, 1, 2**32 - 1, 2**31]), st.integers(0, 2**32 - 1))
UINT64 = st.one_of(st.sampled_from([0, 1, 2**64 - 1, 2**63]), st.integers(0, 2**64 - 1))
_NOW_S = int(time.time())
_SECONDS = [0, 1, -1, -62_135_596_800, 253_402_300_799, 253_402_300_800, 2**63 - 1, -2**63,
            946_684_799, 946_684_800, _NOW_S, _NOW_S + 299, _NOW_S + 301, _NOW_S - 86_400 * 400,
            _NOW_S + 86_400 * 365 * 100, 2**31, 2**32, 4_102_444_800]
_NANOS = [0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -2**31]


@st.composite
def timestamps(draw: st.DrawFn) -> Any:
    """Timestamps from year 1 to far future, now and the future-skew edge, nanos out of range."""
    ts = Timestamp()
    ts.seconds = draw(st.one_of(st.sampled_from(_SECONDS), st.integers(-2**63, 2**63 - 1),
                                st.integers(_NOW_S - 86_400 * 30, _NOW_S + 600)))
    ts.nanos = draw(st.one_of(st.sampled_from(_NANOS), st.integers(-2**31, 2**31 - 1)))
    return ts


def _enum_values(fd: FieldDescriptor) -> st.SearchStrategy[int]:
    assert fd.enum_type is not None
    known = [v.number for v in fd.enum_type.values]
    unknown = [-1, max(known) + 1, max(known) + 100, 2**31 - 1, -2**31]
    return st.one_of(st.sampled_from(known), st.sampled_from(unknown), st.integers(-2**31, 2**31 - 1))


def _message_type(fd: FieldDescriptor) -> Descriptor:
    assert fd.message_type is not None
    return fd.message_type


def field_values(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """Values for one (non-repeated) field of type ``fd.type``."""
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return INT32
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return INT64
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return UINT32
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return UINT64
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if t == FieldDescriptor.TYPE_DOUBLE else 32)
    if t == FieldDescriptor.TYPE_ENUM:
        return _enum_values(fd)
    if t == FieldDescriptor.TYPE_MESSAGE:
        desc = _message_type(fd)
        if desc.full_name == "google.protobuf.Timestamp":
            return timestamps()
        return messages(desc, depth + 1)
    raise TypeError(f"{fd.full_name}: no strategy for field type {t}")  # pragma: no cover


def _repeated(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[list[Any]]:
    one = field_values(fd, depth)
    return st.one_of(st.lists(one, max_size=4),
                     st.builds(_copies, one, st.sampled_from([100, 101, 1000, _LIMITS.max_batch,
                                                              _LIMITS.max_batch + 1])))


def _copies(value: Any, n: int) -> list[Any]:
    """``n`` copies of ``value``, fewer when they would pass 8 MB (10,001 copies of a message
    holding a 1 MB string would be 10 GB; a message over the limit is tried on its own)."""
    size = value.ByteSize() if isinstance(value, Message) else len(str(value))
    return [value] * min(n, max(1, (8 << 20) // max(1, size)))


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _assign(msg: Message, fd: FieldDescriptor, value: Any) -> None:
    """Set field ``fd`` of ``msg`` to ``value`` (a list for a repeated field)."""
    if _is_repeated(fd):
        container = getattr(msg, fd.name)
        del container[:]
        container.extend(value)
    elif fd.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(msg, fd.name).CopyFrom(value)
    else:
        setattr(msg, fd.name, value)


@functools.cache
def messages(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of type ``desc``: each field present or not, with any value of its type; nested
    messages to depth 3 (deeper ones empty)."""
    cls = _class_of(desc)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        if depth > 3:
            return msg
        for fd in desc.fields:
            if not draw(st.booleans()):
                continue
            strategy = _repeated(fd, depth) if _is_repeated(fd) else field_values(fd, depth)
            _assign(msg, fd, draw(strategy))
        return msg

    return build()


def _class_of(desc: Descriptor) -> type[Message]:
    if desc.full_name == "google.protobuf.Timestamp":
        return Timestamp
    cls: type[Message] = getattr(pb, desc.name)
    return cls


# ------------------------------------------------------------------ valid requests
# Valid requests are the ground the mutations stand on, not what is fuzzed: they come from a
# random.Random seeded by one hypothesis draw (a few draws per request instead of dozens).
def rng(draw: Draw) -> random.Random:
    return random.Random(draw(st.integers(0, 2**64 - 1)))


class Pool:
    """The fuzzer's ids: drawn from a number (mostly new, a third of them one of the first 50,
    which makes duplicates and conflicts), never from what was sent before: hypothesis requires
    the draws of a test case not to depend on state outside it."""

    def __init__(self, seed: int) -> None:
        self.tag = f"fz{seed}"

    def _n(self, r: random.Random) -> int:
        return r.randint(0, 50) if r.random() < 0.3 else r.randint(51, 10**12)

    def txn_id(self, r: random.Random) -> str:
        return f"{self.tag}-t-{self._n(r)}"

    def call_id(self, r: random.Random) -> str:
        return f"{self.tag}-c-{self._n(r)}"


def _recent(r: random.Random) -> Any:
    ago_ms = r.choice([0, 1_000, 60_000, 3_600_000, 86_400_000, 6 * 86_400_000])
    return timestamp(int(time.time() * 1000) - ago_ms - r.randint(0, 120_000))


def _party(r: random.Random, account: str) -> Any:
    return pb.Party(account_id=account,
                    institution=r.choice(INSTITUTIONS),
                    party_type=r.choice([1, 1, 1, 2, 3]),  # type: ignore[arg-type]
                    account_opened_date=r.choice(["", "", "2020-01-31", "2026-11-30"]))


def _transaction(r: random.Random, pool: Pool) -> Any:
    payer, payee = r.sample(ACCOUNTS, 2)
    tid = pool.txn_id(r)
    t = pb.Transaction(
        transaction_id=tid, event_time=_recent(r),
        payer=_party(r, payer), payee=_party(r, payee),
        amount=pb.Money(minor_units=r.choice([1, 99, 10_000, 4_999_900, 8_000_000,
                                                          300_000_000, 10**15]),
                        currency=r.choice(["CNY", "CNY", "USD"])),
        channel=r.randint(1, 6), cash=(r.random() < 0.5),  # type: ignore[arg-type]
        cross_border=(r.random() < 0.5),
        device_id=r.choice(["", "", *DEVICES]),
        payer_phone=r.choice(["", "", *PHONES]),
        payee_phone=r.choice(["", "", "", *PHONES]),
        memo=r.choice(["", "", "rent", "安全账户 police case", "x" * 512]))
    # a cash terminal is one side of a cash deposit or withdrawal (else INVALID_ARGUMENT)
    if not t.cash or t.payer.party_type == t.payee.party_type == pb.PARTY_TYPE_CASH_TERMINAL:
        for party in (t.payer, t.payee) if not t.cash else (t.payer,):
            if party.party_type == pb.PARTY_TYPE_CASH_TERMINAL:
                party.party_type = pb.PARTY_TYPE_PERSON
    return t


def _call(r: random.Random, pool: Pool) -> Any:
    caller, callee = r.sample(PHONES, 2)
    cid = pool.call_id(r)
    outcome = r.randint(0, 5)
    duration = 0 if outcome in (1, 3, 4, 5) else r.choice([0, 5, 300, 7 * 86_400])
    return pb.CallEvent(call_id=cid, caller_number=caller, callee_number=callee,
                        start_time=_recent(r), duration_seconds=duration,
                        caller_class=r.randint(1, 5), outcome=outcome)  # type: ignore[arg-type]


def _entity(r: random.Random) -> Any:
    kind = r.randint(1, 3)
    value = r.choice({1: ACCOUNTS[30:], 2: PHONES[18:], 3: DEVICES}[kind])
    return pb.EntityRef(kind=kind, value=value)  # type: ignore[arg-type]


_POLICY = default_policy_text()
_POLICY_LINES = _POLICY.splitlines()
_POLICY_VALUES = [i for i, line in enumerate(_POLICY_LINES)
                  if "=" in line and not line.lstrip().startswith("#")]
# TOML values of every type, for any key of the policy: the parser must refuse each it cannot
# use with a line, never fail otherwise
_TOML_VALUES = ["0", "-1", "101", "1e308", "inf", "nan", "9223372036854775808", '"x"', '""', "true",
                "[]", "[1, 2]", "{}", "[[1]]", "[{}]", "[true]", '["x", 1]', "1979-05-27",
                "{a = 1}", '"$x"', '"(["', "0.5"]
_TOML_TABLES = ["rule = [1]", "rule = [[1]]", 'rule = ["code"]', "call_rule = {}", "policy = 1",
                "params = []", "thresholds = 1", "[nope]"]


def _policy_text(r: random.Random) -> str:
    """The policy for a ReloadPolicy: empty (re-read the server's file), the shipped policy, or
    it with one value replaced by a value of any TOML type, or a top-level key of the wrong
    type put first."""
    how = r.randint(0, 9)
    if how == 0:
        return ""
    if how == 1:
        return _POLICY
    if how == 2:
        return r.choice(_TOML_TABLES) + "\n" + _POLICY
    lines = list(_POLICY_LINES)
    i = r.choice(_POLICY_VALUES)
    lines[i] = lines[i].split("=", 1)[0] + "= " + r.choice(_TOML_VALUES)
    return "\n".join(lines)


def valid_request(method: str, r: random.Random, pool: Pool) -> Message:
    """A request of ``method`` that the server should accept (mostly: ids are reused on purpose,
    which may conflict)."""
    if method in ("ScreenTransaction", "ScreenStream"):
        return _transaction(r, pool)
    if method == "ScreenBatch":
        return pb.TransactionBatch(transactions=[_transaction(r, pool)
                                                 for _ in range(r.randint(1, 4))])
    if method == "ReportCall":
        return _call(r, pool)
    if method == "UpdateWatchlist":
        entries = {}
        for _ in range(r.randint(0, 2)):
            ref = _entity(r)
            entry = pb.WatchlistEntry(entity=ref, reason="fuzz case", source="fuzz")
            if (r.random() < 0.5):
                entry.expires_at.CopyFrom(timestamp(int(time.time() * 1000) + 86_400_000))
            entries[(ref.kind, ref.value)] = entry
        removes = [] if entries and (r.random() < 0.5) else [_entity(r)]
        removes = [r for r in removes if (r.kind, r.value) not in entries]
        if not entries and not removes:
            removes = [pb.EntityRef(kind=pb.ENTITY_KIND_ACCOUNT, value=ACCOUNTS[-1])]
        return pb.UpdateWatchlistRequest(upsert=list(entries.values()), remove=removes)
    if method == "QueryAccount":
        return pb.QueryAccountRequest(account_id=r.choice(ACCOUNTS),
                                      recent_decisions_limit=r.choice([0, 1, 10, 100]))
    if method == "ExportCaseGraph":
        req = pb.ExportCaseGraphRequest(hops=r.randint(0, 4),
                                        max_nodes=r.choice([0, 1, 50, 2000]),
                                        formats=r.choice([[3], [4], [1, 3], [2]]))  # type: ignore[arg-type]
        centre = r.choice(["account_id", "phone_number", "transaction_id"])
        if centre == "account_id":
            req.account_id = r.choice(ACCOUNTS)
        elif centre == "phone_number":
            req.phone_number = r.choice(PHONES)
        else:
            req.transaction_id = pool.txn_id(r)
        return req
    if method == "SubmitFeedback":
        feedback = pb.FeedbackRequest(verdict=r.randint(1, 3), note="fuzz")  # type: ignore[arg-type]
        if (r.random() < 0.5):
            feedback.transaction_id = pool.txn_id(r)
        else:
            feedback.account_id = r.choice(ACCOUNTS[:30])
        return feedback
    if method == "UpsertAccounts":
        ids = r.sample(ACCOUNTS, r.randint(1, 3))
        return pb.UpsertAccountsRequest(accounts=[pb.AccountProfile(
            account_id=a, party_type=r.randint(0, 3),  # type: ignore[arg-type]
            opened_date=r.choice(["", "2019-05-01"]),
            last_active_date=r.choice(["", "2024-01-01"]),
            merchant_category=r.choice(["", "5812"]), payroll=(r.random() < 0.5),
            phone=r.choice(["", *PHONES])) for a in ids])
    if method == "GetLargeValueReport":
        local = dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)
        day = (local - dt.timedelta(days=r.randint(0, 1))).date().isoformat()
        return pb.LargeValueReportRequest(report_date=day,
                                          institutions=r.choice([[], ["BANK01"]]))
    if method == "ReloadPolicy":
        return pb.ReloadPolicyRequest(policy_toml=_policy_text(r))
    raise ValueError(f"no valid request for {method}")  # pragma: no cover


def _paths(desc: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every field path of ``desc`` to depth 3 (into the first element of repeated messages)."""
    out: list[tuple[FieldDescriptor, ...]] = []
    for fd in desc.fields:
        out.append((fd,))
        if (fd.type == FieldDescriptor.TYPE_MESSAGE and depth < 3
                and _message_type(fd).full_name != "google.protobuf.Timestamp"):
            out += [(fd, *rest) for rest in _paths(_message_type(fd), depth + 1)]
    return out


_PATHS = {name: _paths(REQUEST[name].DESCRIPTOR) for name in METHODS}


def mutate(msg: Message, method: str, draw: Draw) -> str:
    """Change one to three fields of ``msg`` in place (a generic value, or cleared); returns
    what was changed."""
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_PATHS[method]))
        m = msg
        for fd in path[:-1]:
            if _is_repeated(fd):
                container = getattr(m, fd.name)
                m = container[0] if len(container) else container.add()
            else:
                m = getattr(m, fd.name)
        last = path[-1]
        name = ".".join(fd.name for fd in path)
        if draw(st.integers(0, 4)) == 0:
            m.ClearField(last.name)
            changed.append(f"{name}=<cleared>")
            continue
        value = draw(_repeated(last, 1) if _is_repeated(last) else field_values(last, 1))
        _assign(m, last, value)
        changed.append(f"{name}={_short(value)}")
    return ", ".join(changed)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, list) else f"[{len(value)} items]"
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


# ------------------------------------------------------------------ requests and outcomes
@dataclasses.dataclass
class FuzzRequest:
    method: str
    flavor: str
    payload: bytes | list[bytes]  # a list for a stream
    role: str | None  # whose token is sent (None: see metadata)
    metadata: tuple[tuple[str, str], ...] = ()
    expect: frozenset[str] | None = None  # the only acceptable statuses, when known
    note: str = ""

    def describe(self) -> dict[str, Any]:
        raw = self.payload if isinstance(self.payload, bytes) else b"".join(self.payload)
        return {"method": self.method, "flavor": self.flavor, "role": self.role,
                "note": self.note[:300], "bytes": len(raw), "head_hex": raw[:96].hex(),
                "sha256": hashlib.sha256(raw).hexdigest()[:16],
                "metadata": [(k, v[:40]) for k, v in self.metadata]}


@dataclasses.dataclass(frozen=True)
class Failure:
    kind: str
    detail: str
    request: dict[str, Any] | None = None


def leaks(text: str) -> list[str]:
    """What in ``text`` looks like a stack trace or an exception's repr (empty when none)."""
    return [name for name, pattern in _LEAKS if pattern.search(text)]


def problems_of(method: str, code: str, details: str,
                trailing: Sequence[tuple[str, Any]] = (), reply: bytes | None = None,
                expect: frozenset[str] | None = None) -> list[str]:
    """Why an outcome is a failure (empty when it is acceptable)."""
    out = []
    if code not in EXPECTED:
        out.append(f"status {code}")
    if code == "DEADLINE_EXCEEDED" and not details.startswith("deadline too short"):
        out.append("no answer before the client's deadline (a hang)")
    if expect is not None and code not in expect:
        out.append(f"status {code}, expected {'/'.join(sorted(expect))}")
    for name in leaks(details):
        out.append(f"details leak a {name}")
    for key, value in trailing:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for name in leaks(text):
            out.append(f"trailing metadata {key!r} leaks a {name}")
    if code == "OK" and reply is not None:
        try:
            REPLY[method].FromString(reply)
        except Exception as exc:  # any decode problem is the finding
            out.append(f"reply does not decode as {REPLY[method].DESCRIPTOR.full_name}: "
                       f"{type(exc).__name__}")
    return out


def _bearer(role: str, tokens: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tokens[role]}"),)


def _role_for(method: str, draw: Draw) -> str:
    natural = {"ScreenTransaction": "bank", "ScreenStream": "bank", "ScreenBatch": "bank",
               "ReportCall": "telecom", "UpdateWatchlist": "police", "QueryAccount": "police",
               "ExportCaseGraph": "police", "SubmitFeedback": "bank", "UpsertAccounts": "bank",
               "GetLargeValueReport": "bank", "ReloadPolicy": "admin"}[method]
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(sorted(ALLOWED[method])))
    return natural


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _oversize(limit: int) -> bytes:
    """A message over ``limit`` bytes: field 11 (Transaction.memo) as one huge string."""
    n = limit + 1024
    return b"\x5a" + _varint(n) + b"a" * n


@st.composite
def _raw_payload(draw: st.DrawFn, method: str, pool: Pool, max_message: int) -> tuple[bytes, str,
                                                                                      frozenset[str] | None]:
    good = valid_request(method, rng(draw), pool).SerializeToString()
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "other_method", "unknown_fields",
                                 "nested", "bad_tag", "long_varint", "oversize"]))
    if kind == "oversize" and draw(st.integers(0, 19)) != 0:  # rare: 32 MB each
        kind = "random"
    if kind == "random":
        return draw(st.binary(max_size=300)), kind, None
    if kind == "truncated":
        # any length: a draw's bounds may not depend on the message, whose ids and times vary
        return good[:draw(st.integers(0, 1 << 16)) % max(1, len(good))], kind, None
    if kind == "flipped":
        if not good:
            return b"\x08", kind, None
        flipped = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, 1 << 16)) % len(flipped)
            flipped[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped), kind, None
    if kind == "other_method":
        other = draw(st.sampled_from([m for m in METHODS if m != method]))
        return valid_request(other, rng(draw), pool).SerializeToString(), f"{kind}:{other}", None
    if kind == "unknown_fields":
        extra = _varint((draw(st.integers(20, 536_870_911)) << 3) | 2) + _varint(3) + b"abc"
        return good + extra, kind, None
    if kind == "nested":  # deeper than any parser allows: unknown groups, or field 3 in field 3
        depth = draw(st.sampled_from([50, 101, 1000, 20_000]))
        if draw(st.booleans()):  # field 20: start-group tags, then as many end-group tags
            return b"\xa3\x01" * depth + b"\xa4\x01" * depth, f"groups:{depth}", None
        headers, inner = [], 0
        for _ in range(depth):  # from the inside out: each header frames what it holds
            headers.append(b"\x1a" + _varint(inner))
            inner += len(headers[-1])
        return b"".join(reversed(headers)), f"{kind}:{depth}", None
    if kind == "bad_tag":  # field number 0, wire types 6 and 7, an end-group without a start
        return good + draw(st.sampled_from([b"\x00\x01", b"\x0e\x01", b"\x0f", b"\x0c",
                                            b"\x0b\x0c"])), kind, None
    if kind == "long_varint":
        return b"\x08" + b"\xff" * draw(st.integers(9, 20)) + b"\x01", kind, None
    return _oversize(max_message), kind, frozenset({"RESOURCE_EXHAUSTED"})


_WRONG = [
    ((), "no metadata", frozenset({"UNAUTHENTICATED"})),
    ((("authorization", "Bearer not-a-token"),), "wrong token", frozenset({"UNAUTHENTICATED"})),
    ((("authorization", "Bearer"),), "scheme only", frozenset({"UNAUTHENTICATED"})),
    ((("authorization", ""),), "empty", frozenset({"UNAUTHENTICATED"})),
    ((("authorization", "Basic dXNlcjpwYXNz"),), "basic auth", frozenset({"UNAUTHENTICATED"})),
    ((("authorization", "Bearer " + "x" * 4000),), "long token", frozenset({"UNAUTHENTICATED"})),
    ((("x-token", "fuzz-token-admin"),), "token in another header", frozenset({"UNAUTHENTICATED"})),
]


class Fuzzer:
    """Sends rounds of hostile requests to one server and keeps the tally."""

    def __init__(self, address: str, tokens: dict[str, str], *, seed: int = 0,
                 digest: Callable[[], str] | None = None, alive: Callable[[], bool] | None = None,
                 changed: Callable[[], list[str]] | None = None,
                 timeout: float = 60.0, max_message: int = MAX_MESSAGE,
                 progress: Callable[[str], None] | None = None) -> None:
        self.address = address
        self.tokens = tokens
        self.seed = seed
        self.pool = Pool(seed)
        self.digest = digest
        self.changed = changed
        self.alive = alive or (lambda: True)
        self.timeout = timeout
        self.max_message = max_message
        self.progress = progress
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 256 << 20),
            ("grpc.max_send_message_length", 256 << 20)])
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.unary = {m: self.channel.unary_unary(PREFIX + m, request_serializer=None,
                                                  response_deserializer=None)
                      for m in METHODS if m not in STREAMING}
        self.stream = {m: self.channel.stream_stream(PREFIX + m, request_serializer=None,
                                                     response_deserializer=None)
                       for m in STREAMING}
        self.requests = 0
        self.stream_messages = 0
        self.rounds = 0
        self.by_method: dict[str, Counter[str]] = defaultdict(Counter)
        self.by_flavor: dict[str, Counter[str]] = defaultdict(Counter)
        self.seconds_by_method: dict[str, float] = defaultdict(float)
        self.failures: list[Failure] = []
        self.failure_count = 0
        self.checks = Counter[str]()
        self.digest_ms: list[float] = []
        self.dead = False
        self._last_digest: str | None = None
        self._t0 = time.monotonic()
        self._last_progress = self._t0

    def close(self) -> None:
        self.channel.close()

    # ---------------------------------------------------------------- generation
    def draw_round(self, draw: Draw) -> list[FuzzRequest]:
        """One round: one to ten requests of one flavor."""
        flavor = draw(st.sampled_from(FLAVORS))
        return [self._request(draw, flavor) for _ in range(draw(st.integers(1, 10)))]

    def _request(self, draw: Draw, flavor: str) -> FuzzRequest:
        method = "ScreenStream" if flavor == "stream" else draw(st.sampled_from(METHODS))
        role = _role_for(method, draw)
        if flavor == "stream":
            parts, notes = [], []
            for _ in range(draw(st.integers(1, 5))):
                how = draw(st.sampled_from(["valid", "valid", "mutated", "generic", "raw"]))
                if how == "raw":
                    raw, note, _ = draw(_raw_payload(method, self.pool, self.max_message))
                    parts.append(raw)
                    notes.append(f"raw {note}")
                    continue
                msg = (draw(messages(pb.Transaction.DESCRIPTOR)) if how == "generic"
                       else valid_request(method, rng(draw), self.pool))
                note = mutate(msg, method, draw) if how == "mutated" else ""
                parts.append(msg.SerializeToString())
                notes.append(f"{how} {note}".strip())
            return FuzzRequest(method, flavor, parts, role, _bearer(role, self.tokens),
                               note="; ".join(notes))
        if flavor == "raw":
            raw, note, expect = draw(_raw_payload(method, self.pool, self.max_message))
            payload: bytes | list[bytes] = [raw] if method in STREAMING else raw
            return FuzzRequest(method, flavor, payload, role, _bearer(role, self.tokens),
                               expect=expect, note=note)
        if flavor == "generic":
            msg = draw(messages(REQUEST[method].DESCRIPTOR))
            note = ""
        else:
            msg = valid_request(method, rng(draw), self.pool)
            note = mutate(msg, method, draw) if flavor == "mutated" else ""
        raw = msg.SerializeToString()
        payload = [raw] if method in STREAMING else raw
        if flavor != "tokens":
            return FuzzRequest(method, flavor, payload, role, _bearer(role, self.tokens), note=note)
        denied = sorted(set(ROLES) - ALLOWED[method])
        if denied and draw(st.integers(0, 2)) == 0:
            other = draw(st.sampled_from(denied))
            return FuzzRequest(method, flavor, payload, other, _bearer(other, self.tokens),
                               expect=frozenset({"PERMISSION_DENIED"}), note=f"role {other}")
        if draw(st.integers(0, 5)) == 0:  # the scheme is case-insensitive: a valid call
            return FuzzRequest(method, flavor, payload, role,
                               (("authorization", f"bEaReR {self.tokens[role]}"),),
                               note="scheme bEaReR")
        metadata, note, expect = draw(st.sampled_from(_WRONG))
        return FuzzRequest(method, flavor, payload, None, metadata, expect=expect, note=note)

    # ---------------------------------------------------------------- sending
    def send(self, req: FuzzRequest) -> tuple[str, bool, bool]:
        """Send one request; returns (status name, something accepted: OK, or a stream's
        decisions before its refusal; changed state for sure: a new decision)."""
        replies: list[bytes] = []
        t0 = time.perf_counter()
        code, details = "OK", ""
        trailing: tuple[tuple[str, Any], ...] = ()
        try:
            if isinstance(req.payload, list):
                it = self.stream[req.method](iter(req.payload), metadata=req.metadata,
                                             timeout=self.timeout)
                for reply in it:
                    replies.append(reply)
                trailing = tuple(it.trailing_metadata() or ())
            else:
                reply, call = self.unary[req.method].with_call(req.payload, metadata=req.metadata,
                                                               timeout=self.timeout)
                replies.append(reply)
                trailing = tuple(call.trailing_metadata() or ())
        except grpc.RpcError as exc:
            status = exc.code()
            code = status.name if status is not None else "UNKNOWN"
            details = exc.details() or ""
            trailing = tuple(exc.trailing_metadata() or ())  # type: ignore[arg-type]
        self.requests += 1
        self.seconds_by_method[req.method] += time.perf_counter() - t0
        if isinstance(req.payload, list):
            self.stream_messages += len(req.payload)
        self.by_method[req.method][code] += 1
        self.by_flavor[req.flavor][code] += 1
        found = problems_of(req.method, code, details, trailing, expect=req.expect)
        decided = False
        for reply in replies:
            found += problems_of(req.method, "OK", "", reply=reply)
            decided |= self._new_decision(req.method, reply)
        for problem in dict.fromkeys(found):
            self._fail("response", f"{req.method}: {problem}: {details[:300]!r}", req)
        return code, code == "OK" or bool(replies), decided

    @staticmethod
    def _new_decision(method: str, reply: bytes) -> bool:
        """Whether ``reply`` is a decision made now (not a duplicate): the state changed."""
        try:
            if method in ("ScreenTransaction", "ScreenStream"):
                return not pb.Decision.FromString(reply).duplicate
            if method == "ScreenBatch":
                return any(not d.duplicate for d in pb.DecisionBatch.FromString(reply).decisions)
            if method == "ReportCall":
                return not pb.CallDecision.FromString(reply).duplicate
        except Exception:  # an undecodable reply is reported by problems_of
            return False
        return False

    def _fail(self, kind: str, detail: str, req: FuzzRequest | None = None) -> None:
        self.failure_count += 1
        if len(self.failures) < 100:
            self.failures.append(Failure(kind, detail, req.describe() if req else None))

    def run_round(self, reqs: list[FuzzRequest]) -> None:
        """Send ``reqs`` in order, then check health, liveness and the state digest."""
        if self.dead:
            return
        before = self._last_digest
        if before is None and self.digest is not None:
            before = self._take_digest()
        touched, decided = False, False
        for req in reqs:
            _, accepted, new = self.send(req)
            decided |= new
            touched |= accepted and req.method not in READ_ONLY
        self.rounds += 1
        if not self.alive():
            self.dead = True
            self._fail("server", "the server process died")
            return
        self._check_health()
        if self.digest is not None:
            after = self._take_digest()
            if not touched:
                self.checks["unchanged_expected"] += 1
                if after != before:
                    sent = "; ".join(json.dumps(r.describe(), ensure_ascii=False) for r in reqs)
                    self._fail("state", "a round of refused or read-only requests changed the "
                               f"state digest ({self._changed()}): {sent}")
            elif decided:
                self.checks["changed_expected"] += 1
                if after == before:
                    self._fail("state", "a round with a new decision left the state digest "
                               "unchanged", reqs[0])
            else:
                self.checks["accepted_not_checked"] += 1
        self._report_progress()

    def _changed(self) -> str:
        """What changed (the digest's parts), when the digest can say."""
        if self.changed is None:
            return "parts unknown"
        return "changed: " + (", ".join(self.changed()) or "nothing")

    def _take_digest(self) -> str:
        assert self.digest is not None
        t0 = time.perf_counter()
        value = self.digest()
        self.digest_ms.append((time.perf_counter() - t0) * 1000)
        self._last_digest = value
        return value

    def _check_health(self) -> None:
        try:
            status = self.health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
        except grpc.RpcError as exc:
            self._fail("health", f"health check failed: {exc.code().name}")
            return
        if status != health_pb2.HealthCheckResponse.SERVING:
            self._fail("health", f"health is {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")

    def _report_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last_progress < 5.0):
            return
        self._last_progress = now
        total: Counter[str] = Counter()
        for counts in self.by_method.values():
            total.update(counts)
        top = ", ".join(f"{k} {v}" for k, v in total.most_common(6))
        self.progress(f"fuzz: {self.requests:,} requests in {self.rounds:,} rounds, "
                      f"{self.requests / max(1e-9, now - self._t0):,.0f}/s; {top}; "
                      f"state checks {sum(self.checks.values()):,}; failures {self.failure_count}")

    # ---------------------------------------------------------------- driving
    def run(self, requests: int, chunk: int = 100) -> None:
        """Send at least ``requests`` requests: hypothesis draws the rounds (seeded), at most
        ``chunk`` rounds per call of the given-function, a new seed per chunk. Every example
        sends its round (an example that drew nothing would make hypothesis's record of the
        choices inconsistent), so the last chunk is sized to what is left (5.5 per round)."""
        n = 0
        while self.requests < requests and not self.dead:
            rounds = max(1, min(chunk, int((requests - self.requests) / 5.5)))
            @hypothesis.seed(self.seed * 1_000_003 + n)
            @hypothesis.settings(max_examples=rounds, phases=[hypothesis.Phase.generate],
                                 database=None, deadline=None, print_blob=False,
                                 suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(data=st.data())
            def one_round(data: st.DataObject) -> None:
                self.run_round(self.draw_round(data.draw))

            one_round()
            n += 1
        self._report_progress(force=True)

    def summary(self) -> dict[str, Any]:
        seconds = time.monotonic() - self._t0
        total: Counter[str] = Counter()
        for counts in self.by_method.values():
            total.update(counts)
        ms = sorted(self.digest_ms)
        return {
            "requests": self.requests,
            "stream_messages": self.stream_messages,
            "rounds": self.rounds,
            "seconds": round(seconds, 1),
            "requests_per_s": round(self.requests / max(seconds, 1e-9), 1),
            "statuses": dict(total.most_common()),
            "by_method": {m: dict(self.by_method[m].most_common()) for m in sorted(self.by_method)},
            "by_flavor": {f: dict(self.by_flavor[f].most_common()) for f in sorted(self.by_flavor)},
            "seconds_by_method": {m: round(v, 1) for m, v in sorted(self.seconds_by_method.items())},
            "state_checks": dict(self.checks),
            "digest_ms_median": round(ms[len(ms) // 2], 2) if ms else None,
            "failure_count": self.failure_count,
            "failures": [dataclasses.asdict(f) for f in self.failures],
        }


# ------------------------------------------------------------------ the server
class FuzzServer:
    """``bench._fuzz_server`` in its own process: address, tokens, digest, log."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench._fuzz_server"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, env={**os.environ, **(env or {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the hello line: once SERVING, or EOF if it failed
        if not line:
            self.stop()
            raise RuntimeError(f"fuzz server exited {self.proc.wait()} before serving:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        hello = json.loads(line)
        self.address: str = hello["address"]
        self.tokens: dict[str, str] = hello["tokens"]

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fuzz server gave no answer (it died)")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def digest(self) -> str:
        return str(self._ask("digest")["digest"])

    def changed(self) -> list[str]:
        return [str(part) for part in self._ask("changed")["changed"]]

    def stats(self) -> dict[str, int]:
        return dict(self._ask("stats")["stats"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_problems(self) -> list[str]:
        """Lines of the server's log that tell of a bug: internal errors and tracebacks."""
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line[:2000] for line in text.splitlines()
                if '"internal_error"' in line or "Traceback" in line]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, OSError):
                self._ask("stop")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._log.close()
        return self.proc.returncode


def query_digest(address: str, token: str) -> Callable[[], str]:
    """A digest for a server of someone else's: the QueryAccount reports (police token) of every
    account the fuzzer names. Coarser than the engine digest: state no report shows is missed."""
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
    query = channel.unary_unary(PREFIX + "QueryAccount", request_serializer=None,
                                response_deserializer=None)
    md = (("authorization", f"Bearer {token}"),)

    def digest() -> str:
        h = hashlib.sha256()
        for account in ACCOUNTS:
            req = pb.QueryAccountRequest(account_id=account, recent_decisions_limit=100)
            h.update(query(req.SerializeToString(), metadata=md, timeout=30))
        return h.hexdigest()

    return digest


def fuzz(requests: int, seed: int = 0, *, server: str | None = None,
         tokens: dict[str, str] | None = None, workdir: Path | None = None,
         timeout: float = 60.0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the fuzzer for ``requests`` requests; returns the summary (``failure_count`` 0 when
    nothing failed). Starts its own server unless ``server`` (then ``tokens``) is given."""
    started = dt.datetime.now(dt.UTC)
    own: FuzzServer | None = None
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        if server is None:
            log_path = (workdir or Path(tmp)) / "fuzz-server.log"
            if progress:
                progress(f"fuzz: starting the server (log {log_path})")
            own = FuzzServer(log_path)
            address, tokens = own.address, own.tokens
            digest: Callable[[], str] | None = own.digest
            alive: Callable[[], bool] = own.alive
            changed: Callable[[], list[str]] | None = own.changed
        else:
            address, tokens = server, dict(tokens or {})
            missing = [r for r in ROLES if r not in tokens]
            if missing:
                raise ValueError(f"--server needs a token per role; missing: {', '.join(missing)}")
            digest, alive = query_digest(address, tokens["police"]), (lambda: True)
            changed = None
        fuzzer = Fuzzer(address, tokens, seed=seed, digest=digest, alive=alive, changed=changed,
                        timeout=timeout, progress=progress)
        try:
            fuzzer.run(requests)
        finally:
            fuzzer.close()
            summary = fuzzer.summary()
            server_info: dict[str, Any] = {"address": address, "own": own is not None}
            if own is not None:
                if own.alive():
                    server_info["stats"] = own.stats()
                for line in own.log_problems():
                    fuzzer._fail("server log", line)
                server_info["exit_code"] = own.stop()
                if server_info["exit_code"] != 0:
                    fuzzer._fail("server", f"the server exited {server_info['exit_code']}")
                summary.update(failure_count=fuzzer.failure_count,
                               failures=[dataclasses.asdict(f) for f in fuzzer.failures])
    return {"command": "python -m bench.fuzz " + " ".join(sys.argv[1:]) if __name__ == "__main__"
            else f"bench.fuzz.fuzz({requests}, seed={seed})",
            "started": started.isoformat(timespec="seconds"), "seed": seed,
            "commit": git_commit(10) or "", "dirty": git_dirty(), "server": server_info, **summary}


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    head, _, body = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(prog="python -m bench.fuzz",
                                description=head.removeprefix("``python -m bench.fuzz``: "),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=body)
    p.add_argument("--requests", type=int, default=2000, help="requests to send (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="fuzz this server instead of starting one (needs --token for every role; "
                        "its [auth] max_failures should be 0, or wrong tokens block the fuzzer)")
    p.add_argument("--token", action="append", default=[], metavar="ROLE=TOKEN",
                   help="with --server: the bearer token of ROLE (repeat for every role)")
    p.add_argument("--timeout", type=float, default=60.0, help="client deadline per call, s")
    p.add_argument("--out", type=Path, default=None,
                   help="write the summary JSON here (e.g. bench/results/fuzz.json)")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="keep the server's log here (default: a temporary directory)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tokens = dict(t.split("=", 1) for t in args.token)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    summary = fuzz(args.requests, args.seed, server=args.server, tokens=tokens,
                   workdir=args.log_dir, timeout=args.timeout, progress=say)
    text = json.dumps(summary, indent=1, ensure_ascii=False)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        say(f"fuzz: summary written to {args.out}")
    say(f"fuzz: {summary['requests']:,} requests ({summary['stream_messages']:,} stream messages) "
        f"in {summary['seconds']} s, {summary['requests_per_s']}/s; statuses {summary['statuses']}; "
        f"state checks {summary['state_checks']}; failures {summary['failure_count']}")
    for f in summary["failures"][:20]:
        say(f"FAIL [{f['kind']}] {f['detail'][:500]}")
    return 1 if summary["failure_count"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
