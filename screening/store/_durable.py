"""Engine <-> store: checkpoint, restore, the watchlist journal and the background checkpointer."""

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
from screening.engine import Engine, EngineSnapshot, FeedbackJournal, WatchJournal
from screening.errors import CheckpointError, StoreBusy, StoreUnavailable
from screening.model import Feedback, WatchEntry
from screening.store._base import Store
from screening.store._file import FileStore
from screening.store._format import (
    Header,
    decode,
    encode,
    feedback_row,
    parse_feedback_row,
    parse_kind,
    parse_watch_row,
    read_header,
    watch_row,
)
from screening.store._redis import RedisStore

__all__ = [
    "CheckpointStats",
    "Checkpointer",
    "RestoreReport",
    "WriterLease",
    "decode_watch_change",
    "encode_watch_change",
    "feedback_journal_writer",
    "journal_writer",
    "open_store",
    "read_latest_header",
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
    # identifiers the replayed journal entries touched (log them masked)
    journal_entities: list[str] = field(default_factory=list)


def restore_snapshot(engine: Engine, header: Header, snap: EngineSnapshot) -> list[str]:
    """``engine.restore(snap)``, every refusal a CheckpointError naming the checkpoint."""
    try:
        return engine.restore(snap)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {header.where}: does not fit this build: {exc}") from None
    except MemoryError:
        raise CheckpointError(f"checkpoint {header.where}: its state does not fit in the memory "
                              "this process may use") from None


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
    for seq, raw in store.read_journal(after=engine.journal_seq):
        where = f"{store.location} journal entry {seq}"
        feedback = decode_feedback(raw, where)
        if feedback is not None:
            if engine.apply_feedback_journal(seq, *feedback):
                report.journal_applied += 1
                report.journal_entities.append(feedback[1].account_id or feedback[1].transaction_id)
            continue
        upserts, removes = decode_watch_change(raw, where)
        if engine.apply_journal(seq, upserts, removes):
            report.journal_applied += 1
            report.journal_entities += [e.value for e in upserts] + [v for _, v in removes]
    store.advance_journal(engine.journal_seq)
    report.seconds = time.perf_counter() - t0
    return report


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


def feedback_journal_writer(store: Store) -> FeedbackJournal:
    """The engine's feedback journal: each verdict appended (durably) to ``store``."""

    def write(at_ms: int, fb: Feedback) -> int:
        return store.append_journal(encode_feedback(at_ms, fb))

    return write


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def journal_writer(store: Store, clock_ms: Callable[[], int]) -> WatchJournal:
    """The engine's watchlist journal: each change appended (durably) to ``store``."""

    def write(upserts: Sequence[WatchEntry], removes: Sequence[tuple[int, str]]) -> int:
        return store.append_journal(encode_watch_change(upserts, removes, clock_ms()))

    return write


# ------------------------------------------------------------------ background checkpoints
class Checkpointer:
    """Checkpoints every ``interval_s`` in a thread of its own (0: only when asked), logging each.

    Failures are logged and retried at the next interval; the server keeps serving.
    """

    def __init__(self, engine: Engine, store: Store, interval_s: float, log: Any) -> None:
        self.engine = engine
        self.store = store
        self.interval_s = interval_s
        self.log = log
        self._stopped = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last: CheckpointStats | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.checkpoint("periodic")

    def stop(self) -> None:
        """Stop the thread (a checkpoint in progress completes first)."""
        self._stopped.set()
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
                return None
            except Exception:
                self.log.exception("checkpoint_failed", why=why, store=self.store.location)
                return None
        self.last = stats
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


# ------------------------------------------------------------------ one writer per store
class WriterLease:
    """This server's claim on the store: taken before the state is restored (a second server
    on the same store fails to start, naming the first), renewed in a thread when the store's
    claim expires, given up at shutdown after the last checkpoint.

    When a renewal finds the claim lost, it logs ``store_lease_lost`` once and calls
    ``on_lost`` (the server reports NOT_SERVING); the store itself then refuses this server's
    checkpoints and journal appends (StoreBusy), so the server that holds the store now is never
    overwritten.
    """

    def __init__(self, store: Store, log: Any, on_lost: Callable[[], None] | None = None) -> None:
        self.store = store
        self.log = log
        self.on_lost = on_lost
        self.owner = (f"host {socket.gethostname()} pid {os.getpid()} since "
                      f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
        self.lost = False
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

    def _run(self) -> None:
        assert self.store.lease_s is not None
        period = self.store.lease_s / 3
        while not self._stopped.wait(period):
            try:
                self.store.renew_writer()
            except StoreBusy as exc:
                self.lost = True
                self.log.error("store_lease_lost", store=self.store.location, error=str(exc))
                if self.on_lost is not None:
                    self.on_lost()
                return
            except StoreUnavailable as exc:  # try again; the claim lasts lease_s
                self.log.warning("store_lease_renew_failed", store=self.store.location,
                                 error=str(exc))

    def release(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.store.release_writer()
