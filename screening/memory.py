"""How much state this machine can hold: the entity caps, derived from memory at start.

Every account, phone number and device costs a known number of bytes (feature rows, interned
id, recent-decision ring, graph node rows, a share of the relationship table); the graph's edge
slots and the idempotency memory are bounded by their own settings. ``plan_memory`` puts these
together against ``[state] memory_fraction`` of the memory available when the server starts:
each ``max_*`` left at 0 becomes the largest count that fits (accounts, phone numbers and
devices alike, so the plan holds when all three are full), and an explicit one that does not
fit is a ``ConfigError`` (one line, with the figures), so a server never starts with caps the
machine cannot hold. With a store configured, a checkpoint copies the arrays while it is taken
(``Engine.snapshot``), so they count twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.state import FeatureState
from graph.live import BYTES_PER_EDGE, BYTES_PER_NODE
from screening.config import Settings
from screening.errors import ConfigError

__all__ = [
    "BYTES_PER_CALL",
    "BYTES_PER_DECISION",
    "BYTES_PER_ID",
    "KINDS",
    "MAX_IDS",
    "MemoryPlan",
    "available_memory",
    "plan_memory",
]

# Python objects, measured with tracemalloc (and rounded up): an interned id of 16 characters is
# 140 B (the str, its dict entry, the list slot, the int); a remembered decision with two
# driving features 700 B (the record, its strings, the dict and ring entries); a remembered call
# (two records and its strings) about as much. The calling institution and the 16-byte request
# fingerprint each decision keeps (``screening.idempotency``) add 65 B to a decision, the
# (scope, call_id) key 76 B to a call (measured the same way, 60,000 of each).
BYTES_PER_ID = 176
BYTES_PER_DECISION = 832
BYTES_PER_CALL = 832
# Relationships kept per account (``MemoryPlan.max_pairs``): a table slot is 16 B, the table is at
# most 3/4 full, doubles, and the next size is written ahead while it is half way there (up to 4
# slots per relationship).
PAIRS_PER_ACCOUNT = 4
BYTES_PER_PAIR = 64
# The process itself (interpreter, numba, grpc, policy, buffers), outside the state.
BASE_BYTES = 512 << 20
# ids are int32 graph node numbers 3 * id + kind, and 31-bit halves of a relationship key
MAX_IDS = (2**31 - 1) // 3
KINDS = ("accounts", "phones", "devices")


@dataclass(frozen=True, kw_only=True)
class MemoryPlan:
    """The entity caps a server runs with, and what they were derived from."""

    max_accounts: int
    max_phones: int
    max_devices: int
    derived: tuple[str, ...]  # the caps computed here (the others were configured)
    available_bytes: int  # memory available when the plan was made
    budget_bytes: int  # the share of it the state may use
    need_bytes: int  # what the state takes at these caps
    per_entity_bytes: dict[str, int]  # per account, phone number and device, graph included
    fixed_bytes: int  # edge slots, remembered decisions and calls, the process itself

    @property
    def max_pairs(self) -> int:
        """Relationships (payer-payee and caller-callee pairs) kept: the least recently seen go
        past it."""
        return PAIRS_PER_ACCOUNT * self.max_accounts

    def cap(self, kind: str) -> int:
        return {"accounts": self.max_accounts, "phones": self.max_phones,
                "devices": self.max_devices}[kind]

    def log_fields(self) -> dict[str, Any]:
        """The plan as fields of a structured log line."""
        gib = 2**30
        return {"max_accounts": self.max_accounts, "max_phones": self.max_phones,
                "max_devices": self.max_devices, "max_pairs": self.max_pairs,
                "derived": list(self.derived),
                "available_gib": round(self.available_bytes / gib, 2),
                "budget_gib": round(self.budget_bytes / gib, 2),
                "need_gib": round(self.need_bytes / gib, 2),
                "fixed_gib": round(self.fixed_bytes / gib, 2),
                "bytes_per_account": self.per_entity_bytes["accounts"]}


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Bytes of memory available to a new process now (Linux MemAvailable; elsewhere the
    machine's physical memory)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _costs(settings: Settings) -> tuple[dict[str, int], int, int, Callable[[dict[str, int]], int]]:
    """(bytes per entity by kind, bytes per graph node row, fixed bytes, total(caps))."""
    s, g = settings.state, settings.graph
    copies = 1 if settings.storage.backend == "none" else 2  # a checkpoint copies the arrays
    one = FeatureState.create(1, 1, 1, 16)
    per = {
        "accounts": copies * (one.bytes_per_account() + (s.recent_decisions_per_account + 1) * 8
                              + PAIRS_PER_ACCOUNT * BYTES_PER_PAIR) + BYTES_PER_ID + 8 * copies,
        "phones": copies * one.bytes_per_phone() + BYTES_PER_ID + 8 * copies,
        "devices": copies * int(one.devices[0].nbytes) + BYTES_PER_ID + 8 * copies,
    }
    node = copies * BYTES_PER_NODE if g.enabled else 0
    fixed = (BASE_BYTES + s.dedup_capacity * (BYTES_PER_DECISION + BYTES_PER_CALL + 8 * copies)
             + (copies * g.max_edges * BYTES_PER_EDGE if g.enabled else 0))

    def total(caps: dict[str, int]) -> int:
        # graph nodes are 3 * id + kind: one row per id of each kind up to the largest cap
        return (fixed + sum(per[kind] * n for kind, n in caps.items())
                + 3 * max(caps.values()) * node)

    return per, node, fixed, total


def plan_memory(settings: Settings, available: int) -> MemoryPlan:
    """The caps for ``settings`` on a machine with ``available`` bytes free (see module doc).

    Raises ConfigError when the configured caps, or the fixed costs alone, do not fit.
    """
    s = settings.state
    budget = int(available * s.memory_fraction)
    per, node, fixed, total = _costs(settings)
    configured = {kind: int(getattr(s, f"max_{kind}")) for kind in KINDS}
    for kind, n in configured.items():
        if n > MAX_IDS:
            raise ConfigError(f"[state] max_{kind} = {n}: at most {MAX_IDS} (ids are int32 graph "
                              "node numbers)")
    derived = tuple(kind for kind, n in configured.items() if n == 0)
    gib = 2**30
    where = (f"the {budget / gib:.1f} GiB this server may use ([state] memory_fraction "
             f"{s.memory_fraction} of {available / gib:.1f} GiB available)")

    def caps_for(n: int) -> dict[str, int]:
        return {kind: n if kind in derived else c for kind, c in configured.items()}

    if not derived:
        caps = configured
        if total(caps) > budget:
            named = ", ".join(f"max_{kind} = {n}" for kind, n in caps.items())
            raise ConfigError(f"[state] {named} need {total(caps) / gib:.1f} GiB of state, more "
                              f"than {where}: lower them, or set them to 0 to derive them")
    else:
        lo, hi = 0, MAX_IDS  # the largest n whose caps fit: total is monotonic in n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if total(caps_for(mid)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        if lo < 1024:
            named = ", ".join(f"max_{kind} = {configured[kind]}" for kind in KINDS
                              if kind not in derived)
            taken = f" and {named} {(total(caps_for(0)) - fixed) / gib:.1f} GiB" if named else ""
            raise ConfigError(
                f"[state] room for only {lo} {', '.join(derived)} in {where}: the fixed costs "
                f"([graph] max_edges {settings.graph.max_edges}, [state] dedup_capacity "
                f"{s.dedup_capacity}) take {fixed / gib:.1f} GiB{taken}; lower them or give the "
                "server more memory")
        caps = caps_for(lo)
    return MemoryPlan(max_accounts=caps["accounts"], max_phones=caps["phones"],
                      max_devices=caps["devices"], derived=derived, available_bytes=available,
                      budget_bytes=budget, need_bytes=total(caps),
                      per_entity_bytes={kind: per[kind] + 3 * node for kind in KINDS},
                      fixed_bytes=fixed)
