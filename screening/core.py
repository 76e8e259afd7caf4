"""The screening core: a batch of events in, decisions out, as columns.

A ``Screener`` owns what a decision reads and updates: the interned ids (accounts, phones,
devices), the feature state, the live transaction graph, the rings of recent decisions per
account and the watch flags. ``screen`` is the one screening step, for transactions and for
calls alike: room for the events' ids, the graph pass (edges, then the pattern detectors, which
give each transfer its graph features), then the feature kernels and the policy, which decide
every event. Graph and feature state are independent, so running the graph pass over the whole
batch first equals running both per event.

The live ``Engine`` is the shell around it (lock, idempotency, capacity and eviction, the graph's
latency budget through a ``GraphGate``, decision records, journal, queries); ``screening
replay`` runs an encoded event file through it in chunks. No protobuf, no logging, no
event-time clock (a timer only for the seconds ``Screened`` reports; the gate, when given,
reads its own).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from features.layout import CallFlag, DecisionCol, EventCol, Kind, TxnFlag
from features.state import N_EXTRA, FeatureState, RowTable, empty_events
from graph.live import LiveGraph
from screening.lines import BASE_CURRENCY, NearLine
from screening.model import CallInput, TxnColumns
from screening.policy import Policy

__all__ = ["GraphGate", "Interner", "Screened", "Screener"]

_PERSON, _TERMINAL = 1, 3  # proto PartyType
_KIND, _A, _B, _TXN = int(EventCol.KIND), int(EventCol.A), int(EventCol.B), int(Kind.TXN)
_SMALL = 4  # batches this small are written to the recent rings row by row


class Interner:
    """Strings to dense ids 0, 1, 2, ... and back; released ids are handed out again.

    ``len()`` is the id space in use (rows of the state arrays), ``live`` the ids that name an
    entity now. A released id is free until ``intern`` gives it to a new string, the smallest
    free id first, so the order is a function of the free set alone (a restored server hands
    out the same ids). In ``names()`` a free id is the empty string, which is never an id.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._free: list[int] = []  # a heap

    def get(self, key: str) -> int | None:
        return self._ids.get(key)

    def intern(self, key: str) -> int:
        idx = self._ids.get(key)
        if idx is None:
            if self._free:
                idx = heapq.heappop(self._free)
                self._names[idx] = key
            else:
                idx = len(self._names)
                self._names.append(key)
            self._ids[key] = idx
        return idx

    def intern_many(self, keys: list[str]) -> list[int]:
        """``intern`` of each key, in order (new strings get ids in that order)."""
        out: list[int | None] = list(map(self._ids.get, keys))
        if None not in out:
            return out  # type: ignore[return-value]
        intern = self.intern
        return [intern(k) if i is None else i for i, k in zip(out, keys, strict=True)]

    def release(self, ids: Iterable[int]) -> None:
        """Forget the strings of ``ids``; the ids go back to the free set."""
        for idx in ids:
            name = self._names[idx]
            if not name:
                raise ValueError(f"id {idx} is not in use")
            del self._ids[name]
            self._names[idx] = ""
            heapq.heappush(self._free, idx)

    def name(self, idx: int) -> str:
        return self._names[idx]

    def names(self) -> list[str]:
        """A copy of every interned string, in id order ("" for a free id)."""
        return list(self._names)

    def free_ids(self) -> np.ndarray:
        """The free ids, ascending."""
        return np.array(sorted(self._free), dtype=np.int64)

    @classmethod
    def from_names(cls, names: Sequence[str]) -> Interner:
        out = cls()
        out._names = list(names)
        out._ids = {name: i for i, name in enumerate(out._names) if name}
        out._free = [i for i, name in enumerate(out._names) if not name]  # sorted: a heap
        if len(out._ids) + len(out._free) != len(out._names):
            raise ValueError("an interned id list holds the same string twice")
        return out

    def missing(self, keys: set[str]) -> int:
        return sum(1 for k in keys if k not in self._ids)

    @property
    def live(self) -> int:
        return len(self._ids)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: str) -> bool:
        return key in self._ids


@dataclass(slots=True)  # not frozen: one per screening call, and frozen init costs 3x
class Screened:
    """The decisions of one batch, one row per event, as columns.

    ``decisions`` is int64[n, DecisionCol.N] (action, reason bits 0..62, score, report flags,
    marks, reason bits 63..);
    ``features`` float64[n, N_TXN_FEATURE] (one row when the features were not kept);
    ``degraded`` marks the transactions whose graph detectors were skipped (latency budget).
    """

    decisions: np.ndarray
    features: np.ndarray
    degraded: np.ndarray
    graph_seconds: float = 0.0  # in the graph pass (room for edges, edges, detectors)
    kernel_seconds: float = 0.0  # from the graph pass to the last decision

    @property
    def actions(self) -> np.ndarray:
        return self.decisions[:, DecisionCol.ACTION]

    @property
    def scores(self) -> np.ndarray:
        return self.decisions[:, DecisionCol.SCORE]

    @property
    def report_flags(self) -> np.ndarray:
        return self.decisions[:, DecisionCol.FLAGS]

    @property
    def marks(self) -> np.ndarray:
        return self.decisions[:, DecisionCol.MARKS]


class GraphGate(Protocol):
    """Whether the graph detectors run, chunk by chunk (the live server's latency budget).

    ``screen`` asks ``admit(rows)`` before each chunk of at most ``chunk`` events: True runs the
    detectors on it, False adds its edges only (those transactions get zero graph features and
    are marked degraded). After an admitted chunk, ``done(rows)`` is called.
    """

    chunk: int

    def admit(self, rows: int) -> bool: ...

    def done(self, rows: int) -> None: ...


class Screener:
    """The state of screening and the one step that decides on it (see the module docstring).

    ``recent`` (the rings of recent decision numbers per account) is optional: the live server
    keeps it for its queries and eviction, a replay of history does not. ``owners`` maps an
    account to the institution that owns its registry entry: a transaction naming another
    institution for it is encoded ``TxnFlag.PAYER_FOREIGN`` / ``PAYEE_FOREIGN``, and the
    kernels do not take the entry's word about that party.
    """

    def __init__(self, *, state: FeatureState, graph: LiveGraph | None, graph_params: np.ndarray,
                 graph_expiry_ms: int, recent: RowTable | None = None,
                 accounts: Interner | None = None, phones: Interner | None = None,
                 devices: Interner | None = None, owners: dict[str, str] | None = None) -> None:
        self.state = state
        self.graph = graph
        self.graph_params = graph_params
        self.graph_expiry_ms = graph_expiry_ms
        self.accounts = accounts if accounts is not None else Interner()
        self.phones = phones if phones is not None else Interner()
        self.devices = devices if devices is not None else Interner()
        self.owners: dict[str, str] = owners if owners is not None else {}
        self.recent_rows: RowTable | None = None
        if recent is not None:
            self.bind_recent(recent)

    def bind_recent(self, rows: RowTable) -> None:
        """Use ``rows`` as the recent-decision rings (its views as attributes: the hot path)."""
        self.recent_rows = rows
        self.recent, self.recent_pos = rows["recent"], rows["recent_pos"]

    def interners(self) -> tuple[Interner, Interner, Interner]:
        """(accounts, phones, devices): index ``ENTITY_* - 1``."""
        return self.accounts, self.phones, self.devices

    # ------------------------------------------------------------------ encoding
    def encode_transactions(self, batch: TxnColumns, policy: Policy,
                            near_line: NearLine) -> np.ndarray:
        """Intern the ids of ``batch`` and encode it as kernel event rows (the live encoder).

        Ids are interned in row order (payer, payee; payer phone, payee phone), as one
        transaction at a time would: the same ids whatever the batch size.
        """
        n = len(batch)
        if n <= _SMALL:  # ScreenTransaction: numpy calls cost more than they save
            return self._encode_rows(batch, policy, near_line)
        ev = empty_events(n)
        accounts = self.accounts.intern_many(
            [x for pair in zip(batch.payer_account, batch.payee_account, strict=True)
             for x in pair])
        ev[:, EventCol.KIND] = Kind.TXN
        ev[:, EventCol.TS] = batch.event_time_ms
        ev[:, EventCol.A] = accounts[0::2]
        ev[:, EventCol.B] = accounts[1::2]
        payer_phone, payee_phone, device = batch.payer_phone, batch.payee_phone, batch.device_id
        if any(payer_phone) or any(payee_phone):
            pairs = [x for pair in zip(payer_phone, payee_phone, strict=True) for x in pair]
            known = [j for j, x in enumerate(pairs) if x]
            flat = np.full(2 * n, -1, dtype=np.int64)
            flat[known] = self.phones.intern_many([pairs[j] for j in known])
            ev[:, EventCol.C] = flat[0::2]
            ev[:, EventCol.E] = flat[1::2]
        if any(device):
            rows = [j for j, d in enumerate(device) if d]
            ev[rows, EventCol.D] = self.devices.intern_many([device[j] for j in rows])
        ev[:, EventCol.AMOUNT] = batch.amount_fen
        cash = np.array(batch.cash, dtype=bool)
        cross = np.array(batch.cross_border, dtype=bool)
        payer_type = np.array(batch.payer_type, dtype=np.int64)
        payee_type = np.array(batch.payee_type, dtype=np.int64)
        flags = (cash * int(TxnFlag.CASH) | cross * int(TxnFlag.CROSS_BORDER)
                 | (payer_type == _PERSON) * int(TxnFlag.PAYER_PERSON)
                 | (payee_type == _PERSON) * int(TxnFlag.PAYEE_PERSON)
                 | (payer_type == _TERMINAL) * int(TxnFlag.PAYER_TERMINAL)
                 | (payee_type == _TERMINAL) * int(TxnFlag.PAYEE_TERMINAL))
        if any(batch.memo):
            memo_flags: dict[str, int] = {}
            for m in set(batch.memo):
                invest, fraud = policy.memo_flags(m)
                memo_flags[m] = ((int(TxnFlag.MEMO_INVESTMENT) if invest else 0)
                                 | (int(TxnFlag.MEMO_FRAUD) if fraud else 0))
            flags |= np.array([memo_flags[m] for m in batch.memo], dtype=np.int64)
        fen = ev[:, EventCol.AMOUNT]
        base = np.array([c == BASE_CURRENCY for c in batch.currency], dtype=bool)
        flags |= near_line.near_many(fen, base, cash, cross, payer_type) * int(TxnFlag.NEAR_LINE)
        if self.owners:
            flags |= self._foreign(batch)
        ev[:, EventCol.FLAGS] = flags
        for col, opened in ((EventCol.AUX1, batch.payer_opened_ms),
                            (EventCol.AUX2, batch.payee_opened_ms)):
            if None not in opened:
                ev[:, col] = opened
            elif any(o is not None for o in opened):
                known = [j for j, o in enumerate(opened) if o is not None]
                ev[known, col] = [opened[j] for j in known]
        ev[:, EventCol.AUX3] = batch.channel
        return ev

    def _foreign(self, batch: TxnColumns) -> np.ndarray:
        """``TxnFlag.PAYER_FOREIGN`` / ``PAYEE_FOREIGN`` per row: the transaction names an
        institution for the party, and another one owns the party's registry entry."""
        owner = self.owners.get
        out = np.zeros(len(batch), dtype=np.int64)
        for side, flag in ((zip(batch.payer_account, batch.payer_institution, strict=True),
                            int(TxnFlag.PAYER_FOREIGN)),
                           (zip(batch.payee_account, batch.payee_institution, strict=True),
                            int(TxnFlag.PAYEE_FOREIGN))):
            for j, (account, institution) in enumerate(side):
                if institution and owner(account, institution) != institution:
                    out[j] |= flag
        return out

    def _encode_rows(self, batch: TxnColumns, policy: Policy, near_line: NearLine) -> np.ndarray:
        """``encode_transactions`` one row at a time (the same rows; tests hold them equal)."""
        accounts, phones, devices, owner = self.accounts, self.phones, self.devices, self.owners.get
        ev = empty_events(len(batch))
        for j in range(len(batch)):
            row = ev[j]
            cash, cross, memo = batch.cash[j], batch.cross_border[j], batch.memo[j]
            payer_type, payee_type = batch.payer_type[j], batch.payee_type[j]
            flags = 0
            if cash:
                flags |= TxnFlag.CASH
            if cross:
                flags |= TxnFlag.CROSS_BORDER
            if memo:
                invest, fraud = policy.memo_flags(memo)
                if invest:
                    flags |= TxnFlag.MEMO_INVESTMENT
                if fraud:
                    flags |= TxnFlag.MEMO_FRAUD
            if payer_type == _PERSON:
                flags |= TxnFlag.PAYER_PERSON
            if payee_type == _PERSON:
                flags |= TxnFlag.PAYEE_PERSON
            if payer_type == _TERMINAL:
                flags |= TxnFlag.PAYER_TERMINAL
            if payee_type == _TERMINAL:
                flags |= TxnFlag.PAYEE_TERMINAL
            if near_line.near(batch.amount_fen[j], batch.currency[j], cash, cross, payer_type):
                flags |= TxnFlag.NEAR_LINE
            institution = batch.payer_institution[j]
            if institution and owner(batch.payer_account[j], institution) != institution:
                flags |= TxnFlag.PAYER_FOREIGN
            institution = batch.payee_institution[j]
            if institution and owner(batch.payee_account[j], institution) != institution:
                flags |= TxnFlag.PAYEE_FOREIGN
            row[EventCol.KIND] = Kind.TXN
            row[EventCol.TS] = batch.event_time_ms[j]
            row[EventCol.A] = accounts.intern(batch.payer_account[j])
            row[EventCol.B] = accounts.intern(batch.payee_account[j])
            if batch.payer_phone[j]:
                row[EventCol.C] = phones.intern(batch.payer_phone[j])
            if batch.device_id[j]:
                row[EventCol.D] = devices.intern(batch.device_id[j])
            if batch.payee_phone[j]:
                row[EventCol.E] = phones.intern(batch.payee_phone[j])
            row[EventCol.AMOUNT] = batch.amount_fen[j]
            row[EventCol.FLAGS] = flags
            if batch.payer_opened_ms[j] is not None:
                row[EventCol.AUX1] = batch.payer_opened_ms[j]
            if batch.payee_opened_ms[j] is not None:
                row[EventCol.AUX2] = batch.payee_opened_ms[j]
            row[EventCol.AUX3] = batch.channel[j]
        return ev

    def encode_call(self, call: CallInput, *, new: bool) -> np.ndarray:
        """Intern the numbers of ``call`` and encode it as one kernel event row; ``new``: the
        first report of this call id."""
        ev = empty_events(1)
        ev[0, EventCol.KIND] = Kind.CALL
        ev[0, EventCol.TS] = call.start_ms
        ev[0, EventCol.A] = self.phones.intern(call.caller)
        ev[0, EventCol.B] = self.phones.intern(call.callee)
        ev[0, EventCol.AMOUNT] = call.duration_s
        ev[0, EventCol.FLAGS] = (CallFlag.NEW if new else 0) | (CallFlag.ENDED if call.ended else 0)
        ev[0, EventCol.AUX1] = call.caller_class
        ev[0, EventCol.AUX3] = call.outcome
        return ev

    # ------------------------------------------------------------------ the step
    def ensure(self, new_pairs: int) -> None:
        """Rows for every interned id (features, graph nodes, recent rings) and room for
        ``new_pairs`` more relationships."""
        n_acc, n_ph, n_dev = len(self.accounts), len(self.phones), len(self.devices)
        self.state.ensure(n_acc, n_ph, n_dev, new_pairs)
        if self.graph is not None:
            self.graph.ensure(n_acc, n_ph, n_dev, 0)
        rows = self.recent_rows
        if rows is not None and rows.rows < self.state.capacity("accounts"):
            rows.grow(self.state.capacity("accounts"))
            self.bind_recent(rows)

    def screen(self, events: np.ndarray, refs: np.ndarray, policy: Policy, *,
               new_pairs: int | None = None, gate: GraphGate | None = None, detect: bool = True,
               remember: bool = False, keep_features: bool = True, all_features: bool = True,
               reads: np.ndarray | None = None) -> Screened:
        """Decide ``events`` (kernel rows whose ids were interned here), in order.

        ``refs`` (int64, one per event) is what the graph keeps with each edge and the recent
        rings with each transaction's accounts: the decision number. ``new_pairs`` bounds the
        new relationships (default three per event: a relationship, a warning and the payee's
        warned inflow). The graph detectors run on every
        transaction unless ``detect`` is false (edges only) or ``gate`` holds them back;
        ``remember`` writes each transaction's ref into its payer's and payee's recent rings.
        ``keep_features``, ``all_features`` and ``reads`` are ``FeatureState.process``'s.
        """
        n = events.shape[0]
        if refs.dtype != np.int64 or refs.shape != (n,):
            raise ValueError(f"refs must be int64[{n}], got {refs.dtype}{refs.shape}")
        if remember and self.recent_rows is None:
            raise ValueError("remember=True: this screener keeps no recent-decision rings")
        self.ensure(3 * n if new_pairs is None else new_pairs)
        k0 = time.perf_counter()
        extra, degraded = self._graph_pass(events, refs, gate, detect)
        k1 = time.perf_counter()
        feat, dec = self.state.process(events, policy.params_array, policy.txn_table,
                                       policy.call_table, keep_features=keep_features,
                                       extra=extra, all_features=all_features, reads=reads)
        k2 = time.perf_counter()
        if remember:
            self._remember(events, refs)
        return Screened(dec, feat, degraded, graph_seconds=k1 - k0, kernel_seconds=k2 - k0)

    def _graph_pass(self, events: np.ndarray, refs: np.ndarray, gate: GraphGate | None,
                    detect: bool) -> tuple[np.ndarray | None, np.ndarray]:
        """Add the events' edges to the live graph and run its detectors (see ``screen``):
        (graph features per event or None without a graph, degraded per event)."""
        n = events.shape[0]
        degraded = np.zeros(n, dtype=bool)
        g = self.graph
        if g is None:
            return None, degraded
        g.ensure(len(self.accounts), len(self.phones), len(self.devices), 3 * n,
                 self.graph_expiry_ms)
        if gate is None or not detect:
            return g.process(events, refs, self.graph_params, detect), degraded
        extra = np.zeros((n, N_EXTRA), dtype=np.float64)
        for start in range(0, n, gate.chunk):
            stop = min(n, start + gate.chunk)
            admitted = gate.admit(stop - start)
            out = g.process(events[start:stop], refs[start:stop], self.graph_params, admitted)
            if admitted:
                extra[start:stop] = out
                gate.done(stop - start)
            else:
                degraded[start:stop] = True
        return extra, degraded

    def _remember(self, events: np.ndarray, refs: np.ndarray) -> None:
        """Write each transaction's ref into its payer's and payee's ring (oldest overwritten),
        in event order: an account's k-th appearance in the batch takes its k-th next slot, and
        of more appearances than the ring holds only the last ring-width are kept."""
        ring, pos_of = self.recent, self.recent_pos
        width = ring.shape[1]
        if events.shape[0] <= _SMALL:  # one at a time: cheaper than numpy calls
            for j in range(events.shape[0]):
                if events[j, _KIND] == _TXN:
                    for account in (int(events[j, _A]), int(events[j, _B])):
                        pos = int(pos_of[account])
                        ring[account, pos % width] = refs[j]
                        pos_of[account] = pos + 1
            return
        txn = events[:, _KIND] == _TXN
        if not txn.any():
            return
        acc = events[txn][:, [_A, _B]].ravel()  # payer, payee, payer, payee, ... in order
        seqs = np.repeat(refs[txn], 2)
        order = np.argsort(acc, kind="stable")
        acc, seqs = acc[order], seqs[order]
        starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
        counts = np.diff(np.r_[starts, acc.size])
        rank = np.arange(acc.size) - np.repeat(starts, counts)
        keep = rank >= np.repeat(counts, counts) - width
        slots = (pos_of[acc] + rank) % width
        ring[acc[keep], slots[keep]] = seqs[keep]
        pos_of[acc[starts]] += counts

    # ------------------------------------------------------------------ upkeep
    def set_watch(self, kind: int, idx: int, until_ms: int) -> None:
        """Watch entity ``idx`` of ``kind`` (``ENTITY_*``: 1 account, 2 phone, 3 device) until
        ``until_ms`` (0: no longer), in the feature state and the graph."""
        setter = (self.state.set_account_watch, self.state.set_phone_watch,
                  self.state.set_device_watch)[kind - 1]
        setter(idx, until_ms)
        if self.graph is not None:
            self.graph.set_watch(kind - 1, idx, until_ms)

    def forget(self, kind: int, ids: np.ndarray) -> tuple[int, int]:
        """Forget entities ``ids`` (ascending) of ``kind`` everywhere, their ids free for new
        entities; returns (relationships, graph edges) removed with them."""
        name = ("accounts", "phones", "devices")[kind - 1]
        pairs = self.state.forget(name, ids)
        if kind == 1 and self.recent_rows is not None:
            self.recent_rows.reset(ids)
        edges = 0
        if self.graph is not None:
            edges = self.graph.forget(ids * 3 + (kind - 1))
        interner = self.interners()[kind - 1]
        if kind == 1 and self.owners:  # the registry entry goes with the account's state
            for idx in ids.tolist():
                self.owners.pop(interner.name(idx), None)
        interner.release(ids.tolist())
        return pairs, edges
