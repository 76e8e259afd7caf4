"""Calling the servicer in-process for A/B cost figures (audit trail, event journal): the little
of a grpc context a handler touches on success, a thread's CPU clock, and what produced a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["Context", "git_commit", "git_dirty", "publish", "stamp", "thread_cpu_s"]


class Context:
    """The little of grpc.ServicerContext the servicer touches on success."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


def thread_cpu_s(thread: threading.Thread | None) -> float:
    """CPU seconds ``thread`` has used (0 for none or one not started)."""
    if thread is None or thread.ident is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def _git(*args: str) -> str | None:
    """``git ARGS`` from the project root (pathspecs are read from there)."""
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(short: int | None = None) -> str | None:
    """The checked-out commit (``short`` hex digits), None outside a git checkout."""
    args = ("rev-parse", f"--short={short}", "HEAD") if short else ("rev-parse", "HEAD")
    return _git(*args) or None


def git_dirty() -> bool | None:
    """Whether tracked source differs from that commit (results being rewritten do not count):
    figures then come from code the commit does not hold. None outside a git checkout."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return None if status is None else bool(status)


def stamp(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` with what produced them: arguments, time, commit, cores and the load after."""
    figures.update(argv=sys.argv[1:], when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   commit=git_commit() or "", dirty=git_dirty(), cpus=os.cpu_count(),
                   load_average_after=os.getloadavg())
    return figures


def publish(figures: dict[str, Any], lines: Iterable[str], out: Path | None) -> None:
    """Print a bench's table ``lines`` and, when ``out`` is given, write ``figures`` there as
    JSON (its folder made)."""
    for line in lines:
        print(line)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
