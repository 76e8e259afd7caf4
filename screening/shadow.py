"""Shadow policies: candidate policies decided beside the active one on live traffic.

A risk team switches a rule on only after seeing what it would have done. The engine decides
each transaction and each call report with the active policy (the answer) and, on the same
features, with every shadow policy (``features.state.decide_rows``); the shadows' decisions are
never answered and change no state. ``ShadowRecorder`` counts them (metrics) and writes, off the
request path, one JSON line per transaction or call where either side fired a rule, plus each
run's running totals; ``report`` compares each shadow with the active policy from such a file
(``screening shadow report``): alerts, overlap, HOLD and above, money that would have been
stopped, calls warned and blocked, by rule.

Lines carry transaction and call ids, never account numbers or phones (they go to risk
analysts).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from features.layout import DecisionCol, join_reasons
from screening.logs import get_logger
from screening.metrics import Metrics
from screening.model import CallInput, TxnInput, fen_text
from screening.policy import ACTION_NAMES, ACTIONS, CALL_ACTION_NAMES, CALL_ACTIONS, REPORT_FLAGS, Policy

__all__ = ["ShadowRecorder", "report"]

_WARN = ACTIONS["WARN"]
_HOLD = ACTIONS["HOLD"]
_STOP = ACTIONS["STOP_PAYMENT"]
_SUSPICIOUS = REPORT_FLAGS["suspicious"]
_WARN_CALLEE = CALL_ACTIONS["WARN_CALLEE"]
_BLOCK = CALL_ACTIONS["BLOCK"]


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
class _Call:
    call: CallInput
    active: np.ndarray  # int64[1, N_DEC]
    active_version: str
    shadows: list[np.ndarray]
    policies: tuple[Policy, ...]


@dataclass
class _Decided:
    """What one shadow policy decided in this run."""

    transactions: int = 0
    calls: int = 0

    def figures(self) -> tuple[int, int]:
        return self.transactions, self.calls


@dataclass
class ShadowRecorder:
    """The engine's ``on_shadow`` sink: counts under the engine's lock, writes in its own thread.

    Totals lines name the run (one recorder's life); a restart begins a new run at zero, and
    the report adds the runs up. The log is best effort: a write that fails is logged and its
    lines dropped (the shadows never touch an answer)."""

    shadows: tuple[Policy, ...]
    policy_for: Callable[[str], Policy]  # the active policy of a version (reasons by name)
    path: Path | None = None
    metrics: Metrics | None = None
    flush_s: float = 1.0
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # every version decided in this run, kept when retired: one re-added counts on from there
    _runs: dict[str, _Decided] = field(default_factory=dict)
    _queue: list[_Batch | _Call] = field(default_factory=list)
    _written: dict[str, tuple[int, int]] = field(default_factory=dict)  # totals last written
    _lock: threading.Lock = field(default_factory=threading.Lock)  # _queue, _runs' keys
    _flush_lock: threading.Lock = field(default_factory=threading.Lock)  # one flush at a time
    _wake: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _out: IO[str] | None = None

    def __post_init__(self) -> None:
        self.use(self.shadows)

    def use(self, shadows: tuple[Policy, ...]) -> None:
        """The engine decides with ``shadows`` from now on (called under its lock)."""
        self.shadows = shadows
        with self._lock:
            for s in shadows:
                self._runs.setdefault(s.version, _Decided())

    def _decided(self, version: str) -> _Decided:
        d = self._runs.get(version)
        if d is None:  # a set the engine decided with but never announced: count it all the same
            with self._lock:
                d = self._runs.setdefault(version, _Decided())
        return d

    def transactions(self, txns: Sequence[TxnInput], active: np.ndarray, active_version: str,
                     shadows: list[np.ndarray], policies: tuple[Policy, ...]) -> None:
        """``shadows[i]``: what ``policies[i]`` decided (the set the engine used for this batch,
        which a reload may have replaced since)."""
        for s, dec in zip(policies, shadows, strict=True):
            self._decided(s.version).transactions += len(txns)
            self._count(s.version, "transaction", ACTION_NAMES, dec, active)
        if self.path is not None:
            with self._lock:
                self._queue.append(_Batch(txns, active, active_version, shadows, policies))

    def call(self, call: CallInput, active: np.ndarray, active_version: str,
             shadows: list[np.ndarray], policies: tuple[Policy, ...]) -> None:
        for s, dec in zip(policies, shadows, strict=True):
            self._decided(s.version).calls += 1
            self._count(s.version, "call", CALL_ACTION_NAMES, dec, active)
        if self.path is not None:
            with self._lock:
                self._queue.append(_Call(call, active, active_version, shadows, policies))

    def _count(self, version: str, event: str, names: Any, dec: np.ndarray,
               active: np.ndarray) -> None:
        if self.metrics is None:
            return
        actions, counts = np.unique(dec[:, DecisionCol.ACTION], return_counts=True)
        for a, n in zip(actions.tolist(), counts.tolist(), strict=True):
            self.metrics.shadow_decided(version, event, names[a], n)
        differ = int(np.count_nonzero(dec[:, DecisionCol.ACTION] != active[:, DecisionCol.ACTION]))
        if differ:
            self.metrics.shadow_disagreed(version, event, differ)

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
            try:
                self.flush()
            except Exception as exc:  # a full disk, say: keep going, the next flush may work
                get_logger("screening.shadow").error("shadow_log_failed", path=str(self.path),
                                                     error=str(exc))

    def flush(self) -> None:
        """Write what is queued, then the running totals that changed since the last flush."""
        with self._flush_lock:
            with self._lock:
                items, self._queue = self._queue, []
                # the engine's lock is not held here: copy the counts, then compare
                totals = {v: d.figures() for v, d in self._runs.items()}
            if self._out is None:
                return
            lines = [line for item in items for line in self._lines(item)]
            now = _iso(int(dt.datetime.now(dt.UTC).timestamp() * 1000))
            changed = {v: t for v, t in totals.items() if self._written.get(v) != t}
            lines += [json.dumps({"kind": "totals", "shadow": v, "run": self.run,
                                  "transactions": txns, "calls": calls, "at": now})
                      for v, (txns, calls) in changed.items()]
            if lines:
                self._out.write("\n".join(lines) + "\n")
                self._out.flush()
            self._written.update(changed)  # only once written: a failed write tries again

    def _lines(self, item: _Batch | _Call) -> Iterable[str]:
        active_policy = self.policy_for(item.active_version)
        calls = isinstance(item, _Call)
        names = CALL_ACTION_NAMES if calls else ACTION_NAMES
        a_act = item.active[:, DecisionCol.ACTION].tolist()
        a_bits = _masks(item.active)
        a_flags = item.active[:, DecisionCol.FLAGS].tolist()
        events: dict[int, dict[str, Any]] = {}  # built once, for the rows where a rule fired

        def event(j: int) -> dict[str, Any]:
            if j not in events:
                if isinstance(item, _Call):
                    events[j] = {"call_id": item.call.call_id,
                                 "event_time": _iso(item.call.start_ms)}
                else:
                    t = item.txns[j]
                    events[j] = {"transaction_id": t.transaction_id,
                                 "event_time": _iso(t.event_time_ms), "amount_fen": t.amount_fen}
            return events[j]

        for s, dec in zip(item.policies, item.shadows, strict=True):
            s_act = dec[:, DecisionCol.ACTION].tolist()
            s_bits = _masks(dec)
            s_flags = dec[:, DecisionCol.FLAGS].tolist()
            for j in range(len(a_bits)):
                if not (a_bits[j] or s_bits[j]):
                    continue
                yield json.dumps({
                    "kind": "call" if calls else "decision", "shadow": s.version,
                    "active": item.active_version, **event(j),
                    "active_action": names[a_act[j]], "active_flags": a_flags[j],
                    "active_reasons": [r.code for r in active_policy.fired(a_bits[j], calls)],
                    "shadow_action": names[s_act[j]], "shadow_flags": s_flags[j],
                    "shadow_reasons": [r.code for r in s.fired(s_bits[j], calls)],
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


@dataclass
class _Shadow:
    """One shadow policy's lines in a log: its decisions and each run's last totals."""

    txns: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)

    def decided(self) -> tuple[int, int]:
        """Transactions and calls decided, over every run (each run counts from zero)."""
        return sum(t for t, _ in self.runs.values()), sum(c for _, c in self.runs.values())


def _checked(rec: dict[str, Any], actions: Any, amount: bool) -> dict[str, Any]:
    """A decision or call line whose fields the report reads are there and of their types."""
    for key in ("active_action", "shadow_action"):
        if rec[key] not in actions:
            raise ValueError(f"{key} {rec[key]!r} is no action")
    for key in ("active_flags", "shadow_flags") + (("amount_fen",) if amount else ()):
        if not isinstance(rec[key], int):
            raise ValueError(f"{key} is not an integer")
    for key in ("active_reasons", "shadow_reasons"):
        if not (isinstance(rec[key], list) and all(isinstance(c, str) for c in rec[key])):
            raise ValueError(f"{key} is not a list of reason codes")
    if not isinstance(rec["active"], str):
        raise ValueError("active is not a policy version")
    return rec


def _read(path: Path) -> dict[str, _Shadow]:
    shadows: dict[str, _Shadow] = defaultdict(_Shadow)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{n}: not a JSON line") from None
            try:
                kind = rec.get("kind")
                if kind not in ("totals", "decision", "call"):
                    continue  # a kind this report does not know: written by a newer server
                if not isinstance(rec["shadow"], str):
                    raise ValueError("shadow is not a policy version")
                sh = shadows[rec["shadow"]]
                if kind == "totals":
                    # lines of an older server carry no run and count transactions as decisions
                    run = str(rec.get("run", ""))
                    figures = (int(rec.get("transactions", rec.get("decisions", 0))),
                               int(rec.get("calls", 0)))
                    last = sh.runs.get(run, (0, 0))
                    sh.runs[run] = (max(last[0], figures[0]), max(last[1], figures[1]))
                elif kind == "decision":
                    sh.txns.append(_checked(rec, ACTIONS, amount=True))
                else:
                    sh.calls.append(_checked(rec, CALL_ACTIONS, amount=False))
            except KeyError as exc:
                raise ValueError(f"{path}:{n}: not a shadow log line: no {exc}") from None
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}:{n}: not a shadow log line: {exc}") from None
    return shadows


def report(path: Path) -> str:
    """A comparison of every shadow policy in a shadow log with the active policy."""
    shadows = _read(path)
    if not shadows:
        return f"{path}: no shadow decisions yet\n"
    out: list[str] = []
    for version in sorted(shadows):
        sh = shadows[version]
        n_txns, n_calls = sh.decided()
        active_versions = sorted({r["active"] for r in sh.txns + sh.calls})
        out += [f"shadow policy {version}",
                f"  beside the active {', '.join(active_versions) or '(none fired)'}; "
                f"{n_txns:,} transactions decided by both, {len(sh.txns):,} where a rule fired; "
                f"{n_calls:,} calls, {len(sh.calls):,} where a rule fired", ""]
        out += _transactions(sh.txns)
        if n_calls or sh.calls:
            out += _calls(sh.calls)
    return "\n".join(out)


_W = 38


def _row(label: str, active: int | str, shadow: int | str) -> str:
    """One line of a side-by-side table: the label, then the active and the shadow figure."""
    a = f"{active:,}" if isinstance(active, int) else active
    b = f"{shadow:,}" if isinstance(shadow, int) else shadow
    return f"  {label:{_W}} {a:>14} {b:>14}"


def _overlap(alerted: list[tuple[bool, bool]], both_label: str, alone_label: str) -> list[str]:
    """Of the events either side alerted on (active, shadow): both, and each side alone."""
    both = sum(a and s for a, s in alerted)
    return [_row(both_label, both, both),
            _row(alone_label, sum(a and not s for a, s in alerted),
                 sum(s and not a for a, s in alerted))]


def _by_rule(by_rule: dict[str, Counter[str]]) -> list[str]:
    return sorted(by_rule, key=lambda c: (-by_rule[c]["shadow"] - by_rule[c]["active"], c))


def _transactions(recs: list[dict[str, Any]]) -> list[str]:
    a, s = _Side(), _Side()
    alerted: list[tuple[bool, bool]] = []
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for r in recs:
        sides = []
        for side, name in ((a, "active"), (s, "shadow")):
            act = ACTIONS[r[f"{name}_action"]]
            alert = _alert(act, int(r[f"{name}_flags"]))
            sides.append(alert)
            side.alerts += alert
            side.holds += act >= _HOLD
            if act >= _STOP:
                side.stops += 1
                side.stopped_fen += int(r["amount_fen"])
            for code in r[f"{name}_reasons"]:
                by_rule[code][name] += 1
                if act >= _STOP:
                    by_rule[code][f"{name}_stopped_fen"] += int(r["amount_fen"])
        alerted.append((sides[0], sides[1]))
    out = [_row("transactions", "active", "shadow"),
           _row("alerts (WARN or above, or STR)", a.alerts, s.alerts),
           *_overlap(alerted, "  of which both alerted", "  alerted by this side only"),
           _row("HOLD or above", a.holds, s.holds),
           _row("STOP_PAYMENT or FREEZE", a.stops, s.stops),
           _row("money stopped", "¥" + fen_text(a.stopped_fen), "¥" + fen_text(s.stopped_fen)),
           "", _row("by rule", "active fired", "shadow fired")
           + f" {'active stopped':>16} {'shadow stopped':>16}"]
    for code in _by_rule(by_rule):
        c = by_rule[code]
        out.append(_row(code, c["active"], c["shadow"])
                   + f" {'¥' + fen_text(c['active_stopped_fen']):>16}"
                   f" {'¥' + fen_text(c['shadow_stopped_fen']):>16}")
    out.append("")
    return out


def _calls(recs: list[dict[str, Any]]) -> list[str]:
    alerts, blocks = Counter[str](), Counter[str]()
    alerted: list[tuple[bool, bool]] = []
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for r in recs:
        sides = []
        for name in ("active", "shadow"):
            act = CALL_ACTIONS[r[f"{name}_action"]]
            sides.append(act >= _WARN_CALLEE)
            alerts[name] += act >= _WARN_CALLEE
            blocks[name] += act >= _BLOCK
            for code in r[f"{name}_reasons"]:
                by_rule[code][name] += 1
        alerted.append((sides[0], sides[1]))
    out = [_row("calls", "active", "shadow"),
           _row("warned or blocked", alerts["active"], alerts["shadow"]),
           *_overlap(alerted, "  of which both", "  by this side only"),
           _row("BLOCK", blocks["active"], blocks["shadow"]),
           "", _row("by call rule", "active fired", "shadow fired")]
    out += [_row(code, by_rule[code]["active"], by_rule[code]["shadow"]) for code in _by_rule(by_rule)]
    out.append("")
    return out
