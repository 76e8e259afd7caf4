"""Calling the servicer in-process for A/B cost figures (audit trail, event journal): the little
of a grpc context a handler touches on success, and a thread's CPU clock."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["Context", "thread_cpu_s"]


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
