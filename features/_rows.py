"""Tables of arrays that share a row count, on memory reserved up front for their row limit.

Entity state (a row per account, phone or device), graph nodes and edge slots all grow with
traffic. Growing by allocating a bigger array and copying the old one stalled the request path
for seconds on the project VM (a copy, and page faults on every new page: first touches cost
far more than the copy, several seconds per GB on huge pages with on-demand compaction). Here
each array is a view of a private anonymous mapping reserved (``MAP_NORESERVE``: address space,
not memory) for ``limit`` rows. Growing extends the views over rows already written with the
empty row; writing them (faulting their pages in) can happen ahead of use, on another thread
(``prefill``), so the request path neither copies nor faults.

Rows beyond the views are only ever written by ``prefill`` / ``grow`` under the table's own
lock; the views' rows belong to the caller (its own lock serialises them). No clock, no I/O.
"""

from __future__ import annotations

import math
import mmap
import sys
import threading
from collections.abc import Iterator, Mapping

import numpy as np

__all__ = ["RowTable", "reserve"]

HUGE_PAGE = 2 << 20
# Arrays at least this large are placed on huge pages. Every event reads and writes a few lines
# of two accounts spread over a dozen arrays; with 4 kB pages nearly each of those lines also
# needs its own address translation (replay at 13 k accounts measured 10-15 % faster on huge
# pages). Smaller arrays are not worth rounding up to 2 MB.
HUGE_MIN = 1 << 20
# mmap(2) flag: reserve address space without committing memory for it (absent from Python's
# mmap module; the Linux value)
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
# prefill writes at most this much per table between taking and releasing its lock, so that a
# request that needs rows now waits for one chunk, not a whole prefill
_CHUNK_BYTES = 32 << 20


def reserve(rows: int, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array of ``rows`` rows whose memory is not touched (pages appear when written).

    Large ones are private anonymous mappings reserved without committing memory, 2 MB-aligned
    and advised for huge pages where the OS offers them (a shared mapping would be shmem, which
    transparent huge pages leave out); unmapped when the last view of them goes.
    """
    nbytes = rows * math.prod(row_shape) * dtype.itemsize
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < HUGE_MIN or advise is None or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty((rows, *row_shape), dtype=dtype)
    span = -(-nbytes // HUGE_PAGE) * HUGE_PAGE
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    try:
        region = mmap.mmap(-1, span + HUGE_PAGE, flags=flags | _MAP_NORESERVE)
    except OSError:  # e.g. strict overcommit accounting refuses the reservation: commit it
        region = mmap.mmap(-1, span + HUGE_PAGE, flags=flags)
    raw = np.frombuffer(region, dtype=np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE  # huge pages need 2 MB-aligned addresses
    region.madvise(advise, start, span)
    return raw[start:start + nbytes].view(dtype).reshape((rows, *row_shape))


class RowTable:
    """Named arrays sharing their first dimension; rows ``[0, rows)`` are in use (the views).

    ``empty`` gives each array's empty row (its shape is the row shape). ``limit`` rows are
    reserved; growing within it never copies. Growing past it (a table made without a limit)
    reserves twice as much and copies once, as a doubling array would.
    """

    def __init__(self, empty: Mapping[str, np.ndarray], rows: int, limit: int | None = None) -> None:
        if not empty:
            raise ValueError("a row table needs at least one array")
        self.empty = {name: np.array(row, copy=True) for name, row in empty.items()}
        self.rows = max(int(rows), 1)
        self.limit = max(self.rows, int(limit) if limit is not None else self.rows)
        self._lock = threading.Lock()
        self._base = {name: reserve(self.limit, row.shape, row.dtype)
                      for name, row in self.empty.items()}
        self.filled = 0
        self._fill(self.rows)
        self.views: dict[str, np.ndarray] = {n: b[:self.rows] for n, b in self._base.items()}

    # ------------------------------------------------------------ reading
    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.views)

    @property
    def row_nbytes(self) -> int:
        return sum(int(row.nbytes) for row in self.empty.values())

    def nbytes(self) -> int:
        """Bytes of the rows in use."""
        return self.rows * self.row_nbytes

    def filled_nbytes(self) -> int:
        """Bytes written so far (resident), in use or ready for use."""
        return self.filled * self.row_nbytes

    # ------------------------------------------------------------ growing
    def grow(self, rows: int) -> None:
        """Views over ``rows`` rows (the caller's lock held); new rows hold the empty row.

        Rows ``prefill`` has written cost nothing here; the rest are written now.
        """
        if rows <= self.rows:
            return
        if rows <= self.filled:  # written ahead (``filled`` moves only after the writes): no wait
            self.views = {n: b[:rows] for n, b in self._base.items()}
            self.rows = rows
            return
        with self._lock:
            if rows > self.limit:
                self._rereserve(max(rows, 2 * self.limit))
            if rows > self.filled:
                self._fill(rows)
            self.views = {n: b[:rows] for n, b in self._base.items()}
            self.rows = rows

    def prefill(self, rows: int) -> int:
        """Write the empty row into rows up to ``rows`` (at most ``limit``) ahead of use.

        Safe on another thread while the views are in use: it writes only rows past every view,
        a chunk at a time under the table's lock (numpy releases the GIL while it writes).
        Returns the rows written.
        """
        target = min(int(rows), self.limit)
        step = max(1, _CHUNK_BYTES // max(self.row_nbytes, 1))
        done = 0
        while True:
            with self._lock:
                if self.filled >= target:
                    return done
                start = self.filled
                self._fill(min(target, start + step))
                done += self.filled - start

    def reset(self, idx: np.ndarray) -> None:
        """Rows ``idx`` (in use) back to the empty row."""
        for name, view in self.views.items():
            view[idx] = self.empty[name]

    # ------------------------------------------------------------ private
    def _fill(self, stop: int) -> None:
        """Write the empty row into [filled, stop); the table's lock held (or not yet shared)."""
        start = self.filled
        if stop <= start:
            return
        for name, base in self._base.items():
            base[start:stop] = self.empty[name]
        self.filled = stop

    def _rereserve(self, limit: int) -> None:
        bases = {name: reserve(limit, row.shape, row.dtype) for name, row in self.empty.items()}
        for name, base in bases.items():
            base[:self.filled] = self._base[name][:self.filled]
        self._base = bases
        self.limit = limit
