"""The state-store interface: atomic checkpoints, an append-only watchlist journal and an
append-only event journal (accepted transactions and calls).

A backend stores opaque bytes; what they mean is ``_format``'s business. Every backend
translates its own errors (``OSError``, redis-py's exceptions) into ``StoreUnavailable`` in one
place, so callers see one error whatever the backend.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Self

__all__ = ["CheckpointReader", "Piece", "Store"]

#: a piece of a checkpoint as written (numpy arrays go as memoryviews, uncopied)
Piece = bytes | bytearray | memoryview


class CheckpointReader(abc.ABC):
    """Random access to one stored checkpoint (it stays readable while a newer one is written)."""

    #: the file or key naming this checkpoint, for messages
    where: str
    #: total bytes
    size: int

    @abc.abstractmethod
    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset``; fewer only when the checkpoint is shorter."""

    def where_at(self, offset: int) -> str:
        """The file or key holding byte ``offset`` (a Redis checkpoint is split into chunks)."""
        return self.where

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the reader holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(abc.ABC):
    """Where checkpoints and the watchlist journal live."""

    #: a description for logs and messages (no credentials)
    location: str

    def claim_writer(self, owner: str) -> None:  # noqa: B027 - a store of one process needs none
        """Become the one server writing here, or raise StoreBusy naming the current holder.

        ``owner`` (host, pid, start time) is shown to a second server that tries to start.
        """

    def renew_writer(self) -> None:  # noqa: B027 - held until released unless it expires
        """Keep the claim alive; raise StoreBusy when it was lost (another server has it)."""

    def reclaim_writer(self, owner: str, journal_seq: int) -> None:
        """Take the claim back after losing it while the store was out of reach, only if nobody
        holds it and nobody wrote a checkpoint since; number later journal entries above
        ``journal_seq`` (what this server has applied). Raise StoreBusy saying why not.

        A store whose claim cannot be lost while the process lives never needs this."""
        self.claim_writer(owner)

    def release_writer(self) -> None:  # noqa: B027
        """Give the claim up (at shutdown, after the last checkpoint)."""

    #: seconds a claim lasts without renewal (None: as long as the process lives)
    lease_s: float | None = None

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StoreUnavailable unless the store can be read and written now."""

    @abc.abstractmethod
    def write_checkpoint(self, pieces: Iterable[Piece]) -> str:
        """Store the concatenated ``pieces`` as the latest checkpoint, atomically.

        Readers see the previous checkpoint until the new one is complete; when writing fails
        part way (an exception from ``pieces`` included) the previous one stays the latest.
        Returns where the new checkpoint is.
        """

    @abc.abstractmethod
    def open_checkpoint(self) -> CheckpointReader | None:
        """The latest checkpoint, or None when there is none."""

    @abc.abstractmethod
    def append_journal(self, entry: bytes) -> int:
        """Append one entry durably; returns its sequence number (1, 2, ...; never reused)."""

    @abc.abstractmethod
    def advance_journal(self, seq: int) -> None:
        """Number later entries above ``seq``.

        A restored checkpoint includes the changes up to its ``journal_seq``, and a journal
        trimmed empty no longer shows how far numbering went: an entry numbered at or below it
        would be skipped by the next restore.
        """

    @abc.abstractmethod
    def read_journal(self, after: int = 0) -> list[tuple[int, bytes]]:
        """Entries with a sequence number above ``after``, in order."""

    @abc.abstractmethod
    def trim_journal(self, upto: int) -> int:
        """Drop entries numbered ``upto`` and below (a checkpoint includes them); returns how many."""

    # ------------------------------------------------------------------ policies
    @abc.abstractmethod
    def save_policy(self, version: str, text: str) -> None:
        """Keep policy TOML ``text`` under ``version`` (its digest names one text), durably: a
        restart re-applies journalled decisions under the policy that made them, though the
        server starts with another (a policy sent by ReloadPolicy, or a file edited since)."""

    @abc.abstractmethod
    def load_policy(self, version: str) -> str | None:
        """The text ``save_policy`` kept for ``version``, or None."""

    # ------------------------------------------------------------------ the event journal
    @abc.abstractmethod
    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        """Append ``(seq, entry)`` pairs (numbered by the engine, ascending) in one write;
        ``sync``: made durable (fsync) before returning. One line per entry, no newline in it.
        Raises StoreUnavailable, StoreBusy (another server holds the store) when it cannot."""

    @abc.abstractmethod
    def sync_events(self) -> None:
        """Make every appended event durable (the ``interval`` fsync policy)."""

    @abc.abstractmethod
    def read_events(self, after: int = 0) -> list[tuple[int, bytes]]:
        """Events numbered above ``after``, in order (a torn last write left out)."""

    @abc.abstractmethod
    def trim_events(self, upto: int) -> int:
        """Drop events numbered ``upto`` and below (a checkpoint includes them), at least those
        in whole segments; returns how many went (-1: not counted)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
