"""Added time per decision of the graph checks on a large live graph, and bytes per edge.

    python -m bench.graph_latency [--edges 10000000] [--accounts 2000000] [--queries 20000]
                                  [--round-share 0.0]

Builds a graph of ``--edges`` transfers (plus phone/device links and calls) straight into the
``LiveGraph`` arrays with numpy: 90 days of payments by ``--accounts`` persons, 70 % to other
persons (Zipf-skewed, so some people get many payments) and 30 % to 20,000 merchants (Zipf:
a few merchants with tens of thousands of payers, the hubs the searches must not expand),
1 % of accounts and 0.5 % of phones watchlisted; ``--round-share`` of the transfers (and of the
screened ones) pay a round price from a short list instead of a log-normal amount, as people
often do, so payees have several payers of one amount (what the fee-tree detector looks
further into). Then it screens ``--queries`` new transfers one at a time exactly as the
core's graph pass (``Screener._graph_pass``) does (``ensure`` + ``process`` of a one-row event
matrix) and reports the median, p99 and p99.9 of that stage's time with the detectors on and,
side by side, with them off (edges still added), plus the work (list entries the
detectors read per decision) and cut statistics.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np

from features.layout import GRAPH_FEATURES
from features.state import empty_events
from graph import _kernels as k
from graph.live import BYTES_PER_EDGE, BYTES_PER_NODE, GraphParams, LiveGraph

__all__ = ["build", "main", "measure"]

DAY = 86_400_000
# round prices (fen) and how often each is paid: 50 to 5,000 CNY, cheaper ones more often
ROUND_FEN = np.array([5_000, 10_000, 20_000, 30_000, 50_000, 80_000, 100_000, 200_000, 380_000,
                      500_000], dtype=np.int64)
ROUND_WEIGHT = 1.0 / np.arange(1, ROUND_FEN.size + 1)
T_END = 1_767_225_600_000  # 2026-01-01 UTC


def _zipf_ids(rng: np.random.Generator, n: int, size: int, a: float) -> np.ndarray:
    """Ids in [0, size) with a Zipf-like skew (rank 0 the most frequent), shuffled."""
    ranks = (rng.pareto(a, n) * size / 50).astype(np.int64) % size
    perm = rng.permutation(size)
    return perm[ranks]


def _nodes(kind: int, ids: np.ndarray) -> np.ndarray:
    """``graph.live.node_id`` for a whole column."""
    out: np.ndarray = ids * 3 + kind
    return out


def _amounts(rng: np.random.Generator, n: int, round_share: float) -> np.ndarray:
    """Log-normal amounts (median 81 CNY), ``round_share`` of them a round price instead."""
    amount = np.exp(rng.normal(9.0, 1.5, n)).astype(np.int64) + 1
    if round_share <= 0:  # (draws nothing more: the graph is the one of earlier runs)
        return amount
    price = rng.choice(ROUND_FEN, n, p=ROUND_WEIGHT / ROUND_WEIGHT.sum())
    out: np.ndarray = np.where(rng.random(n) < round_share, price, amount)
    return out


def build(edges: int, accounts: int, seed: int = 0,
          round_share: float = 0.0) -> tuple[LiveGraph, int, int]:
    """A LiveGraph holding ``edges`` transfers and about 20 % more links and calls."""
    rng = np.random.default_rng(seed)
    merchants = 20_000
    phones = accounts
    n_calls = edges // 10
    n_links = edges // 10
    total = edges + n_calls + n_links
    g = LiveGraph(nodes=3 * (accounts + merchants), edges=total + 4 * 65_536, max_edges=1 << 30)
    g.ensure(accounts + merchants, phones, accounts, 0)
    payer = rng.integers(0, accounts, edges)
    to_merchant = rng.random(edges) < 0.3
    payee = np.where(to_merchant, accounts + _zipf_ids(rng, edges, merchants, 1.2),
                     _zipf_ids(rng, edges, accounts, 1.5))
    payee = np.where(payee == payer, (payee + 1) % accounts, payee)
    amount = _amounts(rng, edges, round_share)
    caller = rng.integers(0, phones, n_calls)
    callee = (caller + 1 + rng.integers(0, phones - 1, n_calls)) % phones
    linked = rng.integers(0, accounts, n_links)
    src = np.concatenate([_nodes(0, payer), _nodes(1, caller), _nodes(0, linked)])
    dst = np.concatenate([_nodes(0, payee), _nodes(1, callee),
                          np.where(rng.random(n_links) < 0.5, _nodes(1, linked),
                                   _nodes(2, linked))])
    kind = np.concatenate([np.full(edges, k.K_TRANSFER), np.full(n_calls, k.K_CALL),
                           np.where(dst[edges + n_calls:] % 3 == 1, k.K_LINK_PHONE,
                                    k.K_LINK_DEVICE)])
    ts = np.sort(rng.integers(T_END - 90 * DAY, T_END, total))
    order = rng.permutation(total)  # kinds interleaved in time
    amt = np.concatenate([amount, rng.integers(1, 900, n_calls), np.ones(n_links, np.int64)])
    g.load_edges(src[order], dst[order], ts, amt[order], kind[order])
    for acc in rng.choice(accounts, accounts // 100, replace=False):
        g.set_watch(0, int(acc), T_END + 365 * DAY)
    for ph in rng.choice(phones, phones // 200, replace=False):
        g.set_watch(1, int(ph), T_END + 365 * DAY)
    return g, accounts, merchants


def measure(g: LiveGraph, accounts: int, merchants: int, queries: int, params: GraphParams,
            detect: bool, seed: int = 1,
            round_share: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-decision graph-stage times (ns), features and work of ``queries`` new transfers."""
    rng = np.random.default_rng(seed)
    p = params.array()
    times = np.empty(queries, dtype=np.int64)
    work = np.empty(queries, dtype=np.int64)
    feats = np.zeros((queries, len(GRAPH_FEATURES)))
    payer = rng.integers(0, accounts, queries)
    to_merchant = rng.random(queries) < 0.3
    payee = np.where(to_merchant, accounts + _zipf_ids(rng, queries, merchants, 1.2),
                     _zipf_ids(rng, queries, accounts, 1.5))
    payee = np.where(payee == payer, (payee + 1) % accounts, payee)
    amount = 10_000 + np.arange(queries)
    if round_share > 0:
        amount = np.where(rng.random(queries) < round_share, _amounts(rng, queries, 1.0), amount)
    ref = np.zeros(1, dtype=np.int64)
    for i in range(queries):
        ev = empty_events(1)
        ev[0, k.EV_KIND] = k.KIND_TXN
        ev[0, k.EV_TS] = T_END + i * 50
        ev[0, k.EV_A], ev[0, k.EV_B] = payer[i], payee[i]
        ev[0, k.EV_C] = payer[i] if i % 2 else -1
        ev[0, k.EV_AMOUNT] = amount[i]
        before = g.work_done
        t0 = time.perf_counter_ns()
        g.ensure(accounts + merchants, accounts, accounts, 3, expiry_ms=180 * DAY)
        out = g.process(ev, ref, p, detect)
        times[i] = time.perf_counter_ns() - t0
        work[i] = g.work_done - before
        feats[i] = out[0]
    return times, feats, work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=2_000_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--round-share", type=float, default=0.0,
                        help="share of transfers paying a round price (0..1)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    g, accounts, merchants = build(args.edges, args.accounts, round_share=args.round_share)
    built = time.perf_counter() - t0
    edge_bytes = g.e32.nbytes + g.e64.nbytes + g.ekind.nbytes
    print(f"built {g.edge_count:,} edges ({args.edges:,} transfers) over {args.accounts:,} "
          f"accounts in {built:.1f} s; {BYTES_PER_EDGE} B per edge slot, "
          f"{edge_bytes / g.edge_count:.1f} B per stored edge at this fill "
          f"({g.edge_capacity:,} slots), {BYTES_PER_NODE} B per node; "
          f"graph total {g.nbytes() / 2**30:.2f} GiB")
    gc.collect()
    gc.freeze()
    params = GraphParams()
    measure(g, accounts, merchants, 500, params, True, seed=99,
            round_share=args.round_share)  # warm
    rows = []
    for detect in (False, True):  # off first, so both see the same graph size
        times, feats, work = measure(g, accounts, merchants, args.queries, params, detect,
                                     seed=2 + detect, round_share=args.round_share)
        us = times / 1000
        rows.append((detect, np.median(us), np.percentile(us, 99), np.percentile(us, 99.9),
                     us.max(), feats))
    print(f"{'graph stage per decision':28} {'median':>9} {'p99':>9} {'p99.9':>9} {'max':>9}  (µs)")
    for detect, med, p99, p999, top, _ in rows:
        name = "detectors on" if detect else "edges only (detectors off)"
        print(f"{name:28} {med:9.1f} {p99:9.1f} {p999:9.1f} {top:9.1f}")
    feats = rows[1][5]
    col = {n: i for i, n in enumerate(GRAPH_FEATURES)}
    print(f"searches cut at a hub: {np.mean(feats[:, col['graph_hub_cuts']] > 0):.1%} of "
          f"decisions; work budget hit: {np.mean(feats[:, col['graph_truncated']] > 0):.2%}; "
          f"payee within 2 hops of a listed entity: "
          f"{np.mean(feats[:, col['graph_payee_watch_hops']] > 0):.1%}")
    print(f"list entries read per decision: mean {work.mean():.1f}, p99 "
          f"{np.percentile(work, 99):.0f}, max {work.max()}; payee paid this amount by 2+ "
          f"payers (fee-tree scans its payments out): "
          f"{np.mean(feats[:, col['graph_fee_same_amount_payers']] >= 2):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
