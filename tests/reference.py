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
  local day seen; events of an earlier day than that are not added anywhere.
* **EWMA** of ``log(amount)`` of an account's outgoing transfers, updated after the features
  that read it; the float operations are written in the kernels' order so results are equal.
* **Rules.** A rule fires when all its conditions hold; the strongest action wins, reason bits
  and flags are OR-ed, and scores combine noisy-OR, rounded half up to an integer.
* **Risky calls.** A call decided at or above the mark action marks the callee's phone (time,
  score, caller watchlisted); later transactions whose payer phone is that phone see it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from features._kernels import (
    ACTION_ALLOW,
    CF_CALLEE_CALLS_IN_24H,
    CF_CALLEE_WATCH,
    CF_CALLER_AGE_DAYS,
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
    CF_NEW,
    CF_RINGING,
    CF_SHORT_1H,
    CF_SHORT_24H,
    CF_SHORT_RATIO_1H,
    CF_SHORT_RATIO_24H,
    CF_SPOOFED,
    CF_TALK_24H,
    CF_VIRTUAL,
    D_ACTION,
    D_FLAGS,
    D_REASONS,
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
    F_MEMO_INVEST,
    F_PAYEE_AGE_DAYS,
    F_PAYEE_DAY_CASH,
    F_PAYEE_DAY_DOMESTIC,
    F_PAYEE_HIST,
    F_PAYEE_INVEST_7D,
    F_PAYEE_INVEST_24H,
    F_PAYEE_IS_PERSON,
    F_PAYEE_NEAR_7D,
    F_PAYEE_NEAR_24H,
    F_PAYEE_TERMINAL,
    F_PAYEE_WATCH,
    F_PAYER_AGE_DAYS,
    F_PAYER_DAY_CASH,
    F_PAYER_DAY_DOMESTIC,
    F_PAYER_HIST,
    F_PAYER_IS_PERSON,
    F_PAYER_NEAR_7D,
    F_PAYER_NEAR_24H,
    F_PAYER_PASS_1H,
    F_PAYER_PASS_24H,
    F_PAYER_PAYBACK_7D,
    F_PAYER_RATIO,
    F_PAYER_TERMINAL,
    F_PAYER_WATCH,
    F_PAYER_Z,
    F_PHONE_WATCH,
    F_REVERSE_EDGE,
    F_RISKY_CALL_CALLER_WATCH,
    F_RISKY_CALL_MIN,
    F_RISKY_CALL_RECENT,
    F_RISKY_CALL_SCORE,
    F_WIN_BASE,
    F_XBORDER,
    FAR_MINUTES,
    KIND_CALL,
    KIND_TXN,
    MAX_COND,
    MINUTE_MS,
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
    P_EWMA_ALPHA_PPM,
    P_MARK_MIN_CALL_ACTION,
    P_NEAR_HIGH,
    P_NEAR_LOW,
    P_RISKY_LOOKBACK_MS,
    P_SHORT_CALL_S,
    P_TZ_MS,
    PAIR_CALL,
    PAIR_TXN,
    RI_ACTION,
    RI_COND,
    RI_FLAGS,
    RI_NCOND,
    RI_SCORE,
    RING_EPOCH_S,
    RING_K,
    S_AGE_DAYS,
    S_DIST_BASE,
    S_EWMA_MEAN_FEN,
    S_INVEST_7D,
    S_INVEST_24H,
    S_N_IN,
    S_N_OUT,
    S_NEAR_7D,
    S_NEAR_24H,
    S_NEAR_IN_7D,
    S_NEAR_IN_24H,
    S_PASS_1H,
    S_PASS_24H,
    S_PAYBACK_7D,
    S_WATCH,
    TF_CASH,
    TF_MEMO_INVEST,
    TF_PAYEE_PERSON,
    TF_PAYEE_TERMINAL,
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
        return sum(self.values.get((channel, w, k), 0) for k in range(lo + 1, hi + 1))


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

    def get(self, ts: int, tz: int) -> tuple[int, int, int, int]:
        """(cash, transfers, cross-border, domestic transfers) of the day of ``ts``."""
        if self.day is not None and self.day == (ts + tz) // DAY_MS:
            return self.cash, self.transfer, self.cross_border, self.domestic
        return 0, 0, 0, 0


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

    def seen(self, ts: int) -> None:
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)

    def age_days(self, ts: int) -> float:
        base = self.opened if self.opened is not None else self.first
        if base is None:
            # Never seen and no opened date (only reachable through snapshot): the kernel counts
            # from its NO_TIME sentinel, giving a huge age. Mirrored on purpose, see the test
            # test_snapshot_of_a_never_seen_account_reports_age_from_the_sentinel.
            base = _NO_TIME
        return float(ts - base) / DAY_MS


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
    near_low: int
    near_high: int
    short_call_s: int
    risky_lookback_ms: int
    mark_min_call_action: int
    ewma_alpha: float

    @classmethod
    def read(cls, params: Sequence[int] | Iterable[int]) -> _Params:
        p = [int(x) for x in params]
        if len(p) != N_PARAM:
            raise ValueError(f"params must have {N_PARAM} values, got {len(p)}")
        return cls(
            tz=p[P_TZ_MS],
            near_low=p[P_NEAR_LOW],
            near_high=p[P_NEAR_HIGH],
            short_call_s=p[P_SHORT_CALL_S],
            risky_lookback_ms=p[P_RISKY_LOOKBACK_MS],
            mark_min_call_action=p[P_MARK_MIN_CALL_ACTION],
            ewma_alpha=p[P_EWMA_ALPHA_PPM] / 1e6,
        )


# ================================================================= rules
@dataclass(frozen=True)
class Rule:
    """One rule: all conditions ``(feature, op, threshold)`` must hold for it to fire."""

    conditions: tuple[tuple[int, int, float], ...]
    action: int
    score: int
    flags: int


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
        rules.append(Rule(conds, int(ints[RI_ACTION]), int(ints[RI_SCORE]), int(ints[RI_FLAGS])))
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
    """Strongest action, reason bits, noisy-OR score (rounded half up), OR of flags."""
    action, reasons, flags, miss = ACTION_ALLOW, 0, 0, 1.0
    for r, rule in enumerate(rules):
        if all(_holds(feat[f], op, thr) for f, op, thr in rule.conditions):
            reasons |= 1 << r
            action = max(action, rule.action)
            flags |= rule.flags
            miss *= 1.0 - rule.score / 100.0
    dec = [0] * N_DEC
    dec[D_ACTION] = action
    dec[D_REASONS] = reasons
    dec[D_SCORE] = int((1.0 - miss) * 100.0 + 0.5)
    dec[D_FLAGS] = flags
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

    def account_seen(self, idx: int) -> tuple[int, int]:
        """(first_seen_ms, last_seen_ms); NO_TIME when never seen."""
        acc = self._account(idx)
        first = _NO_TIME if acc.first is None else acc.first
        last = _NO_TIME if acc.last is None else acc.last
        return first, last

    @property
    def pair_count(self) -> int:
        return len(self.pairs)

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
        self.pairs = {key: t for key, t in self.pairs.items()
                      if not (key[0] == pair_kind and (key[1] in gone or key[2] in gone))}
        if kind == "accounts":
            for acc in self.accounts.values():
                for ring in acc.rings:
                    ring.drop(gone)
        else:
            for phone in self.phones.values():
                phone.ring.drop(gone)

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
            if ev[EV_KIND] == KIND_TXN:
                f = self._txn(ev, p)
                if extra is not None:
                    f[F_EXTRA_BASE:F_EXTRA_BASE + N_EXTRA] = [float(x) for x in extra[i]]
                dec = _decide(txn_rules_l, f)
            elif ev[EV_KIND] == KIND_CALL:
                f = self._call(ev, p)
                dec = _decide(call_rules_l, f)
                if dec[D_ACTION] >= p.mark_min_call_action:
                    self._mark_risky(ev, dec[D_SCORE])
            else:
                raise ValueError(f"unknown event kind {ev[EV_KIND]}")
            features.append(f)
            decisions.append(dec)
        return features, decisions

    def _mark_risky(self, ev: list[int], score: int) -> None:
        """The callee's phone had a risky call at ``ts`` (the newest such call wins)."""
        ts = ev[EV_TS]
        callee = self._phone(ev[EV_B])
        if callee.risky_ts is None or ts >= callee.risky_ts:
            callee.risky_ts = ts
            callee.risky_score = score
            callee.risky_caller_watch = 1 if self._phone(ev[EV_A]).watch_until > ts else 0

    # ------------------------------------------------------------ transactions
    def _txn(self, ev: list[int], p: _Params) -> list[float]:
        ts, amount, fl, tz = ev[EV_TS], ev[EV_AMOUNT], ev[EV_FLAGS], p.tz
        a_id, b_id, ph, dv = ev[EV_A], ev[EV_B], ev[EV_C], ev[EV_D]
        payer, payee = self._account(a_id), self._account(b_id)
        f = [0.0] * N_TXN_FEATURE

        payer.seen(ts)
        payee.seen(ts)
        if ev[EV_AUX1] != _NO_TIME:
            payer.opened = ev[EV_AUX1]
        if ev[EV_AUX2] != _NO_TIME:
            payee.opened = ev[EV_AUX2]

        # --- what the state said before this transaction
        f[F_AMOUNT] = float(amount)
        f[F_CASH] = 1.0 if fl & TF_CASH else 0.0
        f[F_XBORDER] = 1.0 if fl & TF_XBORDER else 0.0
        f[F_CHANNEL] = float(ev[EV_AUX3])
        f[F_MEMO_INVEST] = 1.0 if fl & TF_MEMO_INVEST else 0.0
        f[F_PAYER_IS_PERSON] = 1.0 if fl & TF_PAYER_PERSON else 0.0
        f[F_PAYEE_IS_PERSON] = 1.0 if fl & TF_PAYEE_PERSON else 0.0
        f[F_PAYER_TERMINAL] = 1.0 if fl & TF_PAYER_TERMINAL else 0.0
        f[F_PAYEE_TERMINAL] = 1.0 if fl & TF_PAYEE_TERMINAL else 0.0
        f[F_FIRST_TIME_PAYEE] = 0.0 if (PAIR_TXN, a_id, b_id) in self.pairs else 1.0
        payee_paid_payer = (PAIR_TXN, b_id, a_id) in self.pairs
        f[F_REVERSE_EDGE] = 1.0 if payee_paid_payer else 0.0
        f[F_PAYER_WATCH] = _watched(payer.watch_until, ts)
        f[F_PAYEE_WATCH] = _watched(payee.watch_until, ts)
        f[F_DEVICE_WATCH] = _watched(self._device(dv).watch_until, ts) if dv >= 0 else 0.0
        f[F_RISKY_CALL_MIN] = FAR_MINUTES
        if ph >= 0:
            phone = self._phone(ph)
            f[F_PHONE_WATCH] = _watched(phone.watch_until, ts)
            if phone.risky_ts is not None and phone.risky_ts <= ts:
                f[F_RISKY_CALL_MIN] = float(ts - phone.risky_ts) / MINUTE_MS
                if ts - phone.risky_ts <= p.risky_lookback_ms:
                    f[F_RISKY_CALL_RECENT] = 1.0
                    f[F_RISKY_CALL_CALLER_WATCH] = float(phone.risky_caller_watch)
                    f[F_RISKY_CALL_SCORE] = float(phone.risky_score)
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
        near = p.near_low <= amount < p.near_high
        if near:
            payer.windows.add("near", 1, ts, tz)
        if payee_paid_payer:
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
        payer.n_out += 1
        payee.n_in += 1
        if dv >= 0:
            device = self._device(dv)
            device.last = ts if device.last is None else max(device.last, ts)

        # --- what the state says after it
        f[F_PAYER_AGE_DAYS] = payer.age_days(ts)
        f[F_PAYEE_AGE_DAYS] = payee.age_days(ts)
        for party, acc in enumerate((payer, payee)):
            for d in (_OUT, _IN):
                base = F_WIN_BASE + (party * 2 + d) * 8
                for w in range(NW):
                    f[base + w] = float(acc.windows.total(_TXN_COUNT[d], w, ts, tz))
                    f[base + 4 + w] = float(acc.windows.total(_TXN_SUM[d], w, ts, tz))
                for w in (W_1H, W_24H, W_7D):
                    dist = acc.rings[d].distinct(ts, WIN_SPAN_S[w])
                    f[F_DIST_BASE + (party * 2 + d) * 3 + w - 1] = float(dist)
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
        f[F_PAYER_PAYBACK_7D] = float(pw.total("payback", W_7D, ts, tz))
        for k, value in enumerate(payer.day[_OUT].get(ts, tz)[:3]):
            f[F_PAYER_DAY_CASH + k] = float(value)
        for k, value in enumerate(payee.day[_IN].get(ts, tz)[:3]):
            f[F_PAYEE_DAY_CASH + k] = float(value)
        f[F_PAYER_DAY_DOMESTIC] = float(payer.day[_OUT].get(ts, tz)[3])
        f[F_PAYEE_DAY_DOMESTIC] = float(payee.day[_IN].get(ts, tz)[3])
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

        caller.windows.advance(ts, tz)
        callee.windows.advance(ts, tz)
        if fl & CF_NEW:  # first report of this call: count it
            caller.windows.add("calls_out", 1, ts, tz)
            callee.windows.add("calls_in", 1, ts, tz)
            caller.ring.touch(b_id, ts)
            self._pair_put(PAIR_CALL, a_id, b_id, ts)
        if fl & CF_ENDED:  # duration known
            if dur < p.short_call_s:
                caller.windows.add("short_out", 1, ts, tz)
            caller.windows.add("talk_out", dur, ts, tz)

        cw = caller.windows
        assert caller.first is not None
        f[CF_CALLER_AGE_DAYS] = float(ts - caller.first) / DAY_MS
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
        f[CF_DIST_1H] = float(caller.ring.distinct(ts, WIN_SPAN_S[W_1H]))
        f[CF_DIST_24H] = float(caller.ring.distinct(ts, WIN_SPAN_S[W_24H]))
        f[CF_TALK_24H] = float(cw.total("talk_out", W_24H, ts, tz))
        f[CF_CALLEE_CALLS_IN_24H] = float(callee.windows.total("calls_in", W_24H, ts, tz))
        return f

    # ------------------------------------------------------------ account query
    def snapshot(self, idx: int, ts: int, tz: int) -> list[float]:
        """Read-only view of account ``idx`` at ``ts`` (``layout.ACCOUNT_FEATURES`` order)."""
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
        out[S_AGE_DAYS] = acc.age_days(ts)
        out[S_N_OUT] = float(acc.n_out)
        out[S_N_IN] = float(acc.n_in)
        out[S_WATCH] = _watched(acc.watch_until, ts)
        out[S_EWMA_MEAN_FEN] = math.exp(acc.ewma_mean) if acc.n_out > 0 else 0.0
        out[S_NEAR_IN_24H] = float(win.total("near_in", W_24H, ts, tz))
        out[S_NEAR_IN_7D] = float(win.total("near_in", W_7D, ts, tz))
        return out
