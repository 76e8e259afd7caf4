"""Feature state: dense arrays indexed by interned ids, and the drivers that run the kernels.

Memory is bounded and known: ``FeatureState.bytes_per_account()`` and friends report it. The
arrays of each entity kind grow in place up to the limit the caller reserves (``RowTable``),
and ``forget`` clears entities whose ids are to be handed out again; nothing here reads a clock,
logs or does I/O (``now`` and the events are passed in).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from features import _kernels as k
from features._rows import RowTable, reserve

__all__ = [
    "ACCOUNT_TIMES",
    "ENTITY_ARRAYS",
    "ENTITY_KINDS",
    "MAX_COND",
    "MAX_RULES",
    "MEMORY_COLUMNS",
    "NO_TIME",
    "N_EXTRA",
    "PHONE_TIMES",
    "SUM_MAX",
    "EntityArrays",
    "FeatureState",
    "Op",
    "RowTable",
    "RuleTable",
    "decide_rows",
    "empty_events",
    "kind_of",
    "resident",
]

NO_TIME = int(k.NO_TIME)
# latest window epoch restored state may hold (the window arithmetic then cannot overflow int64)
MAX_EPOCH = 2**62
# times state may hold besides NO_TIME: what a protobuf Timestamp carries (years 1 to 9999)
TIME_MIN_MS = -62_135_596_800_000
TIME_MAX_MS = 253_402_300_799_999
LOG_AMOUNT_MAX = 44.0  # > ln(2**63)
# sums of money saturate at this (an amount may not be more)
SUM_MAX = int(k.SUM_MAX)
N_EXTRA = k.N_EXTRA
_NO_EXTRA = np.zeros((0, k.N_EXTRA), dtype=np.float64)
_ALL_FEATURES = np.ones(k.N_TXN_FEATURE, dtype=np.uint8)
MAX_COND = k.MAX_COND
MAX_RULES = k.MAX_RULES
# the account columns of decision memory and feedback: each holds "until" (0: not set)
MEMORY_COLUMNS = (k.SC_VICTIM_UNTIL, k.SC_MULE_UNTIL, k.SC_COLLECTOR_UNTIL, k.SC_CONFIRMED_UNTIL,
                  k.SC_CLEARED_UNTIL)


class Op:
    GE, GT, LE, LT, EQ, NE = k.OP_GE, k.OP_GT, k.OP_LE, k.OP_LT, k.OP_EQ, k.OP_NE
    SYMBOLS: ClassVar[dict[str, int]] = {
        ">=": k.OP_GE, ">": k.OP_GT, "<=": k.OP_LE, "<": k.OP_LT, "==": k.OP_EQ, "!=": k.OP_NE,
    }


@dataclass(frozen=True)
class RuleTable:
    """Rules compiled to arrays for ``_eval_rules``: ints (ncond, action, score, flags, conds).

    ``reads`` marks (uint8) every feature some condition reads, so the kernels can skip the rest.
    """

    ints: np.ndarray
    thresholds: np.ndarray
    reads: np.ndarray

    @classmethod
    def build(
        cls,
        rules: list[tuple[list[tuple[int, int, float]], int, int, int, int]],
    ) -> RuleTable:
        """``rules``: (conditions [(feature, op, threshold)], action, score, report flags,
        marks (``MK_*`` bits: what the rule concludes about the parties))."""
        if len(rules) > MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} rules per rule set, got {len(rules)}")
        ints = np.zeros((len(rules), k.N_RULE_INT), dtype=np.int64)
        thr = np.zeros((len(rules), MAX_COND), dtype=np.float64)
        reads = np.zeros(k.N_TXN_FEATURE, dtype=np.uint8)
        for r, (conds, action, score, flags, marks) in enumerate(rules):
            if len(conds) > MAX_COND:
                raise ValueError(f"at most {MAX_COND} conditions per rule, got {len(conds)}")
            ints[r, k.RI_NCOND] = len(conds)
            ints[r, k.RI_ACTION] = action
            ints[r, k.RI_SCORE] = score
            ints[r, k.RI_FLAGS] = flags
            ints[r, k.RI_MARKS] = marks
            for c, (feat, op, value) in enumerate(conds):
                ints[r, k.RI_COND + 2 * c] = feat
                ints[r, k.RI_COND + 2 * c + 1] = op
                thr[r, c] = value
                reads[feat] = 1
        return cls(ints, thr, reads)


def resident(shape: tuple[int, ...], dtype: type[np.generic], fill: int | float | None) -> np.ndarray:
    """A new array filled with ``fill``: written in full now (np.zeros maps pages lazily, and the
    first events would pay for the page faults), on huge pages where the OS offers them.
    ``fill=None`` leaves it unwritten, for a caller that writes every element itself."""
    out = reserve(shape[0], shape[1:], np.dtype(dtype))
    if fill is not None:
        out.fill(fill)
    return out


# the arrays of an EntityArrays, in a checkpoint's order
ENTITY_ARRAYS = ("cnt", "amt", "tag", "head", "ring", "sc", "fl")
# scalar columns holding times (NO_TIME when not known)
ACCOUNT_TIMES = (k.SC_OPENED, k.SC_FIRST, k.SC_LAST, k.SC_LAST_ACTIVE, k.SC_WAKE)
PHONE_TIMES = (k.PSC_FIRST, k.PSC_LAST, k.PSC_RISKY_TS, k.PSC_INCALL_START, k.PSC_INCALL_END)


@dataclass
class EntityArrays:
    """Bucketed counters, recent-counterparty rings and scalars for one kind of entity."""

    cnt: np.ndarray  # int32 [entity, slot, count channel]
    amt: np.ndarray  # int64 [entity, slot, sum channel]
    tag: np.ndarray  # int32 [entity, bucket]: epoch the bucket was last written in (masked)
    head: np.ndarray  # int64 [entity, window]: newest bucket epoch
    ring: np.ndarray  # int32 [entity, direction, k, (counterparty, time_s)]
    sc: np.ndarray  # int64 scalars
    fl: np.ndarray  # float64 scalars

    @classmethod
    def allocate(cls, n: int, n_count: int, n_sum: int, n_dir: int, n_sc: int, n_fl: int,
                 time_cols: tuple[int, ...]) -> EntityArrays:
        sc = resident((n, n_sc), np.int64, 0)
        for col in time_cols:
            sc[:, col] = NO_TIME
        return cls(
            cnt=resident((n, k.NSLOT, n_count), np.int32, 0),
            amt=resident((n, k.NSLOT, n_sum), np.int64, 0),
            tag=resident((n, k.NBUCKET), np.int32, k.TAG_EMPTY),
            head=resident((n, k.NW), np.int64, int(k.EMPTY_EPOCH)),
            ring=resident((n, n_dir, k.RING_K, 2), np.int32, -1),
            sc=sc,
            fl=resident((n, max(n_fl, 1)), np.float64, 0.0),
        )

    @property
    def capacity(self) -> int:
        return int(self.sc.shape[0])

    def nbytes_per_entity(self) -> int:
        return sum(getattr(self, n)[0].nbytes for n in ENTITY_ARRAYS)


def _account_arrays(n: int) -> EntityArrays:
    arr = EntityArrays.allocate(
        n, k.N_ACC_COUNT, k.N_ACC_SUM, 2, k.N_ACC_SCALAR, k.N_ACC_FLOAT,
        ACCOUNT_TIMES,
    )
    arr.sc[:, k.SC_DAY_OUT] = -1
    arr.sc[:, k.SC_DAY_IN] = -1
    arr.sc[:, k.SC_PHONE] = -1
    return arr


def _phone_arrays(n: int) -> EntityArrays:
    arr = EntityArrays.allocate(
        n, k.N_PHONE_COUNT, k.N_PHONE_SUM, 1, k.N_PHONE_SCALAR, 0,
        PHONE_TIMES,
    )
    arr.sc[:, k.PSC_INCALL_CALLER] = -1
    return arr


def _device_scalars(n: int) -> np.ndarray:
    d = resident((n, k.N_DEVICE_SCALAR), np.int64, 0)
    d[:, k.DSC_LAST] = NO_TIME
    return d


def decide_rows(table: RuleTable, feat: np.ndarray) -> np.ndarray:
    """Decisions (``int64[n, N_DEC]``: action, reason bits 0..62, score, report flags, marks,
    reason bits 63..) of ``table``'s rules on feature rows ``feat``
    (``float64[n, N_TXN_FEATURE]``; a call's row is as wide, its call features first), as
    ``process`` decides them; for shadow policies, which see the same features and change
    nothing. A transaction table on transaction rows, a call table on call rows."""
    if feat.dtype != np.float64 or feat.ndim != 2 or feat.shape[1] != k.N_TXN_FEATURE:
        raise ValueError(f"feat must be float64[n, {k.N_TXN_FEATURE}], got {feat.dtype}{feat.shape}")
    if not feat.flags.c_contiguous:
        feat = np.ascontiguousarray(feat)
    dec = np.zeros((feat.shape[0], k.N_DEC), dtype=np.int64)
    k._decide_rows(table.ints, table.thresholds, feat, dec)
    return dec


def empty_events(n: int) -> np.ndarray:
    """An event matrix of ``n`` rows; unused id columns are -1, unknown times NO_TIME."""
    ev = np.zeros((n, k.N_EV), dtype=np.int64)
    ev[:, k.EV_C : k.EV_D + 1] = -1
    ev[:, k.EV_E] = -1
    ev[:, k.EV_AUX1 : k.EV_AUX2 + 1] = NO_TIME
    return ev


def _empty_pairs(capacity: int) -> np.ndarray:
    pairs = resident((capacity, 2), np.int64, 0)
    pairs[:, 0] = k.PAIR_EMPTY
    return pairs


_NO_RING = np.zeros((0, 1, k.RING_K, 2), dtype=np.int32)


def _empty_meta() -> np.ndarray:
    meta = np.zeros(k.N_META, dtype=np.int64)
    meta[k.META_FIRST_TS] = NO_TIME
    return meta


def _next_pow2(n: int) -> int:
    return 1 << max(4, (n - 1).bit_length())


# the entity kinds with a row per id; an array of ``arrays()`` named "KIND" or "KIND.name" has
# a row per id of that kind (grown, cleared and checkpointed by rows with it)
ENTITY_KINDS = ("accounts", "phones", "devices")
# (array, last-seen column, watchlist column) of each kind
_ACTIVITY = {"accounts": ("accounts.sc", k.SC_LAST, k.SC_WATCH),
             "phones": ("phones.sc", k.PSC_LAST, k.PSC_WATCH),
             "devices": ("devices", k.DSC_LAST, k.DSC_WATCH)}
# rows are added in multiples of this (a batch of new ids grows the views once)
_ROW_STEP = 1024


def kind_of(name: str) -> str | None:
    """The entity kind whose ids index the rows of array ``name`` of ``arrays()``, or None."""
    kind = name.partition(".")[0]
    return kind if kind in ENTITY_KINDS else None


def _allocated(accounts: int, phones: int, devices: int, pairs: int) -> FeatureState:
    """A state of plain arrays, written with the empty values (the definition of an empty row)."""
    return FeatureState(accounts=_account_arrays(accounts), phones=_phone_arrays(phones),
                        devices=_device_scalars(devices), pairs=_empty_pairs(pairs))


@functools.cache
def _empty_rows() -> dict[str, np.ndarray]:
    """The empty row of every per-entity array, by its ``arrays()`` name."""
    one = _allocated(1, 1, 1, 16)
    return {name: arr[0].copy() for name, arr in one.arrays().items() if kind_of(name)}


@dataclass
class FeatureState:
    """All streaming state of the screening engine, as numpy arrays.

    Accounts, phones and devices are addressed by dense integer ids handed out by the caller's
    interner; ``ensure`` grows the arrays before ids beyond the capacity are used. The arrays of
    each kind are views of a ``RowTable`` (``tables``): with ``limits`` given, memory for that
    many rows is reserved up front, so growing never copies, and ``prefill`` can write the next
    rows ahead of use on another thread.
    """

    accounts: EntityArrays
    phones: EntityArrays
    devices: np.ndarray
    pairs: np.ndarray  # int64 [slot, (key, last seen ms)], open addressing
    # int64 [N_META]: relationships in ``pairs``, the earliest event time seen (learning period)
    meta: np.ndarray = field(default_factory=_empty_meta)
    tables: dict[str, RowTable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a relationship table written ahead of use for the next growth (see ``prefill``)
        self._spare_pairs: np.ndarray | None = None
        self._stale_pairs: np.ndarray | None = None  # the table a rebuild replaced, to reuse
        self._spare_lock = threading.Lock()

    @classmethod
    def create(cls, accounts: int = 1024, phones: int = 1024, devices: int = 1024,
               pairs: int = 4096, *, limits: Mapping[str, int] | None = None) -> FeatureState:
        """Empty state with room for the given numbers of ids and relationships.

        ``limits`` (by kind: "accounts", "phones", "devices") reserves memory for that many
        rows; growing past a limit (or without one) copies, doubling.
        """
        rows = {"accounts": accounts, "phones": phones, "devices": devices}
        empty = _empty_rows()
        tables = {kind: RowTable({n: row for n, row in empty.items() if kind_of(n) == kind},
                                 max(rows[kind], 1), (limits or {}).get(kind))
                  for kind in ENTITY_KINDS}
        state = _allocated(1, 1, 1, cls.pair_slots(pairs))
        state.tables = tables
        for kind in ENTITY_KINDS:
            state._bind(kind)
        return state

    # ------------------------------------------------------------ capacity
    def ensure(self, accounts: int, phones: int, devices: int, new_pairs: int) -> None:
        """Make room for ids below the given counts and ``new_pairs`` more relationships."""
        for kind, need in (("accounts", accounts), ("phones", phones), ("devices", devices)):
            table = self.tables[kind]
            if need > table.rows:
                if need > table.limit:  # no memory reserved for it: double (and copy once)
                    table.grow(_grow(table.rows, need))
                else:  # a whole step of rows, but never more than doubling
                    step = -(-need // _ROW_STEP) * _ROW_STEP
                    table.grow(min(table.limit, max(need, min(step, 2 * table.rows))))
                self._bind(kind)
        need = int(self.meta[k.META_PAIRS]) + new_pairs
        if need * 4 > self.pair_capacity * 3:
            self.rehash_pairs(_next_pow2(need * 2), min_ts=-(2**63))

    def capacity(self, kind: str) -> int:
        """Ids of ``kind`` the arrays have rows for."""
        return self.tables[kind].rows

    def prefill(self, rows: Mapping[str, int], max_pairs: int | None = None) -> int:
        """Write empty rows ahead of use, up to ``rows[kind]`` per kind (within its limit), and
        the relationship table the next rebuild fills: twice the size once the current one is
        half way to growing, or the same size when it is at its final size for ``max_pairs``
        and nearly full (the least recently seen are dropped then). Returns bytes written.
        Meant for a background thread while the state is in use (see ``RowTable``).
        """
        done = 0
        for kind, n in rows.items():
            table = self.tables[kind]
            done += table.prefill(n) * table.row_nbytes
        cap, count = self.pair_capacity, self.pair_count
        want = 0
        if max_pairs is not None and max_pairs * 4 <= cap * 3 and count * 8 > max_pairs * 7:
            want = cap
        elif count * 8 > cap * 3:
            want = 2 * cap  # the size ``ensure`` grows to from here
        with self._spare_lock:
            spare, stale = self._spare_pairs, self._stale_pairs
            if not want or (spare is not None and spare.shape[0] == want):
                return done
            self._stale_pairs = None
        if stale is not None and stale.shape[0] == want:
            stale[:, 0] = k.PAIR_EMPTY  # the table replaced last: its pages are resident
            stale[:, 1] = 0
            fresh = stale
        else:
            fresh = _empty_pairs(want)
        with self._spare_lock:
            self._spare_pairs = fresh
        return done + fresh.nbytes

    def rehash_pairs(self, capacity: int, min_ts: int) -> None:
        """Rebuild the relationship table at ``capacity``, dropping pairs last seen before min_ts."""
        slots = _next_pow2(capacity)
        with self._spare_lock:
            spare, self._spare_pairs = self._spare_pairs, None
        pairs = spare if spare is not None and spare.shape[0] == slots else _empty_pairs(slots)
        n = k._pair_rehash(self.pairs, pairs, min_ts)
        if n * 4 > pairs.shape[0] * 3:
            raise ValueError("pair table capacity too small for the live pairs")
        if self.pairs.shape[0] == pairs.shape[0]:  # reusable for the next rebuild of this size
            with self._spare_lock:
                self._stale_pairs = self.pairs
        self.pairs = pairs
        self.meta[k.META_PAIRS] = n

    def drop_oldest_pairs(self, n: int) -> tuple[int, int, int]:
        """Forget about ``n`` of the least recently seen relationships (all of those last seen
        before a cut-off time; ties at it stay); returns (how many, oldest and newest last-seen
        time of them)."""
        used = self.pairs[:, 0] != k.PAIR_EMPTY
        ts = self.pairs[used, 1]
        if n <= 0 or ts.size == 0:
            return 0, NO_TIME, NO_TIME
        cutoff = int(ts.max()) + 1 if n >= ts.size else int(np.partition(ts, n)[n])
        gone = ts[ts < cutoff]
        if gone.size == 0:
            return 0, NO_TIME, NO_TIME
        self.rehash_pairs(self.pair_capacity, min_ts=cutoff)
        return int(gone.size), int(gone.min()), int(gone.max())

    def _bind(self, kind: str) -> None:
        """Point the attributes behind ``arrays()`` at the current views of ``kind``'s table."""
        for name, view in self.tables[kind].views.items():
            owner, _, attr = name.partition(".")
            if attr:
                setattr(getattr(self, owner), attr, view)
            else:
                setattr(self, owner, view)

    @property
    def pair_capacity(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def pair_count(self) -> int:
        return int(self.meta[k.META_PAIRS])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every state array by name (the arrays themselves, not copies): what a checkpoint
        holds. Rows are entity ids; rows beyond the ids handed out hold the empty values."""
        out = {"devices": self.devices, "pairs": self.pairs, "meta": self.meta}
        for kind, ent in (("accounts", self.accounts), ("phones", self.phones)):
            for name in ENTITY_ARRAYS:
                out[f"{kind}.{name}"] = getattr(ent, name)
        return out

    # ------------------------------------------------------------ forgetting entities
    def activity(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(last seen ms, watchlisted until ms) of every row of ``kind`` (views): NO_TIME when
        never seen, 0 when not on a watchlist."""
        name, last, watch = _ACTIVITY[kind]
        arr = self.arrays()[name]
        return arr[:, last], arr[:, watch]

    def forget(self, kind: str, ids: np.ndarray) -> int:
        """Make entities ``ids`` of ``kind`` as if never seen, so their ids can be handed out again.

        Every array with a row per id of the kind (``arrays()``, whatever they are) gets the
        empty row back; the relationships naming them leave the relationship table, and they
        leave the recent-counterparty rings of the entities they had relationships with, so an
        id given to a new entity inherits nothing.
        Returns the relationships removed.
        """
        ids = np.asarray(ids, dtype=np.int64)
        table = self.tables[kind]
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= table.rows):
            raise ValueError(f"{kind}: an id to forget is beyond the capacity")
        table.reset(ids)
        gone = np.zeros(table.rows, dtype=np.uint8)
        gone[ids] = 1
        refs = {"accounts": (k.PAIR_TXN, self.accounts.ring), "phones": (k.PAIR_CALL, self.phones.ring)}
        if kind not in refs:
            return 0
        pair_kind, ring = refs[kind]
        if kind == "phones":  # what names a forgotten phone: an account's phone, a callee's caller
            sc = self.accounts.sc
            named = sc[:, k.SC_PHONE] >= 0
            named[named] = gone[sc[named, k.SC_PHONE]] == 1
            sc[named, k.SC_PHONE] = -1
            sc[named, k.SC_PROFILE] &= ~k.PROF_PHONE_SEEN
            caller = self.phones.sc[:, k.PSC_INCALL_CALLER]
            named = caller >= 0
            named[named] = gone[caller[named]] == 1
            self.phones.sc[named, k.PSC_INCALL_CALLER] = -1
        removed = int(k._forget_pairs(self.pairs, self.meta, pair_kind, gone, ring))
        if kind == "accounts":  # remembered stops and warnings name accounts too (no ring with them)
            for memory in (k.PAIR_STOP, k.PAIR_WARN):
                removed += int(k._forget_pairs(self.pairs, self.meta, memory, gone, _NO_RING))
        return removed

    # ------------------------------------------------------------ watchlist flags
    def set_account_watch(self, idx: int, until_ms: int) -> None:
        self.accounts.sc[idx, k.SC_WATCH] = until_ms

    def set_phone_watch(self, idx: int, until_ms: int) -> None:
        self.phones.sc[idx, k.PSC_WATCH] = until_ms

    def set_device_watch(self, idx: int, until_ms: int) -> None:
        self.devices[idx, k.DSC_WATCH] = until_ms

    # ------------------------------------------------------------ registry and decision memory
    def set_account_profile(self, idx: int, *, opened_ms: int | None, last_active_ms: int | None,
                            profile: int, phone: int) -> None:
        """What the account registry says: opening and last-activity times (None: unknown),
        ``PROF_*`` bits and the phone on file (a phone id, -1: none). An opening time given is
        marked the registry's (``PROF_REG_OPENED``; without one, the mark stays as it was): a
        transaction that contradicts the entry's owner does not take it."""
        sc = self.accounts.sc
        if opened_ms is not None:
            sc[idx, k.SC_OPENED] = opened_ms
            profile |= k.PROF_REG_OPENED
        else:
            profile |= int(sc[idx, k.SC_PROFILE]) & k.PROF_REG_OPENED
        # what its transactions did, and the phone they named when the entry names none
        profile |= int(sc[idx, k.SC_PROFILE]) & (k.PROF_TRIAL | k.PROF_SEEN_TERMINAL)
        if phone < 0 and int(sc[idx, k.SC_PROFILE]) & k.PROF_PHONE_SEEN:
            phone = int(sc[idx, k.SC_PHONE])
            profile |= k.PROF_PHONE_SEEN
        sc[idx, k.SC_LAST_ACTIVE] = NO_TIME if last_active_ms is None else last_active_ms
        sc[idx, k.SC_PROFILE] = profile
        sc[idx, k.SC_PHONE] = phone

    def set_account_memory(self, idx: int, column: int, until_ms: int) -> None:
        """Set one decision-memory column (``SC_*_UNTIL``) of an account (feedback)."""
        if column not in MEMORY_COLUMNS:
            raise ValueError(f"column {column} is not a decision-memory column")
        self.accounts.sc[idx, column] = until_ms
        if column == k.SC_MULE_UNTIL and until_ms == 0:
            self.accounts.sc[idx, k.SC_MULE_LEVEL] = 0

    def account_memory(self, idx: int) -> dict[int, int]:
        """The decision-memory columns of an account (``SC_*`` -> value)."""
        row = self.accounts.sc[idx]
        return {c: int(row[c]) for c in (*MEMORY_COLUMNS, k.SC_MULE_LEVEL, k.SC_WAKE)}

    def release_pair(self, payer: int, payee: int) -> bool:
        """Forget that payments of ``payer`` to ``payee`` were stopped or warned about (a released
        payment)."""
        stopped = bool(k._pair_forget(self.pairs, k.PAIR_STOP, payer, payee))
        warned = bool(k._pair_forget(self.pairs, k.PAIR_WARN, payer, payee))
        return stopped or warned

    def account_seen(self, idx: int) -> tuple[int, int]:
        """(first_seen_ms, last_seen_ms) of an account; NO_TIME when never seen."""
        return int(self.accounts.sc[idx, k.SC_FIRST]), int(self.accounts.sc[idx, k.SC_LAST])

    # ------------------------------------------------------------ drivers
    def process(self, events: np.ndarray, params: np.ndarray, txn_rules: RuleTable,
                call_rules: RuleTable, keep_features: bool = True,
                extra: np.ndarray | None = None,
                all_features: bool = True,
                reads: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Update state with ``events`` in order and decide each; returns (features, decisions).

        The caller has already called ``ensure`` for every id in ``events``. ``extra`` gives
        N_EXTRA features per event computed elsewhere (graph detectors), copied into the
        transaction features before the rules run; None leaves them 0. ``all_features=False``
        computes only the transaction features some rule reads (the rest are 0); the decisions
        are the same and the state is updated in full. ``reads`` (a ``RuleTable.reads`` mask)
        widens that to the features other rules read too (shadow policies, see ``decide_rows``).
        """
        _check_events(events)
        if params.dtype != np.int64 or params.shape != (k.N_PARAM,):
            raise ValueError(f"params must be int64[{k.N_PARAM}]")
        bad = k._first_bad_id(events, self.accounts.capacity, self.phones.capacity,
                              self.devices.shape[0])
        if bad >= 0:
            raise ValueError(f"event row {bad} has an unknown kind, an id beyond capacity "
                             "or a non-positive amount")
        n = events.shape[0]
        if extra is None:
            extra = _NO_EXTRA
        elif extra.dtype != np.float64 or extra.shape != (n, k.N_EXTRA):
            raise ValueError(f"extra must be float64[{n}, {k.N_EXTRA}], got {extra.dtype}{extra.shape}")
        feat = np.zeros((n if keep_features else 1, k.N_TXN_FEATURE), dtype=np.float64)
        dec = np.zeros((n, k.N_DEC), dtype=np.int64)
        a, p = self.accounts, self.phones
        k._process(
            events, a.cnt, a.amt, a.tag, a.head, a.ring, a.sc, a.fl,
            p.cnt, p.amt, p.tag, p.head, p.ring, p.sc, self.devices,
            self.pairs, self.meta, params,
            txn_rules.ints, txn_rules.thresholds, call_rules.ints, call_rules.thresholds,
            _ALL_FEATURES if all_features else (txn_rules.reads if reads is None else reads),
            extra, feat, dec,
        )
        return feat, dec

    def snapshot(self, idx: int, ts_ms: int, params: np.ndarray) -> np.ndarray:
        """Read-only account features at ``ts_ms`` (see ``layout.ACCOUNT_FEATURES``)."""
        out = np.zeros(k.N_SNAPSHOT, dtype=np.float64)
        a = self.accounts
        k._snapshot(a.cnt, a.amt, a.tag, a.head, a.ring, a.sc, a.fl, self.meta, params, idx, ts_ms,
                    out)
        return out

    # ------------------------------------------------------------ restored state
    def check(self) -> None:
        """Raise ValueError naming the array when a value breaks what the kernels assume.

        The kernels run without bounds checks, so state loaded from outside (a checkpoint)
        must not make them loop forever or write out of bounds: heads of the time windows
        within the epochs the window arithmetic handles without overflow, and a relationship
        table with a free slot (linear probing ends there) and its count right. Times and
        amount statistics must also be ones the service can compute with and answer.
        """
        for kind, ent in (("accounts", self.accounts), ("phones", self.phones)):
            head = ent.head
            if head.size and (int(head.min()) < int(k.EMPTY_EPOCH) or int(head.max()) > MAX_EPOCH):
                raise ValueError(f"features.{kind}.head: window epochs outside "
                                 f"[{int(k.EMPTY_EPOCH)}, {MAX_EPOCH}]")
        times = (("accounts.sc", self.accounts.sc, ACCOUNT_TIMES),
                 ("phones.sc", self.phones.sc, PHONE_TIMES),
                 ("devices", self.devices, (k.DSC_LAST,)),
                 ("meta", self.meta.reshape(1, -1), (k.META_FIRST_TS,)))
        for name, sc, cols in times:
            t = sc[:, list(cols)]
            if np.any(((t < TIME_MIN_MS) | (t > TIME_MAX_MS)) & (t != NO_TIME)):
                raise ValueError(f"features.{name}: a time outside years 1 to 9999")
        # running mean and variance of log(amount in fen): amounts are 1 .. 2**63 fen
        fl = self.accounts.fl
        mean, var = fl[:, k.FL_MEAN], fl[:, k.FL_VAR]
        if not (np.all((mean >= 0) & (mean <= LOG_AMOUNT_MAX))
                and np.all((var >= 0) & (var <= LOG_AMOUNT_MAX**2))):
            raise ValueError("features.accounts.fl: an amount mean or variance no amount gives")
        cap = self.pair_capacity
        if cap < 16 or cap & (cap - 1):
            raise ValueError(f"features.pairs: {cap} slots, expected a power of two >= 16")
        used = int(np.count_nonzero(self.pairs[:, 0] != k.PAIR_EMPTY))
        if used >= cap:
            raise ValueError("features.pairs: no free slot (a lookup would never end)")
        if self.meta.shape != (k.N_META,) or int(self.meta[k.META_PAIRS]) != used:
            raise ValueError(f"features.meta: says {self.meta.tolist()[:1]} relationships, "
                             f"the table holds {used}")
        sc = self.accounts.sc
        level = sc[:, k.SC_MULE_LEVEL]
        if np.any((level < 0) | (level > 2**31)):
            raise ValueError("features.accounts.sc: a mule level outside [0, 2**31]")
        for name, ids in (("accounts.sc", sc[:, k.SC_PHONE]),
                          ("phones.sc", self.phones.sc[:, k.PSC_INCALL_CALLER])):
            if np.any((ids < -1) | (ids >= self.phones.capacity)):
                raise ValueError(f"features.{name}: a phone reference that is not a phone id")

    @staticmethod
    def pair_slots(capacity: int) -> int:
        """Slots of a relationship table asked for ``capacity`` (a power of two, at least 16)."""
        return _next_pow2(capacity)

    @staticmethod
    def nbytes_for(accounts: int, phones: int, devices: int, pairs: int) -> int:
        """Bytes ``create`` allocates for these capacities (to refuse an impossible size from
        outside before allocating it)."""
        one = FeatureState.create(1, 1, 1, 16)
        return (accounts * one.bytes_per_account() + phones * one.bytes_per_phone()
                + devices * int(one.devices[0].nbytes)
                + FeatureState.pair_slots(pairs) * one.bytes_per_pair_slot())

    # ------------------------------------------------------------ memory
    def bytes_per_account(self) -> int:
        return self.accounts.nbytes_per_entity()

    def bytes_per_phone(self) -> int:
        return self.phones.nbytes_per_entity()

    def bytes_per_pair_slot(self) -> int:
        return int(self.pairs[0].nbytes)

    def nbytes(self) -> int:
        arrays = [self.devices, self.pairs]
        for ent in (self.accounts, self.phones):
            arrays += [getattr(ent, name) for name in ENTITY_ARRAYS]
        return sum(x.nbytes for x in arrays)


def _grow(cap: int, need: int) -> int:
    while cap < need:
        cap *= 2
    return cap


def _check_events(events: np.ndarray) -> None:
    if events.dtype != np.int64 or events.ndim != 2 or events.shape[1] != k.N_EV:
        raise ValueError(f"events must be int64[n, {k.N_EV}], got {events.dtype}{events.shape}")
