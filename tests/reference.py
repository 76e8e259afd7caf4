"""Plain-Python twins of the feature kernels in ``features._kernels`` (the "naive" reference).

Obviously correct rather than fast: state is dicts and lists of Python ints and floats, and each
feature is computed the way its name reads. Only layout constants (indices, window widths,
sentinels) are shared with the kernels, never their functions;
``tests/features/test_kernels_match_reference.py`` holds the two equal on random event streams.

The meanings modelled here (the kernels must agree with every one):

* **Windows.** An event adds its value to the bucket ``epoch = (ts + tz) // width`` of each window
  (1m: 10 s x 6, 1h: 10 min x 6, 24h: 2 h x 12, 7d: 1 local day x 7). Per window an entity keeps
  the newest epoch it has seen (its *head*) and holds only the ``nb`` epochs ending there, so an
  event older than that is not counted in that window at all. The window sum at ``ts`` is the sum
  over the held epochs that are not after ``ts``: epochs in
  ``(max(ep - nb, head - nb), min(ep, head)]``.
* **Recent counterparties.** Per entity and direction, up to ``RING_K`` slots of
  ``(counterparty, last seen second)``. Seeing a known counterparty moves its time forward (never
  back). A new one takes the first empty slot, else replaces the first slot holding the oldest
  time, unless it is older still (then it is not one of the ``RING_K`` most recent and is
  dropped). "Distinct in a window" counts slots whose time lies in ``(t - span, t]``, so it
  saturates at ``RING_K``.
* **Relationships.** A set of ``(kind, a, b)`` pairs with the last time each was seen.
* **Day sums.** Per account and direction, the cash / transfer / cross-border sums of the newest
  local day seen; events of an earlier day than that are not added anywhere, and their own
  day features are their own amount (what their day's sum holds at least).
* **EWMA** of ``log(amount)`` of an account's outgoing transfers, updated after the features
  that read it; the float operations are written in the kernels' order so results are equal.
* **Rules.** A rule fires when all its conditions hold; the strongest action wins, reason bits
  and flags are OR-ed, and scores combine noisy-OR, rounded half up to an integer.
* **Risky calls.** A call decided at or above the mark action, and below BLOCK, marks the
  callee's phone (time, score, caller watchlisted); later transactions whose payer phone is that
  phone see it. A call that never connected (unanswered, rejected, blocked) marks nothing, and
  takes back the mark its own ringing report made.
* **Decision memory.** After each transaction decision: a payer who is a suspected mule passes
  the suspicion one level on to a person it pays for the first time, with money it received
  within the day (not merchants, organisations — in the registry, or named one by the account's
  latest transaction — or hubs); the fired rules' marks make a person payer a protected
  victim (and, at HOLD or above, remember the stopped payee for that payer), or a party a
  suspected mule or collector. Cleared accounts are never marked.
* **Learning period.** An entity first seen within ``learn`` of the earliest event has no known
  age (NaN: no condition on it holds), and a caller seen then is never "unknown" to a callee.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from features._kernels import (
    ACTION_ALLOW,
    ACTION_HOLD,
    ACTION_STOP,
    ACTION_WARN,
    CALL_ACTION_BLOCK,
    CF_ANSWERED_1H,
    CF_CALLEE_CALLS_IN_24H,
    CF_CALLEE_WATCH,
    CF_CALLER_AGE_DAYS,
    CF_CALLER_RISKY_NUMBER,
    CF_CALLER_WATCH,
    CF_CALLS_1H,
    CF_CALLS_1M,
    CF_CALLS_24H,
    CF_CLASS,
    CF_DIST_1H,
    CF_DIST_24H,
    CF_DURATION,
    CF_ENDED,
    CF_FIRST_CONTACT,
    CF_INTL,
    CF_MEAN_TALK_7D,
    CF_NEW,
    CF_OBSERVED_DAYS,
    CF_OUTCOME,
    CF_RINGING,
    CF_SHORT_1H,
    CF_SHORT_24H,
    CF_SHORT_RATIO_1H,
    CF_SHORT_RATIO_24H,
    CF_SPOOFED,
    CF_TALK_24H,
    CF_UNANSWERED_RATIO_1H,
    CF_UNANSWERED_RATIO_7D,
    CF_UNANSWERED_RATIO_24H,
    CF_VIRTUAL,
    D_ACTION,
    D_FLAGS,
    D_MARKS,
    D_REASONS,
    D_REASONS_HIGH,
    D_SCORE,
    DAY_MS,
    EV_A,
    EV_AMOUNT,
    EV_AUX1,
    EV_AUX2,
    EV_AUX3,
    EV_B,
    EV_C,
    EV_D,
    EV_E,
    EV_FLAGS,
    EV_KIND,
    EV_TS,
    F_AMOUNT,
    F_CASH,
    F_CHANNEL,
    F_DEVICE_WATCH,
    F_DIST_BASE,
    F_EXTRA_BASE,
    F_FIRST_TIME_PAYEE,
    F_MEMO_FRAUD,
    F_MEMO_INVEST,
    F_NEAR_LINE,
    F_OBSERVED_DAYS,
    F_PAYEE_AGE_DAYS,
    F_PAYEE_CLEARED,
    F_PAYEE_COLLECTOR,
    F_PAYEE_CONFIRMED,
    F_PAYEE_DAY_CASH,
    F_PAYEE_DAY_DOMESTIC,
    F_PAYEE_DORMANT_DAYS,
    F_PAYEE_HIST,
    F_PAYEE_INVEST_7D,
    F_PAYEE_INVEST_24H,
    F_PAYEE_IS_LAST_CALLER,
    F_PAYEE_IS_PERSON,
    F_PAYEE_MERCHANT,
    F_PAYEE_MULE,
    F_PAYEE_NEAR_7D,
    F_PAYEE_NEAR_24H,
    F_PAYEE_PHONE_CONTACT,
    F_PAYEE_PHONE_IS_PAYER_PHONE,
    F_PAYEE_PHONE_KNOWN,
    F_PAYEE_PHONE_RISKY,
    F_PAYEE_STOPPED,
    F_PAYEE_TERMINAL,
    F_PAYEE_TRIAL_DAYS,
    F_PAYEE_WARNED,
    F_PAYEE_WATCH,
    F_PAYEE_WOKE_DAYS,
    F_PAYER_AGE_DAYS,
    F_PAYER_CLEARED,
    F_PAYER_COLLECTOR,
    F_PAYER_CONFIRMED,
    F_PAYER_DAY_CASH,
    F_PAYER_DAY_DOMESTIC,
    F_PAYER_DORMANT_DAYS,
    F_PAYER_HIST,
    F_PAYER_IN_COVER_7D,
    F_PAYER_IN_PERSONS_1H,
    F_PAYER_IN_PERSONS_24H,
    F_PAYER_IN_STRANGERS_1H,
    F_PAYER_IN_STRANGERS_24H,
    F_PAYER_INTERVENED_MIN,
    F_PAYER_INVEST_7D,
    F_PAYER_IS_PERSON,
    F_PAYER_LAST_CALL_FIRST,
    F_PAYER_LAST_CALL_MIN,
    F_PAYER_LAST_CALL_RISKY,
    F_PAYER_LAST_CALL_TALK_S,
    F_PAYER_LAST_CALLER_RISKY,
    F_PAYER_MERCHANT,
    F_PAYER_MULE,
    F_PAYER_NEAR_7D,
    F_PAYER_NEAR_24H,
    F_PAYER_ON_CALL,
    F_PAYER_ON_CALL_RISKY,
    F_PAYER_ON_CALL_UNKNOWN,
    F_PAYER_PASS_1H,
    F_PAYER_PASS_24H,
    F_PAYER_PAYBACK_7D,
    F_PAYER_PAYROLL,
    F_PAYER_RATIO,
    F_PAYER_TALKS_WITH_PAYEE,
    F_PAYER_TERMINAL,
    F_PAYER_TRIAL_DAYS,
    F_PAYER_VICTIM,
    F_PAYER_WARNED_IN_MIN,
    F_PAYER_WATCH,
    F_PAYER_WOKE_DAYS,
    F_PAYER_Z,
    F_PHONE_WATCH,
    F_REVERSE_EDGE,
    F_RISKY_CALL_CALLER_WATCH,
    F_RISKY_CALL_MIN,
    F_RISKY_CALL_RECENT,
    F_RISKY_CALL_SCORE,
    F_WIN_BASE,
    F_XBORDER,
    FAR_DAYS,
    FAR_MINUTES,
    INCALL_FIRST,
    INCALL_OPEN_MS,
    INCALL_RISKY,
    INCALL_SLACK_MS,
    INCALL_UNKNOWN,
    KIND_CALL,
    KIND_TXN,
    MAX_COND,
    MINUTE_MS,
    MK_PAYEE_COLLECTOR,
    MK_PAYEE_MULE,
    MK_PAYEE_MULE_HOP,
    MK_PAYER_COLLECTOR,
    MK_PAYER_MULE,
    MK_PAYER_VICTIM,
    MK_RISKY_CONTACT,
    MK_RISKY_NUMBER,
    N_DEC,
    N_EV,
    N_EXTRA,
    N_PARAM,
    N_SNAPSHOT,
    N_TXN_FEATURE,
    NC_INTERNATIONAL,
    NC_SPOOFED,
    NC_VIRTUAL,
    NO_TIME,
    NW,
    OP_EQ,
    OP_GE,
    OP_GT,
    OP_LE,
    OP_LT,
    OP_NE,
    OUT_ANSWERED,
    OUT_BLOCKED,
    OUT_LEGACY,
    OUT_REJECTED,
    OUT_UNANSWERED,
    P_COLLECTOR_MS,
    P_DORMANT_MS,
    P_EWMA_ALPHA_PPM,
    P_FOLLOW_MS,
    P_HUB_PAYERS,
    P_LEARN_MS,
    P_MARK_MIN_CALL_ACTION,
    P_MULE_MAX_LEVEL,
    P_MULE_MS,
    P_PROTECT_MS,
    P_PROTECT_STOP_MS,
    P_RISKY_LOOKBACK_MS,
    P_RISKY_NUMBER_MS,
    P_SHORT_CALL_S,
    P_TEST_TRANSFER_MAX,
    P_TZ_MS,
    PAIR_CALL,
    PAIR_STOP,
    PAIR_TXN,
    PAIR_WARN,
    PROF_MERCHANT,
    PROF_ORGANISATION,
    PROF_PAYROLL,
    PROF_SEEN_ORGANISATION,
    REASON_WORD,
    RI_ACTION,
    RI_COND,
    RI_FLAGS,
    RI_MARKS,
    RI_NCOND,
    RI_SCORE,
    RING_EPOCH_S,
    RING_K,
    S_AGE_DAYS,
    S_CLEARED,
    S_COLLECTOR,
    S_CONFIRMED,
    S_DIST_BASE,
    S_EWMA_MEAN_FEN,
    S_INVEST_7D,
    S_INVEST_24H,
    S_MULE,
    S_N_IN,
    S_N_OUT,
    S_NEAR_7D,
    S_NEAR_24H,
    S_NEAR_IN_7D,
    S_NEAR_IN_24H,
    S_PASS_1H,
    S_PASS_24H,
    S_PAYBACK_7D,
    S_VICTIM,
    S_WATCH,
    SC_CLEARED_UNTIL,
    SC_COLLECTOR_UNTIL,
    SC_CONFIRMED_UNTIL,
    SC_MULE_UNTIL,
    SC_VICTIM_UNTIL,
    SUM_MAX,
    TF_CASH,
    TF_MEMO_FRAUD,
    TF_MEMO_INVEST,
    TF_NEAR_LINE,
    TF_PAYEE_FOREIGN,
    TF_PAYEE_PERSON,
    TF_PAYEE_TERMINAL,
    TF_PAYER_FOREIGN,
    TF_PAYER_PERSON,
    TF_PAYER_TERMINAL,
    TF_XBORDER,
    W_1H,
    W_1M,
    W_7D,
    W_24H,
    WIN_NB,
    WIN_SPAN_S,
    WIN_WIDTH_MS,
)

if TYPE_CHECKING:  # only the type: rules are read back from the table's arrays
    from features.state import RuleTable

__all__ = ["ReferenceEngine", "Rule", "read_rules"]

_NO_TIME = int(NO_TIME)
_NOT_CONNECTED = (OUT_UNANSWERED, OUT_REJECTED, OUT_BLOCKED)
_OUT, _IN = 0, 1  # directions, in the kernels' order (out first)


# ================================================================= building blocks
def _epoch(ts: int, tz: int, w: int) -> int:
    """Bucket number of local time ``ts + tz`` in window ``w`` (floor division)."""
    return (ts + tz) // WIN_WIDTH_MS[w]


def _ring_second(ts: int) -> int:
    """Rings keep whole seconds since 2000-01-01."""
    return ts // 1000 - RING_EPOCH_S


def _ratio(num: int, den: int) -> float:
    """``num / den`` as the kernels compute it (each side to float first); 0 when den <= 0."""
    return float(num) / float(den) if den > 0 else 0.0


def _watched(until_ms: int, ts: int) -> float:
    return 1.0 if until_ms > ts else 0.0


def _days_since(t: int | None, ts: int) -> float:
    return float(ts - t) / DAY_MS if t is not None and t <= ts else FAR_DAYS


def _unanswered(answered: int, calls: int) -> float:
    """Share of calls placed not (yet) answered; 0 with no calls."""
    return max(0.0, 1.0 - float(answered) / float(calls)) if calls > 0 else 0.0


class _Windows:
    """Time-bucketed counters of one entity: {(channel, window, epoch): value} and window heads."""

    def __init__(self) -> None:
        self.head: list[int | None] = [None] * NW
        self.values: dict[tuple[str, int, int], int] = {}

    def advance(self, ts: int, tz: int) -> None:
        """The newest epoch seen moves forward to ``ts`` (never back)."""
        for w in range(NW):
            ep = _epoch(ts, tz, w)
            head = self.head[w]
            if head is None or ep > head:
                self.head[w] = ep

    def add(self, channel: str, value: int, ts: int, tz: int) -> None:
        """Add ``value`` to ``ts``'s bucket in every window that still holds that bucket."""
        for w in range(NW):
            ep = _epoch(ts, tz, w)
            head = self.head[w]
            if head is None or ep > head:
                raise AssertionError("add() before advance(): the kernels never do this")
            if ep > head - WIN_NB[w]:
                key = (channel, w, ep)
                self.values[key] = self.values.get(key, 0) + value

    def total(self, channel: str, w: int, ts: int, tz: int) -> int:
        """Sum over the held epochs that are not after ``ts``'s epoch and within ``nb`` of it."""
        head = self.head[w]
        if head is None:
            return 0
        ep = _epoch(ts, tz, w)
        nb = WIN_NB[w]
        lo = max(ep - nb, head - nb)  # exclusive
        hi = min(ep, head)
        # sums of money saturate at SUM_MAX instead of wrapping (counts never get near it)
        return min(SUM_MAX, sum(self.values.get((channel, w, k), 0) for k in range(lo + 1, hi + 1)))


class _Ring:
    """The ``RING_K`` most recent distinct counterparties, in explicit slot order.

    Slot order matters on ties (the first slot holding the oldest time is replaced), which a dict
    keyed by counterparty could not reproduce after a replacement, hence a list of slots.
    """

    def __init__(self) -> None:
        self.slots: list[tuple[int, int] | None] = [None] * RING_K

    def touch(self, cp: int, ts: int) -> None:
        t = _ring_second(ts)
        for k, slot in enumerate(self.slots):
            if slot is not None and slot[0] == cp:
                if t > slot[1]:
                    self.slots[k] = (cp, t)
                return
        if None in self.slots:
            self.slots[self.slots.index(None)] = (cp, t)
            return
        times = [s[1] for s in self.slots if s is not None]
        oldest = min(times)
        if t < oldest:
            return  # older than all RING_K remembered: not among the most recent
        self.slots[times.index(oldest)] = (cp, t)

    def drop(self, gone: set[int]) -> None:
        """Empty the slots of counterparties in ``gone`` (in place: slot order is kept)."""
        self.slots = [None if s is not None and s[0] in gone else s for s in self.slots]

    def distinct(self, ts: int, span_s: int) -> int:
        """Counterparties last seen in ``(t - span, t]`` (seconds)."""
        t = _ring_second(ts)
        return sum(1 for s in self.slots if s is not None and t - span_s < s[1] <= t)


@dataclass
class _DaySums:
    """Cash / transfer / cross-border sums of the newest local day seen."""

    day: int | None = None
    cash: int = 0
    transfer: int = 0
    cross_border: int = 0
    domestic: int = 0

    def add(self, ts: int, tz: int, amount: int, flags: int) -> None:
        day = (ts + tz) // DAY_MS
        if self.day is not None and day < self.day:
            return  # an earlier day than the newest: dropped
        if self.day is None or day > self.day:
            self.day, self.cash, self.transfer, self.cross_border, self.domestic = day, 0, 0, 0, 0
        if flags & TF_CASH:
            self.cash += amount
        else:
            self.transfer += amount
            if not flags & TF_XBORDER:
                self.domestic += amount
        if flags & TF_XBORDER:
            self.cross_border += amount

    def get(self, ts: int, tz: int, amount: int, flags: int) -> tuple[int, int, int, int]:
        """(cash, transfers, cross-border, domestic transfers) of the day of ``ts``, after the
        transaction (``amount``, ``flags``) was added; of an earlier day than the newest (a late
        one, not added): that transaction's own parts."""
        if self.day is not None and self.day == (ts + tz) // DAY_MS:
            return (min(SUM_MAX, self.cash), min(SUM_MAX, self.transfer),
                    min(SUM_MAX, self.cross_border), min(SUM_MAX, self.domestic))
        cash = bool(flags & TF_CASH)
        xb = bool(flags & TF_XBORDER)
        return (amount if cash else 0, 0 if cash else amount, amount if xb else 0,
                0 if cash or xb else amount)


@dataclass
class _Account:
    windows: _Windows = field(default_factory=_Windows)
    rings: tuple[_Ring, _Ring] = field(default_factory=lambda: (_Ring(), _Ring()))  # out, in
    opened: int | None = None
    first: int | None = None
    last: int | None = None
    watch_until: int = 0
    day: tuple[_DaySums, _DaySums] = field(default_factory=lambda: (_DaySums(), _DaySums()))
    n_out: int = 0
    n_in: int = 0
    ewma_mean: float = 0.0
    ewma_var: float = 0.0
    # decision memory ("until" times, 0: not set) and the registry
    victim_until: int = 0
    mule_until: int = 0
    mule_level: int = 0
    collector_until: int = 0
    confirmed_until: int = 0
    cleared_until: int = 0
    last_active: int | None = None
    profile: int = 0
    reg_opened: bool = False  # ``opened`` is the registry's
    phone: int = -1
    wake: int | None = None
    # all it did here was tiny person-to-person transfers (a bought account being tested)
    trial: bool = False
    # its latest transaction named it a cash terminal
    seen_terminal: bool = False
    # ``phone`` was learned from its payments (no registry phone)
    phone_seen: bool = False

    def seen(self, ts: int) -> None:
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)

    def age_days(self, ts: int, learning_until: int | None, foreign: bool = False) -> float:
        """``foreign``: a transaction contradicting the registry entry's owner (not by its date)."""
        opened = None if foreign and self.reg_opened else self.opened
        if opened is not None:
            base = opened
        elif self.first is None:
            # Never seen and no opened date (only reachable through snapshot): the kernel counts
            # from its NO_TIME sentinel, giving a huge age. Mirrored on purpose, see the test
            # test_snapshot_of_a_never_seen_account_reports_age_from_the_sentinel.
            base = _NO_TIME
        else:
            if learning_until is not None and self.first < learning_until:
                return math.nan
            base = self.first
        return float(ts - base) / DAY_MS

    def cleared(self, ts: int) -> bool:
        return self.cleared_until > ts

    def bits(self, foreign: bool) -> int:
        """Profile bits; ``foreign``: without what the registry entry says."""
        return self.profile & ~(PROF_MERCHANT | PROF_PAYROLL | PROF_ORGANISATION) if foreign else self.profile

    def marked(self, until: int, ts: int) -> float:
        return 1.0 if until > ts and not self.cleared(ts) else 0.0

    def level(self, ts: int) -> int:
        if self.cleared(ts):
            return 0
        if self.confirmed_until > ts:
            return 1
        return self.mule_level if self.mule_until > ts else 0

    def suspect(self, level: int, ts: int, mule_ms: int) -> bool:
        """True when it was not suspected before (a protected victim is no hop's suspect)."""
        if self.cleared(ts) or (level >= 2 and self.victim_until > ts):
            return False
        cur = self.mule_level if self.mule_until > ts else 0
        if cur == 0 or level < cur:
            self.mule_level = level
        self.mule_until = max(self.mule_until, ts + mule_ms)
        return cur == 0

    def dormant_ms(self, ts: int, foreign: bool = False) -> int:
        """Inactive time before ``ts``: since the later of its last event and the registry's
        (not with ``foreign``)."""
        known = [t for t in (self.last, None if foreign else self.last_active) if t is not None]
        if not known or max(known) >= ts:
            return 0
        return ts - max(known)


@dataclass
class _Phone:
    windows: _Windows = field(default_factory=_Windows)
    ring: _Ring = field(default_factory=_Ring)  # callees
    first: int | None = None
    last: int | None = None
    watch_until: int = 0
    risky_ts: int | None = None
    risky_score: int = 0
    risky_caller_watch: int = 0
    risky_number_until: int = 0
    incall_start: int | None = None
    incall_end: int | None = None
    incall_flags: int = 0
    incall_caller: int = -1

    def seen(self, ts: int) -> None:
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)


@dataclass
class _Device:
    watch_until: int = 0
    last: int | None = None


@dataclass(frozen=True)
class _Params:
    tz: int
    short_call_s: int
    risky_lookback_ms: int
    mark_min_call_action: int
    ewma_alpha: float
    protect_ms: int
    mule_ms: int
    collector_ms: int
    risky_number_ms: int
    learn_ms: int
    dormant_ms: int
    mule_max_level: int
    hub_payers: int
    follow_ms: int
    protect_stop_ms: int
    test_transfer_max: int

    @classmethod
    def read(cls, params: Sequence[int] | Iterable[int]) -> _Params:
        p = [int(x) for x in params]
        if len(p) != N_PARAM:
            raise ValueError(f"params must have {N_PARAM} values, got {len(p)}")
        return cls(
            tz=p[P_TZ_MS],
            short_call_s=p[P_SHORT_CALL_S],
            risky_lookback_ms=p[P_RISKY_LOOKBACK_MS],
            mark_min_call_action=p[P_MARK_MIN_CALL_ACTION],
            ewma_alpha=p[P_EWMA_ALPHA_PPM] / 1e6,
            protect_ms=p[P_PROTECT_MS],
            mule_ms=p[P_MULE_MS],
            collector_ms=p[P_COLLECTOR_MS],
            risky_number_ms=p[P_RISKY_NUMBER_MS],
            learn_ms=p[P_LEARN_MS],
            dormant_ms=p[P_DORMANT_MS],
            mule_max_level=p[P_MULE_MAX_LEVEL],
            hub_payers=p[P_HUB_PAYERS],
            follow_ms=p[P_FOLLOW_MS],
            protect_stop_ms=p[P_PROTECT_STOP_MS],
            test_transfer_max=p[P_TEST_TRANSFER_MAX],
        )


# ================================================================= rules
@dataclass(frozen=True)
class Rule:
    """One rule: all conditions ``(feature, op, threshold)`` must hold for it to fire."""

    conditions: tuple[tuple[int, int, float], ...]
    action: int
    score: int
    flags: int
    marks: int = 0


def read_rules(table: RuleTable) -> list[Rule]:
    """The rules of a ``RuleTable``, read back from its ``ints`` and ``thresholds`` arrays."""
    rules = []
    for ints, thr in zip(table.ints, table.thresholds, strict=True):
        n = int(ints[RI_NCOND])
        if not 0 <= n <= MAX_COND:
            raise ValueError(f"a rule has {n} conditions")
        conds = tuple(
            (int(ints[RI_COND + 2 * c]), int(ints[RI_COND + 2 * c + 1]), float(thr[c]))
            for c in range(n)
        )
        rules.append(Rule(conds, int(ints[RI_ACTION]), int(ints[RI_SCORE]), int(ints[RI_FLAGS]),
                          int(ints[RI_MARKS])))
    return rules


def _holds(value: float, op: int, threshold: float) -> bool:
    if op == OP_GE:
        return value >= threshold
    if op == OP_GT:
        return value > threshold
    if op == OP_LE:
        return value <= threshold
    if op == OP_LT:
        return value < threshold
    if op == OP_EQ:
        return value == threshold
    if op == OP_NE:
        return value != threshold
    raise ValueError(f"unknown operator {op}")


def _decide(rules: list[Rule], feat: list[float]) -> list[int]:
    """Strongest action, reason bits, noisy-OR score (rounded half up), OR of flags and marks."""
    action, reasons, flags, marks, miss = ACTION_ALLOW, 0, 0, 0, 1.0
    for r, rule in enumerate(rules):
        if all(_holds(feat[f], op, thr) for f, op, thr in rule.conditions):
            reasons |= 1 << r  # one Python int: split into the kernel's two words below
            action = max(action, rule.action)
            flags |= rule.flags
            marks |= rule.marks
            miss *= 1.0 - rule.score / 100.0
    dec = [0] * N_DEC
    dec[D_ACTION] = action
    dec[D_REASONS] = reasons & ((1 << REASON_WORD) - 1)
    dec[D_REASONS_HIGH] = reasons >> REASON_WORD
    dec[D_SCORE] = int((1.0 - miss) * 100.0 + 0.5)
    dec[D_FLAGS] = flags
    dec[D_MARKS] = marks
    return dec


# ================================================================= the engine
# window channels, by name
_TXN_COUNT = ("out", "in")  # per direction
_TXN_SUM = ("sum_out", "sum_in")


class ReferenceEngine:
    """Naive twin of ``features.state.FeatureState``: same inputs, same outputs, plain Python."""

    def __init__(self) -> None:
        self.accounts: dict[int, _Account] = {}
        self.phones: dict[int, _Phone] = {}
        self.devices: dict[int, _Device] = {}
        self.pairs: dict[tuple[int, int, int], int] = {}  # (kind, a, b) -> last seen ms
        self.first_ts: int | None = None  # the earliest event time seen

    # ------------------------------------------------------------ entities
    def _account(self, idx: int) -> _Account:
        return self.accounts.setdefault(idx, _Account())

    def _phone(self, idx: int) -> _Phone:
        return self.phones.setdefault(idx, _Phone())

    def _device(self, idx: int) -> _Device:
        return self.devices.setdefault(idx, _Device())

    def set_account_watch(self, idx: int, until_ms: int) -> None:
        """Watchlisted while ``ts < until_ms``."""
        self._account(idx).watch_until = until_ms

    def set_phone_watch(self, idx: int, until_ms: int) -> None:
        """Watchlisted while ``ts < until_ms``."""
        self._phone(idx).watch_until = until_ms

    def set_device_watch(self, idx: int, until_ms: int) -> None:
        """Watchlisted while ``ts < until_ms``."""
        self._device(idx).watch_until = until_ms

    def set_account_profile(self, idx: int, *, opened_ms: int | None, last_active_ms: int | None,
                            profile: int, phone: int) -> None:
        acc = self._account(idx)
        if opened_ms is not None:
            acc.opened = opened_ms
            acc.reg_opened = True
        acc.last_active = last_active_ms
        acc.profile = profile
        if phone >= 0 or not acc.phone_seen:  # no phone on file keeps the learned one
            acc.phone, acc.phone_seen = phone, False

    def set_account_memory(self, idx: int, column: int, until_ms: int) -> None:
        acc = self._account(idx)
        names = {SC_VICTIM_UNTIL: "victim_until", SC_MULE_UNTIL: "mule_until",
                 SC_COLLECTOR_UNTIL: "collector_until", SC_CONFIRMED_UNTIL: "confirmed_until",
                 SC_CLEARED_UNTIL: "cleared_until"}
        setattr(acc, names[column], until_ms)
        if column == SC_MULE_UNTIL and until_ms == 0:
            acc.mule_level = 0

    def release_pair(self, payer: int, payee: int) -> bool:
        found = False
        for kind in (PAIR_STOP, PAIR_WARN):
            key = (kind, payer, payee)
            if key in self.pairs:
                own = (PAIR_WARN, payee, payee)  # the payee's warned inflow, if this was it
                if (kind == PAIR_WARN and payer != payee and self.pairs[key] != _NO_TIME
                        and self.pairs.get(own) == self.pairs[key]):
                    self.pairs[own] = _NO_TIME
                self.pairs[key] = _NO_TIME
                found = True
        return found

    def _learning_until(self, p: _Params) -> int | None:
        """Entities first seen before this have no known age (None: no events yet)."""
        return None if self.first_ts is None else self.first_ts + p.learn_ms

    def account_seen(self, idx: int) -> tuple[int, int]:
        """(first_seen_ms, last_seen_ms); NO_TIME when never seen."""
        acc = self._account(idx)
        first = _NO_TIME if acc.first is None else acc.first
        last = _NO_TIME if acc.last is None else acc.last
        return first, last

    @property
    def pair_count(self) -> int:
        return len(self.pairs)

    def _contacts(self, p: int, q: int) -> bool:
        """Two known, different numbers that ever spoke, either way."""
        return (p >= 0 and q >= 0 and p != q
                and ((PAIR_CALL, p, q) in self.pairs or (PAIR_CALL, q, p) in self.pairs))

    def _pair_put(self, kind: int, a: int, b: int, ts: int) -> None:
        key = (kind, a, b)
        self.pairs[key] = max(ts, self.pairs.get(key, ts))

    def forget(self, kind: str, ids: Iterable[int]) -> None:
        """Entities ``ids`` of ``kind`` ("accounts", "phones", "devices") as never seen: their
        state, their relationships and every ring slot naming them go, so the ids can name new
        entities."""
        gone = set(ids)
        table: dict[int, _Account] | dict[int, _Phone] | dict[int, _Device] = getattr(self, kind)
        for idx in gone:
            table.pop(idx, None)
        pair_kind = {"accounts": PAIR_TXN, "phones": PAIR_CALL}.get(kind)
        if pair_kind is None:
            return
        # an account's remembered stops and warnings (its warned inflow too) go with it
        kinds = {pair_kind, PAIR_STOP, PAIR_WARN} if kind == "accounts" else {pair_kind}
        self.pairs = {key: t for key, t in self.pairs.items()
                      if not (key[0] in kinds and (key[1] in gone or key[2] in gone))}
        if kind == "accounts":
            for acc in self.accounts.values():
                for ring in acc.rings:
                    ring.drop(gone)
        else:
            for phone in self.phones.values():
                phone.ring.drop(gone)
                if phone.incall_caller in gone:
                    phone.incall_caller = -1
            for acc in self.accounts.values():
                if acc.phone in gone:
                    acc.phone, acc.phone_seen = -1, False

    # ------------------------------------------------------------ driver
    def process(
        self,
        events: Iterable[Sequence[int]],
        params: Iterable[int],
        txn_rules: RuleTable,
        call_rules: RuleTable,
        extra: Sequence[Sequence[float]] | None = None,
    ) -> tuple[list[list[float]], list[list[int]]]:
        """Update state with ``events`` in order and decide each; returns (features, decisions).

        Feature rows are ``N_TXN_FEATURE`` wide for both kinds (call rows are zero past the call
        features), as in ``FeatureState.process``.
        """
        p = _Params.read(params)
        txn_rules_l = read_rules(txn_rules)
        call_rules_l = read_rules(call_rules)
        features: list[list[float]] = []
        decisions: list[list[int]] = []
        for i, row in enumerate(events):
            ev = [int(x) for x in row]
            if len(ev) != N_EV:
                raise ValueError(f"an event has {len(ev)} columns, expected {N_EV}")
            if self.first_ts is None or ev[EV_TS] < self.first_ts:
                self.first_ts = ev[EV_TS]
            if ev[EV_KIND] == KIND_TXN:
                f = self._txn(ev, p)
                if extra is not None:
                    f[F_EXTRA_BASE:F_EXTRA_BASE + N_EXTRA] = [float(x) for x in extra[i]]
                dec = _decide(txn_rules_l, f)
                self._remember_txn(ev, p, dec, f[F_FIRST_TIME_PAYEE] > 0)
            elif ev[EV_KIND] == KIND_CALL:
                f = self._call(ev, p)
                dec = _decide(call_rules_l, f)
                self._remember_call(ev, p, dec)
            else:
                raise ValueError(f"unknown event kind {ev[EV_KIND]}")
            features.append(f)
            decisions.append(dec)
        return features, decisions

    def _remember_txn(self, ev: list[int], p: _Params, dec: list[int], first: bool) -> None:
        """Decision memory after a transaction (see the module docstring)."""
        ts, fl = ev[EV_TS], ev[EV_FLAGS]
        payer, payee = self._account(ev[EV_A]), self._account(ev[EV_B])
        marks = dec[D_MARKS]
        level = payer.level(ts)
        # never a mule: a cash terminal, a merchant, a hub (many payers)
        payee_ok = not fl & TF_PAYEE_TERMINAL and self._mule_ok(payee, ts, p, bool(fl & TF_PAYEE_FOREIGN))
        if (0 < level < p.mule_max_level and fl & TF_PAYEE_PERSON and first and payee_ok
                and not payee.cleared(ts)
                and payer.windows.total("sum_in", W_24H, ts, p.tz) >= ev[EV_AMOUNT]):
            payee.suspect(level + 1, ts, p.mule_ms)
            marks |= MK_PAYEE_MULE_HOP
        if marks & MK_PAYER_VICTIM and fl & TF_PAYER_PERSON and not payer.cleared(ts):
            if dec[D_ACTION] >= ACTION_HOLD:
                protect = p.protect_stop_ms if dec[D_ACTION] >= ACTION_STOP else p.protect_ms
                payer.victim_until = max(payer.victim_until, ts + protect)
                self._pair_put(PAIR_STOP, ev[EV_A], ev[EV_B], ts)
            elif dec[D_ACTION] == ACTION_WARN:
                self._pair_put(PAIR_WARN, ev[EV_A], ev[EV_B], ts)
                if fl & TF_PAYEE_PERSON and not fl & TF_PAYEE_TERMINAL:
                    self._pair_put(PAIR_WARN, ev[EV_B], ev[EV_B], ts)
        if marks & MK_PAYEE_MULE and payee_ok and payee.suspect(1, ts, p.mule_ms):
            self._follow_money(ev[EV_B], ts, p)
        if (marks & MK_PAYER_MULE and not fl & TF_PAYER_TERMINAL
                and payer.suspect(1, ts, p.mule_ms)):
            self._follow_money(ev[EV_A], ts, p)
        if marks & MK_PAYER_COLLECTOR and not payer.cleared(ts):
            payer.collector_until = max(payer.collector_until, ts + p.collector_ms)
        if marks & MK_PAYEE_COLLECTOR and not payee.cleared(ts):
            payee.collector_until = max(payee.collector_until, ts + p.collector_ms)
        dec[D_MARKS] = marks

    @staticmethod
    def _mule_ok(acc: _Account, ts: int, p: _Params, foreign: bool = False) -> bool:
        return (not acc.bits(foreign) & (PROF_MERCHANT | PROF_ORGANISATION | PROF_SEEN_ORGANISATION)
                and acc.rings[_IN].distinct(ts, WIN_SPAN_S[W_7D]) <= p.hub_payers)

    def _follow_money(self, idx: int, ts: int, p: _Params) -> None:
        """A new level-1 suspect's payees within ``follow_ms`` become level-2 suspects, but not
        one that paid it before (paid back, not moved on) nor a cash terminal."""
        if p.mule_max_level < 2:
            return
        t = _ring_second(ts)
        for slot in self._account(idx).rings[_OUT].slots:
            if slot is None or slot[0] == idx or not 0 <= t - slot[1] <= p.follow_ms // 1000:
                continue
            other = self._account(slot[0])
            if (not other.seen_terminal and self._mule_ok(other, ts, p)
                    and (PAIR_TXN, slot[0], idx) not in self.pairs):
                other.suspect(2, ts, p.mule_ms)

    def _remember_call(self, ev: list[int], p: _Params, dec: list[int]) -> None:
        """A warned call, or one marked risky_contact, marks its callee (the newest such call
        wins); one that never connected marks nothing and takes back its ringing report's mark;
        risky_number marks the caller."""
        ts, action = ev[EV_TS], dec[D_ACTION]
        caller, callee = self._phone(ev[EV_A]), self._phone(ev[EV_B])
        if dec[D_MARKS] & MK_RISKY_NUMBER:
            caller.risky_number_until = max(caller.risky_number_until, ts + p.risky_number_ms)
        if action >= CALL_ACTION_BLOCK:  # blocked by the service: never connected
            if callee.incall_start == ts:
                callee.incall_start = callee.incall_end = None
            return
        contact = dec[D_MARKS] & MK_RISKY_CONTACT
        if (action > ACTION_ALLOW or contact) and callee.incall_start == ts:
            callee.incall_flags |= INCALL_RISKY
        outcome, dur = ev[EV_AUX3], ev[EV_AMOUNT]
        answered = outcome == OUT_ANSWERED or (outcome == OUT_LEGACY and dur > 0)
        if outcome in _NOT_CONNECTED or (ev[EV_FLAGS] & CF_ENDED and answered
                                         and dur < p.short_call_s):
            if callee.risky_ts == ts:  # no conversation: it takes back its ringing report's mark
                callee.risky_ts = None
            return
        if ((p.mark_min_call_action <= action or contact)
                and (callee.risky_ts is None or ts >= callee.risky_ts)):
            callee.risky_ts = ts
            callee.risky_score = dec[D_SCORE]
            callee.risky_caller_watch = 1 if caller.watch_until > ts else 0

    def _incall_flags(self, caller: _Phone, cls: int, first_contact: bool, ts: int,
                      p: _Params) -> int:
        out = 0
        learning = self._learning_until(p)
        if first_contact:
            out |= INCALL_FIRST
        if first_contact and not (caller.first is not None and learning is not None
                                  and caller.first < learning):
            out |= INCALL_UNKNOWN
        if (caller.watch_until > ts or caller.risky_number_until > ts
                or cls in (NC_INTERNATIONAL, NC_VIRTUAL, NC_SPOOFED)):
            out |= INCALL_RISKY
        return out

    # ------------------------------------------------------------ transactions
    def _txn(self, ev: list[int], p: _Params) -> list[float]:
        ts, amount, fl, tz = ev[EV_TS], ev[EV_AMOUNT], ev[EV_FLAGS], p.tz
        a_id, b_id, ph, dv = ev[EV_A], ev[EV_B], ev[EV_C], ev[EV_D]
        payer, payee = self._account(a_id), self._account(b_id)
        f = [0.0] * N_TXN_FEATURE

        fa, fb = bool(fl & TF_PAYER_FOREIGN), bool(fl & TF_PAYEE_FOREIGN)
        dorm_a, dorm_b = payer.dormant_ms(ts, fa), payee.dormant_ms(ts, fb)
        if p.dormant_ms > 0 and dorm_a >= p.dormant_ms:
            payer.wake = ts
        if p.dormant_ms > 0 and dorm_b >= p.dormant_ms:
            payee.wake = ts
        payer.seen(ts)
        payee.seen(ts)
        # the latest transaction's word: an organisation, or a person (then no longer one)
        if not fl & (TF_PAYER_PERSON | TF_PAYER_TERMINAL):
            payer.profile |= PROF_SEEN_ORGANISATION
        elif fl & TF_PAYER_PERSON:
            payer.profile &= ~PROF_SEEN_ORGANISATION
        if not fl & (TF_PAYEE_PERSON | TF_PAYEE_TERMINAL):
            payee.profile |= PROF_SEEN_ORGANISATION
        elif fl & TF_PAYEE_PERSON:
            payee.profile &= ~PROF_SEEN_ORGANISATION
        payer.seen_terminal = bool(fl & TF_PAYER_TERMINAL)
        payee.seen_terminal = bool(fl & TF_PAYEE_TERMINAL)
        if ph >= 0 and not fa and (payer.phone < 0 or payer.phone_seen):
            payer.phone, payer.phone_seen = ph, True
        # a reported opening date counts when it is the latest known (the registry's as it is)
        if ev[EV_AUX1] != _NO_TIME and (payer.opened is None or ev[EV_AUX1] > payer.opened):
            payer.opened = ev[EV_AUX1]
            payer.reg_opened = False
        if ev[EV_AUX2] != _NO_TIME and (payee.opened is None or ev[EV_AUX2] > payee.opened):
            payee.opened = ev[EV_AUX2]
            payee.reg_opened = False

        # --- what the state said before this transaction
        f[F_AMOUNT] = float(amount)
        f[F_CASH] = 1.0 if fl & TF_CASH else 0.0
        f[F_XBORDER] = 1.0 if fl & TF_XBORDER else 0.0
        f[F_CHANNEL] = float(ev[EV_AUX3])
        f[F_MEMO_INVEST] = 1.0 if fl & TF_MEMO_INVEST else 0.0
        f[F_MEMO_FRAUD] = 1.0 if fl & TF_MEMO_FRAUD else 0.0
        f[F_PAYER_IS_PERSON] = 1.0 if fl & TF_PAYER_PERSON else 0.0
        f[F_PAYEE_IS_PERSON] = 1.0 if fl & TF_PAYEE_PERSON else 0.0
        f[F_PAYER_TERMINAL] = 1.0 if fl & TF_PAYER_TERMINAL else 0.0
        f[F_PAYEE_TERMINAL] = 1.0 if fl & TF_PAYEE_TERMINAL else 0.0
        f[F_NEAR_LINE] = 1.0 if fl & TF_NEAR_LINE else 0.0
        assert self.first_ts is not None
        f[F_OBSERVED_DAYS] = float(ts - self.first_ts) / DAY_MS
        # --- decision memory and the registry
        f[F_PAYER_VICTIM] = payer.marked(payer.victim_until, ts)
        stopped = self.pairs.get((PAIR_STOP, a_id, b_id))
        if (stopped is not None and stopped <= ts and ts - stopped <= p.protect_ms
                and not payer.cleared(ts)):
            f[F_PAYEE_STOPPED] = 1.0
        warned = self.pairs.get((PAIR_WARN, a_id, b_id))
        if (warned is not None and warned <= ts and ts - warned <= p.protect_ms
                and not payer.cleared(ts)):
            f[F_PAYEE_WARNED] = 1.0
        f[F_PAYER_INTERVENED_MIN] = FAR_MINUTES
        if f[F_PAYER_VICTIM] > 0:  # the latest hold or stop among its most recent payees
            stops = [self.pairs.get((PAIR_STOP, a_id, slot[0]))
                     for slot in payer.rings[_OUT].slots if slot is not None]
            times = [t for t in stops if t is not None and t != _NO_TIME and t <= ts]
            if times:
                f[F_PAYER_INTERVENED_MIN] = float(ts - max(times)) / MINUTE_MS
        inflow = self.pairs.get((PAIR_WARN, a_id, a_id))
        f[F_PAYER_WARNED_IN_MIN] = FAR_MINUTES
        if inflow is not None and inflow != _NO_TIME and inflow <= ts and not payer.cleared(ts):
            f[F_PAYER_WARNED_IN_MIN] = float(ts - inflow) / MINUTE_MS
        f[F_PAYER_MULE] = float(payer.level(ts))
        f[F_PAYEE_MULE] = float(payee.level(ts))
        f[F_PAYER_COLLECTOR] = payer.marked(payer.collector_until, ts)
        f[F_PAYEE_COLLECTOR] = payee.marked(payee.collector_until, ts)
        f[F_PAYER_CONFIRMED] = _watched(payer.confirmed_until, ts)
        f[F_PAYEE_CONFIRMED] = _watched(payee.confirmed_until, ts)
        f[F_PAYER_CLEARED] = _watched(payer.cleared_until, ts)
        f[F_PAYEE_CLEARED] = _watched(payee.cleared_until, ts)
        f[F_PAYER_DORMANT_DAYS] = dorm_a / DAY_MS
        f[F_PAYEE_DORMANT_DAYS] = dorm_b / DAY_MS
        f[F_PAYER_WOKE_DAYS] = _days_since(payer.wake, ts)
        f[F_PAYEE_WOKE_DAYS] = _days_since(payee.wake, ts)
        f[F_PAYER_MERCHANT] = 1.0 if payer.bits(fa) & PROF_MERCHANT else 0.0
        f[F_PAYEE_MERCHANT] = 1.0 if payee.bits(fb) & PROF_MERCHANT else 0.0
        f[F_PAYER_PAYROLL] = 1.0 if payer.bits(fa) & PROF_PAYROLL else 0.0
        f[F_PAYER_TRIAL_DAYS] = _days_since(payer.first, ts) if payer.trial else FAR_DAYS
        f[F_PAYEE_TRIAL_DAYS] = _days_since(payee.first, ts) if payee.trial else FAR_DAYS
        pe = ev[EV_E] if ev[EV_E] >= 0 else (-1 if fb or payee.phone_seen else payee.phone)
        if pe >= 0:
            f[F_PAYEE_PHONE_KNOWN] = 1.0
            payee_phone = self._phone(pe)
            if payee_phone.watch_until > ts or payee_phone.risky_number_until > ts:
                f[F_PAYEE_PHONE_RISKY] = 1.0
            if self._contacts(pe, ph):
                f[F_PAYEE_PHONE_CONTACT] = 1.0
        # any phone of each side, one learned from its own payments too (counter-evidence only)
        pa = ph if ph >= 0 or fa else payer.phone
        pb = ev[EV_E] if ev[EV_E] >= 0 or fb else payee.phone
        f[F_PAYEE_PHONE_IS_PAYER_PHONE] = 1.0 if pa >= 0 and pa == pb else 0.0
        flagged = self.phones.get(pb)
        if self._contacts(pa, pb) and not (flagged is not None and (flagged.watch_until > ts
                                                                    or flagged.risky_number_until > ts)):
            f[F_PAYER_TALKS_WITH_PAYEE] = 1.0
        f[F_FIRST_TIME_PAYEE] = 0.0 if (PAIR_TXN, a_id, b_id) in self.pairs else 1.0
        payee_paid_payer = (PAIR_TXN, b_id, a_id) in self.pairs
        f[F_REVERSE_EDGE] = 1.0 if payee_paid_payer else 0.0
        f[F_PAYER_WATCH] = _watched(payer.watch_until, ts)
        f[F_PAYEE_WATCH] = _watched(payee.watch_until, ts)
        f[F_DEVICE_WATCH] = _watched(self._device(dv).watch_until, ts) if dv >= 0 else 0.0
        f[F_RISKY_CALL_MIN] = FAR_MINUTES
        f[F_PAYER_LAST_CALL_MIN] = FAR_MINUTES
        if ph >= 0:
            phone = self._phone(ph)
            f[F_PHONE_WATCH] = _watched(phone.watch_until, ts)
            if phone.risky_ts is not None and phone.risky_ts <= ts:
                f[F_RISKY_CALL_MIN] = float(ts - phone.risky_ts) / MINUTE_MS
                if ts - phone.risky_ts <= p.risky_lookback_ms:
                    f[F_RISKY_CALL_RECENT] = 1.0
                    f[F_RISKY_CALL_CALLER_WATCH] = float(phone.risky_caller_watch)
                    f[F_RISKY_CALL_SCORE] = float(phone.risky_score)
            start, end = phone.incall_start, phone.incall_end
            if start is not None and end is not None and start <= ts:
                f[F_PAYER_LAST_CALL_MIN] = float(max(0, ts - end)) / MINUTE_MS
                f[F_PAYER_LAST_CALL_TALK_S] = float(min(ts, end) - start) / 1000
                f[F_PAYER_LAST_CALL_RISKY] = 1.0 if phone.incall_flags & INCALL_RISKY else 0.0
                f[F_PAYER_LAST_CALL_FIRST] = 1.0 if phone.incall_flags & INCALL_FIRST else 0.0
                if ts <= end + INCALL_SLACK_MS:
                    f[F_PAYER_ON_CALL] = 1.0
                    f[F_PAYER_ON_CALL_UNKNOWN] = 1.0 if phone.incall_flags & INCALL_UNKNOWN else 0.0
                    f[F_PAYER_ON_CALL_RISKY] = 1.0 if phone.incall_flags & INCALL_RISKY else 0.0
                if ts - end <= p.risky_lookback_ms and phone.incall_caller >= 0:
                    last = self._phone(phone.incall_caller)
                    if last.risky_number_until > ts or last.watch_until > ts:
                        f[F_PAYER_LAST_CALLER_RISKY] = 1.0
                pb = ev[EV_E] if ev[EV_E] >= 0 else (-1 if fb else payee.phone)
                if phone.incall_caller >= 0 and pb == phone.incall_caller:
                    f[F_PAYEE_IS_LAST_CALLER] = 1.0
                    if (phone.incall_flags & INCALL_FIRST
                            and (PAIR_CALL, ph, phone.incall_caller) not in self.pairs):
                        f[F_PAYER_TALKS_WITH_PAYEE] = 0.0
        x = math.log(float(amount))
        n_out = payer.n_out
        f[F_PAYER_HIST] = float(n_out)
        f[F_PAYEE_HIST] = float(payee.n_in)
        if n_out > 0:
            m = payer.ewma_mean
            f[F_PAYER_Z] = (x - m) / math.sqrt(payer.ewma_var + 0.01)
            f[F_PAYER_RATIO] = math.exp(x - m)
        else:
            f[F_PAYER_RATIO] = 1.0

        # --- update
        payer.windows.advance(ts, tz)
        payee.windows.advance(ts, tz)
        payer.windows.add("out", 1, ts, tz)
        payer.windows.add("sum_out", amount, ts, tz)
        near = bool(fl & TF_NEAR_LINE)
        if near:
            payer.windows.add("near", 1, ts, tz)
        if payee_paid_payer and f[F_FIRST_TIME_PAYEE] == 1.0:  # first payment back to this payer
            payer.windows.add("payback", 1, ts, tz)
        payee.windows.add("in", 1, ts, tz)
        payee.windows.add("sum_in", amount, ts, tz)
        if near:
            payee.windows.add("near_in", 1, ts, tz)
        if fl & TF_MEMO_INVEST:
            payee.windows.add("invest_in", 1, ts, tz)
        payer.rings[_OUT].touch(b_id, ts)
        payee.rings[_IN].touch(a_id, ts)
        self._pair_put(PAIR_TXN, a_id, b_id, ts)
        payer.day[_OUT].add(ts, tz, amount, fl)
        payee.day[_IN].add(ts, tz, amount, fl)
        alpha = p.ewma_alpha
        if n_out == 0:
            payer.ewma_mean = x
            payer.ewma_var = 0.0
        else:
            dlt = x - payer.ewma_mean
            payer.ewma_mean = payer.ewma_mean + alpha * dlt
            payer.ewma_var = (1.0 - alpha) * (payer.ewma_var + alpha * dlt * dlt)
        # a test transfer: tiny, domestic, non-cash, person to person. It starts an account's
        # trial only as its first transaction; the trial ends with any other payment out, or
        # with money in from anyone but a person at home (a wage, a cash deposit, a remittance)
        from_person = bool(fl & TF_PAYER_PERSON) and not fl & (TF_CASH | TF_XBORDER)
        test = from_person and bool(fl & TF_PAYEE_PERSON) and amount <= p.test_transfer_max
        if payer.n_out == 0 and payer.n_in == 0:
            payer.trial = test
        elif not test:
            payer.trial = False
        if payee.n_out == 0 and payee.n_in == 0:
            payee.trial = test
        elif not from_person:
            payee.trial = False
        payer.n_out += 1
        payee.n_in += 1
        if dv >= 0:
            device = self._device(dv)
            device.last = ts if device.last is None else max(device.last, ts)

        # --- what the state says after it
        learning = self._learning_until(p)
        f[F_PAYER_AGE_DAYS] = payer.age_days(ts, learning, fa)
        f[F_PAYEE_AGE_DAYS] = payee.age_days(ts, learning, fb)
        for party, acc in enumerate((payer, payee)):
            for d in (_OUT, _IN):
                base = F_WIN_BASE + (party * 2 + d) * 8
                for w in range(NW):
                    f[base + w] = float(acc.windows.total(_TXN_COUNT[d], w, ts, tz))
                    f[base + 4 + w] = float(acc.windows.total(_TXN_SUM[d], w, ts, tz))
                for w in (W_1H, W_24H, W_7D):
                    dist = acc.rings[d].distinct(ts, WIN_SPAN_S[w])
                    f[F_DIST_BASE + (party * 2 + d) * 3 + w - 1] = float(dist)
        t_s = _ring_second(ts)
        firm = PROF_ORGANISATION | PROF_SEEN_ORGANISATION
        for w, col, strangers in ((W_1H, F_PAYER_IN_PERSONS_1H, F_PAYER_IN_STRANGERS_1H),
                                  (W_24H, F_PAYER_IN_PERSONS_24H, F_PAYER_IN_STRANGERS_24H)):
            persons = [self.accounts.get(slot[0], _Account()) for slot in payer.rings[_IN].slots
                       if slot is not None and t_s - WIN_SPAN_S[w] < slot[1] <= t_s
                       and not self.accounts.get(slot[0], _Account()).profile & firm]
            f[col] = float(len(persons))
            f[strangers] = float(sum(1 for other in persons if not self._contacts(other.phone, payer.phone)))
        pw = payer.windows
        f[F_PAYER_PASS_1H] = _ratio(pw.total("sum_out", W_1H, ts, tz),
                                    pw.total("sum_in", W_1H, ts, tz))
        f[F_PAYER_PASS_24H] = _ratio(pw.total("sum_out", W_24H, ts, tz),
                                     pw.total("sum_in", W_24H, ts, tz))
        f[F_PAYER_NEAR_24H] = float(pw.total("near", W_24H, ts, tz))
        f[F_PAYER_NEAR_7D] = float(pw.total("near", W_7D, ts, tz))
        f[F_PAYEE_NEAR_24H] = float(payee.windows.total("near_in", W_24H, ts, tz))
        f[F_PAYEE_NEAR_7D] = float(payee.windows.total("near_in", W_7D, ts, tz))
        f[F_PAYEE_INVEST_24H] = float(payee.windows.total("invest_in", W_24H, ts, tz))
        f[F_PAYEE_INVEST_7D] = float(payee.windows.total("invest_in", W_7D, ts, tz))
        f[F_PAYER_INVEST_7D] = float(pw.total("invest_in", W_7D, ts, tz))
        f[F_PAYER_PAYBACK_7D] = float(pw.total("payback", W_7D, ts, tz))
        f[F_PAYER_IN_COVER_7D] = float(pw.total("sum_in", W_7D, ts, tz)) / float(amount)
        for k, value in enumerate(payer.day[_OUT].get(ts, tz, amount, fl)[:3]):
            f[F_PAYER_DAY_CASH + k] = float(value)
        for k, value in enumerate(payee.day[_IN].get(ts, tz, amount, fl)[:3]):
            f[F_PAYEE_DAY_CASH + k] = float(value)
        f[F_PAYER_DAY_DOMESTIC] = float(payer.day[_OUT].get(ts, tz, amount, fl)[3])
        f[F_PAYEE_DAY_DOMESTIC] = float(payee.day[_IN].get(ts, tz, amount, fl)[3])
        return f

    # ------------------------------------------------------------ calls
    def _call(self, ev: list[int], p: _Params) -> list[float]:
        ts, dur, fl, cls, tz = ev[EV_TS], ev[EV_AMOUNT], ev[EV_FLAGS], ev[EV_AUX1], p.tz
        a_id, b_id = ev[EV_A], ev[EV_B]
        caller, callee = self._phone(a_id), self._phone(b_id)
        f = [0.0] * N_TXN_FEATURE
        caller.seen(ts)
        callee.seen(ts)

        f[CF_DURATION] = float(dur)
        f[CF_CLASS] = float(cls)
        f[CF_INTL] = 1.0 if cls == NC_INTERNATIONAL else 0.0
        f[CF_VIRTUAL] = 1.0 if cls == NC_VIRTUAL else 0.0
        f[CF_SPOOFED] = 1.0 if cls == NC_SPOOFED else 0.0
        f[CF_CALLER_WATCH] = _watched(caller.watch_until, ts)
        f[CF_CALLEE_WATCH] = _watched(callee.watch_until, ts)
        f[CF_FIRST_CONTACT] = 0.0 if (PAIR_CALL, a_id, b_id) in self.pairs else 1.0
        f[CF_RINGING] = 0.0 if fl & CF_ENDED else 1.0
        outcome = ev[EV_AUX3]
        f[CF_OUTCOME] = float(outcome)
        f[CF_CALLER_RISKY_NUMBER] = _watched(caller.risky_number_until, ts)
        assert self.first_ts is not None
        f[CF_OBSERVED_DAYS] = float(ts - self.first_ts) / DAY_MS
        answered = outcome == OUT_ANSWERED or (outcome == OUT_LEGACY and dur > 0)
        no_answer = outcome in _NOT_CONNECTED
        # the callee's current incoming call
        if callee.incall_start is None or ts >= callee.incall_start:
            first_contact = f[CF_FIRST_CONTACT] > 0
            if not fl & CF_ENDED:
                callee.incall_start, callee.incall_end = ts, ts + INCALL_OPEN_MS
                callee.incall_caller = a_id
                callee.incall_flags = self._incall_flags(caller, cls, first_contact, ts, p)
            elif callee.incall_start == ts and not fl & CF_NEW:
                if answered:
                    callee.incall_end = ts + dur * 1000
                else:
                    callee.incall_start = callee.incall_end = None
            elif answered:
                callee.incall_start, callee.incall_end = ts, ts + dur * 1000
                callee.incall_caller = a_id
                callee.incall_flags = self._incall_flags(caller, cls, first_contact, ts, p)

        caller.windows.advance(ts, tz)
        callee.windows.advance(ts, tz)
        if fl & CF_NEW:  # first report of this call: count it
            caller.windows.add("calls_out", 1, ts, tz)
            callee.windows.add("calls_in", 1, ts, tz)
            caller.ring.touch(b_id, ts)
            self._pair_put(PAIR_CALL, a_id, b_id, ts)
        if fl & CF_ENDED:  # duration known
            if no_answer or (answered and dur < p.short_call_s):
                caller.windows.add("short_out", 1, ts, tz)
            if answered:
                caller.windows.add("answered_out", 1, ts, tz)
            caller.windows.add("talk_out", dur, ts, tz)

        cw = caller.windows
        assert caller.first is not None
        learning = self._learning_until(p)
        f[CF_CALLER_AGE_DAYS] = (math.nan if learning is not None and caller.first < learning
                                 else float(ts - caller.first) / DAY_MS)
        calls_1h = cw.total("calls_out", W_1H, ts, tz)
        calls_24h = cw.total("calls_out", W_24H, ts, tz)
        short_1h = cw.total("short_out", W_1H, ts, tz)
        short_24h = cw.total("short_out", W_24H, ts, tz)
        f[CF_CALLS_1M] = float(cw.total("calls_out", W_1M, ts, tz))
        f[CF_CALLS_1H] = float(calls_1h)
        f[CF_CALLS_24H] = float(calls_24h)
        f[CF_SHORT_1H] = float(short_1h)
        f[CF_SHORT_24H] = float(short_24h)
        f[CF_SHORT_RATIO_1H] = _ratio(short_1h, calls_1h)
        f[CF_SHORT_RATIO_24H] = _ratio(short_24h, calls_24h)
        answered_1h = cw.total("answered_out", W_1H, ts, tz)
        f[CF_ANSWERED_1H] = float(answered_1h)
        f[CF_UNANSWERED_RATIO_1H] = _unanswered(answered_1h, calls_1h)
        f[CF_UNANSWERED_RATIO_24H] = _unanswered(cw.total("answered_out", W_24H, ts, tz), calls_24h)
        answered_7d = cw.total("answered_out", W_7D, ts, tz)
        f[CF_UNANSWERED_RATIO_7D] = _unanswered(answered_7d, cw.total("calls_out", W_7D, ts, tz))
        f[CF_MEAN_TALK_7D] = _ratio(cw.total("talk_out", W_7D, ts, tz), answered_7d)
        f[CF_DIST_1H] = float(caller.ring.distinct(ts, WIN_SPAN_S[W_1H]))
        f[CF_DIST_24H] = float(caller.ring.distinct(ts, WIN_SPAN_S[W_24H]))
        f[CF_TALK_24H] = float(cw.total("talk_out", W_24H, ts, tz))
        f[CF_CALLEE_CALLS_IN_24H] = float(callee.windows.total("calls_in", W_24H, ts, tz))
        return f

    # ------------------------------------------------------------ account query
    def snapshot(self, idx: int, ts: int, params: Iterable[int]) -> list[float]:
        """Read-only view of account ``idx`` at ``ts`` (``layout.ACCOUNT_FEATURES`` order)."""
        p = _Params.read(params)
        tz = p.tz
        acc = self._account(idx)
        win = acc.windows
        out = [0.0] * N_SNAPSHOT
        for d in (_OUT, _IN):
            for w in range(NW):
                out[(d * 2) * 4 + w] = float(win.total(_TXN_COUNT[d], w, ts, tz))
                out[(d * 2 + 1) * 4 + w] = float(win.total(_TXN_SUM[d], w, ts, tz))
            for w in (W_1H, W_24H, W_7D):
                out[S_DIST_BASE + d * 3 + w - 1] = float(acc.rings[d].distinct(ts, WIN_SPAN_S[w]))
        out[S_NEAR_24H] = float(win.total("near", W_24H, ts, tz))
        out[S_NEAR_7D] = float(win.total("near", W_7D, ts, tz))
        out[S_INVEST_24H] = float(win.total("invest_in", W_24H, ts, tz))
        out[S_INVEST_7D] = float(win.total("invest_in", W_7D, ts, tz))
        out[S_PAYBACK_7D] = float(win.total("payback", W_7D, ts, tz))
        out[S_PASS_1H] = _ratio(win.total("sum_out", W_1H, ts, tz), win.total("sum_in", W_1H, ts, tz))
        out[S_PASS_24H] = _ratio(win.total("sum_out", W_24H, ts, tz),
                                 win.total("sum_in", W_24H, ts, tz))
        out[S_AGE_DAYS] = acc.age_days(ts, self._learning_until(p))
        out[S_N_OUT] = float(acc.n_out)
        out[S_N_IN] = float(acc.n_in)
        out[S_WATCH] = _watched(acc.watch_until, ts)
        out[S_EWMA_MEAN_FEN] = math.exp(acc.ewma_mean) if acc.n_out > 0 else 0.0
        out[S_NEAR_IN_24H] = float(win.total("near_in", W_24H, ts, tz))
        out[S_NEAR_IN_7D] = float(win.total("near_in", W_7D, ts, tz))
        out[S_VICTIM] = acc.marked(acc.victim_until, ts)
        out[S_MULE] = float(acc.level(ts))
        out[S_COLLECTOR] = acc.marked(acc.collector_until, ts)
        out[S_CONFIRMED] = _watched(acc.confirmed_until, ts)
        out[S_CLEARED] = _watched(acc.cleared_until, ts)
        return out
