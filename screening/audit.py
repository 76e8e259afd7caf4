"""The audit trail: who did what, when, with which decision, under which policy.

Every decision (ALLOW and duplicates included), call decision, watchlist change, feedback,
account query, case export, large-value report, registry upsert and policy swap is appended to
JSON-lines files under ``[audit] dir``, identifiers in clear: it is the regulator's record (the
ordinary log stays masked). Off while ``dir`` is empty.

**Format.** One record per line, UTF-8, keys in this order::

    {"seq":7,"at":"2026-12-06T14:03:11.123456Z","kind":"decision",...,"prev":"<64 hex>","hash":"<64 hex>"}

``hash`` is the sha256 of the line's bytes before ``,"hash":`` (everything else, ``prev``
included) and ``prev`` is the ``hash`` of the record before it (``GENESIS``, 64 zeros, before the
first record ever). ``seq`` counts from 0 without gaps across files. A file is named
``audit-<seq of its first record, 12 digits>.jsonl`` and begins with an ``open`` record naming
itself and the file before it, chained to that file's last record: files cannot be dropped,
renamed, swapped or reordered unseen. ``anchor`` records carry the count so far and the chain
head (the hash of the record before the anchor); each anchor's own seq and hash are also
logged as ``audit_anchor`` in the ordinary log, so an outsider can notarise them, and
``screening audit verify --anchor SEQ=HASH`` checks the log still holds a published one. (A
hash chain without a key shows a change to any record before a published anchor; records after
the last published anchor could be rewritten as a whole by whoever can write the files.)

**Request path.** A handler calls ``admit()`` before it changes anything and, once done,
appends one tuple of objects it already holds (``add``, a bound ``deque.append``): no
serialising and no hashing there. A writer thread takes the queue at least every
``flush_interval_ms``, builds, chains and writes the records in one write per batch, fsyncs it
(``fsync = "batch"``) and rotates files by size and UTC day. Records are in the order they were
queued; ``at`` is read on the request thread, so two worker threads can put them a few
microseconds out of time order.

**When the writer cannot keep up** (a slow or failing disk): once ``max_pending`` records wait,
``admit`` waits up to ``block_ms`` for room and then raises ``AuditUnavailable``
(UNAVAILABLE): the call is refused before it changes any state, so the service never decides
what it cannot record. A write that fails is retried every second with the same records
(a partial write is cut off first); nothing queued is dropped. What is queued but not yet
written (at most ``flush_interval_ms`` of traffic, or what waits behind a failing disk) is lost
if the process is killed; SIGTERM writes it all before the process exits.

**After a crash mid-write** the newest file may end in an incomplete record. The next start
leaves those bytes as they are, continues the chain from the last complete record in a new
file, and its ``open`` record names them (``damaged_tail``: file, offset, bytes); ``verify``
accepts exactly that and reports it as a note.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screening.auth import Caller
from screening.config import AuditSettings
from screening.errors import AuditUnavailable, ConfigError
from screening.model import NEVER, CallInput, CallRecord, DecisionRecord, TxnColumns, TxnInput
from screening.policy import ACTION_NAMES, CALL_ACTION_NAMES, REPORT_FLAGS

__all__ = [
    "CALL",
    "DECISION",
    "DECISIONS",
    "GENESIS",
    "AuditTrail",
    "VerifyReport",
    "audit_files",
    "iso_ms",
    "iso_ns",
    "read_records",
    "verify",
    "watch_entry",
]

GENESIS = "0" * 64
DECISION = "decision"
# one queued item for the decisions of a whole batch, written as one DECISION record each:
# (DECISIONS, at, caller, rpc, TxnColumns, records, duplicate flags, reason codes per record)
DECISIONS = "decisions"
CALL = "call_decision"
_OPEN = "open"
_ANCHOR = "anchor"
_FILE_RE = re.compile(r"^audit-(\d{12})\.jsonl$")
_HASH_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
_SEQ_HEAD = re.compile(rb'^\{"seq":(\d+),')
_ENTITY_KINDS = {1: "account", 2: "phone", 3: "device"}
_REPORTS = tuple(REPORT_FLAGS.items())


def file_name(first_seq: int) -> str:
    return f"audit-{first_seq:012d}.jsonl"


def audit_files(directory: Path) -> list[Path]:
    """The audit files of ``directory`` in chain order (by the sequence number in the name;
    ``writer.lock`` and anything else is not one)."""
    return sorted(p for p in directory.iterdir() if _FILE_RE.match(p.name))


# seconds already formatted (each record has two times, and most share their seconds)
_SECONDS: dict[int, str] = {}


def iso_ns(ns: int) -> str:
    """Epoch nanoseconds as UTC text to the microsecond: ``2026-12-06T14:03:11.123456Z``."""
    s, rest = divmod(ns, 1_000_000_000)
    text = _SECONDS.get(s)
    if text is None:
        if len(_SECONDS) >= 65_536:
            _SECONDS.clear()
        text = _SECONDS[s] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return f"{text}.{rest // 1000:06d}Z"


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as UTC text (as ``iso_ns``)."""
    return iso_ns(ms * 1_000_000)


# ------------------------------------------------------------------ records from queued tuples
# Each builder returns the record's fields after "kind" as JSON object members (no braces).
# Decisions are the bulk of the trail, so theirs are written out directly (every string
# through json's own escaping), which costs a third of building a dict and encoding it.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_q = json.encoder.encode_basestring
_BOOL = ("false", "true")
_REPORT_LISTS = tuple(",".join(_q(name) for name, bit in _REPORTS if flags & bit)
                      for flags in range(1 << len(_REPORTS)))


_WHO: dict[tuple[Caller, str], str] = {}


def _who(caller: Caller, rpc: str) -> str:
    text = _WHO.get((caller, rpc))
    if text is None:
        if len(_WHO) >= 4_096:
            _WHO.clear()
        text = f'"rpc":{_q(rpc)},"by":{_q(caller.name)},"role":{_q(caller.role)}'
        if caller.institution:
            text += f',"institution":{_q(caller.institution)}'
        _WHO[(caller, rpc)] = text
    return text


def _decision(item: tuple[Any, ...]) -> str:
    _, _, caller, rpc, t, rec, duplicate, reasons = item
    assert isinstance(t, TxnInput) and isinstance(rec, DecisionRecord)
    return (f'{_who(caller, rpc)},"txn":{_q(t.transaction_id)},'
            f'"event_time":"{iso_ms(t.event_time_ms)}",'
            f'"payer":{_q(t.payer.account_id)},"payer_institution":{_q(t.payer.institution)},'
            f'"payee":{_q(t.payee.account_id)},"payee_institution":{_q(t.payee.institution)},'
            f'"amount_minor":{t.amount_minor:d},"currency":{_q(t.currency)},'
            f'"amount_fen":{t.amount_fen:d},"action":"{ACTION_NAMES[rec.action]}",'
            f'"reasons":[{",".join(map(_q, reasons))}],"risk":{rec.score:d},'
            f'"reports":[{_REPORT_LISTS[rec.report_flags & 7]}],'
            f'"duplicate":{_BOOL[bool(duplicate)]},"degraded":{_BOOL[bool(rec.degraded)]},'
            f'"policy":{_q(rec.policy_version)}')


def _batch_decisions(item: tuple[Any, ...]) -> list[str]:
    """The DECISION records of a DECISIONS item, as ``_decision`` writes them, in order."""
    _, _, caller, rpc, txns, recs, duplicates, reasons = item
    assert isinstance(txns, TxnColumns)
    who = _who(caller, rpc)
    return [(f'{who},"txn":{_q(tid)},"event_time":"{iso_ms(ms)}",'
             f'"payer":{_q(pa)},"payer_institution":{_q(pi)},'
             f'"payee":{_q(qa)},"payee_institution":{_q(qi)},'
             f'"amount_minor":{minor:d},"currency":{_q(cur)},'
             f'"amount_fen":{fen:d},"action":"{ACTION_NAMES[rec.action]}",'
             f'"reasons":[{",".join(map(_q, codes))}],"risk":{rec.score:d},'
             f'"reports":[{_REPORT_LISTS[rec.report_flags & 7]}],'
             f'"duplicate":{_BOOL[bool(dup)]},"degraded":{_BOOL[bool(rec.degraded)]},'
             f'"policy":{_q(rec.policy_version)}')
            for tid, ms, pa, pi, qa, qi, minor, cur, fen, rec, dup, codes in zip(
                txns.transaction_id, txns.event_time_ms, txns.payer_account,
                txns.payer_institution, txns.payee_account, txns.payee_institution,
                txns.amount_minor, txns.currency, txns.amount_fen, recs, duplicates, reasons,
                strict=True)]


def _call_decision(item: tuple[Any, ...]) -> str:
    _, _, caller, rpc, call, rec, duplicate, reasons = item
    assert isinstance(call, CallInput) and isinstance(rec, CallRecord)
    return (f'{_who(caller, rpc)},"call_id":{_q(call.call_id)},'
            f'"caller_number":{_q(call.caller)},"callee_number":{_q(call.callee)},'
            f'"start":"{iso_ms(call.start_ms)}","duration_s":{call.duration_s:d},'
            f'"action":"{CALL_ACTION_NAMES[rec.action]}",'
            f'"reasons":[{",".join(map(_q, reasons))}],"risk":{rec.score:d},'
            f'"duplicate":{_BOOL[bool(duplicate)]},"policy":{_q(rec.policy_version)}')


def _event(item: tuple[Any, ...]) -> str:
    _, _, caller, rpc, policy, fields = item
    members = _ENCODE(fields)[1:-1]
    return f'{_who(caller, rpc)},{members + "," if members else ""}"policy":{_q(policy)}'


def _meta(fields: Mapping[str, Any]) -> str:
    return _ENCODE(fields)[1:-1]


_BUILDERS: dict[str, Callable[[tuple[Any, ...]], str]] = {DECISION: _decision,
                                                           CALL: _call_decision}


def watch_entry(kind: int, value: str, reason: str = "", source: str = "",
                expires_ms: int = NEVER) -> dict[str, Any]:
    """One watchlist entry as the audit record holds it."""
    out: dict[str, Any] = {"kind": _ENTITY_KINDS.get(kind, str(kind)), "value": value}
    if reason or source:
        out.update(reason=reason, source=source,
                   expires=None if expires_ms >= NEVER else iso_ms(expires_ms))
    return out


# ------------------------------------------------------------------ the writer
@dataclass
class _Chain:
    """Where the chain stands: the next sequence number and the last record's hash."""

    seq: int = 0
    head: str = GENESIS


@dataclass
class _Resume:
    chain: _Chain
    last_file: str | None
    damaged: dict[str, Any] | None


class AuditTrail:
    """The audit trail of one server: a queue the request threads append to and the thread that
    writes it (see the module docstring). ``start()`` opens the directory (ConfigError when it
    cannot be written), ``close()`` writes everything queued, a last anchor, and stops."""

    def __init__(self, settings: AuditSettings, log: Any, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self.dir = Path(settings.dir)
        self.log = log
        self.clock_ns = clock_ns
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        # the request path: one C call, thread-safe under the GIL
        self.add = self._pending.append
        # records queued beyond one per item (a DECISIONS item holds a batch's), so the backlog
        # is counted in records; changed under its own small lock
        self._extra = 0
        self._extra_lock = threading.Lock()
        self._max_pending = settings.max_pending
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._chain = _Chain()
        self._fd = -1
        self._file = ""
        self._file_bytes = 0
        self._file_day = ""
        self._since_anchor = 0
        self._last_anchor = 0.0
        self._failing: str | None = None
        self._busy = False
        self._abandon = threading.Event()
        self._lock_fd = -1
        self.written = 0  # records written (and fsynced, with fsync = "batch") by this process
        self.refused = 0

    # -------------------------------------------------------------- request path
    def add_decisions(self, item: tuple[Any, ...]) -> None:
        """Queue a DECISIONS item (one record per decision of a batch)."""
        with self._extra_lock:
            self._extra += len(item[5]) - 1
        self._pending.append(item)

    def _backlog(self) -> int:
        """Records queued, not yet written."""
        return len(self._pending) + self._extra

    def admit(self) -> None:
        """Return when there is room for a call's records; raise AuditUnavailable when the
        writer stays ``max_pending`` records behind for ``block_ms``."""
        if self._backlog() < self._max_pending:
            return
        self._wake.set()
        deadline = time.monotonic() + self.settings.block_ms / 1000
        with self._room:
            while self._backlog() >= self._max_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.refused += 1
                    why = f"; last write error: {self._failing}" if self._failing else ""
                    raise AuditUnavailable(
                        f"audit trail: {self._backlog():,} records not yet written ([audit] "
                        f"max_pending {self._max_pending:,}, waited {self.settings.block_ms:g} "
                        f"ms{why}); nothing was changed, retry shortly")
                self._room.wait(left)

    def event(self, kind: str, caller: Caller, rpc: str, policy: str, **fields: Any) -> None:
        """Queue a record of ``kind`` (not a decision) with ``fields`` (JSON values)."""
        self.add((kind, self.clock_ns(), caller, rpc, policy, fields))

    def note(self, kind: str, caller: Caller, rpc: str, policy: str, **fields: Any) -> bool:
        """``event`` without waiting, for calls refused before any handler ran (access
        denied): False, and nothing queued, when the writer is ``max_pending`` behind."""
        if len(self._pending) >= self._max_pending:
            return False
        self.event(kind, caller, rpc, policy, **fields)
        return True

    @property
    def pending(self) -> int:
        return self._backlog()

    def stats(self) -> dict[str, float]:
        """For the metrics: records waiting and written, calls refused, writer failing (0/1)."""
        return {"pending": self._backlog(), "written": self.written, "refused": self.refused,
                "failing": float(self._failing is not None)}

    @property
    def head(self) -> tuple[int, str]:
        """(records in the chain, hash of the last one) as written so far."""
        return self._chain.seq, self._chain.head

    # -------------------------------------------------------------- life cycle
    def start(self) -> None:
        try:
            if not self.dir.exists():
                self.dir.mkdir(mode=0o700, parents=True)
            self._claim()
            resume = _resume(self.dir)
            self._chain = resume.chain
            self._open(resume.last_file, "start", damaged=resume.damaged)
        except OSError as exc:
            self._release()
            raise ConfigError(f"[audit] dir {self.dir}: cannot be written "
                              f"({exc.strerror or exc})") from None
        except ValueError as exc:
            self._release()
            raise ConfigError(f"[audit] dir {self.dir}: {exc}; check it with `screening audit "
                              "verify`") from None
        if resume.damaged is not None:
            self.log.warning("audit_damaged_tail", **resume.damaged,
                             detail="an incomplete last record (a write interrupted by a crash) "
                                    "left as it was; the chain goes on from the record before")
        self._last_anchor = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _claim(self) -> None:
        """One writer per directory: two would fork the chain. A flock on ``writer.lock``, which
        ends with the process however it ends."""
        fd = os.open(self.dir / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError("another server writes its audit trail here (give each server its "
                             "own [audit] dir)") from None
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self._pending or self._busy:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued and a last anchor, fsync, close the file, stop the thread.
        Records still queued after ``timeout`` s (a failing disk) are counted in the log."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._abandon.set()  # a writer still retrying gives up at its next wait
        left = self._backlog()
        if self._thread.is_alive() or left:
            self.log.error("audit_unwritten", records=left, error=self._failing,
                           detail="the audit writer could not write these before stopping")
            self._thread.join(2.0)
            if not self._thread.is_alive() and self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
        self._thread = None
        self._release()

    # -------------------------------------------------------------- writer thread
    def _run(self) -> None:
        interval = self.settings.flush_interval_ms / 1000
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            try:
                self._busy = True
                self._drain()
                if self._since_anchor and (
                        stopping or time.monotonic() - self._last_anchor
                        >= self.settings.anchor_interval_s):
                    self._anchor("stop" if stopping else "interval")
                if self._failing is not None:
                    self.log.info("audit_write_recovered", error=self._failing)
                    self._failing = None
            except Exception as exc:  # the writer must not die: see below
                # A disk error (OSError), or a record that cannot be built (a bug): either way
                # nothing is dropped; the records wait, the same batch is tried again every
                # second, and once max_pending wait, calls are refused (fail closed).
                if self._failing is None:
                    self.log.error("audit_write_failed", file=self._file, pending=self.pending,
                                   error=str(exc) if isinstance(exc, OSError) else repr(exc),
                                   detail="retrying every second")
                self._failing = str(exc) if isinstance(exc, OSError) else repr(exc)
                if self._abandon.wait(1.0):
                    return
                continue
            finally:
                self._busy = False
            if stopping:
                self._finish()
                return

    def _drain(self) -> None:
        batch_max = self.settings.batch_max
        while self._pending:
            items: list[tuple[Any, ...]] = []
            records = extra = 0
            while self._pending and records < batch_max:
                item = self._pending.popleft()
                items.append(item)
                k = len(item[5]) if item[0] == DECISIONS else 1
                records += k
                extra += k - 1
            with self._extra_lock:
                self._extra -= extra
            try:
                self._write_items(items)
            except BaseException:
                with self._extra_lock:
                    self._extra += extra
                self._pending.extendleft(reversed(items))  # written again, in order, next time
                raise
            with self._room:
                self._room.notify_all()

    def _write_items(self, items: Sequence[tuple[Any, ...]]) -> None:
        today = self._day()
        limit = self.settings.rotate_bytes
        new_day = self.settings.rotate_daily and today != self._file_day
        if new_day or (limit and self._file_bytes >= limit):
            self._rotate("day" if new_day else "size")
        saved = _Chain(self._chain.seq, self._chain.head)
        records = 0
        try:
            lines = []
            for item in items:
                if item[0] == DECISIONS:
                    lines += [self._line(DECISION, item[1], members)
                              for members in _batch_decisions(item)]
                else:
                    lines.append(self._line(item[0], item[1],
                                            _BUILDERS.get(item[0], _event)(item)))
            records = len(lines)
            self._write(b"".join(lines))
        except BaseException:
            self._chain = saved
            raise
        self.written += records
        self._since_anchor += records

    def _line(self, kind: str, at_ns: int, members: str) -> bytes:
        chain = self._chain
        body = (f'{{"seq":{chain.seq:d},"at":"{iso_ns(at_ns)}","kind":{_q(kind)},{members},'
                f'"prev":"{chain.head}"').encode()
        digest = hashlib.sha256(body).hexdigest()
        chain.seq += 1
        chain.head = digest
        return body + b',"hash":"' + digest.encode("ascii") + b'"}\n'

    def _write(self, data: bytes) -> None:
        start = self._file_bytes
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self.settings.fsync == "batch":
                os.fsync(self._fd)
        except OSError:
            # cut off a partial write: the same records are written again later
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        self._file_bytes = start + len(data)

    def _open(self, previous: str | None, reason: str, damaged: dict[str, Any] | None = None
              ) -> None:
        name = file_name(self._chain.seq)
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask
        self._fd, self._file, self._file_bytes = fd, name, 0
        self._file_day = self._day()
        fields: dict[str, Any] = {"file": name, "previous_file": previous, "reason": reason}
        if damaged is not None:
            fields["damaged_tail"] = damaged
        try:
            self._write(self._line(_OPEN, self.clock_ns(), _meta(fields)))
        except OSError:
            os.close(fd)
            self._fd = -1
            os.unlink(path)
            raise
        self._since_anchor += 1  # a file never ends at stop without an anchor
        self._fsync_dir()

    def _day(self) -> str:
        return time.strftime("%Y%m%d", time.gmtime(self.clock_ns() // 1_000_000_000))

    def _fsync_dir(self) -> None:
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _anchor(self, reason: str) -> None:
        seq, head = self._chain.seq, self._chain.head
        self._write(self._line(_ANCHOR, self.clock_ns(),
                               _meta({"records": seq, "head": head, "reason": reason})))
        self._since_anchor = 0
        self._last_anchor = time.monotonic()
        # what an outsider notarises: the anchor's own seq and hash (`verify --anchor SEQ=HASH`)
        self.log.info("audit_anchor", seq=seq, hash=self._chain.head, records=seq + 1,
                      file=self._file, reason=reason)

    def _rotate(self, reason: str) -> None:
        self._anchor(f"rotate ({reason})")
        os.fsync(self._fd)
        previous = self._file
        os.close(self._fd)
        self._fd = -1
        self._open(previous, reason)

    def _finish(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


# ------------------------------------------------------------------ resuming the chain
def _lines_from_end(path: Path, chunk: int = 1 << 16) -> tuple[bytes | None, int, int]:
    """(the last complete line, its end offset, bytes after it that end no line)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        buf = b""
        pos = size
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            last_nl = buf.rfind(b"\n")
            if last_nl < 0:
                continue
            prev_nl = buf.rfind(b"\n", 0, last_nl)
            if prev_nl >= 0 or pos == 0:
                line = buf[prev_nl + 1:last_nl + 1]
                end = pos + last_nl + 1
                return line, end, size - end
    return None, 0, size


def _resume(directory: Path) -> _Resume:
    """Where the chain in ``directory`` stands: from the last complete record of its newest
    file (a file with none, or ending in an incomplete record, is named in ``damaged``)."""
    files = audit_files(directory)
    if not files:
        return _Resume(_Chain(), None, None)
    path = files[-1]
    line, end, tail = _lines_from_end(path)
    if line is None:
        raise ValueError(f"{path.name} holds no complete record (a crash while it was being "
                         "created?): move it out of the directory")
    m = _HASH_TAIL.search(line.rstrip(b"\n"))
    try:
        seq = int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        m = None
    if m is None:
        raise ValueError(f"{path.name}: the last complete line is not an audit record")
    damaged = {"file": path.name, "offset": end, "bytes": tail} if tail else None
    return _Resume(_Chain(seq + 1, m.group(1).decode("ascii")), path.name, damaged)


# ------------------------------------------------------------------ verifying
@dataclass
class VerifyReport:
    """What ``verify`` found: counts and the chain head, or the first broken record."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_at: str | None = None
    last_at: str | None = None
    head: str = GENESIS
    anchors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    last_kind: str = ""
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # "audit-...jsonl line 5 (seq 4): hash mismatch: ..."

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return f"BROKEN: {self.problem}"
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.kinds.items()))
        lines = [f"OK: {self.records:,} records in {len(self.files)} file(s), seq "
                 f"{self.first_seq}..{self.last_seq}, {self.first_at} .. {self.last_at}",
                 f"chain head {self.head} (seq {self.last_seq})",
                 f"{self.anchors} anchors; {kinds}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _classify_seq(seq: int, want: int, later: Sequence[int]) -> str:
    if seq < want:
        return f"out of order: sequence {seq} after {want - 1} (records reordered or repeated)"
    if want in later:
        return (f"out of order: sequence {seq} where {want} was expected, and {want} comes "
                "later (records reordered)")
    return f"sequence gap: {want}..{seq - 1} missing (records deleted)"


def verify(path: Path, anchors: Mapping[int, str] | None = None) -> VerifyReport:
    """Check the audit file ``path``, or every audit file of the directory ``path`` in order.

    Each record's hash, the link to the one before (``prev``), sequence numbers without gaps,
    each file's ``open`` record (its own name, the file before it), each anchor's count and
    head, and the published ``anchors`` (seq -> hash of the record with that seq). Stops at the
    first broken record and names it (file, line, seq, what is wrong)."""
    anchors = dict(anchors or {})
    report = VerifyReport()
    if path.is_dir():
        files = audit_files(path)
        if not files:
            report.problem = f"{path}: no audit files (audit-NNNNNNNNNNNN.jsonl)"
            return report
    else:
        files = [path]
    chain: _Chain | None = None  # unknown until the first record
    previous_name: str | None = None
    pending_damage: dict[str, Any] | None = None
    for p in files:
        report.files.append(p.name)
        problem, chain, pending_damage = _verify_file(p, report, chain, previous_name,
                                                      pending_damage, anchors)
        if problem is not None:
            report.problem = problem
            return report
        previous_name = p.name
    if pending_damage is not None:
        report.problem = (f"{pending_damage['file']}: truncated: the last record is incomplete "
                          f"({pending_damage['bytes']} bytes after offset "
                          f"{pending_damage['offset']})")
        return report
    if anchors:
        seq = min(anchors)
        report.problem = f"anchor seq {seq}: no such record in the log (truncated?)"
        return report
    if chain is not None:
        report.head = chain.head
    if report.kinds and report.last_kind != _ANCHOR:
        report.notes.append("the last record is not an anchor: the server is running or did not "
                            "stop cleanly, or records were cut off the end (compare the chain "
                            "head with the last audit_anchor logged)")
    return report


def _verify_file(p: Path, report: VerifyReport, chain: _Chain | None, previous_name: str | None,
                 damage: dict[str, Any] | None, anchors: dict[int, str]
                 ) -> tuple[str | None, _Chain | None, dict[str, Any] | None]:
    data = p.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if not lines and tail:
        return f"{p.name}: truncated: no complete record", chain, None
    seqs_later: list[int] | None = None
    offset = 0
    for i, raw in enumerate(lines):
        where = f"{p.name} line {i + 1}"
        m = _HASH_TAIL.search(raw)
        try:
            rec = json.loads(raw)
        except ValueError:
            return f"{where}: not a record (not JSON: damaged or edited)", chain, None
        if not isinstance(rec, dict) or m is None or not isinstance(rec.get("seq"), int):
            return f"{where}: not a record (no seq or hash at its place)", chain, None
        seq = rec["seq"]
        where += f" (seq {seq})"
        body = raw[:m.start()]
        if hashlib.sha256(body).hexdigest() != m.group(1).decode("ascii") or rec.get(
                "hash") != m.group(1).decode("ascii"):
            return f"{where}: hash mismatch: the record was changed", chain, None
        if i == 0:
            problem = _check_open(rec, p.name, previous_name, damage, where)
            if problem is not None:
                return problem, chain, None
            if damage is not None:
                report.notes.append(f"{damage['file']}: {damage['bytes']} bytes of an "
                                    f"incomplete record at offset {damage['offset']} (a write "
                                    f"interrupted by a crash), named by {p.name}")
                damage = None
            if chain is None:
                chain = _Chain(seq, rec.get("prev", ""))
                report.first_seq = seq
                if seq != 0:
                    report.notes.append(f"the log starts at seq {seq} ({p.name}): earlier files "
                                        "are not here")
        assert chain is not None
        if seq != chain.seq:
            if seqs_later is None:
                seqs_later = [int(s.group(1)) for s in map(_SEQ_HEAD.match, lines[i + 1:]) if s]
            return f"{where}: {_classify_seq(seq, chain.seq, seqs_later)}", chain, None
        if rec.get("prev") != chain.head:
            return (f"{where}: chain broken: prev is not the hash of the record before it "
                    "(a record inserted, deleted or replaced)"), chain, None
        kind = rec.get("kind")
        if kind == _ANCHOR and (rec.get("records") != seq or rec.get("head") != chain.head):
            return f"{where}: anchor does not match the chain before it", chain, None
        if seq in anchors:
            want = anchors.pop(seq)
            if m.group(1).decode("ascii") != want:
                return (f"{where}: does not match the published anchor (hash "
                        f"{m.group(1).decode('ascii')[:16]}…, published {want[:16]}…)"), chain, None
        chain.seq, chain.head = seq + 1, m.group(1).decode("ascii")
        report.records += 1
        report.last_seq = seq
        report.first_at = report.first_at or rec.get("at")
        report.last_at = rec.get("at")
        report.kinds[str(kind)] = report.kinds.get(str(kind), 0) + 1
        report.last_kind = str(kind)
        if kind == _ANCHOR:
            report.anchors += 1
        offset += len(raw) + 1
    if damage is not None:  # the file before ended in an incomplete record nobody named
        return (f"{damage['file']}: truncated: the last record is incomplete ({damage['bytes']} "
                f"bytes after offset {damage['offset']}) and {p.name} does not name it"), chain, None
    new_damage = {"file": p.name, "offset": offset, "bytes": len(tail)} if tail else None
    return None, chain, new_damage


def _check_open(rec: Mapping[str, Any], name: str, previous: str | None,
                damage: Mapping[str, Any] | None, where: str) -> str | None:
    if rec.get("kind") != _OPEN:
        return f"{where}: the file does not begin with its open record (records deleted)"
    if rec.get("file") != name:
        return (f"{where}: the open record names {rec.get('file')!r}: this file was renamed, "
                "swapped or replaced")
    if previous is not None and rec.get("previous_file") != previous:
        return (f"{where}: the open record follows {rec.get('previous_file')!r}, not "
                f"{previous!r}: files missing, swapped or reordered")
    if damage is not None and rec.get("damaged_tail") != dict(damage):
        return (f"{damage['file']}: truncated: the last record is incomplete ({damage['bytes']} "
                f"bytes after offset {damage['offset']}) and {name} does not name it")
    return None


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of an audit file, or of every audit file of a directory, in chain order
    (as written; ``verify`` says whether they are intact)."""
    for p in audit_files(path) if path.is_dir() else [path]:
        with p.open("rb") as f:
            for raw in f:
                if raw.endswith(b"\n"):
                    yield json.loads(raw)
