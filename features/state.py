"""Feature state: dense arrays indexed by interned ids, and the drivers that run the kernels.

Memory is bounded and known: ``FeatureState.bytes_per_account()`` and friends report it. The
arrays grow by doubling up to the capacity the caller allows; nothing here reads a clock, logs or
does I/O (``now`` and the events are passed in).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from features import _kernels as k

__all__ = [
    "ACCOUNT_TIMES",
    "ENTITY_ARRAYS",
    "MAX_COND",
    "MAX_RULES",
    "MEMORY_COLUMNS",
    "NO_TIME",
    "N_EXTRA",
    "PHONE_TIMES",
    "EntityArrays",
    "FeatureState",
    "Op",
    "RuleTable",
    "empty_events",
    "resident",
]

NO_TIME = int(k.NO_TIME)
# latest window epoch restored state may hold (the window arithmetic then cannot overflow int64)
MAX_EPOCH = 2**62
# times state may hold besides NO_TIME: what a protobuf Timestamp carries (years 1 to 9999)
TIME_MIN_MS = -62_135_596_800_000
TIME_MAX_MS = 253_402_300_799_999
LOG_AMOUNT_MAX = 44.0  # > ln(2**63)
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


_HUGE = 2 << 20  # a transparent huge page
# Arrays at least this large are placed on huge pages. Every event reads and writes a few lines
# of two accounts spread over a dozen arrays; with 4 kB pages nearly each of those lines also
# needs its own address translation (replay at 13 k accounts measured 10-15 % faster on huge
# pages). Smaller arrays are not worth rounding up to 2 MB.
_HUGE_MIN = 1 << 20


def resident(shape: tuple[int, ...], dtype: type[np.generic], fill: int | float | None) -> np.ndarray:
    """A new array filled with ``fill``: written in full now (np.zeros maps pages lazily, and the
    first events would pay for the page faults), on huge pages where the OS offers them.
    ``fill=None`` leaves it unwritten, for a caller that writes every element itself."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < _HUGE_MIN or advise is None or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty(shape, dtype=dtype) if fill is None else np.full(shape, fill, dtype=dtype)
    span = -(-nbytes // _HUGE) * _HUGE
    # private and anonymous (a shared mapping would be shmem, which THP leaves out); unmapped
    # when the last view of it goes
    region = mmap.mmap(-1, span + _HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(region, dtype=np.uint8)
    start = -raw.ctypes.data % _HUGE  # huge pages need 2 MB-aligned addresses
    region.madvise(advise, start, span)
    out = raw[start:start + nbytes].view(dtype).reshape(shape)
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

    def grown(self, n: int, template: EntityArrays) -> EntityArrays:
        """A copy with capacity ``n``; new rows are copies of ``template``'s empty row."""
        out = {}
        for name in ENTITY_ARRAYS:
            old = getattr(self, name)
            new = resident((n, *old.shape[1:]), old.dtype.type, None)  # every row written below
            new[: old.shape[0]] = old
            new[old.shape[0]:] = getattr(template, name)[0]
            out[name] = new
        return EntityArrays(**out)

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


def _empty_meta() -> np.ndarray:
    meta = np.zeros(k.N_META, dtype=np.int64)
    meta[k.META_FIRST_TS] = NO_TIME
    return meta


def _next_pow2(n: int) -> int:
    return 1 << max(4, (n - 1).bit_length())


@dataclass
class FeatureState:
    """All streaming state of the screening engine, as numpy arrays.

    Accounts, phones and devices are addressed by dense integer ids handed out by the caller's
    interner; ``ensure`` grows the arrays before ids beyond the capacity are used.
    """

    accounts: EntityArrays
    phones: EntityArrays
    devices: np.ndarray
    pairs: np.ndarray  # int64 [slot, (key, last seen ms)], open addressing
    # int64 [N_META]: relationships in ``pairs``, the earliest event time seen (learning period)
    meta: np.ndarray = field(default_factory=_empty_meta)

    @classmethod
    def create(cls, accounts: int = 1024, phones: int = 1024, devices: int = 1024,
               pairs: int = 4096) -> FeatureState:
        cap = cls.pair_slots(pairs)
        return cls(
            accounts=_account_arrays(max(accounts, 1)),
            phones=_phone_arrays(max(phones, 1)),
            devices=_device_scalars(max(devices, 1)),
            pairs=_empty_pairs(cap),
        )

    # ------------------------------------------------------------ capacity
    def ensure(self, accounts: int, phones: int, devices: int, new_pairs: int) -> None:
        """Make room for ids below the given counts and ``new_pairs`` more relationships."""
        if accounts > self.accounts.capacity:
            self.accounts = self.accounts.grown(_grow(self.accounts.capacity, accounts),
                                                _account_arrays(1))
        if phones > self.phones.capacity:
            self.phones = self.phones.grown(_grow(self.phones.capacity, phones), _phone_arrays(1))
        if devices > self.devices.shape[0]:
            n = _grow(self.devices.shape[0], devices)
            new = _device_scalars(n)
            new[: self.devices.shape[0]] = self.devices
            self.devices = new
        need = int(self.meta[k.META_PAIRS]) + new_pairs
        if need * 4 > self.pair_capacity * 3:
            self.rehash_pairs(_next_pow2(need * 2), min_ts=-(2**63))

    def rehash_pairs(self, capacity: int, min_ts: int) -> None:
        """Rebuild the relationship table at ``capacity``, dropping pairs last seen before min_ts."""
        pairs = _empty_pairs(_next_pow2(capacity))
        n = k._pair_rehash(self.pairs, pairs, min_ts)
        if n * 4 > pairs.shape[0] * 3:
            raise ValueError("pair table capacity too small for the live pairs")
        self.pairs = pairs
        self.meta[k.META_PAIRS] = n

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
        ``PROF_*`` bits and the phone on file (a phone id, -1: none)."""
        sc = self.accounts.sc
        if opened_ms is not None:
            sc[idx, k.SC_OPENED] = opened_ms
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
        """Forget that payments of ``payer`` to ``payee`` were stopped (a released payment)."""
        return bool(k._pair_forget(self.pairs, k.PAIR_STOP, payer, payee))

    def account_seen(self, idx: int) -> tuple[int, int]:
        """(first_seen_ms, last_seen_ms) of an account; NO_TIME when never seen."""
        return int(self.accounts.sc[idx, k.SC_FIRST]), int(self.accounts.sc[idx, k.SC_LAST])

    # ------------------------------------------------------------ drivers
    def process(self, events: np.ndarray, params: np.ndarray, txn_rules: RuleTable,
                call_rules: RuleTable, keep_features: bool = True,
                extra: np.ndarray | None = None,
                all_features: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Update state with ``events`` in order and decide each; returns (features, decisions).

        The caller has already called ``ensure`` for every id in ``events``. ``extra`` gives
        N_EXTRA features per event computed elsewhere (graph detectors), copied into the
        transaction features before the rules run; None leaves them 0. ``all_features=False``
        computes only the transaction features some rule reads (the rest are 0); the decisions
        are the same and the state is updated in full.
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
            _ALL_FEATURES if all_features else txn_rules.reads, extra, feat, dec,
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
