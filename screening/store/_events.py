"""The event journal: every accepted transaction and call, written before it is answered.

The engine numbers each accepted event under its lock and hands it to ``EventWriter.put``
(a queue append: no I/O, no encoding under the lock). After the lock, the request's thread takes
everything queued unless another write is under way, encodes it, and writes it to the store in
one append (group commit; a thread writes what no request does), then fsyncs as
``[storage] journal_fsync`` says: after every batch (``batch``), every
``journal_fsync_interval_ms`` (``interval``), or never (``none``: the OS writes it back, which
survives a killed process but not a machine crash). A request waits (``wait``) until its batch
is written, so an answered decision is in the journal; concurrent requests share one write.

An entry is one line of JSON holding what re-applying it through the same core needs
(``screening.engine.JournalEvent``): the validated input, the calling institution, the policy
version, the watchlist journal position, the recorded latency and whether the latency budget
held the graph detectors back. Restore (``screening.store.restore_engine``) re-applies entries
newer than the checkpoint; a checkpoint drops the entries it includes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from screening.engine import JournalEvent
from screening.errors import CheckpointError, StoreBusy, StoreUnavailable
from screening.model import CallInput, Party, TxnColumns, TxnInput
from screening.store._base import Store

__all__ = ["EventWriter", "decode_event", "encode_event"]


def _party(p: Party) -> list[Any]:
    return [p.account_id, p.institution, p.party_type, p.opened_ms]


def encode_event(ev: JournalEvent) -> bytes:
    """One journal line (JSON, no newline)."""
    obj: dict[str, Any] = {"k": ev.kind, "s": ev.scope, "p": ev.policy_version,
                           "w": ev.watch_seq, "l": ev.latency_us, "u": int(ev.unsaved)}
    if ev.kind == "txn":
        if any(ev.graph_skipped):
            obj["g"] = "".join("1" if b else "0" for b in ev.graph_skipped)
        if isinstance(ev.txns, TxnColumns):
            # ScreenBatch: the columns as they are (``TxnColumns`` field order), no list per
            # transaction: a fifth of the encoding time of rows
            obj["T"] = ev.txns._columns()
        else:
            obj["t"] = [[t.transaction_id, t.event_time_ms, _party(t.payer), _party(t.payee),
                         t.amount_minor, t.currency, t.amount_fen, t.channel, int(t.cash),
                         int(t.cross_border), t.device_id, t.payer_phone, t.memo, t.payee_phone]
                        for t in ev.txns]
    else:
        c = ev.call
        assert c is not None
        obj["c"] = [c.call_id, c.caller, c.callee, c.start_ms, c.duration_s, c.caller_class,
                    c.outcome]
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _int(v: Any) -> int:
    if type(v) is not int:
        raise ValueError(f"expected an integer, got {v!r}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _parse_party(v: Any) -> Party:
    acc, inst, ptype, opened = v
    return Party(_str(acc), _str(inst), _int(ptype), None if opened is None else _int(opened))


# the type of each column of TxnColumns, in its field order ("opened": an int or null)
_COLUMN_TYPES = (str, int, str, str, int, "opened", str, str, int, "opened", int, str, int, int,
                 bool, bool, str, str, str, str)


def _columns(cols: Any) -> TxnColumns:
    """A journal entry's transaction columns, each checked for its length and value type."""
    if not isinstance(cols, list) or len(cols) != len(_COLUMN_TYPES):
        raise ValueError("transaction columns: wrong number of columns")
    n = len(cols[0]) if isinstance(cols[0], list) else -1
    for i, (col, want) in enumerate(zip(cols, _COLUMN_TYPES, strict=True)):
        if not isinstance(col, list) or len(col) != n:
            raise ValueError(f"transaction column {i}: not a list of {n} values")
        if want == "opened":
            ok = all(v is None or type(v) is int for v in col)
        else:
            ok = all(type(v) is want for v in col)
        if not ok:
            raise ValueError(f"transaction column {i}: a value of the wrong type")
    return TxnColumns(*cols)


def decode_event(raw: bytes, where: str) -> JournalEvent:
    """The event of one journal line; CheckpointError naming ``where`` when it is malformed."""
    try:
        obj = json.loads(raw)
        kind = _str(obj["k"])
        scope, version = _str(obj["s"]), _str(obj["p"])
        watch_seq, latency_us, unsaved = _int(obj["w"]), _int(obj["l"]), bool(_int(obj["u"]))
        if kind == "txn":
            txns: TxnColumns | tuple[TxnInput, ...] = _columns(obj["T"]) if "T" in obj else tuple(
                TxnInput(transaction_id=_str(r[0]), event_time_ms=_int(r[1]),
                         payer=_parse_party(r[2]), payee=_parse_party(r[3]),
                         amount_minor=_int(r[4]), currency=_str(r[5]), amount_fen=_int(r[6]),
                         channel=_int(r[7]), cash=bool(_int(r[8])),
                         cross_border=bool(_int(r[9])), device_id=_str(r[10]),
                         payer_phone=_str(r[11]), memo=_str(r[12]), payee_phone=_str(r[13]))
                for r in obj["t"])  # rows: journals written before the columns
            g = _str(obj.get("g", ""))
            skipped = tuple(ch == "1" for ch in g) if g else (False,) * len(txns)
            if len(skipped) != len(txns):
                raise ValueError("graph gate bits do not match the transactions")
            return JournalEvent(kind=kind, scope=scope, policy_version=version,
                                watch_seq=watch_seq, latency_us=latency_us, unsaved=unsaved,
                                graph_skipped=skipped, txns=txns)
        if kind == "call":
            r = obj["c"]
            call = CallInput(call_id=_str(r[0]), caller=_str(r[1]), callee=_str(r[2]),
                             start_ms=_int(r[3]), duration_s=_int(r[4]),
                             caller_class=_int(r[5]), outcome=_int(r[6]))
            return JournalEvent(kind=kind, scope=scope, policy_version=version,
                                watch_seq=watch_seq, latency_us=latency_us, unsaved=unsaved,
                                call=call)
        raise ValueError(f"unknown kind {kind!r}")
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{where}: malformed ({exc})") from None


class EventWriter:
    """The group-commit writer of the event journal (``screening.engine.EventLog``).

    ``fsync``: ``batch``, ``interval`` (every ``interval_ms``) or ``none``. Requests write the
    queue themselves, one at a time (``wait``); a thread writes what no request is writing. A
    failed write is retried (every 0.2 s) with everything queued since, in order, so the
    journal never has a gap. While the store does not answer — a failed write, or ``unreachable`` (the writer
    lease's ``blocked``) saying so — requests are answered without waiting, as the server does
    for every decision during a store outage (``StoreStatus``: decisions marked degraded,
    ``on_problem`` is told); their events stay queued and are written when the store is back.
    A request waits at most ``wait_s`` for its batch in any case. ``close`` writes what is
    queued, giving up after ``close_wait_s`` when the store does not answer.
    """

    def __init__(self, store: Store, *, fsync: str = "batch", interval_ms: float = 100.0,
                 wait_s: float = 2.0, close_wait_s: float = 10.0,
                 on_problem: Callable[[str | None], None] | None = None,
                 unreachable: Callable[[], str | None] | None = None) -> None:
        self.store = store
        self.close_wait_s = close_wait_s
        self.unreachable = unreachable
        self._give_up_at = float("inf")
        self.fsync = fsync
        self.interval_s = interval_ms / 1000
        self.wait_s = wait_s
        self.on_problem = on_problem
        self._queue: list[tuple[int, JournalEvent]] = []
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # requests wait here for their write
        self._wake = threading.Condition(lock)  # the thread, only at close (else it polls)
        self._written = 0  # every event up to this one is written
        self._error: str | None = None
        self._stopping = False
        self._busy = False  # a write is under way (by a request or the thread)
        self._in_flight = 0  # events in that write
        self._queued_at = 0.0  # when the queue became non-empty
        self._retry_at = 0.0  # after a failure, the next try (by the thread)
        self._last_sync = time.monotonic()
        self._dirty = False
        # counters for the bench and metrics
        self.batches = 0
        self.events = 0
        # told after each write (events, seconds: the store's round trip, with its fsync when
        # ``fsync`` is ``batch``) and each interval fsync (seconds); for metrics, off the lock
        self.on_write: Callable[[int, float], None] | None = None
        self.on_sync: Callable[[float], None] | None = None
        self._thread = threading.Thread(target=self._run, name="event-journal", daemon=True)
        self._thread.start()

    def start_at(self, seq: int) -> None:
        """Events up to ``seq`` are in the store already (restored); number on from there."""
        with self._cond:
            self._written = max(self._written, seq)

    def put(self, seq: int, event: JournalEvent) -> None:
        with self._cond:
            if not self._queue:
                self._queued_at = time.monotonic()
            self._queue.append((seq, event))

    def wait(self, seq: int) -> bool:
        """The first waiter that finds the queue not being written writes it (everything queued,
        its own event and those of concurrent requests) in its own thread; the others wait for
        that write. No hand-off to another thread on the way: one sequential client costs one
        write, concurrent ones share it. True once ``seq`` is written; False when it is not
        (a store outage, or ``wait_s`` passed): answered, degraded (see the class docstring)."""
        if seq <= self._written:
            return True
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self._written < seq:
                if self._error is not None or (self.unreachable is not None
                                               and self.unreachable() is not None):
                    return False
                batch = self._take()
                if batch is not None:
                    self._cond.release()
                    try:
                        self._write(batch)
                    finally:
                        self._cond.acquire()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _take(self) -> list[tuple[int, JournalEvent]] | None:
        """Everything queued, to write now (under ``_cond``); None when a write is under way or
        nothing is queued."""
        if self._busy or not self._queue:
            return None
        batch, self._queue = self._queue, []
        self._busy = True
        self._in_flight = len(batch)
        return batch

    def _run(self) -> None:
        """The backstop: writes what no request is writing (its waiter gave up, or a retry after
        a failure, every 0.2 s), fsyncs at the interval, and writes what is left at ``close``."""
        while True:
            batch = None
            with self._cond:
                timeout = 0.01 if self._queue else 0.2
                if self.fsync == "interval" and self._dirty:
                    timeout = min(timeout, max(0.001, self._last_sync + self.interval_s
                                               - time.monotonic()))
                self._wake.wait(timeout)
                now = time.monotonic()
                if self._stopping and not self._queue and not self._busy:
                    break
                if self._stopping and now > self._give_up_at:
                    break  # the store does not answer: what is queued is lost
                if self._queue and not self._busy and (
                        self._stopping or now - self._queued_at > 0.01) and (
                        self._error is None or now >= self._retry_at):
                    batch = self._take()
            if batch is not None:
                self._write(batch)
            self._sync_if_due()
        self._sync_if_due(force=True)

    def _write(self, batch: list[tuple[int, JournalEvent]]) -> None:
        """One write of ``batch`` (taken by ``_take``); a failure puts it back in front."""
        error = None
        encoded = [(seq, encode_event(ev)) for seq, ev in batch]
        started = time.perf_counter()
        try:
            self.store.append_events(encoded, sync=self.fsync == "batch")
        except (StoreUnavailable, StoreBusy) as exc:
            # StoreBusy: the lease ran out during an outage; the lease thread takes it back
            # (then the retry succeeds) or finds it lost for good (the server stops)
            error = str(exc)
        seconds = time.perf_counter() - started
        with self._cond:
            self._busy = False
            self._in_flight = 0
            was = self._error
            self._error = error
            if error is None:
                self._written = batch[-1][0]
                self._dirty = self.fsync == "interval"
                self.batches += 1
                self.events += len(batch)
            else:
                self._queue[:0] = batch
                self._queued_at = time.monotonic()
                self._retry_at = time.monotonic() + 0.2
            self._cond.notify_all()
        if error is None and self.on_write is not None:
            _tell(self.on_write, len(batch), seconds)
        if self.on_problem is not None and (was is None) != (error is None):
            self.on_problem(error)

    def _sync_if_due(self, force: bool = False) -> None:
        if self.fsync != "interval" or not self._dirty:
            return
        if force or time.monotonic() >= self._last_sync + self.interval_s:
            # cleared before the fsync, under the lock: a batch a request writes meanwhile sets
            # it again and is fsynced at the next interval (or at close)
            with self._cond:
                self._dirty = False
            started = time.perf_counter()
            try:
                self.store.sync_events()
            except StoreUnavailable:
                with self._cond:
                    self._dirty = True  # retried at the next interval
            else:
                if self.on_sync is not None:
                    _tell(self.on_sync, time.perf_counter() - started)
            self._last_sync = time.monotonic()

    @property
    def pending(self) -> int:
        """Events accepted and not yet written: queued, or in a write still under way (a store
        outage holds them here)."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._give_up_at = time.monotonic() + self.close_wait_s
            self._wake.notify_all()
        self._thread.join()


def _tell(callback: Callable[..., None], *args: float) -> None:
    """A metrics callback; one that fails must not stop the journal's writer."""
    try:
        callback(*args)
    except Exception:  # metrics are never worth an unwritten journal
        return
