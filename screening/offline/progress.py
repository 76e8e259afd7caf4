"""Progress of a long batch job: a bar on a terminal, a line now and then in a log.

tqdm draws nothing when stderr is not a terminal (a job under systemd, nohup, CI, or
``2> replay.log``), and a bar redrawn in place would make a poor log anyway. There the job
writes a line every ``every_s`` seconds instead, and one at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TextIO

__all__ = ["Progress", "ProgressLines", "progress"]


class Progress(Protocol):
    """What a job calls: ``update(n)`` after each ``n`` items; used as a context manager."""

    def update(self, n: int) -> Any: ...

    def __enter__(self) -> Progress: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any: ...


def progress(total: int, desc: str, stream: TextIO, *, enabled: bool = True,
             every_s: float = 10.0) -> Progress:
    """A tqdm bar when ``stream`` is a terminal, :class:`ProgressLines` otherwise; nothing
    when not ``enabled``."""
    if enabled and not stream.isatty():
        return ProgressLines(total, desc, stream, every_s=every_s)
    from tqdm import tqdm

    bar: Progress = tqdm(total=total, unit="ev", unit_scale=True, desc=desc, disable=not enabled,
                         file=stream)
    return bar


class ProgressLines:
    """``desc: 1,200,000 / 5,000,000 events (24 %), 0.85 M events/s`` every ``every_s`` seconds
    of ``clock``, and once more on leaving the ``with`` block (when all went well)."""

    def __init__(self, total: int, desc: str, stream: TextIO, *, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.desc = desc
        self.stream = stream
        self.every_s = every_s
        self.clock = clock
        self.done = 0
        self._start = clock()
        self._last = self._start

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._write(now)

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self._write(self.clock(), final=True)

    def _write(self, now: float, *, final: bool = False) -> None:
        elapsed = now - self._start
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        rate = _rate(self.done / elapsed) if elapsed > 0 else "-"
        took = f" in {elapsed:.1f} s" if final else ""
        self.stream.write(f"{self.desc}: {self.done:,} / {self.total:,} events{share}, "
                          f"{rate}{took}\n")
        self.stream.flush()


def _rate(per_s: float) -> str:
    return f"{per_s / 1e6:.2f} M events/s" if per_s >= 1e6 else f"{per_s:,.0f} events/s"
