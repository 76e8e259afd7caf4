"""The live screening engine: the shell around the screening core (``screening.core``).

The core holds the interned ids, feature state, live graph, recent-decision rings and watch
flags, and screens a batch of events; the engine adds what a live server needs around it: the
lock, idempotency memory (decision records by transaction id, calls by call id), entity caps and
eviction, the graph's latency budget, the report ledger, watchlists and feedback with their
journal, queries and case input, and consistent snapshots for checkpoints.

Single writer: one lock serialises every state change, so a decision is computed on a
consistent state and a request either applies completely or not at all (validation happens
before the lock, capacity is checked before anything is interned). A batch of more than
BATCH_CHUNK new transactions is the exception: it is screened in chunks, in order, and other
callers waiting for the lock go between two (``_Turns``), so a bulk load does not hold live
payments back; what it promises instead is in ``Engine._screen_chunked``. No protobuf, no
logging.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from features.layout import (
    ACCOUNT_FEATURES,
    CALL_FEATURES,
    TXN_FEATURES,
    DecisionCol,
    Mark,
    Memory,
    join_reasons,
)
from features.state import (
    ENTITY_KINDS,
    NO_TIME,
    FeatureState,
    RowTable,
    decide_rows,
)
from graph.case import CaseInput
from graph.live import LiveGraph, node_id
from screening._warm import KernelInputs
from screening._warm import warm_up as warm_kernels
from screening.config import Settings
from screening.core import Interner, Screener
from screening.errors import (
    CapacityExceeded,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from screening.idempotency import (
    DEFAULT_SCOPE,
    differing_field,
    differing_input,
    fingerprint,
    fingerprints,
    same_fingerprint,
    same_payment,
)
from screening.ledger import Ledger, LedgerSnapshot, LedgerView
from screening.lines import NearLine
from screening.memory import MemoryPlan, available_memory, plan_memory
from screening.model import (
    ENTITY_ACCOUNT,
    ENTITY_DEVICE,
    ENTITY_PHONE,
    ROLE_CLEARED,
    ROLE_CONFIRMED_FRAUD,
    ROLE_SUSPECTED_COLLECTOR,
    ROLE_SUSPECTED_MULE,
    ROLE_SUSPECTED_VICTIM,
    VERDICT_CONFIRMED_FRAUD,
    VERDICT_FALSE_ALARM,
    AccountProfile,
    AccountView,
    CallInput,
    CallRecord,
    CaseMark,
    DecisionRecord,
    Feedback,
    TxnColumns,
    TxnInput,
    WatchEntry,
)
from screening.policy import ACTION_NAMES, ACTIONS, Policy

__all__ = ["CENTRE_ACCOUNT", "CENTRE_PHONE", "CENTRE_TRANSACTION", "CallEntry", "CallState",
           "DecisionLog", "Engine", "EngineSnapshot", "EventLog", "Eviction", "JournalEvent",
           "RegistryJournal", "RestoredState", "WatchJournal",
           "WatchlistChange"]

_ORGANISATION = 2  # proto PartyType
_DAY_MS = 86_400_000
# how long feedback holds when it gives no expiry: a confirmed fraud account, a false alarm
CONFIRMED_DEFAULT_MS = 180 * _DAY_MS
CLEARED_DEFAULT_MS = 30 * _DAY_MS
# feedback notes remembered (for QueryAccount), at most
_FEEDBACK_NOTES = 100_000
# policies kept to name the reasons of decisions made before a policy swap
MAX_POLICIES = 16
# CallEvent field -> CallInput attribute, for naming what differs in a repeated call report
_CALL_FIELDS = {"duration_seconds": "duration_s", "outcome": "outcome",
                "caller_class": "caller_class"}
# Centres of a case-graph export.
CENTRE_ACCOUNT, CENTRE_PHONE, CENTRE_TRANSACTION = "account_id", "phone_number", "transaction_id"
# The graph stage runs in chunks of this many transactions, checking the latency budget between.
_GRAPH_CHUNK = 256
# A batch with more new transactions than this is screened in chunks of this many, the lock
# handed to waiting callers between two (``_Turns``): a chunk holds it a few ms, so one
# caller's bulk load cannot keep another's live payment waiting for the whole batch.
BATCH_CHUNK = 512
# While the detectors are skipped, their cost estimate halves this often (see _graph_cost).
_GRAPH_HALF_LIFE_NS = 1_000_000_000
# Rows kept written ahead of use per kind: an eighth of those in use, and at least this many.
_PREFILL_MIN_ROWS = 65_536
# An account with a remembered decision at least this strong (HOLD) is in an open case.
_CASE_ACTION = ACTIONS["HOLD"]
_ACTION, _REASONS, _SCORE, _FLAGS, _MARKS = (int(DecisionCol.ACTION), int(DecisionCol.REASONS),
                                             int(DecisionCol.SCORE), int(DecisionCol.FLAGS),
                                             int(DecisionCol.MARKS))
_REASONS_HIGH = int(DecisionCol.REASONS_HIGH)


def reason_mask(row: Sequence[int]) -> int:
    """A decision row's reasons as one Python int (bit i: rule i), from the kernel's two words."""
    return join_reasons(row[_REASONS], row[_REASONS_HIGH])


class DecisionLog:
    """The last ``capacity`` decisions (the idempotency horizon), by scope and transaction id
    (``screening.idempotency``) and by seq.

    ``by_seq`` may be called without the engine's lock: records are immutable, the ring holds
    them directly, and a slot reused meanwhile fails the seq check (None).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._scopes: dict[str, dict[str, DecisionRecord]] = {}
        self._ring: list[DecisionRecord | None] = [None] * self.capacity
        self.next_seq = 0

    def get(self, scope: str, transaction_id: str) -> DecisionRecord | None:
        ids = self._scopes.get(scope)
        return None if ids is None else ids.get(transaction_id)

    def find(self, transaction_id: str) -> list[DecisionRecord]:
        """Every remembered decision with this id, whoever sent it, oldest first."""
        found = (ids.get(transaction_id) for ids in self._scopes.values())
        return sorted((r for r in found if r is not None), key=lambda r: r.seq)

    def by_seq(self, seq: int) -> DecisionRecord | None:
        if seq < 0:
            return None
        rec = self._ring[seq % self.capacity]
        return rec if rec is not None and rec.seq == seq else None

    def add(self, rec: DecisionRecord) -> None:
        slot = rec.seq % self.capacity
        old = self._ring[slot]
        if old is not None:
            ids = self._scopes[old.scope]
            if ids.get(old.transaction_id) is old:
                del ids[old.transaction_id]
        self._ring[slot] = rec
        self._scopes.setdefault(rec.scope, {})[rec.transaction_id] = rec

    def ids_of(self, scope: str) -> dict[str, DecisionRecord] | None:
        """The remembered decisions of ``scope`` by transaction id (None: none yet)."""
        return self._scopes.get(scope)

    def records(self) -> list[DecisionRecord]:
        """The remembered decisions, oldest first (by seq)."""
        start = self.next_seq % self.capacity
        # filter(None, ...): a C loop (a record is always true); this runs under the lock
        return list(filter(None, itertools.chain(self._ring[start:], self._ring[:start])))

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._scopes.values())


@dataclass(frozen=True, kw_only=True)
class Eviction:
    """One batch of entities forgotten to make room at a cap (for the log and the stats)."""

    kind: str  # "accounts", "phones", "devices" or "relationships" (the least recently seen)
    count: int
    live: int  # entities of the kind left
    cap: int
    oldest_seen_ms: int  # last-seen times of the evicted (NO_TIME: never seen in a transaction)
    newest_seen_ms: int
    relationships: int  # relationship-table entries removed with them
    edges: int  # graph edges dropped with them
    seconds: float


class _Turns:
    """The engine's lock, with turns: a batch screened in chunks lets whoever waits go first.

    ``with turns:`` takes the lock as a plain ``threading.Lock`` does, counting the callers
    that arrive and those that get in. Between two chunks a batch calls ``yield_turn``: when
    callers are waiting it releases the lock, waits until every caller that had arrived by then
    has got in (later arrivals do not extend the wait, so a steady stream of small requests
    cannot starve the batch), and takes the lock back. Python's lock is not fair: a batch that
    only released and re-took it would mostly get it straight back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Condition(threading.Lock())
        self._arrived = 0
        self._entered = 0

    def __enter__(self) -> None:
        with self._count:
            self._arrived += 1
        self._lock.acquire()
        with self._count:
            self._entered += 1
            self._count.notify_all()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @property
    def waiting(self) -> int:
        """Callers that have arrived and not yet got in."""
        return self._arrived - self._entered

    def yield_turn(self) -> int:
        """Let the callers waiting now take the lock first (called holding it; returns holding
        it); returns the ns it was away (0: nobody was waiting)."""
        with self._count:
            owed = self._arrived
            if self._entered >= owed:  # nobody waiting: carry on holding it
                return 0
        away = time.perf_counter_ns()
        self._lock.release()
        try:
            with self._count:
                self._count.wait_for(lambda: self._entered >= owed)
        finally:
            self._lock.acquire()
        return time.perf_counter_ns() - away


class _Prefiller(threading.Thread):
    """Writes state rows ahead of use (``Engine.prefill``) every ``period_s``."""

    def __init__(self, engine: Engine, period_s: float) -> None:
        super().__init__(name="state-prefill", daemon=True)
        self.engine = engine
        self.period_s = period_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period_s):
            self.engine.prefill()


def _actions_of(log: DecisionLog) -> np.ndarray:
    """The actions of the remembered decisions at their seq modulo the log's capacity."""
    out = np.zeros(log.capacity, dtype=np.int8)
    records = log.records()
    if records:
        seqs = np.fromiter((r.seq for r in records), dtype=np.int64, count=len(records))
        out[seqs % log.capacity] = np.fromiter((r.action for r in records), dtype=np.int8,
                                               count=len(records))
    return out


def _coldest(ids: np.ndarray, last_seen: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` of ``ids`` (ascending) least recently seen; ties go to the lower id."""
    if ids.size <= n:
        return ids
    kth = np.partition(last_seen, n - 1)[n - 1]
    below = ids[last_seen < kth]
    return np.concatenate([below, ids[last_seen == kth][: n - below.size]])


class _GraphBudget:
    """The graph detectors within the latency budget (a ``screening.core.GraphGate``).

    The budget is ``latency_budget_ms`` per transaction from ``t0``, when the engine's lock was
    taken (time spent waiting for it is not the graph's). Before each chunk the gate checks that
    the chunk, at the running estimate of its cost (``Engine._graph_cost``), still fits; when it
    does not, the chunk's edges are added without running the detectors: those decisions get
    zero graph features and are marked degraded. The cost is measured in this thread's CPU time,
    so time spent waiting for the GIL behind other threads under load does not inflate it. Each
    detector is also bounded inside the kernel (hub degree, work budget), so one search cannot
    run away.
    """

    chunk = _GRAPH_CHUNK

    def __init__(self, engine: Engine, t0: int, n: int) -> None:
        self.engine = engine
        self.deadline = t0 + round(engine.settings.server.latency_budget_ms * 1e6) * n
        self.cost = 0.0
        self.cpu0 = 0

    def admit(self, rows: int) -> bool:
        now = time.perf_counter_ns()
        self.cost = self.engine._graph_cost(now)
        admitted = now + self.cost * rows <= self.deadline
        self.cpu0 = time.thread_time_ns()
        return admitted

    def done(self, rows: int) -> None:
        per = (time.thread_time_ns() - self.cpu0) / rows
        self.engine.graph_ns_per_txn = 0.9 * self.cost + 0.1 * per
        self.engine._graph_measured_ns = time.perf_counter_ns()


@dataclass
class CallState:
    caller: str
    callee: str
    ringing: CallRecord | None = None
    ended: CallRecord | None = None
    # the reports these records answered, to tell a repeat from another report under the same
    # id (not in checkpoints: a restored call compares caller and callee only)
    ringing_input: CallInput | None = None
    ended_input: CallInput | None = None


@dataclass(frozen=True)
class WatchlistChange:
    added: int
    replaced: int
    removed: int
    not_found: int


# Writes a watchlist change somewhere durable and returns its journal sequence number; raises
# (e.g. StoreUnavailable) when it cannot, and then the change is not applied.
class ShadowSink(Protocol):
    """Who hears shadow decisions: the events, the active decisions, the active version, one
    decision array per shadow policy and those policies; called under the engine's lock, so it
    only queues them."""

    def transactions(self, txns: Sequence[TxnInput], active: np.ndarray, active_version: str,
                     shadows: list[np.ndarray], policies: tuple[Policy, ...]) -> None: ...

    def call(self, call: CallInput, active: np.ndarray, active_version: str,
             shadows: list[np.ndarray], policies: tuple[Policy, ...]) -> None: ...


WatchJournal = Callable[[Sequence[WatchEntry], Sequence[tuple[int, str]]], int]
# The same for feedback: (when, what) -> journal sequence number.
FeedbackJournal = Callable[[int, Feedback], int]
# The same for an account-registry update (the profiles, owners included).
RegistryJournal = Callable[[Sequence[AccountProfile]], int]


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One accepted state change of screening, as the event journal keeps it: what re-applying
    it through the same core needs to reach the same state and decisions.

    ``txns`` (the new transactions of one ScreenTransaction/ScreenBatch, validated) or ``call``;
    the calling institution ``scope``; the ``policy_version`` decided under; ``watch_seq``, the
    watchlist journal entry the state included then (watchlist changes are re-applied in
    between); ``latency_us`` as recorded; ``unsaved`` (the store was out of reach: decisions
    marked degraded); ``graph_skipped``, per transaction, whether the latency budget held the
    graph detectors back (timing-dependent, so it is recorded rather than re-measured).
    """

    kind: str  # "txn" | "call"
    scope: str
    policy_version: str
    watch_seq: int
    latency_us: int
    unsaved: bool
    graph_skipped: tuple[bool, ...] = ()
    txns: tuple[TxnInput, ...] | TxnColumns = ()
    call: CallInput | None = None


class EventLog(Protocol):
    """Where the engine writes accepted events (``screening.store``'s group-commit writer)."""

    def put(self, seq: int, event: JournalEvent) -> None:
        """Queue event ``seq`` (called under the engine's lock, in order; never blocks)."""

    def wait(self, seq: int) -> bool:
        """Return once events up to ``seq`` are written (True), or False at once when they
        cannot be now (a store outage; they stay queued): then the decisions are answered
        degraded."""


class _Replayed:
    """The graph gate of a journalled batch: admits a chunk when the original run did."""

    chunk = _GRAPH_CHUNK

    def __init__(self, skipped: Sequence[bool]) -> None:
        self.skipped = skipped
        self.pos = 0

    def admit(self, rows: int) -> bool:
        start, self.pos = self.pos, self.pos + rows
        return not any(self.skipped[start:self.pos])

    def done(self, rows: int) -> None:
        return None


@dataclass(slots=True)
class _Step:
    """What one batch is decided with, taken once when it starts (a policy swap between two of
    its chunks applies from the next request): the policy, its near-line, the features to
    compute, the shadow policies, and the graph gate."""

    policy: Policy
    near_line: NearLine
    reads: np.ndarray | None
    shadows: tuple[Policy, ...]
    gate: _GraphBudget | _Replayed


# One remembered call: (call_id, caller, callee, record at ring, record at hang-up, scope).
CallEntry = tuple[str, str, str, CallRecord | None, CallRecord | None, str]


@dataclass(frozen=True, kw_only=True)
class EngineSnapshot:
    """A consistent copy of an engine's whole state, taken under its lock (a checkpoint's content).

    ``arrays`` holds copies of the used rows only, by name: ``features.accounts.cnt`` has one
    row per interned account, ``graph.e32`` one per live edge, ``recent`` one per account.
    ``capacities`` are the rows to allocate on restore, so restored arrays have the original
    shapes. ``journal_seq`` is the last watchlist-journal entry the state includes.
    """

    created_ms: int
    policy_version: str
    arrays: dict[str, np.ndarray]
    capacities: dict[str, int]
    accounts: list[str]
    phones: list[str]
    devices: list[str]
    decisions: list[DecisionRecord]
    next_seq: int
    calls: list[CallEntry]
    watch: list[WatchEntry]
    journal_seq: int
    lock_held_s: float = 0.0  # how long taking it held the engine's lock
    # the latest feedback per account: (account, when, what), oldest first
    feedback: list[tuple[str, int, Feedback]] = field(default_factory=list)
    # the report ledger (None: a checkpoint of an earlier build, which had none)
    ledger: LedgerSnapshot | None = None
    # the last event-journal entry the state includes
    event_seq: int = 0
    # the owner of each account registry entry: (account, institution)
    owners: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        meta = self.arrays.get("graph.meta")
        return {
            "accounts": sum(1 for name in self.accounts if name),  # "": a free id
            "phones": sum(1 for name in self.phones if name),
            "devices": sum(1 for name in self.devices if name),
            "pairs": int(self.arrays["features.meta"][0]),
            "graph_edges": int(meta[0]) if meta is not None else 0,
            "decisions": len(self.decisions),
            "calls": len(self.calls),
            "watchlist": len(self.watch),
            "ledger_rows": int(self.ledger.rows.shape[0]) if self.ledger is not None else 0,
        }


@dataclass(frozen=True, kw_only=True)
class RestoredState:
    """The whole state a checkpoint restores, validated and built off the engine's lock
    (``screening.store``); ``Engine.install`` swaps it in."""

    core: Screener
    decisions: DecisionLog
    calls: OrderedDict[tuple[str, str], CallState]
    watch: dict[tuple[int, str], WatchEntry]
    feedback: OrderedDict[str, tuple[int, Feedback]]
    ledger: Ledger
    journal_seq: int
    event_seq: int = 0


class Engine:
    """All live state of one screening server and the operations on it."""

    def __init__(self, settings: Settings, policy: Policy,
                 clock_ms: Callable[[], int] | None = None, memory: MemoryPlan | None = None) -> None:
        """``memory`` gives the entity caps; by default they are planned from ``settings`` and
        the memory available now (raises ConfigError when configured caps do not fit)."""
        self.settings = settings
        self.policy = policy
        # every policy this engine has decided under, by version: a decision's reason bits mean
        # the rules of the policy it was made under (see swap_policy)
        self._policies: OrderedDict[str, Policy] = OrderedDict({policy.version: policy})
        # candidate policies decided beside the active one, never answered (see set_shadows)
        self.shadows: tuple[Policy, ...] = ()
        self._reads: np.ndarray | None = None
        self.on_shadow: ShadowSink | None = None
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.memory = memory or plan_memory(settings, available_memory())
        s = settings.state
        state = self._new_state(s.initial_accounts, s.initial_phones, s.initial_devices,
                                s.initial_pairs)
        graph = None
        if settings.graph.enabled:
            graph = self.new_graph(3 * max(state.capacity(kind) for kind in ENTITY_KINDS),
                                   settings.graph.initial_edges)
        # the interned ids, feature state, live graph, recent-decision rings and watch flags,
        # and the one screening step on them
        self.core = Screener(state=state, graph=graph, graph_params=settings.graph.params().array(),
                             graph_expiry_ms=settings.graph.expiry_ms,
                             recent=self.new_recent(state.capacity("accounts")))
        self.decisions = DecisionLog(s.dedup_capacity)
        # by (scope, call_id): call ids, like transaction ids, are the calling institution's
        self._calls: OrderedDict[tuple[str, str], CallState] = OrderedDict()
        self._watch: dict[tuple[int, str], WatchEntry] = {}
        # the action of each remembered decision, by seq modulo the log's capacity (what
        # ``_in_case`` reads for thousands of accounts at once)
        self._actions = _actions_of(self.decisions)
        self._drivers: dict[tuple[str, bool, int], tuple[int, ...]] = {}
        # entities forgotten to make room (by kind), and who hears of each eviction (the server
        # logs it); called under the engine's lock
        self.evicted = dict.fromkeys((*ENTITY_KINDS, "relationships"), 0)
        self.on_evict: Callable[[Eviction], None] | None = None
        self._prefiller: _Prefiller | None = None
        self.near_line = NearLine.build(policy, settings)
        self.ledger = self.new_ledger()
        # the latest feedback per account (who, when, what note), for QueryAccount
        self.feedback_notes: OrderedDict[str, tuple[int, Feedback]] = OrderedDict()
        # running estimate of the graph stage's time per transaction, for the budget check (see
        # _graph_cost), and when it was last measured
        self.graph_ns_per_txn = 50_000.0
        self._graph_measured_ns = time.perf_counter_ns()
        self._lock = _Turns()
        # The new transaction ids of the batches being screened in chunks, by scope, each to
        # the batch's "done" event: a request of that scope naming one waits for the batch to
        # finish (then it is a duplicate or a conflict, as if it came after the whole batch)
        self._pending: dict[str, dict[str, threading.Event]] = {}
        # Watchlist, feedback and registry durability: ``journal`` (when set) records each
        # watchlist change before it applies, ``feedback_journal`` and ``registry_journal``
        # (same journal, same numbering) each verdict and registry update; ``journal_seq`` is
        # the last journal entry applied. Updates are serialised by ``_watch_lock`` so the
        # journal's order is the order of application.
        self.journal: WatchJournal | None = None
        self.feedback_journal: FeedbackJournal | None = None
        self.registry_journal: RegistryJournal | None = None
        # keeps a policy's text where the journals are before it decides anything (a restart
        # re-applies journalled decisions under it); raises when it cannot: no swap then
        self.policy_keeper: Callable[[Policy], None] | None = None
        self.journal_seq = 0
        # Every accepted transaction and call goes to ``events`` (when set) under the lock, in
        # order, numbered ``event_seq``; a request is answered once its events are written
        self.events: EventLog | None = None
        self.event_seq = 0
        # reentrant: ``watchlist_paused`` holds it around re-applying journal entries
        self._watch_lock = threading.RLock()
        # False while the state store cannot keep this state (unreachable, or its claim being
        # taken back): decisions made meanwhile are marked degraded and counted
        self.store_ok = True
        self.unsaved_decisions = 0

    # the core's state, read here (the core owns it; ``install`` replaces the core whole)
    @property
    def state(self) -> FeatureState:
        return self.core.state

    @property
    def graph(self) -> LiveGraph | None:
        return self.core.graph

    @property
    def graph_params(self) -> np.ndarray:
        return self.core.graph_params

    @property
    def accounts(self) -> Interner:
        return self.core.accounts

    @property
    def phones(self) -> Interner:
        return self.core.phones

    @property
    def devices(self) -> Interner:
        return self.core.devices

    @property
    def _recent_rows(self) -> RowTable:
        rows = self.core.recent_rows
        assert rows is not None  # the engine's core always keeps them
        return rows

    @property
    def _recent(self) -> np.ndarray:
        return self.core.recent

    @property
    def _recent_pos(self) -> np.ndarray:
        return self.core.recent_pos

    # ------------------------------------------------------------------ memory
    def limits(self) -> dict[str, int]:
        return {kind: self.memory.cap(kind) for kind in ENTITY_KINDS}

    def _new_state(self, accounts: int, phones: int, devices: int, pairs: int) -> FeatureState:
        """Feature state with memory reserved up to the caps (growing to them never copies)."""
        caps = self.limits()
        return FeatureState.create(min(accounts, caps["accounts"]), min(phones, caps["phones"]),
                                   min(devices, caps["devices"]), pairs, limits=caps)

    def new_recent(self, rows: int) -> RowTable:
        """The ring of recent decisions per account (seqs, -1 empty) and its write position."""
        width = self.settings.state.recent_decisions_per_account
        return RowTable({"recent": np.full(width, -1, dtype=np.int64),
                         "recent_pos": np.zeros((), dtype=np.int64)}, rows,
                        self.memory.max_accounts)

    def new_graph(self, nodes: int, edges: int) -> LiveGraph:
        g = self.settings.graph
        return LiveGraph(nodes=nodes, edges=edges, max_edges=g.max_edges,
                         max_nodes=3 * max(self.limits().values()), reserve_edges=True)

    def prefill(self) -> int:
        """Write, ahead of use, the rows the next new entities and edges will take (their
        pages faulted in), so growing on the request path only extends views. Runs without
        the engine's lock (only rows past every view are written); returns bytes written."""
        with self._lock:
            state, graph, recent = self.state, self.graph, self._recent_rows
            used = {kind: len(interner) for kind, interner in
                    zip(ENTITY_KINDS, (self.accounts, self.phones, self.devices), strict=True)}
        ahead = {kind: n + max(n // 8, _PREFILL_MIN_ROWS) for kind, n in used.items()}
        done = state.prefill(ahead, self.memory.max_pairs)
        done += recent.prefill(ahead["accounts"]) * recent.row_nbytes
        if graph is not None:
            done += graph.prefill(3 * max(ahead.values()))
        return done

    def start_prefill(self, period_s: float = 0.05) -> None:
        """Keep rows written ahead of use from a background thread (see ``prefill``)."""
        if self._prefiller is None:
            self._prefiller = _Prefiller(self, period_s)
            self._prefiller.start()

    def stop_prefill(self) -> None:
        if self._prefiller is not None:
            self._prefiller.stopped.set()
            self._prefiller.join()
            self._prefiller = None

    # ------------------------------------------------------------------ policy
    def policy_for(self, version: str) -> Policy:
        """The policy a decision of ``version`` was made under (the active one if forgotten)."""
        return self._policies.get(version, self.policy)

    def swap_policy(self, new: Policy) -> Policy:
        """Make ``new`` the active policy for every later event; returns the previous one.

        Everything derived from the policy is built first (a failure changes nothing), then
        swapped under the engine's lock, between two screening calls: no decision mixes two
        policies. The feature state does not depend on the policy, so nothing is recomputed.
        The last MAX_POLICIES policies are kept to name the reasons of earlier decisions.
        """
        tz = self.policy.params.timezone_offset_hours
        if new.params.timezone_offset_hours != tz:
            raise ConfigError(f"timezone_offset_hours: {new.params.timezone_offset_hours} differs "
                              f"from the running policy's {tz}; the report ledger's days and the "
                              "day windows follow it, so it changes only with a restart")
        near_line = NearLine.build(new, self.settings)
        if self.policy_keeper is not None:
            self.policy_keeper(new)
        with self._lock:
            old = self.policy
            self.policy = new
            self.near_line = near_line
            self._reads = self._union_reads(new, self.shadows)
            self._policies[new.version] = new
            self._policies.move_to_end(new.version)
            while len(self._policies) > MAX_POLICIES:
                self._policies.popitem(last=False)
        return old

    def set_shadows(self, shadows: Sequence[Policy],
                    then: Callable[[], None] | None = None) -> None:
        """Decide every later transaction and call with ``shadows`` too, on the same features,
        and hand their decisions to ``on_shadow``; they are never answered and change no state. ``then``
        runs under the same lock (the sink learns of the new set between two decisions)."""
        with self._lock:
            self.shadows = tuple(shadows)
            self._reads = self._union_reads(self.policy, self.shadows)
            if then is not None:
                then()

    @staticmethod
    def _union_reads(active: Policy, shadows: Sequence[Policy]) -> np.ndarray | None:
        """The features any of the policies reads (the kernels compute only those)."""
        if not shadows:
            return None
        reads: np.ndarray = np.maximum.reduce([active.txn_table.reads,
                                               *(s.txn_table.reads for s in shadows)])
        return reads

    # ------------------------------------------------------------------ start-up
    def warm_up(self, progress: Callable[[str], None] | None = None, *,
                parallel: bool = True) -> float:
        """Load (or compile) every kernel this engine uses, on scratch states; returns seconds
        taken (``screening._warm``: the graph's kernels only when the graph is on).

        ``progress`` hears the name of each step as it starts: the first start on a machine
        compiles the kernels, in two processes when ``parallel``; later starts load them from
        numba's cache.
        """
        p = self.policy
        inputs = KernelInputs(p.params_array, p.txn_table, p.call_table,
                              self.graph_params if self.graph is not None else None)
        return warm_kernels(inputs, progress, parallel=parallel)

    # ------------------------------------------------------------------ transactions
    def screen(self, txns: Sequence[TxnInput] | TxnColumns, scope: str = DEFAULT_SCOPE, *,
               batch: bool = False) -> list[tuple[DecisionRecord, bool]]:
        """Decide each transaction in order, for the calling institution ``scope``.

        A transaction id this scope used before returns its first decision (duplicate) when the
        request repeats that payment; when its content differs the whole call is refused with
        Conflict naming the field (``transactions[i].`` in front when ``batch``) and nothing
        changes. The same id twice in ``txns`` is held to the same rule. Returns (record,
        duplicate) per input.

        More than BATCH_CHUNK new transactions are screened in chunks, in order, and callers
        waiting for the lock go between two (``_screen_chunked``).
        """
        t0 = time.perf_counter_ns()
        if isinstance(txns, TxnColumns):
            cols, prints = txns, fingerprints(txns)
        else:
            cols, prints = TxnColumns.from_inputs(txns), [fingerprint(t) for t in txns]
        while True:
            with self._lock:
                busy = self._pending_in(scope, cols.transaction_id)
                if busy is None:
                    out = self._screen(cols, scope, batch, prints, t0, None)
                    written = self.event_seq
                    break
            busy.wait()  # a batch in chunks holds one of these ids: after it, as if serial
        if self.events is not None and not self.events.wait(written):
            # a duplicate, too, waits for its original; not kept: say so in the answer (the
            # remembered record stays as decided, as the journal entry re-applies it)
            out = [(rec if rec.degraded else dataclasses.replace(rec, degraded=True), dup)
                   for rec, dup in out]
        return out

    def apply_event(self, seq: int, event: JournalEvent) -> bool:
        """Re-apply event-journal entry ``seq`` on restore, through the same step as live
        screening (its recorded graph gate, latency and policy); False when the state already
        includes it. Raises ConfigError when it was decided under a policy this engine does not
        have (start with that policy, or move the journal away)."""
        with self._lock:
            if seq <= self.event_seq:
                return False
            if event.kind == "txn":
                cols = (event.txns if isinstance(event.txns, TxnColumns)
                        else TxnColumns.from_inputs(event.txns))
                self._screen(cols, event.scope, True, fingerprints(cols), 0, event)
            else:
                assert event.call is not None
                self._report_call(event.call, event.scope, 0, event)
            self.event_seq = seq
            return True

    def knows_policy(self, version: str) -> bool:
        return version in self._policies

    def know_policy(self, policy: Policy) -> None:
        """Let journal entries decided under ``policy`` be re-applied (restore), without making
        it the active one."""
        with self._lock:
            self._policies.setdefault(policy.version, policy)

    def _replay_policy(self, event: JournalEvent) -> tuple[Policy, NearLine]:
        if event.policy_version == self.policy.version:
            return self.policy, self.near_line
        policy = self._policies.get(event.policy_version)
        if policy is None:
            raise ConfigError(f"the event journal holds decisions made under policy "
                              f"{event.policy_version!r} and this server runs "
                              f"{self.policy.version!r}, and the store does not hold its text: "
                              "start with that policy to re-apply them (then swap), or move the "
                              "journal away to lose them")
        return policy, NearLine.build(policy, self.settings)

    def _journal_event(self, event: JournalEvent) -> None:
        if self.events is not None:
            self.event_seq += 1
            self.events.put(self.event_seq, event)

    def _known(self, txns: TxnColumns, scope: str, batch: bool, prints: list[bytes]
               ) -> tuple[list[tuple[DecisionRecord, bool] | None], list[int], dict[str, int]]:
        """Which of ``txns`` this scope sent before (their first decisions, as duplicates) and
        which to screen: (answers so far, rows to screen, first row of each id). Raises
        Conflict for an id used for another payment. One dict look-up per transaction when
        the ids are new and distinct (the bulk case)."""
        n = len(txns)
        tids = txns.transaction_id
        ids = self.decisions.ids_of(scope)
        if (ids is None or not any(map(ids.__contains__, tids))) and len(set(tids)) == n:
            return [None] * n, list(range(n)), {}
        out: list[tuple[DecisionRecord, bool] | None] = [None] * n
        todo: list[int] = []
        first: dict[str, int] = {}
        for i, tid in enumerate(tids):
            rec = None if ids is None else ids.get(tid)
            if rec is not None:
                if not same_payment(rec, txns.row(i), prints[i]):
                    raise self._conflict(i, batch, differing_field(rec, txns.row(i), prints[i]))
                out[i] = (rec, True)
                continue
            j = first.get(tid)
            if j is None:
                first[tid] = i
                todo.append(i)
            elif not same_fingerprint(prints[j], prints[i]):
                raise self._conflict(i, batch, differing_input(txns.row(j), txns.row(i)),
                                     f"transactions[{j}]")
        return out, todo, first

    def _pending_in(self, scope: str, tids: Sequence[str]) -> threading.Event | None:
        """The "done" event of a batch in chunks of ``scope`` holding one of ``tids``, if any."""
        pending = self._pending.get(scope)
        if not pending:
            return None
        return next((pending[t] for t in tids if t in pending), None)

    def _screen(self, txns: TxnColumns, scope: str, batch: bool, prints: list[bytes],
                t0: int, replay: JournalEvent | None) -> list[tuple[DecisionRecord, bool]]:
        """``screen`` under the lock; ``replay``: a journalled batch re-applied.

        Which transactions are new, and every refusal (Conflict), is decided for the whole
        batch first; then the new ones are screened in one piece, or in chunks (``BATCH_CHUNK``)
        when there are many and all of them fit within the caps without evicting (near a cap a
        batch stays all or nothing).
        """
        locked = time.perf_counter_ns()  # the graph's budget starts here, not in the queue
        out, todo, first = self._known(txns, scope, batch, prints)
        if todo:
            batch_in = txns if len(todo) == len(txns) else txns.take(todo)
            new_prints = [prints[i] for i in todo] if first else prints
            if replay is None:
                step = _Step(self.policy, self.near_line, self._reads, self.shadows,
                             _GraphBudget(self, locked, len(todo)))
            else:
                policy, near_line = self._replay_policy(replay)
                step = _Step(policy, near_line, self._reads, (), _Replayed(replay.graph_skipped))
            if replay is None and len(todo) > BATCH_CHUNK and self._cannot_overflow(batch_in):
                records = self._screen_chunked(batch_in, new_prints, scope, step, t0)
            else:
                records = self._screen_rows(batch_in, new_prints, scope, step, t0, replay)
            for i, rec in zip(todo, records, strict=True):
                out[i] = (rec, False)
        if first:
            for i, tid in enumerate(txns.transaction_id):
                if out[i] is None:
                    first_rec = out[first[tid]]
                    assert first_rec is not None
                    out[i] = (first_rec[0], True)
        return out  # type: ignore[return-value]

    def _screen_chunked(self, txns: TxnColumns, prints: list[bytes], scope: str, step: _Step,
                        t0: int) -> list[DecisionRecord]:
        """Screen new transactions ``txns`` (distinct ids, none remembered) BATCH_CHUNK at a
        time, in order, letting waiting callers take the lock between two chunks.

        Each chunk is one journal entry, written at its place among the other requests' (a
        restart re-applies them in the order they were decided, so replay equals live); the
        batch stays one audit item and one answer. Its ids are held pending meanwhile, so no
        request of the same scope can take one of them between two chunks (``screen`` makes it
        wait): a batch never turns into a Conflict half-way. Time away from the lock is added
        to the graph's budget (it was not the graph's). The batch fitted every cap when it
        started; a chunk still refused (CapacityExceeded: requests between two chunks filled a
        cap with entities that may not be evicted), or one that raises for a bug, leaves the
        chunks before it applied: a retry answers those as duplicates.
        """
        done = threading.Event()
        mine = dict.fromkeys(txns.transaction_id, done)
        pending = self._pending.setdefault(scope, {})
        pending.update(mine)
        n = len(txns)
        records: list[DecisionRecord] = []
        try:
            for start in range(0, n, BATCH_CHUNK):
                if start:
                    away = self._lock.yield_turn()
                    if isinstance(step.gate, _GraphBudget):
                        step.gate.deadline += away
                stop = min(n, start + BATCH_CHUNK)
                records += self._screen_rows(txns.slice(start, stop), prints[start:stop], scope,
                                             step, t0, None)
        finally:
            pending = self._pending.get(scope, {})
            for tid in mine:
                pending.pop(tid, None)
            if not pending:
                self._pending.pop(scope, None)
            done.set()
        return records

    def _screen_rows(self, batch_in: TxnColumns, prints: list[bytes], scope: str, step: _Step,
                     t0: int, replay: JournalEvent | None) -> list[DecisionRecord]:
        """Screen new transactions ``batch_in`` in one piece under the lock: room at the caps,
        the core's step, the shadows, one journal entry, the records, the ledger."""
        self._reserve(batch_in)
        core = self.core
        policy = step.policy
        n = len(batch_in)
        ev = core.encode_transactions(batch_in, policy, step.near_line)
        # a relationship, and a remembered stop or warning (a warning: its payee's too), per
        # transaction at most
        self._bound_pairs(3 * n)
        seq0 = self.decisions.next_seq
        # only the features a rule reads: a decision shows no others
        done = core.screen(ev, np.arange(seq0, seq0 + n, dtype=np.int64),
                           policy, gate=step.gate, remember=True, all_features=False,
                           reads=step.reads)
        feat, dec, degraded = done.features, done.decisions, done.degraded
        if step.shadows and self.on_shadow is not None:
            self.on_shadow.transactions(batch_in.rows(), dec, policy.version,
                                        [decide_rows(s.txn_table, feat) for s in step.shadows],
                                        step.shadows)
        if replay is None:
            latency_us = (time.perf_counter_ns() - t0) // 1000
            unsaved = not self.store_ok
            if self.events is not None:
                self._journal_event(JournalEvent(
                    kind="txn", scope=scope, policy_version=policy.version,
                    watch_seq=self.journal_seq, latency_us=latency_us, unsaved=unsaved,
                    graph_skipped=tuple(degraded.tolist()), txns=batch_in))
        else:
            latency_us, unsaved = replay.latency_us, replay.unsaved
        if unsaved:
            self.unsaved_decisions += n
        records = self._records(batch_in, prints, feat, dec, latency_us, degraded, unsaved,
                                scope, policy)
        add = self.decisions.add
        for rec in records:
            add(rec)
        self._actions[np.arange(seq0, seq0 + n) % self._actions.size] = dec[:, 0]
        self.ledger.append(ev, seq0, batch_in)
        return records

    @staticmethod
    def _conflict(i: int, batch: bool, differs: str, earlier: str = "") -> Conflict:
        where = f" in this batch ({earlier}; {differs} differs)" if earlier else f" ({differs} differs)"
        return Conflict(f"transactions[{i}].transaction_id" if batch else "transaction_id",
                        f"already used for a different payment{where}")

    def _reserve(self, batch: TxnColumns) -> None:
        """Make room, before anything is interned, for the new entities of ``batch``: at a cap,
        the coldest entities of that kind are evicted (``_room``)."""
        if self._cannot_overflow(batch):
            return
        self._room(ENTITY_ACCOUNT, set(batch.payer_account) | set(batch.payee_account))
        self._room(ENTITY_PHONE, (set(batch.payer_phone) | set(batch.payee_phone)) - {""})
        self._room(ENTITY_DEVICE, set(batch.device_id) - {""})

    def _cannot_overflow(self, batch: TxnColumns) -> bool:
        """Whether ``batch`` fits within every entity cap whatever of it is new."""
        m = self.memory
        n = len(batch)
        return (self.accounts.live + 2 * n <= m.max_accounts
                and self.phones.live + 2 * n <= m.max_phones
                and self.devices.live + n <= m.max_devices)

    def _room(self, kind: int, keys: set[str]) -> None:
        """Room for the entities of ``keys`` (of ``kind``) not known yet, within the cap.

        When they would pass it, the cap's ``evict_fraction`` (and at least what is missing)
        of the least recently seen entities of the kind are evicted; ``keys`` themselves,
        watchlisted entities and accounts in an open case are never chosen. Raises
        CapacityExceeded only when that cannot make the room (one request with more new
        entities than the cap, or every other entity protected).
        """
        interner = self._interners()[kind]
        name = ENTITY_KINDS[kind - 1]
        cap = self.memory.cap(name)
        new = interner.missing(keys)
        if interner.live + new <= cap:
            return
        if new <= cap:
            want = interner.live + new - cap + max(1, int(cap * self.settings.state.evict_fraction))
            keep = np.array([i for i in (interner.get(key) for key in keys) if i is not None],
                            dtype=np.int64)
            self._evict(kind, min(want, interner.live), keep)
        if interner.live + new > cap:
            raise CapacityExceeded(f"state is full: {new} new {name} and at most {cap} "
                                   f"(state.max_{name}); the others may not be evicted")

    def _evict(self, kind: int, n: int, keep: np.ndarray) -> int:
        """Forget the ``n`` least recently seen entities of ``kind`` (ties: lowest id first)
        that are not in ``keep``, not watchlisted and (accounts) not in an open case, so their
        ids can be handed to new entities; returns how many went (fewer when too few may)."""
        t0 = time.perf_counter()
        interner = self._interners()[kind]
        name = ENTITY_KINDS[kind - 1]
        rows = len(interner)
        last_seen, watch = self.state.activity(name)
        last = last_seen[:rows].copy()
        blocked = watch[:rows] != 0
        blocked[interner.free_ids()] = True
        blocked[keep] = True
        chosen = np.zeros(0, dtype=np.int64)
        while chosen.size < n:
            cand = np.flatnonzero(~blocked)
            if cand.size == 0:
                break
            take = _coldest(cand, last[cand], n - chosen.size)
            blocked[take] = True
            if kind == ENTITY_ACCOUNT:
                take = take[~self._in_case(take)]
            chosen = np.concatenate([chosen, take])
        if chosen.size == 0:
            return 0
        chosen.sort()
        oldest, newest = int(last[chosen].min()), int(last[chosen].max())
        pairs, edges = self.core.forget(kind, chosen)
        self.evicted[name] += int(chosen.size)
        if self.on_evict is not None:
            self.on_evict(Eviction(kind=name, count=int(chosen.size), live=interner.live,
                                   cap=self.memory.cap(name), oldest_seen_ms=oldest,
                                   newest_seen_ms=newest, relationships=pairs, edges=edges,
                                   seconds=time.perf_counter() - t0))
        return int(chosen.size)

    def _bound_pairs(self, new_pairs: int) -> None:
        """Keep relationships within ``max_pairs``: past it, the least recently seen go (their
        next payment is a first-time one again), ``evict_fraction`` of the cap at a time."""
        cap = self.memory.max_pairs
        count = self.state.pair_count
        if count + new_pairs <= cap:
            return
        t0 = time.perf_counter()
        n, oldest, newest = self.state.drop_oldest_pairs(
            count + new_pairs - cap + max(1, int(cap * self.settings.state.evict_fraction)))
        self.evicted["relationships"] += n
        if self.on_evict is not None and n:
            self.on_evict(Eviction(kind="relationships", count=n, live=self.state.pair_count,
                                   cap=cap, oldest_seen_ms=oldest, newest_seen_ms=newest,
                                   relationships=n, edges=0, seconds=time.perf_counter() - t0))

    def _in_case(self, ids: np.ndarray) -> np.ndarray:
        """Which accounts ``ids`` are in an open case: a decision of HOLD or stronger among the
        recent decisions still remembered (the idempotency horizon)."""
        seqs = self._recent[ids]
        remembered = seqs >= max(self.decisions.next_seq - self._actions.size, 0)
        strong = remembered & (self._actions[seqs % self._actions.size] >= _CASE_ACTION)
        return np.asarray(strong.any(axis=1))

    def _graph_cost(self, now_ns: int) -> float:
        """The graph stage's estimated ns per transaction.

        The estimate is measured only when the detectors run, and they run only when it fits
        the budget; so while it is not measured it halves every _GRAPH_HALF_LIFE_NS, and a
        high estimate (one slow spell) cannot keep the detectors off once the load is gone.
        """
        age = max(0, now_ns - self._graph_measured_ns)
        return float(self.graph_ns_per_txn * 0.5 ** (age / _GRAPH_HALF_LIFE_NS))

    def _ensure(self, new_pairs: int) -> None:
        self._bound_pairs(new_pairs)
        self.core.ensure(new_pairs)

    def _drivers_of(self, policy: Policy, bits: int, calls: bool) -> tuple[int, ...]:
        """The features the rules ``bits`` of ``policy`` read (what a decision shows with it)."""
        key = (policy.version, calls, bits)  # a reloaded policy numbers its rules anew
        found = self._drivers.get(key)
        if found is None:
            idx: dict[int, None] = {}
            for rule in policy.fired(bits, calls):
                idx.update(dict.fromkeys(rule.feature_indices))
            found = tuple(idx)
            if len(self._drivers) < 4096:
                self._drivers[key] = found
        return found

    def _records(self, txns: TxnColumns, prints: list[bytes], feat: np.ndarray,
                 dec: np.ndarray, latency_us: int, degraded: np.ndarray, unsaved: bool,
                 scope: str, policy: Policy) -> list[DecisionRecord]:
        """The decision records of ``txns`` (decision rows ``dec``), numbered from next_seq."""
        n = len(txns)
        seq0 = self.decisions.next_seq
        self.decisions.next_seq += n
        rows = dec.tolist()  # one numpy call, whatever the batch size
        # the features the fired rules read: none for most decisions (nothing fired)
        features: list[tuple[tuple[str, float], ...]] = [()] * n
        masks = [reason_mask(row) for row in rows]
        for j, mask in enumerate(masks):
            if mask:
                drivers = self._drivers_of(policy, mask, False)
                if drivers:
                    features[j] = tuple(zip([TXN_FEATURES[k] for k in drivers],
                                            feat[j, list(drivers)].tolist(), strict=True))
        version = policy.version
        degraded_l = [True] * n if unsaved else degraded.tolist()
        return [DecisionRecord(tid, seq0 + j, ms, row[_ACTION], mask, row[_SCORE],
                               row[_FLAGS], f, version, latency_us, deg, payer, payee, scope, fp,
                               row[_MARKS])
                for j, (tid, ms, row, mask, f, deg, payer, payee, fp)
                in enumerate(zip(txns.transaction_id, txns.event_time_ms, rows, masks, features,
                                 degraded_l, txns.payer_account, txns.payee_account, prints,
                                 strict=True))]

    # ------------------------------------------------------------------ calls
    def report_call(self, call: CallInput, scope: str = DEFAULT_SCOPE) -> tuple[CallRecord, bool]:
        """Count and decide a call report of the calling operator ``scope``; the same (call_id,
        ringing/ended) again is a duplicate, another caller or callee under that id a refusal."""
        t0 = time.perf_counter_ns()
        with self._lock:
            out = self._report_call(call, scope, t0, None)
            written = self.event_seq
        if self.events is not None:
            self.events.wait(written)  # a call decision has no degraded flag
        return out

    def _report_call(self, call: CallInput, scope: str, t0: int,
                     replay: JournalEvent | None) -> tuple[CallRecord, bool]:
        """``report_call`` under the lock; ``replay``: a journalled call re-applied."""
        ended = call.ended
        key = (scope, call.call_id)
        prior = self._calls.get(key)
        if prior is not None:
            if prior.caller != call.caller:
                raise InvalidRequest("caller_number",
                                     "differs from the earlier report of this call_id")
            if prior.callee != call.callee:
                raise InvalidRequest("callee_number",
                                     "differs from the earlier report of this call_id")
            seen = prior.ended if ended else prior.ringing
            if seen is not None:
                # what the report says of the call (its start time may be re-stamped on a retry)
                earlier = prior.ended_input if ended else prior.ringing_input
                differs = [] if earlier is None else [
                    f for f, attr in _CALL_FIELDS.items()
                    if getattr(earlier, attr) != getattr(call, attr)]
                if differs:
                    raise Conflict("call_id", f"already reported for a different call "
                                              f"({differs[0]} differs)")
                return seen, True
        policy = self.policy if replay is None else self._replay_policy(replay)[0]
        self._room(ENTITY_PHONE, {call.caller, call.callee})
        ev = self.core.encode_call(call, new=prior is None)
        self._bound_pairs(1)
        # a call's edge is kept for the transactions' detectors; it has no graph features
        done = self.core.screen(ev, np.full(1, -1, dtype=np.int64), policy,
                                new_pairs=1, detect=False)
        feat, dec = done.features, done.decisions
        bits = reason_mask(dec[0].tolist())
        if replay is None and self.shadows and self.on_shadow is not None:
            # a call's features hold every call feature (no ``reads`` on this path)
            self.on_shadow.call(call, dec, policy.version,
                                [decide_rows(s.call_table, feat) for s in self.shadows],
                                self.shadows)
        if replay is None:
            latency_us = (time.perf_counter_ns() - t0) // 1000
            self._journal_event(JournalEvent(
                kind="call", scope=scope, policy_version=policy.version,
                watch_seq=self.journal_seq, latency_us=latency_us, unsaved=not self.store_ok,
                call=call))
        else:
            latency_us = replay.latency_us
        rec = CallRecord(
            call_id=call.call_id,
            action=int(dec[0, 0]),
            reason_bits=bits,
            score=int(dec[0, 2]),
            features=tuple((CALL_FEATURES[i], float(feat[0, i]))
                           for i in self._drivers_of(policy, bits, True)),
            policy_version=policy.version,
            latency_us=latency_us,
        )
        if prior is None:
            prior = CallState(call.caller, call.callee)
            self._calls[key] = prior
            if len(self._calls) > self.settings.state.dedup_capacity:
                self._calls.popitem(last=False)
        if ended:
            prior.ended, prior.ended_input = rec, call
        else:
            prior.ringing, prior.ringing_input = rec, call
        return rec, False

    # ------------------------------------------------------------------ watchlists
    def update_watchlist(self, upserts: Sequence[WatchEntry],
                         removes: Sequence[tuple[int, str]]) -> WatchlistChange:
        """Apply a whole watchlist update atomically (validated by the caller).

        With a ``journal`` attached the change is written there first, outside the state lock
        (a slow store never stalls screening); when that raises, nothing has changed. The caps
        are checked before the journal write; screening running in between can overshoot them
        by at most this update's size.
        """
        with self._watch_lock:
            if self.journal is None:
                with self._lock:
                    self._check_watch_capacity(upserts)
                    return self._apply_watch(upserts, removes)
            with self._lock:
                self._check_watch_capacity(upserts)
            seq = self.journal(upserts, removes)
            with self._lock:
                change = self._apply_watch(upserts, removes)
                self.journal_seq = seq
            return change

    @contextlib.contextmanager
    def watchlist_paused(self) -> Iterator[None]:
        """Hold watchlist updates (they wait) while the journal is re-read, e.g. after the
        store's claim was taken back; ``apply_journal`` may be called inside."""
        with self._watch_lock:
            yield

    def apply_journal(self, seq: int, upserts: Sequence[WatchEntry],
                      removes: Sequence[tuple[int, str]]) -> bool:
        """Re-apply journal entry ``seq`` on restore, or on a live server catching up after it
        took its store back; False when the state already includes it.

        At a cap it makes room first, as ``update_watchlist`` did before writing the entry (so
        a restored server evicts what the one that made the update evicted, and a live one
        stays within its caps); when no room can be made the entry is applied anyway: it is
        durable already, and a watchlist change is never dropped.
        """
        with self._watch_lock, self._lock:
            if seq <= self.journal_seq:
                return False
            with contextlib.suppress(CapacityExceeded):
                self._check_watch_capacity(upserts)
            self._apply_watch(upserts, removes)
            self.journal_seq = seq
            return True

    def _interners(self) -> dict[int, Interner]:
        return {ENTITY_ACCOUNT: self.accounts, ENTITY_PHONE: self.phones,
                ENTITY_DEVICE: self.devices}

    def _check_watch_capacity(self, upserts: Sequence[WatchEntry]) -> None:
        for kind in self._interners():
            self._room(kind, {e.value for e in upserts if e.kind == kind})

    def _apply_watch(self, upserts: Sequence[WatchEntry],
                     removes: Sequence[tuple[int, str]]) -> WatchlistChange:
        interners = self._interners()
        added = replaced = removed = not_found = 0
        for e in upserts:
            key = (e.kind, e.value)
            if key in self._watch:
                replaced += 1
            else:
                added += 1
            self._watch[key] = e
            idx = interners[e.kind].intern(e.value)
            self._ensure(new_pairs=0)
            self.core.set_watch(e.kind, idx, e.expires_ms)
        for kind, value in removes:
            if self._watch.pop((kind, value), None) is None:
                not_found += 1
                continue
            removed += 1
            found = interners[kind].get(value)
            if found is not None:
                self.core.set_watch(kind, found, 0)
        return WatchlistChange(added, replaced, removed, not_found)

    def watch_entries(self, kind: int, value: str, now_ms: int) -> list[WatchEntry]:
        e = self._watch.get((kind, value))
        return [e] if e is not None and e.expires_ms > now_ms else []

    # ------------------------------------------------------------------ fast query
    def query_account(self, account_id: str, limit: int, now_ms: int) -> AccountView:
        with self._lock:
            watch = tuple(self.watch_entries(ENTITY_ACCOUNT, account_id, now_ms))
            idx = self.accounts.get(account_id)
            first_ms = last_ms = NO_TIME
            if idx is not None:
                first_ms, last_ms = self.state.account_seen(idx)
            if idx is None or last_ms == NO_TIME:
                return AccountView(account_id, False, (), 100 if watch else 0, (), watch,
                                   None, None)
            snap = self.state.snapshot(idx, last_ms, self.policy.params_array)
            recent = self._recent_of(idx)
            marks = self._case_marks(idx, account_id, recent, last_ms)
            recent = recent[:limit]
        score = max([r.score for r in recent], default=0)
        if watch:
            score = 100
        return AccountView(
            account_id=account_id,
            known=True,
            features=tuple(zip(ACCOUNT_FEATURES, (float(v) for v in snap), strict=True)),
            risk_score=score,
            recent=tuple(recent),
            watch=watch,
            first_seen_ms=first_ms,
            last_seen_ms=last_ms,
            case_marks=marks,
        )

    def _recent_of(self, idx: int) -> list[DecisionRecord]:
        """The account's remembered decisions, newest first."""
        width = self._recent.shape[1]
        pos = int(self._recent_pos[idx])
        out: list[DecisionRecord] = []
        for k in range(pos - 1, max(pos - width, 0) - 1, -1):
            rec = self.decisions.by_seq(int(self._recent[idx, k % width]))
            if rec is not None:
                out.append(rec)
        return out

    def _case_marks(self, idx: int, account_id: str, recent: Sequence[DecisionRecord],
                    at_ms: int) -> tuple[CaseMark, ...]:
        """The case marks in force at ``at_ms`` (the account's latest event), each with the
        newest remembered decision that made it, or the feedback behind it."""
        mem = self.state.account_memory(idx)
        note = self.feedback_notes.get(account_id)
        fb_ms, fb = note if note is not None else (0, None)
        fb_src, fb_note = (fb.source, fb.note) if fb is not None else ("", "")
        if mem[Memory.CLEARED_UNTIL] > at_ms:
            return (CaseMark(ROLE_CLEARED, fb_ms, mem[Memory.CLEARED_UNTIL], source=fb_src,
                             note=fb_note),)
        out: list[CaseMark] = []
        if mem[Memory.CONFIRMED_UNTIL] > at_ms:
            out.append(CaseMark(ROLE_CONFIRMED_FRAUD, fb_ms, mem[Memory.CONFIRMED_UNTIL],
                                source=fb_src, note=fb_note, mule_level=1))
        roles = (
            (ROLE_SUSPECTED_VICTIM, Memory.VICTIM_UNTIL, Mark.PAYER_VICTIM, 0),
            (ROLE_SUSPECTED_MULE, Memory.MULE_UNTIL, Mark.PAYER_MULE,
             Mark.PAYEE_MULE | Mark.PAYEE_MULE_HOP),
            (ROLE_SUSPECTED_COLLECTOR, Memory.COLLECTOR_UNTIL, Mark.PAYER_COLLECTOR,
             Mark.PAYEE_COLLECTOR),
        )
        for role, column, as_payer, as_payee in roles:
            until = mem[column]
            if until <= at_ms:
                continue
            why = next((r for r in recent
                        if (r.payer == account_id and r.marks & as_payer)
                        or (r.payee == account_id and r.marks & as_payee)), None)
            out.append(CaseMark(
                role, why.event_time_ms if why is not None else 0, until,
                transaction_id=why.transaction_id if why is not None else "",
                reason_codes=(tuple(r.code for r in
                                    self.policy_for(why.policy_version).fired(why.reason_bits))
                              if why is not None else ()),
                mule_level=mem[Memory.MULE_LEVEL] if role == ROLE_SUSPECTED_MULE else 0))
        return tuple(out)

    # ------------------------------------------------------------------ feedback and registry
    def feedback(self, fb: Feedback, now_ms: int) -> tuple[int, bool]:
        """Apply feedback (see ``_apply_feedback``), written to the journal first when one is
        attached: when that raises (the store is down) nothing has changed."""
        with self._watch_lock:
            with self._lock:
                self._feedback_subject(fb)  # refuse what would not apply before journaling it
            seq = self.feedback_journal(now_ms, fb) if self.feedback_journal is not None else None
            with self._lock:
                out = self._apply_feedback(fb, now_ms)
                if seq is not None:
                    self.journal_seq = seq
            return out

    def apply_feedback_journal(self, seq: int, at_ms: int, fb: Feedback) -> bool:
        """Re-apply journal entry ``seq`` (feedback) on restore; False when already included
        (or when its transaction is no longer remembered)."""
        with self._watch_lock, self._lock:
            if seq <= self.journal_seq:
                return False
            self.journal_seq = seq
            try:
                self._apply_feedback(fb, at_ms)
            except NotFound:
                return False
            return True

    def _feedback_subject(self, fb: Feedback) -> tuple[int, str, int]:
        """(account id judged or -1 when new, its name, the payer of a transaction or -1)."""
        if fb.transaction_id:
            rec = self.decisions.get(fb.scope, fb.transaction_id)
            if rec is None:  # the police judge any institution's payment
                found_all = self.decisions.find(fb.transaction_id)
                if len(found_all) > 1:
                    raise InvalidRequest("transaction_id", "used by several institutions; give "
                                         "the feedback on the account (account_id)")
                rec = found_all[0] if found_all else None
            found = self.accounts.get(rec.payee) if rec is not None else None
            if rec is None or found is None:
                raise NotFound("transaction_id: no remembered transaction with this id")
            payer = self.accounts.get(rec.payer)
            return found, rec.payee, -1 if payer is None else payer
        known = self.accounts.get(fb.account_id)
        if known is None:
            self._room(ENTITY_ACCOUNT, {fb.account_id})
        return -1 if known is None else known, fb.account_id, -1

    def _apply_feedback(self, fb: Feedback, now_ms: int) -> tuple[int, bool]:
        """Apply a bank's or the police's verdict; returns (accounts changed, payee released).

        Raises NotFound for a transaction no longer remembered, CapacityExceeded for an account
        that does not fit. On an account: CONFIRMED_FRAUD makes it a fraud account until the
        expiry; FALSE_ALARM removes its marks and makes none until the expiry; RELEASED removes
        its marks. On a transaction: its payee is the account judged, and RELEASED and
        FALSE_ALARM also lift its payer's protection and forget the stop between them.
        """
        subject, name, payer = self._feedback_subject(fb)
        if subject < 0:
            subject = self.accounts.intern(name)
            self._ensure(new_pairs=0)
        st = self.state
        cleared = (Memory.VICTIM_UNTIL, Memory.MULE_UNTIL, Memory.COLLECTOR_UNTIL,
                   Memory.CONFIRMED_UNTIL)
        if fb.verdict == VERDICT_CONFIRMED_FRAUD:
            st.set_account_memory(subject, Memory.CLEARED_UNTIL, 0)
            st.set_account_memory(subject, Memory.CONFIRMED_UNTIL,
                                  fb.expires_ms or now_ms + CONFIRMED_DEFAULT_MS)
        else:
            for column in cleared:
                st.set_account_memory(subject, column, 0)
            if fb.verdict == VERDICT_FALSE_ALARM:
                st.set_account_memory(subject, Memory.CLEARED_UNTIL,
                                      fb.expires_ms or now_ms + CLEARED_DEFAULT_MS)
        changed, released = 1, False
        if payer >= 0 and fb.verdict != VERDICT_CONFIRMED_FRAUD:
            st.set_account_memory(payer, Memory.VICTIM_UNTIL, 0)
            released = st.release_pair(payer, subject)
            changed = 2
        self.feedback_notes[name] = (now_ms, fb)
        self.feedback_notes.move_to_end(name)
        while len(self.feedback_notes) > _FEEDBACK_NOTES:
            self.feedback_notes.popitem(last=False)
        return changed, released

    def upsert_accounts(self, profiles: Sequence[AccountProfile], *, writer: str | None = None) -> int:
        """Record what the account registry says, each entry owned by its profile's institution
        (all or nothing: ownership and capacity are checked first).

        ``writer``: the institution whose entries the caller may overwrite (None: any, an
        admin); an entry another institution owns raises PermissionDenied naming the account.
        An entry no institution owns yet (new, or from a build before owners) is anyone's.

        With a ``registry_journal`` attached the update is written there after the checks and
        before it applies, outside the state lock, as a watchlist change is (the caps can be
        overshot the same way); when that raises (the store is down) nothing has changed.
        """
        with self._watch_lock:
            if self.registry_journal is None:
                with self._lock:
                    self._check_registry(profiles, writer)
                    self._apply_registry(profiles)
                return len(profiles)
            with self._lock:
                self._check_registry(profiles, writer)
            seq = self.registry_journal(profiles)
            with self._lock:
                self._apply_registry(profiles)
                self.journal_seq = seq
        return len(profiles)

    def apply_registry_journal(self, seq: int, profiles: Sequence[AccountProfile]) -> bool:
        """Re-apply journal entry ``seq`` (a registry update) on restore, or on a live server
        catching up; False when the state already includes it. Ownership is not checked again
        (the entry was accepted); at a cap room is made first, and when none can be the entry
        is applied anyway (as ``apply_journal``)."""
        with self._watch_lock, self._lock:
            if seq <= self.journal_seq:
                return False
            with contextlib.suppress(CapacityExceeded):
                self._registry_room(profiles)
            self._apply_registry(profiles)
            self.journal_seq = seq
            return True

    def _check_registry(self, profiles: Sequence[AccountProfile], writer: str | None) -> None:
        """Refuse (PermissionDenied) an entry ``writer`` may not overwrite; make room at the caps
        (CapacityExceeded when none can be made)."""
        if writer is not None:
            owners = self.core.owners
            for i, p in enumerate(profiles):
                owner = owners.get(p.account_id)
                if owner is not None and owner != writer:
                    raise PermissionDenied(f"accounts[{i}].account_id: its registry entry "
                                           "belongs to another institution")
        self._registry_room(profiles)

    def _registry_room(self, profiles: Sequence[AccountProfile]) -> None:
        self._room(ENTITY_ACCOUNT, {p.account_id for p in profiles})
        self._room(ENTITY_PHONE, {p.phone for p in profiles if p.phone})

    def _apply_registry(self, profiles: Sequence[AccountProfile]) -> None:
        owners = self.core.owners
        for p in profiles:
            idx = self.accounts.intern(p.account_id)
            phone = self.phones.intern(p.phone) if p.phone else -1
            self._ensure(new_pairs=0)
            bits = Memory.PROFILE_KNOWN
            if p.merchant_category:
                bits |= Memory.PROFILE_MERCHANT
            if p.payroll:
                bits |= Memory.PROFILE_PAYROLL
            if p.party_type == _ORGANISATION:
                bits |= Memory.PROFILE_ORGANISATION
            self.state.set_account_profile(idx, opened_ms=p.opened_ms,
                                           last_active_ms=p.last_active_ms, profile=bits,
                                           phone=phone)
            if p.institution:
                owners[p.account_id] = p.institution
            else:
                owners.pop(p.account_id, None)

    # ------------------------------------------------------------------ case graphs
    def case_input(self, centre: str, value: str, *, hops: int, lo_ms: int, hi_ms: int,
                   max_nodes: int, now_ms: int) -> CaseInput:
        """The live graph around an account, phone number or transaction, with raw names.

        The engine's lock is held only for the bounded read: the neighbourhood search (at most
        ``export_max_work`` list entries), the copy of the edges among it (at most
        ``export_max_edges``) and the names and watchlist hits of its nodes (at most
        ``max_nodes``). The decisions on those edges are looked up after it (``by_seq`` needs no
        lock); building and rendering the case happen in the caller, outside it too.

        Raises NotFound (naming the request field) for a centre the graph has never seen.
        """
        g = self.graph
        if g is None:
            raise NotFound(f"{centre}: the transaction graph is disabled ([graph] enabled = false)")
        gs = self.settings.graph
        with self._lock:
            victims: tuple[int, ...] = ()
            if centre == CENTRE_TRANSACTION:
                # ids are per institution and police name none: every payment with this id
                found = [(self.accounts.get(r.payer), self.accounts.get(r.payee))
                         for r in self.decisions.find(value)]
                pairs = [(a, b) for a, b in found if a is not None and b is not None]
                if not pairs:
                    raise NotFound(f"{centre}: no remembered transaction with this id")
                suspects = tuple(dict.fromkeys(node_id(0, b) for _, b in pairs))
                victims = tuple(dict.fromkeys(node_id(0, a) for a, _ in pairs
                                              if node_id(0, a) not in suspects))
            else:
                kind, interner = (0, self.accounts) if centre == CENTRE_ACCOUNT else (1, self.phones)
                idx = interner.get(value)
                if idx is None or not g.has_edges(node_id(kind, idx)):
                    what = "account" if kind == 0 else "phone number"
                    raise NotFound(f"{centre}: no such {what} in the transaction graph")
                suspects = (node_id(kind, idx),)
            hood = g.neighbourhood(list(suspects + victims), hops=hops, lo_ms=lo_ms, hi_ms=hi_ms,
                                   max_nodes=max_nodes, hub_degree=gs.hub_degree,
                                   max_work=gs.export_max_work)
            edges = g.edges_among(hood, lo_ms=lo_ms, hi_ms=hi_ms,
                                  max_edges=gs.export_max_edges)
            interners = (self.accounts, self.phones, self.devices)
            names = {n: interners[n % 3].name(n // 3) for n in hood.nodes.tolist()}
            watch = {}
            for n, name in names.items():
                hits = self.watch_entries(n % 3 + 1, name, now_ms)
                if hits:
                    watch[n] = f"{hits[0].reason} ({hits[0].source})"
            terminals = frozenset(n for n in names if g.is_terminal(n))
            log = self.decisions
        decisions = {}
        shown: dict[tuple[int, int, str], tuple[str, tuple[str, ...]]] = {}
        for ref in set(edges.ref.tolist()):
            rec = log.by_seq(ref)
            if rec is not None:
                key = (rec.action, rec.reason_bits, rec.policy_version)
                if key not in shown:
                    policy = self.policy_for(rec.policy_version)
                    shown[key] = (ACTION_NAMES[rec.action],
                                  tuple(r.code for r in policy.fired(rec.reason_bits)))
                decisions[ref] = shown[key]
        return CaseInput(
            centre_label=value, suspects=suspects, victims=victims, hops=hops, lo_ms=lo_ms,
            hi_ms=hi_ms, max_nodes=max_nodes, hood=hood, edges=edges, names=names,
            terminals=terminals, watch=watch, decisions=decisions)

    # ------------------------------------------------------------------ report ledger
    def new_ledger(self) -> Ledger:
        return Ledger(days=self.settings.ledger.days, max_rows=self.settings.ledger.max_rows,
                      tz_offset_hours=self.policy.params.timezone_offset_hours)

    def ledger_view(self, day: int) -> tuple[LedgerView, Callable[[int], str]]:
        """The ledger's rows of local ``day`` (taken under the lock in O(chunks); read them
        with ``view.frame(account_name)`` off it) and the account names of their ids."""
        with self._lock:
            return self.ledger.view(day), self.accounts.name

    # ------------------------------------------------------------------ checkpoints
    def snapshot(self) -> EngineSnapshot:
        """Copy the whole state under the lock (only the used rows of each array).

        This is the only part of a checkpoint that holds the lock: array and list copies
        (records are immutable and shared); serialising and writing happen outside. The copies'
        memory is allocated and touched before the lock is taken: first-touch page faults cost
        far more than the copy itself (1.8 GB: 4.8 s fresh, 0.15 s into touched memory, on the
        project VM), so screening waits only for the memcpy.
        """
        spare = {key: _touched(arr.dtype, (rows + max(1024, rows // 32), *arr.shape[1:]))
                 for key, arr, rows in self._state_rows()}
        with self._lock:
            locked = time.perf_counter()
            arrays = _copy_all([(key, arr[:rows], spare.pop(key, None))
                                for key, arr, rows in self._state_rows()])
            del spare
            # the ledger's chunks never change below their row counts: copied after the lock
            ledger = self.ledger.capture()
            caps = {"accounts": self.state.accounts.capacity, "phones": self.state.phones.capacity,
                    "devices": int(self.state.devices.shape[0]),
                    "pairs": self.state.pair_capacity, "recent_width": int(self._recent.shape[1])}
            if self.graph is not None:
                caps.update(graph_nodes=self.graph.node_capacity,
                            graph_edges=self.graph.edge_capacity)
            snap = EngineSnapshot(
                created_ms=self.clock_ms(),
                policy_version=self.policy.version,
                arrays=arrays,
                capacities=caps,
                accounts=self.accounts.names(),
                phones=self.phones.names(),
                devices=self.devices.names(),
                decisions=self.decisions.records(),
                next_seq=self.decisions.next_seq,
                calls=[(cid, c.caller, c.callee, c.ringing, c.ended, scope)
                       for (scope, cid), c in self._calls.items()],
                watch=list(self._watch.values()),
                journal_seq=self.journal_seq,
                event_seq=self.event_seq,
                feedback=[(name, at, fb) for name, (at, fb) in self.feedback_notes.items()],
                owners=list(self.core.owners.items()),
                lock_held_s=time.perf_counter() - locked,  # evaluated last: after every copy
            )
        return dataclasses.replace(snap, ledger=ledger.saved())

    def _state_rows(self) -> list[tuple[str, np.ndarray, int]]:
        """(checkpoint name, array, rows in use) of every state array."""
        n_acc, n_ph, n_dev = len(self.accounts), len(self.phones), len(self.devices)
        rows = {"accounts": n_acc, "phones": n_ph, "devices": n_dev}
        out: list[tuple[str, np.ndarray, int]] = []
        for name, arr in self.state.arrays().items():
            n = rows.get(name.partition(".")[0])
            out.append((f"features.{name}", arr, int(arr.shape[0]) if n is None else n))
        out += [("recent", self._recent, n_acc), ("recent_pos", self._recent_pos, n_acc)]
        if self.graph is not None:
            used_nodes = min(self.graph.node_capacity, 3 * max(n_acc, n_ph, n_dev, 1))
            for name, arr in self.graph.arrays().items():
                out.append((f"graph.{name}", arr,
                            used_nodes if name in ("n32", "watch") else int(arr.shape[0])))
        return out

    def install(self, restored: RestoredState) -> None:
        """Replace the whole state by ``restored`` (at start, before serving): a checkpoint
        validated and built off the lock by ``screening.store``."""
        with self._lock:
            self.core = restored.core
            self.decisions = restored.decisions
            self._actions = _actions_of(restored.decisions)
            self._calls = restored.calls
            self._watch = restored.watch
            self.feedback_notes = restored.feedback
            self.ledger = restored.ledger
            self._drivers = {}
            self.journal_seq = restored.journal_seq
            self.event_seq = restored.event_seq

    # ------------------------------------------------------------------ introspection
    def stats(self) -> dict[str, int]:
        out = {
            "accounts": self.accounts.live,
            "phones": self.phones.live,
            "devices": self.devices.live,
            "pairs": self.state.pair_count,
            "decisions_remembered": len(self.decisions),
            "watchlist_entries": len(self._watch),
            "unsaved_decisions": self.unsaved_decisions,
            "state_bytes": self.state.nbytes() + self._recent_rows.nbytes(),
            "ledger_rows": self.ledger.rows,
            "ledger_bytes": self.ledger.nbytes(),
            "ledger_late": self.ledger.late,
        }
        for kind in ENTITY_KINDS:
            out[f"max_{kind}"] = self.memory.cap(kind)
            out[f"{kind}_evicted"] = self.evicted[kind]
        out.update(max_pairs=self.memory.max_pairs,
                   relationships_evicted=self.evicted["relationships"])
        if self.graph is not None:
            out.update(graph_edges=self.graph.edge_count, graph_bytes=self.graph.nbytes(),
                       graph_evicted_early=self.graph.evicted_early)
        return out


def _touched(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A new array whose every page has been written (so later writes take no page faults)."""
    out = np.empty(shape, dtype=dtype)
    out.fill(0)
    return out


def _copy_all(parts: list[tuple[str, np.ndarray, np.ndarray | None]]) -> dict[str, np.ndarray]:
    """Copy each source into its spare (or a new array when the spare does not fit), on every
    core: the copy is all screening waits for during a checkpoint, and one core's memcpy leaves
    memory bandwidth unused (1.8x faster with two threads on the project VM)."""
    out: dict[str, np.ndarray] = {}
    jobs: list[tuple[np.ndarray, np.ndarray]] = []
    workers = min(4, os.cpu_count() or 1)
    for key, src, spare in parts:
        if (spare is not None and spare.dtype == src.dtype and spare.shape[1:] == src.shape[1:]
                and spare.shape[0] >= src.shape[0]):
            dst = spare[:src.shape[0]]
        else:
            dst = np.empty_like(src)
        out[key] = dst
        # a big array in one piece per worker: small pieces measured slower (each thread's
        # return to Python waits for the GIL)
        pieces = workers if src.nbytes >= _SPLIT_BYTES else 1
        bounds = np.linspace(0, src.shape[0], pieces + 1).astype(int)
        jobs += [(src[a:b], dst[a:b]) for a, b in itertools.pairwise(bounds.tolist())]
    if workers == 1 or len(jobs) < 2:
        for src, dst in jobs:
            np.copyto(dst, src)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="snapshot-copy") as pool:
            for _ in pool.map(lambda job: np.copyto(job[1], job[0]), jobs):
                pass
    return out


_SPLIT_BYTES = 256 << 20
