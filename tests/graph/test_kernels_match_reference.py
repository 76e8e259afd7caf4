"""The graph kernels agree with their plain-Python twin (``tests/graph/reference.py``), and the
twin agrees with networkx where the bounds do not bind.

Random streams of transfers (with late events, equal times, repeated pairs, cash terminals,
phone and device links) and calls over a few ids go through ``LiveGraph.process`` and
``RefGraph.process``; every detector output of every transfer must be equal, under random
windows and random, often binding, bounds (hub degree, fan cap, work budget), with expiry
compactions in between. Then the case-graph neighbourhood of random centres must be equal.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import _kernels as fk
from features.layout import GRAPH_FEATURES
from graph import _kernels as k
from graph.live import LiveGraph
from tests.graph.reference import RefGraph

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_704_038_400_000
N_ACC, N_PHONE, N_DEV = 7, 4, 3
TERMINAL = 6  # account 6 is a cash terminal whenever it takes part


def txn(ts: int, a: int, b: int, amount: int, phone: int = -1, device: int = -1,
        organisation: tuple[bool, bool] = (False, False)) -> list[int]:
    """A transfer naming each side a person, a cash terminal (account ``TERMINAL``) or, where
    ``organisation`` says so, an organisation."""
    row = [0] * k.N_EV
    row[k.EV_KIND], row[k.EV_TS], row[k.EV_A], row[k.EV_B] = k.KIND_TXN, ts, a, b
    row[k.EV_C], row[k.EV_D], row[k.EV_AMOUNT] = phone, device, amount
    flags = 0
    for v, org, person, terminal in ((a, organisation[0], k.TF_PAYER_PERSON, k.TF_PAYER_TERMINAL),
                                     (b, organisation[1], k.TF_PAYEE_PERSON, k.TF_PAYEE_TERMINAL)):
        if v == TERMINAL:
            flags |= terminal
        elif not org:
            flags |= person
    row[k.EV_FLAGS] = flags
    return row


def call(ts: int, a: int, b: int, duration: int, new: bool = True) -> list[int]:
    row = [0] * k.N_EV
    row[k.EV_KIND], row[k.EV_TS], row[k.EV_A], row[k.EV_B] = k.KIND_CALL, ts, a, b
    row[k.EV_C], row[k.EV_D], row[k.EV_AMOUNT] = -1, -1, duration
    row[k.EV_FLAGS] = k.CF_NEW if new else 0
    return row


def params(**kw: int) -> list[int]:
    p = [0] * k.N_GPARAM
    defaults = {
        k.G_FAN_WINDOW: DAY, k.G_SG_WINDOW: DAY, k.G_CYCLE_WINDOW: 2 * DAY, k.G_CYCLE_MAX_LEN: 6,
        k.G_CYCLE_ORDERED: 0, k.G_CHAIN_GAP: HOUR, k.G_CHAIN_MAX_HOPS: 6,
        k.G_CHAIN_MIN_PPM: 100_000, k.G_CHAIN_MAX_PPM: 1_050_000, k.G_FUND_WINDOW: 10 * DAY,
        k.G_FUND_SMALL_MAX: 1_000, k.G_PROX_WINDOW: 10 * DAY, k.G_PROX_MAX_HOPS: 3,
        k.G_HUB_DEGREE: 1_000, k.G_FAN_CAP: 1_000, k.G_MAX_WORK: 1_000_000,
        k.G_LINK_REFRESH: DAY, k.G_CYCLE_MIN_PPM: 0, k.G_FEE_WINDOW: 10 * DAY, k.G_FEE_GAP: DAY,
        k.G_FEE_TOL_PPM: 0,
    }
    for i, v in defaults.items():
        p[i] = v
    for name, v in kw.items():
        p[getattr(k, name)] = v
    return p


# ================================================================= strategies
AMOUNTS = st.one_of(st.sampled_from([100, 99, 98, 95, 90, 50, 10, 1_000, 5_000]),
                    st.integers(1, 10_000))
STEP = st.one_of(st.sampled_from([0, 0, 1, MINUTE, 10 * MINUTE, HOUR]),
                 st.integers(0, 3 * HOUR), st.integers(0, 2 * DAY))
# which sides a transfer names an organisation (mostly none; the latest word counts)
SIDES = st.one_of(st.just((False, False)), st.just((False, False)), st.just((False, False)),
                  st.tuples(st.booleans(), st.booleans()))
LATE = st.one_of(st.just(0), st.just(0), st.just(0), st.just(0),
                 st.sampled_from([1, MINUTE, HOUR, DAY]), st.integers(0, 3 * DAY))


@st.composite
def streams(draw: st.DrawFn, max_events: int = 40) -> list[list[int]]:
    clock = T0
    events = []
    for _ in range(draw(st.integers(0, max_events))):
        clock += draw(STEP)
        ts = clock - draw(LATE)
        if draw(st.integers(0, 9)) < 8:
            a = draw(st.integers(0, N_ACC - 1))
            b = draw(st.integers(0, N_ACC - 2))
            b = b + 1 if b >= a else b
            phone = draw(st.one_of(st.just(-1), st.integers(0, N_PHONE - 1)))
            device = draw(st.one_of(st.just(-1), st.integers(0, N_DEV - 1)))
            events.append(txn(ts, a, b, draw(AMOUNTS), phone, device, draw(SIDES)))
        else:
            a = draw(st.integers(0, N_PHONE - 1))
            b = (a + draw(st.integers(1, N_PHONE - 1))) % N_PHONE
            events.append(call(ts, a, b, draw(st.integers(0, 600)), draw(st.booleans())))
    return events


@st.composite
def fee_streams(draw: st.DrawFn, max_events: int = 40) -> list[list[int]]:
    """Transfers shaped like pyramid fee trees and their look-alikes: one fee (up to the largest
    amount the service takes) paid by members to recruiters, nearly the fee, pieces of it passed
    on soon after or late (to members or to organisations), the fee paid out before or after,
    other amounts, cash terminals, equal and out-of-order times."""
    fee = draw(st.sampled_from([100, 1_000, 380_000, 10**15 - 7, 10**15]))
    near = st.sampled_from([0, 0, 0, 0, 0, 1, -1, fee // 100, -(fee // 50), fee // 10])
    clock = T0
    events = []
    for _ in range(draw(st.integers(0, max_events))):
        clock += draw(st.sampled_from([0, 0, 1, MINUTE, HOUR, 6 * HOUR, DAY, 3 * DAY]))
        ts = clock - draw(st.sampled_from([0, 0, 0, 0, 1, HOUR, DAY]))
        what = draw(st.integers(0, 9))
        if what < 5:  # a fee (or nearly) to one of three recruiters
            b = draw(st.integers(0, 2))
            a = (b + draw(st.integers(1, N_ACC - 1))) % N_ACC
            amount = fee + draw(near)
        elif what < 8:  # a recruiter passes a piece of a fee on
            a = draw(st.integers(0, 2))
            b = (a + draw(st.integers(1, N_ACC - 1))) % N_ACC
            amount = fee * draw(st.sampled_from([1, 10, 30, 50, 99, 100])) // 100
        else:
            a = draw(st.integers(0, N_ACC - 1))
            b = (a + draw(st.integers(1, N_ACC - 1))) % N_ACC
            amount = draw(AMOUNTS)
        events.append(txn(ts, a, b, max(amount, 1), organisation=draw(SIDES)))
    return events


@st.composite
def param_sets(draw: st.DrawFn) -> list[int]:
    window = st.one_of(st.sampled_from([0, HOUR, DAY, 3 * DAY]), st.integers(0, 5 * DAY))
    lo_ppm = draw(st.sampled_from([0, 100_000, 500_000, 900_000, 1_000_000]))
    fan = draw(window)
    return params(
        # equal windows: gather-scatter takes the payer's fan counts when they are whole
        G_FAN_WINDOW=fan, G_SG_WINDOW=draw(st.one_of(st.just(fan), window)),
        G_CYCLE_WINDOW=draw(window),
        G_CYCLE_MAX_LEN=draw(st.integers(0, 7)), G_CYCLE_ORDERED=draw(st.integers(0, 1)),
        G_CHAIN_GAP=draw(st.one_of(st.sampled_from([0, MINUTE, HOUR]), st.integers(0, DAY))),
        G_CHAIN_MAX_HOPS=draw(st.integers(0, 7)), G_CHAIN_MIN_PPM=lo_ppm,
        G_CHAIN_MAX_PPM=lo_ppm + draw(st.sampled_from([0, 50_000, 1_000_000, 10_000_000])),
        G_FUND_WINDOW=draw(window), G_FUND_SMALL_MAX=draw(st.sampled_from([0, 100, 1_000, 10**9])),
        G_PROX_WINDOW=draw(window), G_PROX_MAX_HOPS=draw(st.integers(0, 5)),
        G_HUB_DEGREE=draw(st.one_of(st.integers(1, 4), st.just(1_000))),
        G_FAN_CAP=draw(st.one_of(st.integers(1, 4), st.just(1_000))),
        G_MAX_WORK=draw(st.one_of(st.integers(1, 40), st.just(1_000_000))),
        G_LINK_REFRESH=draw(st.sampled_from([0, HOUR, DAY])),
        G_CYCLE_MIN_PPM=draw(st.sampled_from([0, 0, 500_000, 900_000, 990_000, 1_000_000])),
        G_FEE_WINDOW=draw(window),
        G_FEE_GAP=draw(st.one_of(st.sampled_from([0, 1, MINUTE, HOUR, DAY]), st.integers(0, 2 * DAY))),
        G_FEE_TOL_PPM=draw(st.sampled_from([0, 0, 10_000, 50_000, 100_000])),
    )


@st.composite
def fee_param_sets(draw: st.DrawFn) -> list[int]:
    """Default parameters but for the fee tree's windows and tolerance and the bounds."""
    return params(
        G_FEE_WINDOW=draw(st.sampled_from([0, HOUR, DAY, 10 * DAY, 60 * DAY])),
        G_FEE_GAP=draw(st.sampled_from([0, 1, HOUR, 6 * HOUR, DAY, 3 * DAY])),
        G_FEE_TOL_PPM=draw(st.sampled_from([0, 0, 1, 10_000, 100_000])),
        G_HUB_DEGREE=draw(st.one_of(st.integers(1, 4), st.just(1_000))),
        G_MAX_WORK=draw(st.one_of(st.integers(1, 60), st.just(1_000_000))),
    )


WATCH = st.dictionaries(st.integers(0, 3 * N_ACC - 1),
                        st.one_of(st.just(0), st.integers(T0, T0 + 5 * DAY), st.just(2**62)),
                        max_size=4)


def _graph(watch: dict[int, int]) -> tuple[LiveGraph, RefGraph]:
    live = LiveGraph(nodes=4, edges=4, max_edges=1 << 20)
    live.ensure(N_ACC, N_PHONE, N_DEV, 0)
    ref = RefGraph()
    for node, until in watch.items():
        live.set_watch_node(node, until)
        ref.watch[node] = until
    return live, ref


def _run(events: list[list[int]], gp: list[int], watch: dict[int, int],
         compact_at: list[tuple[int, int]] | None = None,
         rewatch: list[tuple[int, int, int]] | None = None) -> tuple[LiveGraph, RefGraph]:
    """Both engines over ``events``, compacting at (row, age) points and changing the watchlist
    at (row, node, until) points; asserts every row equal, and the listed-neighbour counts."""
    live, ref = _graph(watch)
    gpa = np.array(gp, dtype=np.int64)
    cuts = sorted(compact_at or [])
    changes = rewatch or []
    bounds = sorted({0, len(events), *(c for c, _ in cuts if 0 < c < len(events)),
                     *(c for c, _, _ in changes if 0 < c < len(events))})
    ages = dict(cuts)
    for lo, hi in itertools.pairwise(bounds):
        if lo in ages and live.newest_ms > k.NO_TS:
            min_ts = live.newest_ms - ages[lo]
            live.compact(min_ts)
            ref.compact(min_ts)
        for _, node, until in (c for c in changes if c[0] == lo):
            live.set_watch_node(node, until)
            ref.watch[node] = until
        chunk = events[lo:hi]
        live.ensure(N_ACC, N_PHONE, N_DEV, 3 * len(chunk))
        ev = np.array(chunk, dtype=np.int64).reshape(len(chunk), k.N_EV)
        refs = np.arange(lo, hi, dtype=np.int64)
        got = live.process(ev, refs, gpa)
        want = ref.process(chunk, refs.tolist(), gp)
        bad = [f"event {lo + i} {GRAPH_FEATURES[j]}: kernel {got[i, j]!r} reference {want[i][j]!r}"
               for i in range(len(chunk)) for j in range(k.N_X) if got[i, j] != want[i][j]]
        assert not bad, "\n".join(bad[:12])
    assert live.edge_count == len(ref.edges)
    assert live.work_done == ref.work_done
    near = [sum(ref.watch.get(e.dst, 0) > 0 for e in ref.out.get(n, []))
            + sum(ref.watch.get(e.src, 0) > 0 for e in ref.inn.get(n, []))
            for n in range(3 * N_ACC)]
    assert live.n32[:3 * N_ACC, k.N_NEAR].tolist() == near
    live.check((N_ACC, N_PHONE, N_DEV))  # what restoring a checkpoint demands holds
    return live, ref


# ================================================================= agreement on random graphs
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(), st.one_of(param_sets(), st.just(params())), WATCH)
def test_detectors_match_reference_on_random_graphs(events: list[list[int]], gp: list[int],
                                                    watch: dict[int, int]) -> None:
    """Every detector output equals the twin's, whatever the windows, caps and budgets."""
    _run(events, gp, watch)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fee_streams(), st.one_of(fee_param_sets(), param_sets(), st.just(params())))
def test_fee_tree_matches_reference_on_fee_like_graphs(events: list[list[int]],
                                                      gp: list[int]) -> None:
    """On streams dense in one fee amount (fee trees, near misses, pieces passed on, hubs, ties,
    late events, amounts up to 10**15) the fee-tree outputs, like all others, equal the twin's."""
    _run(events, gp, {})


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(60), param_sets(), WATCH,
       st.lists(st.tuples(st.integers(1, 59), st.sampled_from([0, HOUR, DAY, 2 * DAY])),
                max_size=3),
       st.lists(st.tuples(st.integers(1, 59), st.integers(0, 3 * N_ACC - 1),
                          st.sampled_from([0, T0 + DAY, 2**62])), max_size=4))
def test_expiry_and_watchlist_changes_keep_the_kernels_equal_to_the_reference(
        events: list[list[int]], gp: list[int], watch: dict[int, int],
        compact_at: list[tuple[int, int]], rewatch: list[tuple[int, int, int]]) -> None:
    """Dropping old edges in place (renumbering lists and links) loses nothing younger, and
    listing or unlisting entities mid-stream keeps the listed-neighbour counts exact."""
    _run(events, gp, watch, compact_at, rewatch)


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(), st.lists(st.integers(0, 3 * N_ACC - 1), min_size=1, max_size=2),
       st.integers(0, 4), st.integers(1, 4), st.integers(1, 30), st.integers(1, 200))
def test_case_neighbourhood_matches_reference(events: list[list[int]], centers: list[int],
                                             hops: int, hub: int, max_nodes: int,
                                             max_work: int) -> None:
    """The case-graph breadth-first search keeps the same nodes, distances, cuts and left-outs."""
    live, ref = _run(events, params(), {})
    lo, hi = T0, T0 + 10 * DAY
    got = live.neighbourhood(centers, hops=hops, lo_ms=lo, hi_ms=hi, max_nodes=max_nodes,
                             hub_degree=hub, max_work=max_work)
    cap = max(max_nodes, len(set(centers)))  # the centres are always kept
    rows, left, truncated = ref.neighbourhood(centers, hops, lo, hi, hub, max_work, cap)
    assert list(zip(got.nodes.tolist(), got.dist.tolist(), got.cut.tolist(), strict=True)) == rows
    assert (got.left_out, got.truncated) == (left, truncated)


# ================================================================= the twin against networkx
def _window_graph(ref: RefGraph, lo: int, hi: int, money: bool) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph()
    for e in ref.edges:
        if lo <= e.ts <= hi and (not money or e.kind == k.K_TRANSFER) and (
                e.src not in ref.terminals and e.dst not in ref.terminals):
            g.add_edge(e.src, e.dst, ts=e.ts, amount=e.amount)
    return g


def _nx_cycles(g: nx.MultiDiGraph, a: int, b: int, t: int, x0: int, top: int,
               ordered: bool, floor: float) -> tuple[int, float]:
    if top < 3 or a not in g or b not in g:
        return 0, 0.0
    found = []
    for path in nx.all_simple_paths(g, b, a, cutoff=top - 1):
        if len(path) < 3:
            continue
        options = [list(g[u][v].values()) for u, v in itertools.pairwise(path)]
        for choice in itertools.product(*options):
            amounts = [c["amount"] for c in choice] + [x0]
            times = [c["ts"] for c in choice] + [t]
            if ordered and times != sorted(times):
                continue
            kept = min(min(p, q) / max(p, q) for p, q in itertools.pairwise(amounts))
            if kept >= floor:
                found.append((len(path), kept))
    if not found:
        return 0, 0.0
    return min(n for n, _ in found), max(r for _, r in found)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(30), st.integers(0, 1), st.integers(3, 6), WATCH,
       st.sampled_from([0, 500_000, 980_000]))
def test_reference_agrees_with_networkx_when_bounds_do_not_bind(
        events: list[list[int]], ordered: int, top: int, watch: dict[int, int], floor: int) -> None:
    """Fan counts, scatter-gather, cycles and proximity recomputed with networkx are equal."""
    gp = params(G_CYCLE_ORDERED=ordered, G_CYCLE_MAX_LEN=top, G_CYCLE_MIN_PPM=floor)
    ref = RefGraph(watch=dict(watch))
    for i, row in enumerate(events):
        got = ref.process([row], [i], gp)[0]
        if row[k.EV_KIND] != k.KIND_TXN:
            continue
        a, b, t, x = row[k.EV_A] * 3, row[k.EV_B] * 3, row[k.EV_TS], row[k.EV_AMOUNT]
        if a in ref.terminals or b in ref.terminals:
            continue
        fan = _window_graph(ref, t - gp[k.G_FAN_WINDOW], t, money=True)
        assert got[k.X_PAYER_FAN_OUT] == len(set(fan.successors(a)) - {a})
        assert got[k.X_PAYEE_FAN_IN] == len(set(fan.predecessors(b)) - {b})
        sg = _window_graph(ref, t - gp[k.G_SG_WINDOW], t, money=True)
        into_b = set(sg.predecessors(b))
        want_sg = max([len({m for m in sg.successors(s) if m in into_b and m != b})
                       for s in sg.predecessors(a) if s != b] or [0])
        assert got[k.X_SCATTER_GATHER] == want_sg
        cyc = _window_graph(ref, t - gp[k.G_CYCLE_WINDOW], t, money=True)
        assert (got[k.X_CYCLE_LEN], got[k.X_CYCLE_RATIO]) == _nx_cycles(
            cyc, a, b, t, x, top, bool(ordered), floor / 1e6)
        for who, col in ((a, k.X_PAYER_WATCH_HOPS), (b, k.X_PAYEE_WATCH_HOPS)):
            prox = nx.Graph(_window_graph(ref, t - gp[k.G_PROX_WINDOW], t, money=False))
            prox.add_node(who)
            dist = nx.single_source_shortest_path_length(prox, who, cutoff=gp[k.G_PROX_MAX_HOPS])
            hits = [d for v, d in dist.items() if v != who and ref.watch.get(v, 0) > t]
            assert got[col] == min(hits or [0])


# ================================================================= layout
def test_event_layout_constants_equal_the_feature_kernels() -> None:
    """The graph kernels read the same event matrix columns and flags as the feature kernels."""
    for name in ("EV_KIND", "EV_TS", "EV_A", "EV_B", "EV_C", "EV_D", "EV_AMOUNT", "EV_FLAGS",
                 "N_EV", "KIND_TXN", "KIND_CALL", "TF_PAYER_TERMINAL", "TF_PAYEE_TERMINAL",
                 "TF_PAYER_PERSON", "TF_PAYEE_PERSON", "CF_NEW"):
        assert getattr(k, name) == getattr(fk, name), name
    assert len(GRAPH_FEATURES) == k.N_X == fk.N_EXTRA
    assert GRAPH_FEATURES[k.X_CYCLE_LEN] == "graph_cycle_length"
    assert GRAPH_FEATURES[k.X_PAYEE_WATCH_HOPS] == "graph_payee_watch_hops"
    assert GRAPH_FEATURES[k.X_GATHER_SCATTER] == "graph_gather_scatter"
    assert GRAPH_FEATURES[k.X_FEE_PAYERS] == "graph_fee_same_amount_payers"
    assert GRAPH_FEATURES[k.X_FEE_PAID_SAME] == "graph_fee_payee_paid_same"
    assert GRAPH_FEATURES[k.X_FEE_UPLINE_SHARE] == "graph_fee_upline_share"
