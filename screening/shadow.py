"""Shadow policies: candidate policies decided beside the active one on live traffic.

A risk team switches a rule on only after seeing what it would have done. The engine decides
each transaction with the active policy (the answer) and, on the same features, with every
shadow policy (``features.state.decide_rows``); the shadows' decisions are never answered and
change no state. ``ShadowRecorder`` counts them (metrics) and writes, off the request path, one
JSON line per transaction where either side fired a rule, plus running totals; ``report``
compares each shadow with the active policy from such a file (``screening shadow report``):
alerts, overlap, HOLD and above, money that would have been stopped, by rule.

Lines carry transaction ids, never account numbers or phones (they go to risk analysts).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from features.layout import DecisionCol, join_reasons
from screening.metrics import Metrics
from screening.model import TxnInput, fen_text
from screening.policy import ACTION_NAMES, ACTIONS, REPORT_FLAGS, Policy

__all__ = ["ShadowRecorder", "report"]

_WARN = ACTIONS["WARN"]
_HOLD = ACTIONS["HOLD"]
_STOP = ACTIONS["STOP_PAYMENT"]
_SUSPICIOUS = REPORT_FLAGS["suspicious"]


def _alert(action: int, flags: int) -> bool:
    """An alert, as the bench counts them: a warning or stronger, or a suspicious report."""
    return action >= _WARN or bool(flags & _SUSPICIOUS)


def _masks(dec: np.ndarray) -> list[int]:
    """Each decision row's reasons as one int (bit i: rule i)."""
    return [join_reasons(lo, hi) for lo, hi in zip(dec[:, DecisionCol.REASONS].tolist(),
                                                    dec[:, DecisionCol.REASONS_HIGH].tolist(),
                                                    strict=True)]


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


@dataclass
class _Batch:
    txns: Sequence[TxnInput]
    active: np.ndarray  # int64[n, N_DEC]
    active_version: str
    shadows: list[np.ndarray]
    policies: tuple[Policy, ...]  # the shadow set that decided them (SIGHUP may change it)


@dataclass
class ShadowRecorder:
    """The engine's ``on_shadow`` sink: counts under the engine's lock, writes in its own thread."""

    shadows: tuple[Policy, ...]
    policy_for: Callable[[str], Policy]  # the active policy of a version (reasons by name)
    path: Path | None = None
    metrics: Metrics | None = None
    flush_s: float = 1.0
    decided: dict[str, int] = field(default_factory=dict)  # by shadow version
    _queue: list[_Batch] = field(default_factory=list)
    _retired: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _out: IO[str] | None = None

    def __post_init__(self) -> None:
        self.use(self.shadows)

    def use(self, shadows: tuple[Policy, ...]) -> None:
        """The engine decides with ``shadows`` from now on (called under its lock); a version
        that stays keeps its running total."""
        self.shadows = shadows
        kept = {s.version: self.decided.get(s.version, 0) for s in shadows}
        with self._lock:  # a retired one's last total is written at the next flush
            self._retired.update({v: n for v, n in self.decided.items() if v not in kept})
        self.decided = kept

    def __call__(self, txns: Sequence[TxnInput], active: np.ndarray, active_version: str,
                 shadows: list[np.ndarray]) -> None:
        for i, dec in enumerate(shadows):
            version = self.shadows[i].version
            self.decided[version] += len(txns)
            if self.metrics is not None:
                actions, counts = np.unique(dec[:, DecisionCol.ACTION], return_counts=True)
                for a, n in zip(actions.tolist(), counts.tolist(), strict=True):
                    self.metrics.shadow_decided(version, ACTION_NAMES[a], n)
                differ = int(np.count_nonzero(dec[:, DecisionCol.ACTION]
                                              != active[:, DecisionCol.ACTION]))
                if differ:
                    self.metrics.shadow_disagreed(version, differ)
        if self.path is not None:
            with self._lock:
                self._queue.append(_Batch(txns, active, active_version, shadows,
                                          self.shadows))

    # ------------------------------------------------------------------ the writer
    def start(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._run, name="shadow-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_s)
            self.flush()

    def flush(self) -> None:
        """Write what is queued, then the running totals."""
        with self._lock:
            batches, self._queue = self._queue, []
            retired, self._retired = self._retired, {}
        if self._out is None:
            return
        lines = [line for b in batches for line in self._lines(b)]
        now = _iso(int(dt.datetime.now(dt.UTC).timestamp() * 1000))
        lines += [json.dumps({"kind": "totals", "shadow": v, "decisions": n, "at": now})
                  for v, n in (retired | self.decided).items()]
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def _lines(self, b: _Batch) -> Iterable[str]:
        active_policy = self.policy_for(b.active_version)
        a_act = b.active[:, DecisionCol.ACTION].tolist()
        a_bits = _masks(b.active)
        a_flags = b.active[:, DecisionCol.FLAGS].tolist()
        for s, dec in zip(b.policies, b.shadows, strict=True):
            s_act = dec[:, DecisionCol.ACTION].tolist()
            s_bits = _masks(dec)
            s_flags = dec[:, DecisionCol.FLAGS].tolist()
            for j, t in enumerate(b.txns):
                if not (a_bits[j] or s_bits[j]):
                    continue
                yield json.dumps({
                    "kind": "decision", "shadow": s.version, "active": b.active_version,
                    "transaction_id": t.transaction_id, "event_time": _iso(t.event_time_ms),
                    "amount_fen": t.amount_fen,
                    "active_action": ACTION_NAMES[a_act[j]], "active_flags": a_flags[j],
                    "active_reasons": [r.code for r in active_policy.fired(a_bits[j])],
                    "shadow_action": ACTION_NAMES[s_act[j]], "shadow_flags": s_flags[j],
                    "shadow_reasons": [r.code for r in s.fired(s_bits[j])],
                }, ensure_ascii=False)

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._out is not None:
            self.flush()
            self._out.close()
            self._out = None


# ------------------------------------------------------------------ the report
@dataclass
class _Side:
    alerts: int = 0
    holds: int = 0
    stopped_fen: int = 0
    stops: int = 0


def report(path: Path) -> str:
    """A comparison of every shadow policy in a shadow log with the active policy."""
    totals: dict[str, int] = {}
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{n}: not a JSON line") from None
            if rec.get("kind") == "totals":
                totals[rec["shadow"]] = max(totals.get(rec["shadow"], 0), int(rec["decisions"]))
            elif rec.get("kind") == "decision":
                rows[rec["shadow"]].append(rec)
    if not totals and not rows:
        return f"{path}: no shadow decisions yet\n"
    out: list[str] = []
    for shadow in sorted(set(totals) | set(rows)):
        recs = rows[shadow]
        active_versions = sorted({r["active"] for r in recs})
        out += [f"shadow policy {shadow}",
                f"  beside the active {', '.join(active_versions) or '(none fired)'}; "
                f"{totals.get(shadow, 0):,} transactions decided by both, "
                f"{len(recs):,} where a rule fired", ""]
        a, s = _Side(), _Side()
        both = only_a = only_s = 0
        by_rule: dict[str, Counter[str]] = defaultdict(Counter)
        for r in recs:
            sides = []
            for side, act_key, flags_key, reasons_key, name in (
                    (a, "active_action", "active_flags", "active_reasons", "active"),
                    (s, "shadow_action", "shadow_flags", "shadow_reasons", "shadow")):
                act = ACTIONS[r[act_key]]
                alert = _alert(act, int(r[flags_key]))
                sides.append(alert)
                side.alerts += alert
                side.holds += act >= _HOLD
                if act >= _STOP:
                    side.stops += 1
                    side.stopped_fen += int(r["amount_fen"])
                for code in r[reasons_key]:
                    by_rule[code][name] += 1
                    if name == "shadow" and act >= _STOP:
                        by_rule[code]["shadow_stopped_fen"] += int(r["amount_fen"])
            both += sides[0] and sides[1]
            only_a += sides[0] and not sides[1]
            only_s += sides[1] and not sides[0]
        w = 38
        out += [f"  {'':{w}} {'active':>14} {'shadow':>14}",
                f"  {'alerts (WARN or above, or STR)':{w}} {a.alerts:>14,} {s.alerts:>14,}",
                f"  {'  of which both alerted':{w}} {both:>14,} {both:>14,}",
                f"  {'  alerted by this side only':{w}} {only_a:>14,} {only_s:>14,}",
                f"  {'HOLD or above':{w}} {a.holds:>14,} {s.holds:>14,}",
                f"  {'STOP_PAYMENT or FREEZE':{w}} {a.stops:>14,} {s.stops:>14,}",
                f"  {'money stopped':{w}} {'¥' + fen_text(a.stopped_fen):>14} "
                f"{'¥' + fen_text(s.stopped_fen):>14}",
                "", f"  {'by rule':{w}} {'active fired':>14} {'shadow fired':>14} "
                    f"{'shadow stopped':>16}"]
        for code in sorted(by_rule, key=lambda c: (-by_rule[c]["shadow"] - by_rule[c]["active"], c)):
            c = by_rule[code]
            out.append(f"  {code:{w}} {c['active']:>14,} {c['shadow']:>14,} "
                       f"{'¥' + fen_text(c['shadow_stopped_fen']):>16}")
        out.append("")
    return "\n".join(out)
