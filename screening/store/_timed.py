"""Store round trips timed for the operators' metrics, by operation.

A slow store shows first as time here (a renewal taking seconds, a watchlist change waiting on
its journal append) before it shows as a failure. ``TimedStore`` wraps any backend and hands
``observe(op, seconds)`` each call's duration, failed calls included; it knows nothing of
Prometheus (``screening.metrics`` plugs in). Reads made only at start (the checkpoint, the
events to replay) are not timed: the restore's own log line says how long it took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from screening.store._base import CheckpointReader, Piece, Store

__all__ = ["TimedStore"]

T = TypeVar("T")


class TimedStore(Store):
    """``inner`` with each write, lease and journal call timed. ``observe`` may be set later
    (the metrics exist only once the server is being built): what was timed before (the claim,
    the restore's catch-up) is handed to it then."""

    def __init__(self, inner: Store, observe: Callable[[str, float], None] | None = None) -> None:
        self.inner = inner
        self.location = inner.location
        self.lease_s = inner.lease_s
        self._early: list[tuple[str, float]] = []
        self._observe: Callable[[str, float], None] | None = None
        self._hand_over = threading.Lock()  # a call timed while the sink is set goes to one place
        self.observe = observe

    @property
    def observe(self) -> Callable[[str, float], None] | None:
        return self._observe

    @observe.setter
    def observe(self, sink: Callable[[str, float], None] | None) -> None:
        with self._hand_over:
            self._observe = sink
            early: list[tuple[str, float]] = []
            if sink is not None:
                early, self._early = self._early, []
        if sink is not None:
            for op, seconds in early:
                sink(op, seconds)

    def _timed(self, op: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        t0 = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - t0
            sink = self._observe
            if sink is None:
                with self._hand_over:
                    sink = self._observe
                    if sink is None and len(self._early) < 1000:  # a start does a handful
                        self._early.append((op, seconds))
            if sink is not None:
                sink(op, seconds)

    # the claim
    def claim_writer(self, owner: str) -> None:
        self._timed("claim_writer", self.inner.claim_writer, owner)

    def renew_writer(self) -> None:
        self._timed("renew_writer", self.inner.renew_writer)

    def reclaim_writer(self, owner: str, journal_seq: int) -> None:
        self._timed("reclaim_writer", self.inner.reclaim_writer, owner, journal_seq)

    def release_writer(self) -> None:
        self._timed("release_writer", self.inner.release_writer)

    def check(self) -> None:
        self._timed("check", self.inner.check)

    # checkpoints
    def write_checkpoint(self, pieces: Iterable[Piece]) -> str:
        return self._timed("write_checkpoint", self.inner.write_checkpoint, pieces)

    def open_checkpoint(self) -> CheckpointReader | None:
        return self.inner.open_checkpoint()

    # the journal of watchlist changes, feedback and registry updates
    def append_journal(self, entry: bytes) -> int:
        return self._timed("append_journal", self.inner.append_journal, entry)

    def advance_journal(self, seq: int) -> None:
        self._timed("advance_journal", self.inner.advance_journal, seq)

    def read_journal(self, after: int = 0) -> list[tuple[int, bytes]]:
        return self._timed("read_journal", self.inner.read_journal, after)

    def trim_journal(self, upto: int) -> int:
        return self._timed("trim_journal", self.inner.trim_journal, upto)

    # policies
    def save_policy(self, version: str, text: str) -> None:
        self._timed("save_policy", self.inner.save_policy, version, text)

    def load_policy(self, version: str) -> str | None:
        return self.inner.load_policy(version)

    # the event journal (its writer's own histograms time each group commit too)
    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        self._timed("append_events", self.inner.append_events, entries, sync=sync)

    def sync_events(self) -> None:
        self._timed("sync_events", self.inner.sync_events)

    def read_events(self, after: int = 0) -> list[tuple[int, bytes]]:
        return self.inner.read_events(after)

    def trim_events(self, upto: int) -> int:
        return self._timed("trim_events", self.inner.trim_events, upto)

    def close(self) -> None:
        self.inner.close()
