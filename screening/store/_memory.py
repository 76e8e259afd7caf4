"""The in-memory twin of the backends: same interface, nothing survives the process.

For tests and benchmarks of the checkpoint format without disk or network.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from screening.store._base import CheckpointReader, Piece, Store

__all__ = ["MemoryStore"]


class _BytesReader(CheckpointReader):
    def __init__(self, data: bytes, where: str) -> None:
        self._data = data
        self.size = len(data)
        self.where = where

    def read(self, offset: int, size: int) -> bytes:
        return self._data[offset:offset + size]


class MemoryStore(Store):
    def __init__(self) -> None:
        self.location = "memory"
        self.checkpoint: bytes | None = None
        self.journal: list[tuple[int, bytes]] = []
        self._seq = 0
        self.events: list[tuple[int, bytes]] = []
        self.policies: dict[str, str] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        return None

    def write_checkpoint(self, pieces: Iterable[Piece]) -> str:
        data = b"".join(bytes(p) for p in pieces)  # all pieces first: a failure changes nothing
        self.checkpoint = data
        return "memory"

    def open_checkpoint(self) -> CheckpointReader | None:
        return None if self.checkpoint is None else _BytesReader(self.checkpoint, "memory")

    def save_policy(self, version: str, text: str) -> None:
        self.policies[version] = text

    def load_policy(self, version: str) -> str | None:
        return self.policies.get(version)

    def append_journal(self, entry: bytes) -> int:
        with self._lock:
            self._seq += 1
            self.journal.append((self._seq, bytes(entry)))
            return self._seq

    def advance_journal(self, seq: int) -> None:
        with self._lock:
            self._seq = max(self._seq, seq)

    def read_journal(self, after: int = 0) -> list[tuple[int, bytes]]:
        with self._lock:
            return [(s, e) for s, e in self.journal if s > after]

    def trim_journal(self, upto: int) -> int:
        with self._lock:
            before = len(self.journal)
            self.journal = [(s, e) for s, e in self.journal if s > upto]
            return before - len(self.journal)

    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        with self._lock:
            self.events += [(s, bytes(e)) for s, e in entries]

    def sync_events(self) -> None:
        return None

    def read_events(self, after: int = 0) -> list[tuple[int, bytes]]:
        with self._lock:
            return [(s, e) for s, e in self.events if s > after]

    def trim_events(self, upto: int) -> int:
        with self._lock:
            before = len(self.events)
            self.events = [(s, e) for s, e in self.events if s > upto]
            return before - len(self.events)
