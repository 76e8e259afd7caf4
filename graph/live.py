"""The live transaction-and-call graph: compact arrays, bounded pattern detectors.

``LiveGraph`` holds accounts, phone numbers and devices as nodes and transfers, calls and
"account uses phone / device" links as timestamped edges (layout and search semantics in
``graph._kernels``). It is fed the same int64 event matrix as the feature kernels, with the
same dense ids, and answers, per transfer, the ``GRAPH_FEATURES`` of ``features.layout``.
Memory: ``BYTES_PER_EDGE`` per edge slot and ``BYTES_PER_NODE`` per node slot; edge slots grow
by doubling up to ``max_edges``, edges older than the expiry age are dropped when room is needed.

Pure: no clock (times come in the events), no I/O, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.layout import GRAPH_FEATURES
from features.state import TIME_MAX_MS, TIME_MIN_MS, RowTable
from graph import _kernels as k

__all__ = [
    "BYTES_PER_EDGE",
    "BYTES_PER_NODE",
    "EDGE_KINDS",
    "NODE_KINDS",
    "EdgeRows",
    "GraphParams",
    "LiveGraph",
    "Neighbourhood",
    "node_id",
]

NODE_KINDS: tuple[str, ...] = ("account", "phone", "device")
EDGE_KINDS: tuple[str, ...] = ("transfer", "call", "uses_phone", "uses_device")
MINUTE_MS = 60_000
DAY_MS = 86_400_000

# int32 x 4 + int64 x 3 + int8: src, dst, next_out, next_in, time, amount, ref, kind
BYTES_PER_EDGE = 4 * k.N_E32 + 8 * k.N_E64 + 1
# int32 x 6 (list heads, last links, flags, listed neighbours) + int64 watch + int64 x 4 scratch
BYTES_PER_NODE = 4 * k.N_N32 + 8 + 8 * k.N_SCR

if len(GRAPH_FEATURES) != k.N_X:  # pragma: no cover - import-time layout check
    raise ImportError("features.layout.GRAPH_FEATURES does not match the graph kernels")


def node_id(kind: int, idx: int) -> int:
    """The graph node of entity ``idx`` of ``kind`` (0 account, 1 phone, 2 device)."""
    return idx * k.N_NODE_KINDS + kind


@dataclass(frozen=True, kw_only=True)
class GraphParams:
    """Windows and bounds of the detectors (see ``graph._kernels`` for what each one means)."""

    fan_window_ms: int = 7 * DAY_MS
    scatter_gather_window_ms: int = 7 * DAY_MS
    cycle_window_ms: int = 30 * DAY_MS
    cycle_max_length: int = 6
    cycle_time_ordered: bool = True
    cycle_min_ratio: float = 0.8
    chain_gap_ms: int = 60 * MINUTE_MS
    chain_max_hops: int = 6
    chain_min_ratio: float = 0.1
    chain_max_ratio: float = 1.05
    fund_window_ms: int = 90 * DAY_MS
    fund_small_max: int = 10_000_000
    fee_window_ms: int = 60 * DAY_MS
    fee_forward_gap_ms: int = DAY_MS
    fee_amount_tolerance: float = 0.0
    proximity_window_ms: int = 90 * DAY_MS
    proximity_max_hops: int = 2
    hub_degree: int = 50
    fan_cap: int = 100
    max_work: int = 1_000
    link_refresh_ms: int = DAY_MS

    def __post_init__(self) -> None:
        for name in ("fan_window_ms", "scatter_gather_window_ms", "cycle_window_ms",
                     "chain_gap_ms", "fund_window_ms", "proximity_window_ms", "link_refresh_ms",
                     "fund_small_max", "fee_window_ms", "fee_forward_gap_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"GraphParams.{name} must be >= 0")
        if not 0 <= self.cycle_max_length <= 12:
            raise ValueError("GraphParams.cycle_max_length must be in 0..12")
        if not 0 <= self.chain_max_hops <= 12:
            raise ValueError("GraphParams.chain_max_hops must be in 0..12")
        if not 0 <= self.proximity_max_hops <= 6:
            raise ValueError("GraphParams.proximity_max_hops must be in 0..6")
        if not 1 <= self.hub_degree <= 100_000 or not 1 <= self.fan_cap <= 100_000:
            raise ValueError("GraphParams.hub_degree and fan_cap must be in 1..100000")
        if not 1 <= self.max_work <= 10_000_000:
            raise ValueError("GraphParams.max_work must be in 1..10000000")
        if not 0.0 <= self.cycle_min_ratio <= 1.0:
            raise ValueError("GraphParams.cycle_min_ratio must be in 0..1")
        if not 0.0 <= self.chain_min_ratio <= self.chain_max_ratio:
            raise ValueError("GraphParams needs 0 <= chain_min_ratio <= chain_max_ratio")
        if not 0.0 <= self.fee_amount_tolerance <= 0.1:
            raise ValueError("GraphParams.fee_amount_tolerance must be in 0..0.1")

    def array(self) -> np.ndarray:
        p = np.zeros(k.N_GPARAM, dtype=np.int64)
        p[k.G_FAN_WINDOW] = self.fan_window_ms
        p[k.G_SG_WINDOW] = self.scatter_gather_window_ms
        p[k.G_CYCLE_WINDOW] = self.cycle_window_ms
        p[k.G_CYCLE_MAX_LEN] = self.cycle_max_length
        p[k.G_CYCLE_ORDERED] = int(self.cycle_time_ordered)
        p[k.G_CHAIN_GAP] = self.chain_gap_ms
        p[k.G_CHAIN_MAX_HOPS] = self.chain_max_hops
        p[k.G_CHAIN_MIN_PPM] = round(self.chain_min_ratio * 1_000_000)
        p[k.G_CHAIN_MAX_PPM] = round(self.chain_max_ratio * 1_000_000)
        p[k.G_FUND_WINDOW] = self.fund_window_ms
        p[k.G_FUND_SMALL_MAX] = self.fund_small_max
        p[k.G_PROX_WINDOW] = self.proximity_window_ms
        p[k.G_PROX_MAX_HOPS] = self.proximity_max_hops
        p[k.G_HUB_DEGREE] = self.hub_degree
        p[k.G_FAN_CAP] = self.fan_cap
        p[k.G_MAX_WORK] = self.max_work
        p[k.G_LINK_REFRESH] = self.link_refresh_ms
        p[k.G_CYCLE_MIN_PPM] = round(self.cycle_min_ratio * 1_000_000)
        p[k.G_FEE_WINDOW] = self.fee_window_ms
        p[k.G_FEE_GAP] = self.fee_forward_gap_ms
        p[k.G_FEE_TOL_PPM] = round(self.fee_amount_tolerance * 1_000_000)
        return p

    @property
    def longest_window_ms(self) -> int:
        return max(self.fan_window_ms, self.scatter_gather_window_ms, self.cycle_window_ms,
                   self.chain_gap_ms * max(self.chain_max_hops, 1), self.fund_window_ms,
                   self.fee_window_ms, self.proximity_window_ms)


@dataclass(frozen=True)
class Neighbourhood:
    """Nodes around some centres: ``nodes`` (centres first, breadth-first), their hop distance,
    ``cut`` (1 = hub or cash terminal not expanded), neighbours left out by the node cap."""

    nodes: np.ndarray
    dist: np.ndarray
    cut: np.ndarray
    left_out: int
    truncated: bool
    stamp: int = -1  # marks the nodes the search saw (for ``edges_among``)


@dataclass(frozen=True)
class EdgeRows:
    """Edges as columns (node ids, time ms, amount, kind, ref) and how many were left out."""

    src: np.ndarray
    dst: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    kind: np.ndarray
    ref: np.ndarray
    left_out: int


def _next_pow2(n: int) -> int:
    return 1 << max(4, (max(n, 1) - 1).bit_length())


class _Scratch:
    """The detectors' work arrays, kept between ``process`` calls so the kernels never allocate
    (see ``graph._jit``). Sized from the parameters by ``fit``; they only grow."""

    def __init__(self) -> None:
        self.key = b""  # the parameters fitted last
        self.lst = self.lst2 = self.qn = self.qd = np.empty(0, dtype=np.int64)
        self.path = self.cur = self.his = self.amts = np.empty(0, dtype=np.int64)
        self.rmin = self.fsum = np.empty(0, dtype=np.float64)
        self.ctr = np.zeros(k.N_CTR, dtype=np.int64)

    def fit(self, params: np.ndarray) -> None:
        key = params.tobytes()
        if key == self.key:
            return
        lists, queue, depth = k.scratch_sizes(params)
        if lists > self.lst.shape[0]:
            self.lst = np.zeros(lists, dtype=np.int64)
            self.lst2 = np.zeros(lists, dtype=np.int64)
            self.fsum = np.zeros(lists, dtype=np.float64)
        if queue > self.qn.shape[0]:
            self.qn = np.zeros(queue, dtype=np.int64)
            self.qd = np.zeros(queue, dtype=np.int64)
        if depth > self.path.shape[0]:
            self.path, self.cur, self.his, self.amts = (
                np.zeros(depth, dtype=np.int64) for _ in range(4))
            self.rmin = np.zeros(depth, dtype=np.float64)
        self.key = key

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in (self.lst, self.lst2, self.qn, self.qd, self.path,
                                           self.cur, self.his, self.amts, self.rmin, self.fsum,
                                           self.ctr))


class LiveGraph:
    """Edge store and per-node lists in numpy arrays; see the module docstring."""

    def __init__(self, *, nodes: int = 1024, edges: int = 4096, max_edges: int = 1 << 28,
                 max_nodes: int | None = None, reserve_edges: bool = False) -> None:
        """``max_nodes`` reserves memory for that many node rows, and ``reserve_edges`` for
        ``max_edges`` edge slots, so growing to them never copies (see ``features._rows``)."""
        if max_edges >= 2**31 - 1:
            raise ValueError("max_edges must be below 2**31 (int32 edge numbers)")
        self.max_edges = max(16, max_edges)
        self.edge_rows = RowTable(_EMPTY_EDGE, min(_next_pow2(edges), self.max_edges),
                                  self.max_edges if reserve_edges else None)
        self.node_rows = RowTable(_EMPTY_NODE, max(3, nodes), max_nodes)
        self._bind()
        self.meta = np.zeros(k.N_META, dtype=np.int64)
        self.meta[k.M_NEWEST] = k.NO_TS
        self._scratch = _Scratch()

    # ------------------------------------------------------------ sizes
    @property
    def edge_count(self) -> int:
        return int(self.meta[k.M_EDGES])

    @property
    def edge_capacity(self) -> int:
        return int(self.e32.shape[0])

    @property
    def node_capacity(self) -> int:
        return int(self.n32.shape[0])

    @property
    def newest_ms(self) -> int:
        return int(self.meta[k.M_NEWEST])

    @property
    def late_inserts(self) -> int:
        """List insertions that were not at the head (events older than the node's newest)."""
        return int(self.meta[k.M_LATE])

    @property
    def work_done(self) -> int:
        """Edge-list entries the detectors have read so far (their cost, summed)."""
        return int(self.meta[k.M_WORK])

    @property
    def evicted_early(self) -> int:
        """Edges dropped before their expiry age because ``max_edges`` was reached."""
        return int(self.meta[k.M_EVICTED])

    def arrays(self) -> dict[str, np.ndarray]:
        """The graph's state by name (views): the live edge rows, every node row and the
        counters. The per-node search marks are left out: they are scratch, valid only for the
        stamp in ``meta`` they were written with, so zeroed marks mean the same."""
        n = self.edge_count
        return {"e32": self.e32[:n], "e64": self.e64[:n], "ekind": self.ekind[:n],
                "n32": self.n32, "watch": self.watch, "meta": self.meta}

    def nbytes(self) -> int:
        return self._scratch.nbytes() + sum(
            int(a.nbytes) for a in (self.e32, self.e64, self.ekind, self.n32, self.watch, self.scr,
                                    self.meta))

    # ------------------------------------------------------------ capacity
    def _bind(self) -> None:
        self.e32, self.e64, self.ekind = (self.edge_rows[n] for n in ("e32", "e64", "ekind"))
        self.n32, self.watch, self.scr = (self.node_rows[n] for n in ("n32", "watch", "scr"))

    def prefill(self, nodes: int) -> int:
        """Write empty node rows up to ``nodes`` and, once half the edge slots are used, the
        slots the next growth takes, ahead of use (see ``RowTable.prefill``); returns bytes."""
        done = self.node_rows.prefill(nodes) * self.node_rows.row_nbytes
        cap = self.edge_capacity
        if self.edge_count * 2 > cap:  # full slots grow to twice the edges and more (``ensure``)
            done += (self.edge_rows.prefill(min(_next_pow2(2 * cap + 2), self.max_edges))
                     * self.edge_rows.row_nbytes)
        return done

    def forget(self, nodes: np.ndarray) -> int:
        """Drop every edge of ``nodes`` and give them empty rows (their ids go to new entities,
        which must inherit no edge); returns the edges dropped."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if nodes.size == 0:
            return 0
        if int(nodes.min()) < 0 or int(nodes.max()) >= self.node_capacity:
            raise ValueError("a node to forget is beyond the node capacity")
        gone = np.zeros(self.node_capacity, dtype=np.uint8)
        gone[nodes] = 1
        remap = np.empty(max(self.edge_count, 1), dtype=np.int32)
        dropped = int(k._drop_nodes(self.e32, self.e64, self.ekind, self.n32, self.watch,
                                    self.meta, gone, remap))
        self.node_rows.reset(nodes)
        return dropped

    def ensure(self, accounts: int, phones: int, devices: int, new_edges: int,
               expiry_ms: int = 0) -> None:
        """Room for entity ids below the given counts and ``new_edges`` more edges.

        When the edge slots are full, edges older than ``expiry_ms`` before the newest event
        go first (0: never by age); then the slots double up to ``max_edges``; at that cap
        the oldest edges are evicted early (counted in ``evicted_early``).
        """
        need_nodes = max(accounts, phones, devices, 1) * k.N_NODE_KINDS
        if need_nodes > self.node_capacity:
            rows = self.node_rows
            if need_nodes > rows.limit:  # no memory reserved for them: double (and copy once)
                rows.grow(_next_pow2(need_nodes))
            else:  # a whole step of rows, but never more than doubling
                step = -(-need_nodes // _NODE_STEP) * _NODE_STEP
                rows.grow(min(rows.limit, max(need_nodes, min(step, 2 * rows.rows))))
            self._bind()
        if new_edges > self.max_edges // 2:
            raise ValueError(f"{new_edges} new edges at once: more than half of max_edges")
        if self.edge_count + new_edges <= self.edge_capacity:
            return
        if expiry_ms > 0 and self.newest_ms > k.NO_TS:
            self.compact(self.newest_ms - expiry_ms)
        want = self.edge_count + new_edges
        if want * 2 > self.edge_capacity and self.edge_capacity < self.max_edges:
            self._grow_edges(min(_next_pow2(want * 2), self.max_edges))
        if self.edge_count + new_edges > self.edge_capacity:
            self._evict(self.edge_capacity // 2 - new_edges)

    def check(self, entities: tuple[int, int, int]) -> None:
        """Raise ValueError naming the array when the store breaks what the kernels assume.

        The kernels follow edge numbers without bounds checks, so a store loaded from outside (a
        checkpoint) must hold: edge ends are nodes of the ``entities`` (accounts, phones,
        devices) known, of the kinds the edge kind joins; every list head, next pointer and last
        link is an edge of the right node or -1; each edge is in exactly one out-list and one
        in-list; lists run strictly newest first (time, then arrival), so none loops.
        """
        n = self.edge_count
        if not 0 <= n <= self.edge_capacity:
            raise ValueError(f"graph.meta: {n} edges, capacity {self.edge_capacity}")
        for col in (k.M_STAMP, k.M_LATE, k.M_EVICTED, k.M_WORK):
            if not 0 <= int(self.meta[col]) <= 2**62:  # counters: room to count on
                raise ValueError(f"graph.meta: counter {col} is {int(self.meta[col])}")
        e32, ts, kind = self.e32[:n].astype(np.int64), self.e64[:n, k.E_TS], self.ekind[:n]
        src, dst = e32[:, k.E_SRC], e32[:, k.E_DST]
        limit = np.array(entities, dtype=np.int64)
        for name, ends in (("source", src), ("target", dst)):
            if n and (ends.min() < 0 or ends.max() >= self.node_capacity
                      or np.any(ends // k.N_NODE_KINDS >= limit[ends % k.N_NODE_KINDS])):
                raise ValueError(f"graph.e32: an edge {name} is not a known node")
        joins = np.array([[k.NK_ACCOUNT, k.NK_ACCOUNT], [k.NK_PHONE, k.NK_PHONE],
                          [k.NK_ACCOUNT, k.NK_PHONE], [k.NK_ACCOUNT, k.NK_DEVICE]], dtype=np.int64)
        if n and (kind.min() < 0 or kind.max() >= len(EDGE_KINDS)):
            raise ValueError("graph.ekind: unknown edge kind")
        if n and (np.any(src % k.N_NODE_KINDS != joins[kind, 0])
                  or np.any(dst % k.N_NODE_KINDS != joins[kind, 1])):
            raise ValueError("graph.e32: an edge joins nodes of kinds its kind does not join")
        if n and np.any((ts < TIME_MIN_MS) | (ts > TIME_MAX_MS)):
            raise ValueError("graph.e64: an edge time outside years 1 to 9999")
        if n and np.any(self.e64[:n, k.E_AMT][kind == k.K_TRANSFER] < 1):
            raise ValueError("graph.e64: a transfer of no money (the chain ratio divides by it)")
        nodes = np.arange(self.node_capacity, dtype=np.int64)
        edges = np.arange(n, dtype=np.int64)
        for what, hcol, ncol, ends in (("out", k.N_HEAD_OUT, k.E_NEXT_OUT, src),
                                       ("in", k.N_HEAD_IN, k.E_NEXT_IN, dst)):
            heads = self.n32[:, hcol].astype(np.int64)
            nxt = e32[:, ncol]
            if heads.min() < -1 or heads.max() >= n or (n and (nxt.min() < -1 or nxt.max() >= n)):
                raise ValueError(f"graph: an {what}-list pointer is not an edge")
            hv, nv = heads >= 0, nxt >= 0
            if np.any(ends[heads[hv]] != nodes[hv]) or np.any(ends[nxt[nv]] != ends[nv]):
                raise ValueError(f"graph: an {what}-list holds another node's edge")
            later, earlier = edges[nv], nxt[nv]
            if np.any((ts[earlier] > ts[later]) | ((ts[earlier] == ts[later]) & (earlier >= later))):
                raise ValueError(f"graph: an {what}-list is not newest first")
            if np.any(np.bincount(np.concatenate([heads[hv], earlier]), minlength=n) != 1):
                raise ValueError(f"graph: an edge is not in exactly one {what}-list")
        for col, link_kind in ((k.N_LINK_PHONE, k.K_LINK_PHONE), (k.N_LINK_DEVICE, k.K_LINK_DEVICE)):
            last = self.n32[:, col].astype(np.int64)
            if last.min() < -1 or last.max() >= n:
                raise ValueError("graph.n32: a last link is not an edge")
            lv = last >= 0
            if np.any(src[last[lv]] != nodes[lv]) or np.any(kind[last[lv]] != link_kind):
                raise ValueError("graph.n32: a last link is not the node's link of its kind")

    def compact(self, min_ts: int) -> int:
        """Drop edges older than ``min_ts``; returns how many were dropped."""
        remap = np.empty(max(self.edge_count, 1), dtype=np.int32)
        return int(k._compact(self.e32, self.e64, self.ekind, self.n32, self.watch, self.meta,
                              min_ts, remap))

    def _evict(self, keep: int) -> None:
        n = self.edge_count
        ts = self.e64[:n, k.E_TS]
        drop = n - max(keep, 0)
        cutoff = int(np.partition(ts, drop)[drop]) if drop < n else int(ts.max()) + 1
        dropped = self.compact(cutoff)
        if self.edge_count > keep:  # many edges share the cut-off time
            dropped += self.compact(cutoff + 1)
        self.meta[k.M_EVICTED] += dropped

    def _grow_edges(self, cap: int) -> None:
        self.edge_rows.grow(cap)
        self._bind()

    # ------------------------------------------------------------ updates
    def set_watch(self, kind: int, idx: int, until_ms: int) -> None:
        """Mark entity ``idx`` of ``kind`` watchlisted until ``until_ms`` (0: not listed)."""
        self.set_watch_node(node_id(kind, idx), until_ms)

    def set_watch_node(self, node: int, until_ms: int) -> None:
        if not 0 <= node < self.node_capacity:
            raise ValueError("node beyond the node capacity (call ensure)")
        k._set_watch(self.e32, self.n32, self.watch, node, max(until_ms, 0))

    def process(self, events: np.ndarray, refs: np.ndarray, params: np.ndarray,
                detect: bool = True) -> np.ndarray:
        """Add the edges of ``events`` in order; the graph features of each transfer.

        ``refs`` (int64, one per event) is kept with each edge (the decision it belongs to).
        Returns float64[n, N_EXTRA]: features per transaction row (0 for calls, and for every
        row when ``detect`` is false). The caller has called ``ensure`` for the events' ids and
        3 edges per event.
        """
        if events.dtype != np.int64 or events.ndim != 2 or events.shape[1] != k.N_EV:
            raise ValueError(f"events must be int64[n, {k.N_EV}], got {events.dtype}{events.shape}")
        n = events.shape[0]
        if refs.dtype != np.int64 or refs.shape != (n,):
            raise ValueError(f"refs must be int64[{n}]")
        if params.dtype != np.int64 or params.shape != (k.N_GPARAM,):
            raise ValueError(f"params must be int64[{k.N_GPARAM}]")
        out = np.zeros((n, k.N_X), dtype=np.float64)
        if n == 0:
            return out
        ids = events[:, k.EV_A:k.EV_D + 1]
        limit = self.node_capacity // k.N_NODE_KINDS
        if int(ids.max()) >= limit or int(events[:, k.EV_A:k.EV_B + 1].min()) < 0:
            raise ValueError("an event id is beyond the graph's node capacity (call ensure)")
        if self.edge_count + 3 * n > self.edge_capacity:
            raise ValueError("not enough free edge slots (call ensure)")
        s = self._scratch
        s.fit(params)
        k._process(events, refs, detect, self.e32, self.e64, self.ekind, self.n32, self.watch,
                   self.scr, self.meta, params, s.lst, s.lst2, s.qn, s.qd, s.path, s.cur, s.his,
                   s.amts, s.rmin, s.fsum, s.ctr, out)
        return out

    def load_edges(self, src: np.ndarray, dst: np.ndarray, ts: np.ndarray, amount: np.ndarray,
                   kind: np.ndarray, ref: np.ndarray | None = None) -> None:
        """Bulk-add edges given as node ids (``node_id``), in the given order (e.g. benchmarks)."""
        n = src.shape[0]
        if ref is None:
            ref = np.full(n, -1, dtype=np.int64)
        cols = [np.ascontiguousarray(c, dtype=np.int64) for c in (src, dst, ts, amount, kind, ref)]
        if any(c.shape != (n,) for c in cols):
            raise ValueError("all edge columns must have the same length")
        if n and (int(max(cols[0].max(), cols[1].max())) >= self.node_capacity
                  or int(min(cols[0].min(), cols[1].min())) < 0):
            raise ValueError("a node id is beyond the node capacity (call ensure)")
        if self.edge_count + n > self.edge_capacity:
            raise ValueError("not enough free edge slots (call ensure)")
        k._insert_many(*cols, self.e32, self.e64, self.ekind, self.n32, self.watch, self.meta)

    # ------------------------------------------------------------ reading
    def neighbourhood(self, centers: list[int], *, hops: int, lo_ms: int, hi_ms: int,
                      max_nodes: int, hub_degree: int, max_work: int) -> Neighbourhood:
        """Nodes within ``hops`` of ``centers`` over edges in [lo_ms, hi_ms] (see the kernel)."""
        c = np.asarray(list(dict.fromkeys(centers)), dtype=np.int64)
        if c.size == 0 or int(c.max()) >= self.node_capacity or int(c.min()) < 0:
            raise ValueError("centres must be known node ids")
        nodes = np.empty(max(max_nodes, c.size), dtype=np.int64)  # the centres are always kept
        dist = np.empty_like(nodes)
        cut = np.empty_like(nodes)
        lst = np.empty(max(hub_degree, nodes.size) + 2, dtype=np.int64)
        ctr = np.empty(k.N_CTR, dtype=np.int64)
        n, left, trunc, stamp = k._neighbourhood(self.e32, self.e64, self.ekind, self.n32,
                                                 self.scr, self.meta, c, hops, lo_ms, hi_ms,
                                                 hub_degree, max_work, nodes, dist, cut, lst, ctr)
        return Neighbourhood(nodes[:n].copy(), dist[:n].copy(), cut[:n].copy(), int(left),
                             bool(trunc), int(stamp))

    def edges_among(self, hood: Neighbourhood, *, lo_ms: int, hi_ms: int,
                    max_edges: int) -> EdgeRows:
        """Edges in [lo_ms, hi_ms] between the nodes of ``hood`` (at most ``max_edges``); call it
        right after ``neighbourhood`` (left-out edges are counted from that search's marks)."""
        out = np.empty(max_edges, dtype=np.int64)
        n, left = k._edges_among(self.e32, self.e64, self.n32, self.scr, self.meta,
                                 np.ascontiguousarray(hood.nodes, dtype=np.int64), hood.stamp,
                                 lo_ms, hi_ms, out)
        idx = out[:n]
        return EdgeRows(
            src=self.e32[idx, k.E_SRC].astype(np.int64),
            dst=self.e32[idx, k.E_DST].astype(np.int64),
            ts=self.e64[idx, k.E_TS].copy(),
            amount=self.e64[idx, k.E_AMT].copy(),
            kind=self.ekind[idx].astype(np.int64),
            ref=self.e64[idx, k.E_REF].copy(),
            left_out=int(left),
        )

    def is_terminal(self, node: int) -> bool:
        return bool(self.n32[node, k.N_FLAGS] & k.NF_TERMINAL)

    def has_edges(self, node: int) -> bool:
        return bool(0 <= node < self.node_capacity
                    and (self.n32[node, k.N_HEAD_OUT] >= 0 or self.n32[node, k.N_HEAD_IN] >= 0))


# empty rows: an edge slot (src, dst and next pointers -1), a node (no list heads or last links,
# no flags, no listed neighbours, not watchlisted, no search marks)
_EMPTY_EDGE: dict[str, np.ndarray] = {
    "e32": np.full(k.N_E32, -1, dtype=np.int32), "e64": np.zeros(k.N_E64, dtype=np.int64),
    "ekind": np.zeros((), dtype=np.int8)}
_EMPTY_NODE: dict[str, np.ndarray] = {
    "n32": np.array([-1] * k.N_FLAGS + [0] * (k.N_N32 - k.N_FLAGS), dtype=np.int32),
    "watch": np.zeros((), dtype=np.int64), "scr": np.zeros(k.N_SCR, dtype=np.int64)}
# node rows are added in multiples of this
_NODE_STEP = 3 * 1024
