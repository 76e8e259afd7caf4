"""A digest of an engine's whole state: equal digests, equal state.

``state_digest(engine.snapshot())`` hashes everything a checkpoint holds (feature arrays,
interned ids, graph, remembered decisions, calls, watchlist, feedback, report ledger, policy
version) and nothing about when or how fast the snapshot was taken. The fuzzer
(``python -m bench.fuzz``) compares it before and after requests the server refused: a refused
request must change no state.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from graph import _kernels as gk
from screening.engine import EngineSnapshot
from screening.model import DecisionRecord, Feedback, WatchEntry

__all__ = ["state_digest", "state_parts"]

# when the snapshot was taken and how long it held the lock: not state
_NOT_STATE = frozenset({"created_ms", "lock_held_s"})
# entries of arrays that are scratch, not state: the graph's search stamp (the generation of the
# per-node search marks, which checkpoints leave out) advances with every search, reads included
_SCRATCH = {"graph.meta": (gk.M_STAMP,)}
_RECORDS = frozenset({DecisionRecord, Feedback, WatchEntry})
_SEEN: dict[int, tuple[Any, bytes]] = {}
_SEEN_MAX = 2_000_000


def state_digest(snap: EngineSnapshot) -> str:
    """sha256 hex of ``snap``'s content, ``created_ms``, ``lock_held_s`` and the graph's search
    stamp left out."""
    h = hashlib.sha256()
    for name, value in _content(snap):
        _feed(h, name)
        _feed(h, value)
    return h.hexdigest()


def _content(snap: EngineSnapshot) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(snap):
        if f.name in _NOT_STATE:
            continue
        value = getattr(snap, f.name)
        if f.name == "arrays":
            value = dict(value)
            for key, cols in _SCRATCH.items():
                if key in value:
                    value[key] = value[key].copy()
                    value[key][list(cols)] = 0
        out.append((f.name, value))
    return out


def state_parts(snap: EngineSnapshot) -> dict[str, str]:
    """A short digest of each part of ``snap`` (each array apart): what changed, when the
    whole digest did."""
    out = {}
    for name, value in _content(snap):
        items = value.items() if name == "arrays" else [(name, value)]
        for key, item in items:
            h = hashlib.sha256()
            _feed(h, item)
            out[key] = h.hexdigest()[:16]
    return out


def _record_digest(rec: Any) -> bytes:
    """The digest of one of the engine's records (a million remembered decisions), from its
    repr: that names every field and holds only str, int, float, bool, bytes and tuples of
    those, so it is unambiguous. Records are immutable and shared by every snapshot, so each is
    hashed once: the cache holds the record itself, so its id is not reused while cached."""
    hit = _SEEN.get(id(rec))
    if hit is not None and hit[0] is rec:
        return hit[1]
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    digest = hashlib.sha256(repr(rec).encode("utf-8", "surrogatepass")).digest()
    _SEEN[id(rec)] = (rec, digest)
    return digest


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` unambiguously: every item is tagged with its kind and length."""
    if isinstance(value, np.ndarray):
        h.update(f"A{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif type(value) in _RECORDS:
        h.update(_record_digest(value))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"D{type(value).__name__}".encode())
        for f in dataclasses.fields(value):
            _feed(h, f.name)
            _feed(h, getattr(value, f.name))
    elif isinstance(value, dict):
        h.update(b"M%d" % len(value))
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, list | tuple):
        h.update(b"L%d" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        h.update(b"S%d:" % len(raw) + raw)
    elif isinstance(value, bytes):
        h.update(b"B%d:" % len(value) + value)
    elif value is None or isinstance(value, bool | int | float | np.generic):
        h.update(f"V{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"state_digest: cannot hash a {type(value).__name__}")
