"""Engine <-> store: checkpoint, restore, the watchlist journal (watchlist changes, feedback and
account-registry updates) and the background checkpointer."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from screening.config import StorageSettings
from screening.engine import Engine, EngineSnapshot, FeedbackJournal, RegistryJournal, WatchJournal
from screening.errors import (
    CheckpointError,
    ScreeningError,
    StoreBusy,
    StoreUnavailable,
)
from screening.model import AccountProfile, Feedback, WatchEntry
from screening.policy import Policy, parse_policy
from screening.store._base import Store
from screening.store._events import decode_event
from screening.store._file import FileStore
from screening.store._format import (
    Header,
    decode,
    encode,
    feedback_row,
    parse_feedback_row,
    parse_kind,
    parse_profile_row,
    parse_watch_row,
    profile_row,
    read_header,
    watch_row,
)
from screening.store._redis import RedisStore
from screening.store._restore import restored_state

__all__ = [
    "CheckpointStats",
    "Checkpointer",
    "RestoreReport",
    "StoreStatus",
    "WriterLease",
    "catch_up",
    "decode_registry_change",
    "decode_watch_change",
    "encode_registry_change",
    "encode_watch_change",
    "feedback_journal_writer",
    "journal_writer",
    "open_store",
    "policy_keeper",
    "read_latest_header",
    "registry_journal_writer",
    "restore_engine",
    "restore_snapshot",
    "save_checkpoint",
]


def open_store(settings: StorageSettings, *, create: bool = True) -> Store | None:
    """The store the settings name (None for ``backend = "none"``), checked to be reachable.

    Raises StoreUnavailable (one line naming the store) when it is not.
    """
    store: Store
    if settings.backend == "none":
        return None
    if settings.backend == "file":
        store = FileStore(settings.path, create=create)
    else:
        store = RedisStore(settings.redis_url, settings.key_prefix, lease_s=settings.lease_s)
    try:
        store.check()
    except StoreUnavailable:
        store.close()
        raise
    return store


# ------------------------------------------------------------------ checkpoints
@dataclass(frozen=True)
class CheckpointStats:
    where: str
    bytes: int
    counts: dict[str, int]
    snapshot_s: float  # copying the state (memory prepared first, then the copy under the lock)
    lock_s: float  # of which the engine's lock was held
    encode_s: float
    write_s: float
    journal_trimmed: int
    finished_at: float = field(default_factory=time.time)  # Unix time, for the metrics

    @property
    def seconds(self) -> float:
        return self.snapshot_s + self.encode_s + self.write_s


def save_checkpoint(engine: Engine, store: Store) -> CheckpointStats:
    """Copy the engine's state (under its lock), serialise and write it (outside), atomically;
    then drop the journal entries the checkpoint includes."""
    t0 = time.perf_counter()
    snap = engine.snapshot()
    t1 = time.perf_counter()
    enc = encode(snap)
    # the checksums are computed in encode; the write streams the same buffers
    t2 = time.perf_counter()
    where = store.write_checkpoint(enc.pieces)
    t3 = time.perf_counter()
    try:
        trimmed = store.trim_journal(snap.journal_seq)
        store.trim_events(snap.event_seq)
    except StoreUnavailable:
        trimmed = -1  # harmless: restore skips entries the checkpoint includes
    return CheckpointStats(where, enc.size, enc.counts, t1 - t0, snap.lock_held_s, t2 - t1, t3 - t2,
                           trimmed)


def read_latest_header(store: Store) -> Header | None:
    """The latest checkpoint's header (checked), without reading its parts."""
    reader = store.open_checkpoint()
    if reader is None:
        return None
    with reader:
        return read_header(reader)


@dataclass
class RestoreReport:
    header: Header | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    journal_applied: int = 0
    # event-journal entries (accepted transactions and calls) re-applied
    events_applied: int = 0
    # identifiers the replayed journal entries touched (log them masked)
    journal_entities: list[str] = field(default_factory=list)


def restore_snapshot(engine: Engine, header: Header, snap: EngineSnapshot) -> list[str]:
    """Replace ``engine``'s whole state by ``snap`` (``restored_state``, then
    ``engine.install``); returns notes on what the settings changed, every refusal a
    CheckpointError naming the checkpoint (and then the engine is unchanged)."""
    try:
        restored, notes = restored_state(engine, snap)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {header.where}: does not fit this build: {exc}") from None
    except MemoryError:
        raise CheckpointError(f"checkpoint {header.where}: its state does not fit in the memory "
                              "this process may use") from None
    engine.install(restored)
    return notes


def restore_engine(engine: Engine, store: Store) -> RestoreReport:
    """Load the latest checkpoint into ``engine``, then apply the newer journal entries.

    Raises CheckpointError naming the file or key when the checkpoint or journal is unusable,
    StoreUnavailable when the store cannot be read. Either way the engine is left as it was
    or with the checkpoint applied and the journal not (restart after fixing the store).
    """
    t0 = time.perf_counter()
    report = RestoreReport()
    reader = store.open_checkpoint()
    if reader is not None:
        with reader:
            header, snap = decode(reader)
        report.notes = restore_snapshot(engine, header, snap)
        report.header = header
        del snap
    report.events_applied, report.journal_applied, report.journal_entities = \
        _replay(engine, store)
    store.advance_journal(engine.journal_seq)
    report.seconds = time.perf_counter() - t0
    return report


def catch_up(engine: Engine, store: Store) -> tuple[int, list[str]]:
    """Apply the journal entries newer than the engine's ``journal_seq``; returns how many and
    the identifiers they touched (log them masked). Raises CheckpointError naming a malformed
    entry, StoreUnavailable when the journal cannot be read."""
    applied, entities = 0, list[str]()
    for seq, raw in store.read_journal(after=engine.journal_seq):
        applied += _apply_change(engine, store, seq, raw, entities)
    return applied, entities


def _apply_change(engine: Engine, store: Store, seq: int, raw: bytes, entities: list[str]) -> int:
    """Apply one watchlist-journal entry (a watchlist change, feedback or a registry update);
    1 when applied."""
    where = f"{store.location} journal entry {seq}"
    feedback = decode_feedback(raw, where)
    if feedback is not None:
        if engine.apply_feedback_journal(seq, *feedback):
            entities.append(feedback[1].account_id or feedback[1].transaction_id)
            return 1
        return 0
    profiles = decode_registry_change(raw, where)
    if profiles is not None:
        if engine.apply_registry_journal(seq, profiles):
            entities += [p.account_id for p in profiles]
            return 1
        return 0
    upserts, removes = decode_watch_change(raw, where)
    if engine.apply_journal(seq, upserts, removes):
        entities += [e.value for e in upserts] + [v for _, v in removes]
        return 1
    return 0


def _replay(engine: Engine, store: Store) -> tuple[int, int, list[str]]:
    """Re-apply the event journal (transactions and calls) and the watchlist journal newer than
    the engine's state, in the order the live server applied them: each event after the
    watchlist entries it saw. Returns (events, watchlist entries, identifiers touched).
    Raises CheckpointError naming a malformed entry or a policy this server does not run."""
    changes = store.read_journal(after=engine.journal_seq)
    events = store.read_events(after=engine.event_seq)
    applied_events, applied, entities = 0, 0, list[str]()
    i = 0
    for seq, raw in events:
        where = f"{store.location} event journal entry {seq}"
        ev = decode_event(raw, where)
        while i < len(changes) and changes[i][0] <= ev.watch_seq:
            applied += _apply_change(engine, store, *changes[i], entities)
            i += 1
        try:
            if not engine.knows_policy(ev.policy_version):
                text = store.load_policy(ev.policy_version)
                if text is not None:  # decided under a policy swapped in, or run before
                    engine.know_policy(parse_policy(
                        text, f"{store.location} kept policy {ev.policy_version}"))
            applied_events += engine.apply_event(seq, ev)
        except ScreeningError as exc:
            raise CheckpointError(f"{where}: cannot be re-applied: {exc}") from None
    for seq, raw in changes[i:]:
        applied += _apply_change(engine, store, seq, raw, entities)
    return applied_events, applied, entities


# ------------------------------------------------------------------ watchlist journal
def encode_watch_change(upserts: Sequence[WatchEntry], removes: Sequence[tuple[int, str]],
                        at_ms: int) -> bytes:
    """One journal entry (a single line of JSON)."""
    return json.dumps({"at_ms": at_ms,
                       "upsert": [watch_row(e) for e in upserts],
                       "remove": [[k, v] for k, v in removes]},
                      ensure_ascii=False, separators=(",", ":")).encode()


def decode_watch_change(raw: bytes, where: str) -> tuple[list[WatchEntry], list[tuple[int, str]]]:
    try:
        obj = json.loads(raw)
        upserts = [parse_watch_row(row, "upsert") for row in obj["upsert"]]
        removes = [(parse_kind(k), _str(v)) for k, v in obj["remove"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: malformed ({exc})") from None
    return upserts, removes


def encode_feedback(at_ms: int, fb: Feedback) -> bytes:
    """One journal entry of feedback (a single line of JSON)."""
    return json.dumps({"at_ms": at_ms, "feedback": feedback_row(at_ms, fb)},
                      ensure_ascii=False, separators=(",", ":")).encode()


def decode_feedback(raw: bytes, where: str) -> tuple[int, Feedback] | None:
    """A feedback entry's (when, what); None for a watchlist change."""
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or "feedback" not in obj:
            return None
        return parse_feedback_row(obj["feedback"], where)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: malformed ({exc})") from None


def feedback_journal_writer(store: Store,
                            blocked: Callable[[], str | None] | None = None) -> FeedbackJournal:
    """The engine's feedback journal: each verdict appended (durably) to ``store``; refused at
    once while ``blocked`` says why (as ``journal_writer``)."""

    def write(at_ms: int, fb: Feedback) -> int:
        why = blocked() if blocked is not None else None
        if why:
            raise StoreUnavailable(f"storage {store.location}: cannot append to the journal now: "
                                   f"{why}")
        return store.append_journal(encode_feedback(at_ms, fb))

    return write


def encode_registry_change(profiles: Sequence[AccountProfile]) -> bytes:
    """One journal entry of an account-registry update (a single line of JSON)."""
    return json.dumps({"accounts": [profile_row(p) for p in profiles]},
                      ensure_ascii=False, separators=(",", ":")).encode()


def decode_registry_change(raw: bytes, where: str) -> list[AccountProfile] | None:
    """A registry update's profiles; None for another kind of entry."""
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or "accounts" not in obj:
            return None
        rows = obj["accounts"]
        if not isinstance(rows, list) or not rows:
            raise ValueError("accounts: expected a non-empty list")
        return [parse_profile_row(row, f"accounts[{i}]") for i, row in enumerate(rows)]
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: malformed ({exc})") from None


def registry_journal_writer(store: Store,
                            blocked: Callable[[], str | None] | None = None) -> RegistryJournal:
    """The engine's registry journal: each UpsertAccounts update appended (durably) to
    ``store``, in the journal watchlist changes and feedback go to; refused at once while
    ``blocked`` says why (as ``journal_writer``)."""

    def write(profiles: Sequence[AccountProfile]) -> int:
        why = blocked() if blocked is not None else None
        if why:
            raise StoreUnavailable(f"storage {store.location}: cannot append to the journal now: "
                                   f"{why}")
        return store.append_journal(encode_registry_change(profiles))

    return write


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def policy_keeper(store: Store) -> Callable[[Policy], None]:
    """What ``Engine.policy_keeper`` calls: the policy's text into the store."""

    def keep(policy: Policy) -> None:
        store.save_policy(policy.version, policy.text)

    return keep


def journal_writer(store: Store, clock_ms: Callable[[], int],
                   blocked: Callable[[], str | None] | None = None) -> WatchJournal:
    """The engine's watchlist journal: each change appended (durably) to ``store``.

    ``blocked`` (``WriterLease.blocked``) says why an append must not be tried now (the store
    does not answer, or the journal is being caught up after the claim was taken back): the
    change is then refused at once (StoreUnavailable) instead of waiting for a timeout."""

    def write(upserts: Sequence[WatchEntry], removes: Sequence[tuple[int, str]]) -> int:
        why = blocked() if blocked is not None else None
        if why:
            raise StoreUnavailable(f"storage {store.location}: cannot append to the watchlist "
                                   f"journal now: {why}")
        return store.append_journal(encode_watch_change(upserts, removes, clock_ms()))

    return write


# ------------------------------------------------------------------ can the state be kept?
class StoreStatus:
    """Whether this server's state is being kept in its store, from everything that writes there.

    Each source (``"lease"``: the claim and its renewals; ``"checkpoint"``: the last checkpoint)
    reports a ``problem`` or that it is ``resolved``. While any problem stands, the engine marks
    its decisions degraded (``Engine.store_ok``; a payment service goes on answering: the
    decisions are complete, only their state may not survive a crash), ``on_change(False)`` is
    called (the server's store health turns NOT_SERVING) and one ``store_degraded`` line is
    logged; when the last one is resolved, ``store_recovered`` (how long it lasted, how many
    decisions were made meanwhile) and ``on_change(True)``.
    """

    def __init__(self, engine: Engine, location: str, log: Any,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.engine = engine
        self.location = location
        self.log = log
        self.on_change = on_change
        self._problems: dict[str, str] = {}
        self._since = 0.0
        self._unsaved_before = 0
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return not self._problems

    def problem(self, source: str, error: str) -> None:
        with self._lock:
            first = not self._problems
            self._problems[source] = error
            if first:
                self.engine.store_ok = False
                self._since = time.monotonic()
                self._unsaved_before = self.engine.unsaved_decisions
        if first:
            self.log.error("store_degraded", store=self.location, source=source, error=error,
                           detail="decisions are marked degraded until the store keeps this "
                                  "server's state again")
            if self.on_change is not None:
                self.on_change(False)

    def resolved(self, source: str) -> None:
        with self._lock:
            if self._problems.pop(source, None) is None or self._problems:
                return
            self.engine.store_ok = True
            lasted = time.monotonic() - self._since
            unsaved = self.engine.unsaved_decisions - self._unsaved_before
        self.log.info("store_recovered", store=self.location, source=source,
                      degraded_s=round(lasted, 3), degraded_decisions=unsaved)
        if self.on_change is not None:
            self.on_change(True)


# ------------------------------------------------------------------ background checkpoints
class Checkpointer:
    """Checkpoints every ``interval_s`` in a thread of its own (0: only when asked), logging each;
    ``request`` asks for one now (e.g. once the store is back after an outage).

    Failures are logged, reported to ``status`` and retried after ``retry_s``; the server keeps
    serving.
    """

    def __init__(self, engine: Engine, store: Store, interval_s: float, log: Any,
                 status: StoreStatus | None = None, retry_s: float = 30.0) -> None:
        self.engine = engine
        self.store = store
        self.interval_s = interval_s
        self.log = log
        self.status = status
        self.retry_s = retry_s
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._why: str | None = None
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last: CheckpointStats | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
        self._thread.start()

    def request(self, why: str) -> None:
        """Write a checkpoint soon, in the checkpointer's thread (``why`` is logged)."""
        self._why = why
        self._wake.set()

    def _run(self) -> None:
        wait = self.interval_s or None
        while True:
            self._wake.wait(wait)
            if self._stopped.is_set():
                return
            self._wake.clear()  # before reading the reason: a request after this wakes us again
            why, self._why = self._why or "periodic", None
            ok = self.checkpoint(why) is not None
            wait = (self.interval_s or None) if ok else min(self.interval_s or self.retry_s,
                                                            self.retry_s)

    def stop(self) -> None:
        """Stop the thread (a checkpoint in progress completes first)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def checkpoint(self, why: str) -> CheckpointStats | None:
        """Write one checkpoint now; None (and a log line) when it failed."""
        with self._busy:
            try:
                stats = save_checkpoint(self.engine, self.store)
            except (StoreUnavailable, CheckpointError) as exc:
                self.log.warning("checkpoint_failed", why=why, store=self.store.location,
                                 error=str(exc))
                self._failed(str(exc))
                return None
            except Exception:
                self.log.exception("checkpoint_failed", why=why, store=self.store.location)
                self._failed("unexpected error (see the log)")
                return None
        self.last = stats
        if self.status is not None:
            self.status.resolved("checkpoint")
        c = stats.counts
        self.log.info("checkpoint_saved", why=why, where=stats.where, bytes=stats.bytes,
                      accounts=c["accounts"], phones=c["phones"], devices=c["devices"],
                      graph_edges=c["graph_edges"], decisions=c["decisions"],
                      watchlist=c["watchlist"], snapshot_ms=round(stats.snapshot_s * 1000, 1),
                      lock_ms=round(stats.lock_s * 1000, 1),
                      encode_ms=round(stats.encode_s * 1000, 1),
                      write_ms=round(stats.write_s * 1000, 1),
                      duration_ms=round(stats.seconds * 1000, 1),
                      journal_trimmed=stats.journal_trimmed)
        return stats

    def _failed(self, error: str) -> None:
        if self.status is not None:
            self.status.problem("checkpoint", f"a checkpoint failed: {error}")


# ------------------------------------------------------------------ one writer per store
class WriterLease:
    """This server's claim on the store: taken before the state is restored (a second server
    on the same store fails to start, naming the first), renewed in a thread when the store's
    claim expires, given up at shutdown after the last checkpoint.

    A renewal that fails because the store does not answer is retried every second (at most);
    meanwhile ``blocked`` says why and ``status`` has a problem (decisions degraded). When the
    store answers again and the claim is still this server's, that is the end of it; when the
    claim ran out meanwhile, it is taken back (``Store.reclaim_writer``) if nobody else holds
    the store or wrote to it, the journal entries this server lacks are applied (watchlist
    updates wait), and ``on_recovered`` is called (the server checkpoints at once). Otherwise the
    claim is lost for good: ``store_lease_lost`` is logged once, ``lost`` and ``lost_reason``
    are set and ``on_lost`` is called (the server reports NOT_SERVING and stops); the store
    itself refuses this server's checkpoints and journal appends (StoreBusy), so the server that
    holds the store now is never overwritten.
    """

    def __init__(self, store: Store, log: Any, on_lost: Callable[[], None] | None = None, *,
                 engine: Engine | None = None, status: StoreStatus | None = None,
                 on_recovered: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.log = log
        self.on_lost = on_lost
        self.engine = engine
        self.status = status
        self.on_recovered = on_recovered
        self.owner = (f"host {socket.gethostname()} pid {os.getpid()} since "
                      f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
        self.lost = False
        self.lost_reason = ""
        self._unreachable: str | None = None  # why the last renewal failed
        self._unreachable_since = 0.0
        self._behind = False  # claim taken back, journal not yet caught up
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, wait_s: float = 0.0) -> None:
        """Take the store, waiting up to ``wait_s`` for its holder to let go (a rolling restart,
        or a crashed server's Redis lease running out); then raise StoreBusy naming the holder."""
        deadline = time.monotonic() + wait_s
        waiting = False
        while True:
            try:
                self.store.claim_writer(self.owner)
                break
            except StoreBusy as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if not waiting:
                    waiting = True
                    self.log.warning("store_busy_waiting", store=self.store.location,
                                     wait_s=round(left, 1), detail=str(exc))
                time.sleep(min(0.25, left))
        if waiting:
            self.log.info("store_claimed", store=self.store.location)
        if self.store.lease_s is not None:
            self._thread = threading.Thread(target=self._run, name="store-lease", daemon=True)
            self._thread.start()

    def blocked(self) -> str | None:
        """Why a write to the store must not be tried now (None: it may)."""
        if self._behind:
            return "the writer lease was just taken back and the journal is being caught up"
        if self._unreachable is not None:
            return f"the store has not answered for {time.monotonic() - self._unreachable_since:.0f} s"
        return None

    def _run(self) -> None:
        assert self.store.lease_s is not None
        # at least every 2 s: the renewal is also how an outage is noticed (decisions degraded)
        period = min(self.store.lease_s / 3, 2.0)
        retry = min(period, 1.0)
        wait = period
        while not self._stopped.wait(wait):
            wait = period
            try:
                reclaimed = self._renew()
            except StoreBusy as exc:
                self._lose(str(exc))
                return
            except StoreUnavailable as exc:
                if self._unreachable is None:
                    self._unreachable_since = time.monotonic()
                self._unreachable = str(exc)
                if self.status is not None:
                    self.status.problem("lease", str(exc))
                wait = retry
                continue
            was = self._unreachable
            self._unreachable = None
            if reclaimed is not None or was is not None:
                if self.status is not None:
                    self.status.resolved("lease")
                if self.on_recovered is not None:
                    self.on_recovered("store_reclaimed" if reclaimed is not None
                                      else "store_reachable")

    def _renew(self) -> int | None:
        """Renew the claim, taking it back when it ran out; returns the journal entries applied
        when it was taken back (None: it was still held). StoreBusy: lost for good."""
        try:
            self.store.renew_writer()
            if not self._behind:
                return None
        except StoreBusy:
            if self.status is not None:
                self.status.problem("lease", "the writer lease ran out; taking it back")
            self._reclaim()
        applied = self._catch_up()
        self.log.info("store_reclaimed", store=self.store.location, journal_applied=applied,
                      cut_off_s=round(time.monotonic() - self._unreachable_since, 3)
                      if self._unreachable is not None else 0.0)
        return applied

    def _reclaim(self) -> None:
        seq = self.engine.journal_seq if self.engine is not None else 0
        self.store.reclaim_writer(self.owner, seq)
        self._behind = self.engine is not None

    def _catch_up(self) -> int:
        """Apply the journal entries another writer (or an append whose answer was lost) left;
        watchlist updates wait meanwhile. A malformed entry is a loss for good."""
        if self.engine is None or not self._behind:
            return 0
        with self.engine.watchlist_paused():
            try:
                applied, _ = catch_up(self.engine, self.store)
            except CheckpointError as exc:
                raise StoreBusy(f"{exc}; this server stops writing here") from None
            self._behind = False
        return applied

    def _lose(self, reason: str) -> None:
        self.lost = True
        self.lost_reason = reason
        self.log.error("store_lease_lost", store=self.store.location, error=reason)
        if self.status is not None:
            self.status.problem("lease", reason)
        if self.on_lost is not None:
            self.on_lost()

    def release(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.store.release_writer()
