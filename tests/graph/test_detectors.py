"""Each detector on a hand-built graph with the answer worked out by hand; bounds and memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.layout import GRAPH_FEATURES
from graph import _kernels as k
from graph.live import BYTES_PER_EDGE, GraphParams, LiveGraph, node_id
from tests.graph.test_kernels_match_reference import T0, call, txn

MIN = 60_000
DAY = 86_400_000
P = GraphParams()


def run(events: list[list[int]], params: GraphParams = P, watch: dict[int, int] | None = None,
        accounts: int = 64) -> tuple[LiveGraph, list[dict[str, float]]]:
    g = LiveGraph(nodes=16, edges=16)
    g.ensure(accounts, 16, 16, 3 * len(events))
    for node, until in (watch or {}).items():
        g.set_watch_node(node, until)
    out = g.process(np.array(events, dtype=np.int64), np.arange(len(events), dtype=np.int64),
                    params.array())
    return g, [dict(zip(GRAPH_FEATURES, row.tolist(), strict=True)) for row in out]


def test_fan_in_and_fan_out_count_distinct_counterparties_in_the_window() -> None:
    """Repeat payers count once; payments older than the fan window do not count."""
    ev = [txn(T0 - 8 * DAY, 9, 0, 100)] + [txn(T0 + i * MIN, 1 + i % 4, 0, 100) for i in range(6)]
    ev += [txn(T0 + 10 * MIN + i, 0, 10 + i, 100) for i in range(3)]
    _, rows = run(ev)
    assert rows[6]["graph_payee_fan_in"] == 4
    assert rows[-1]["graph_payer_fan_in"] == 4 and rows[-1]["graph_payer_fan_out"] == 3


def test_gather_scatter_is_the_smaller_of_payers_and_payees() -> None:
    """5 payers in, then 3 payees out: at the third payment out, gather-scatter is 3."""
    ev = [txn(T0 + i * MIN, 10 + i, 1, 100) for i in range(5)]
    ev += [txn(T0 + DAY + i * MIN, 1, 20 + i, 100) for i in range(3)]
    _, rows = run(ev)
    assert [r["graph_gather_scatter"] for r in rows[5:]] == [1, 2, 3]


def test_scatter_gather_counts_intermediaries_from_one_source() -> None:
    """S pays 4 accounts, each passes it to T: the 4th gather leg sees 4 intermediaries."""
    ev = [txn(T0 + i * MIN, 1, 10 + i, 1000) for i in range(4)]
    ev += [txn(T0 + DAY + i * MIN, 10 + i, 2, 990) for i in range(4)]
    _, rows = run(ev)
    assert [r["graph_scatter_gather"] for r in rows[4:]] == [1, 2, 3, 4]


def test_cycle_length_and_kept_ratio() -> None:
    """A -> B -> C -> D -> A losing 1 % a hop: length 4, kept ratio 0.99; 2-cycles do not count;
    with every hop required to keep 99.5 % there is no cycle."""
    ev = [txn(T0, 1, 2, 10_000), txn(T0 + MIN, 2, 1, 10_000), txn(T0 + 2 * MIN, 2, 3, 9_900),
          txn(T0 + 3 * MIN, 3, 4, 9_801), txn(T0 + 4 * MIN, 4, 1, 9_703)]
    _, rows = run(ev)
    assert rows[1]["graph_cycle_length"] == 0
    assert rows[4]["graph_cycle_length"] == 4
    assert rows[4]["graph_cycle_kept_ratio"] == pytest.approx(min(9_900 / 10_000, 9_801 / 9_900,
                                                                  9_703 / 9_801))
    _, strict = run(ev, GraphParams(cycle_min_ratio=0.995))
    assert strict[4]["graph_cycle_length"] == 0


def test_time_ordered_cycles_need_money_to_move_forward() -> None:
    """Closing a cycle whose legs ran backwards in time counts only when order is not required."""
    ev = [txn(T0 + 3 * MIN, 2, 3, 100), txn(T0 + 2 * MIN, 3, 1, 100), txn(T0 + 5 * MIN, 1, 2, 100)]
    _, plain = run(ev, GraphParams(cycle_time_ordered=False))
    _, ordered = run(ev, GraphParams(cycle_time_ordered=True))
    assert plain[2]["graph_cycle_length"] == 3 and ordered[2]["graph_cycle_length"] == 0


def test_layering_chain_within_minutes() -> None:
    """Money passed on within minutes through 4 accounts is a 4-hop chain; a slow hop breaks it."""
    ev = [txn(T0, 1, 2, 50_000), txn(T0 + 5 * MIN, 2, 3, 49_900), txn(T0 + 9 * MIN, 3, 4, 49_800),
          txn(T0 + 12 * MIN, 4, 5, 49_700), txn(T0 + 3 * 60 * MIN, 5, 6, 49_600)]
    _, rows = run(ev)
    assert [r["graph_chain_hops"] for r in rows] == [0, 2, 3, 4, 0]


def test_chain_allows_splits_down_to_the_min_ratio() -> None:
    """A mule splitting 100 into 4 x 25 passes on 0.25 of it: a chain at min ratio 0.1, not 0.5."""
    ev = [txn(T0, 1, 2, 100)] + [txn(T0 + (i + 1) * MIN, 2, 10 + i, 25) for i in range(4)]
    _, rows = run(ev)
    _, strict = run(ev, GraphParams(chain_min_ratio=0.5))
    assert rows[-1]["graph_chain_hops"] == 2 and strict[-1]["graph_chain_hops"] == 0


def test_ponzi_signature_counts_repaid_unrelated_small_payers() -> None:
    """8 unrelated investors pay C; C pays 5 of them back: repaid 5, unrelated 5 (4 after two of
    them trade with each other)."""
    ev = [txn(T0 + i * MIN, 10 + i, 1, 500_000) for i in range(8)]
    ev += [txn(T0 + DAY + i * MIN, 1, 10 + i, 20_000) for i in range(5)]
    _, rows = run(ev)
    last = rows[-1]
    assert (last["graph_ponzi_small_payers"], last["graph_ponzi_repaid"],
            last["graph_ponzi_unrelated_repaid"]) == (8, 5, 5)
    _, related = run([*ev[:8], txn(T0 + 30 * MIN, 10, 11, 100), *ev[8:]])
    assert related[-1]["graph_ponzi_unrelated_repaid"] == 3
    _, big = run(ev, GraphParams(fund_small_max=100_000))
    assert big[-1]["graph_ponzi_repaid"] == 0


def test_refunds_of_the_payers_own_amount_are_not_ponzi_returns() -> None:
    """A group-buy organiser refunds five neighbours what each paid for a sold-out item: their
    own money back, not a return; a Ponzi pays a share of the principal, which counts."""
    ev = [txn(T0 + i * MIN, 10 + i, 1, 6_000 + 100 * i) for i in range(8)]
    refunds = [txn(T0 + DAY + i * MIN, 1, 10 + i, 6_000 + 100 * i) for i in range(5)]
    _, rows = run([*ev, *refunds])
    assert (rows[-1]["graph_ponzi_small_payers"], rows[-1]["graph_ponzi_repaid"]) == (8, 0)
    interest = [txn(T0 + DAY + i * MIN, 1, 10 + i, 300 + 5 * i) for i in range(5)]
    _, rows = run([*ev, *interest])
    assert rows[-1]["graph_ponzi_repaid"] == 5


FEE = 380_000  # 3,800 CNY
HOUR = 60 * MIN


def _fee(rows: list[dict[str, float]], i: int) -> tuple[float, float, float]:
    r = rows[i]
    return (r["graph_fee_same_amount_payers"], r["graph_fee_payee_paid_same"],
            r["graph_fee_upline_share"])


def _fee_tree(share: int = 30) -> list[list[int]]:
    """A (2) joins by paying its recruiter T (1) the fee; A's recruits 3, 4, 5 pay A the fee a
    day apart; an hour after each fee A passes ``share`` % of it up to T."""
    ev = [txn(T0, 2, 1, FEE)]
    for n, recruit in enumerate((3, 4, 5)):
        ev.append(txn(T0 + (n + 1) * DAY, recruit, 2, FEE))
        ev.append(txn(T0 + (n + 1) * DAY + HOUR, 2, 1, FEE * share // 100))
    return ev


def test_fee_tree_recruiter_paid_the_fee_and_passes_a_share_up() -> None:
    """At the third recruit's fee: 3 fee payers, A paid the fee itself before, and it passed 30 %
    of each earlier fee (2 of them) up to one account."""
    _, rows = run(_fee_tree())
    assert _fee(rows, 1) == (1, 0, 0)  # one payer is no pattern: nothing more is looked at
    assert _fee(rows, 3) == (2, 1, pytest.approx(0.3))
    assert _fee(rows, 5) == (3, 1, pytest.approx(0.3))
    assert rows[5]["graph_hub_cuts"] == 0 and rows[5]["graph_truncated"] == 0


def test_upline_share_is_the_smallest_share_of_each_fee_whose_time_has_run_out() -> None:
    """Pieces of 30 % and then 20 % of the fees: the share of each is 20 %. A fee received
    less than fee_forward_gap ago is not judged yet (its piece may still come)."""
    ev = _fee_tree()[:6]  # fees at rows 1, 3, 5, pieces at 2, 4; the third not passed on yet
    ev[4][k.EV_AMOUNT] = FEE * 20 // 100
    ev.append(txn(T0 + 3 * DAY + 2 * HOUR, 7, 2, FEE))
    _, rows = run(ev)
    assert _fee(rows, 5) == (3, 1, pytest.approx(0.2))
    # the third fee, two hours before, does not count against it
    assert _fee(rows, 6) == (4, 1, pytest.approx(0.2))
    _, fast = run(ev, GraphParams(fee_forward_gap_ms=30 * MIN))
    assert _fee(fast, 6) == (4, 1, 0)  # the pieces came an hour after: too late for 30 min


def test_tutor_collecting_one_fee_passes_nothing_up() -> None:
    """A tutor paid the same fee by 5 parents, who pays rent (more than a fee) and once an
    assistant (less, an hour after a fee): no fee of its own, and no share of *each* fee."""
    tutor, rent, assistant = 1, 20, 21
    ev = [txn(T0 + n * DAY, 10 + n, tutor, 200_000) for n in range(5)]
    ev.insert(2, txn(T0 + DAY + HOUR, tutor, assistant, 50_000))
    ev.insert(4, txn(T0 + 2 * DAY + 2 * HOUR, tutor, rent, 500_000))
    _, rows = run(ev)
    assert _fee(rows, len(ev) - 1) == (5, 0, 0)


def test_club_dues_passed_on_whole_or_in_one_sum_are_no_share() -> None:
    """A club's treasurer collects the same dues from members and passes them to the club's
    account, each in full or all in one sum that evening: neither is a piece of a fee."""
    treasurer, club = 1, 2
    dues = [txn(T0 + DAY * n + n * MIN, 10 + n, treasurer, 50_000) for n in range(5)]
    whole = [x for n, d in enumerate(dues)
             for x in (d, txn(T0 + DAY * n + HOUR, treasurer, club, 50_000))]
    _, rows = run(whole)
    assert _fee(rows, len(whole) - 2) == (5, 0, 0)
    one_sum = [*dues[:4], txn(T0 + 3 * DAY + 5 * HOUR, treasurer, club, 200_000), dues[4]]
    _, rows = run(one_sum)
    assert _fee(rows, len(one_sum) - 1) == (5, 0, 0)


def test_shop_selling_one_product_is_a_hub_and_its_settlement_is_no_piece() -> None:
    """A shop with more payers than hub_degree is cut (all 0); with fewer, its daily settlement
    to the owner is more than one price, so no share."""
    shop, owner = 1, 2
    ev = [txn(T0 + n * MIN, 10 + n, shop, 9_900) for n in range(8)]
    ev.append(txn(T0 + 10 * HOUR, shop, owner, 8 * 9_900))
    ev.append(txn(T0 + DAY, 30, shop, 9_900))
    _, small = run(ev, GraphParams(hub_degree=5))
    assert _fee(small, len(ev) - 1) == (0, 0, 0) and small[-1]["graph_hub_cuts"] >= 1
    _, rows = run(ev)
    assert _fee(rows, len(ev) - 1) == (9, 0, 0)


def test_crowdfunding_of_varied_amounts_has_few_fee_payers() -> None:
    """Donations for a medical bill vary: only the donors of this amount count."""
    patient = 1
    gifts = [10_000, 50_000, 20_000, 10_000, 100_000, 30_000]
    ev = [txn(T0 + n * HOUR, 10 + n, patient, x) for n, x in enumerate(gifts)]
    _, rows = run(ev)
    assert _fee(rows, 3) == (2, 0, 0) and _fee(rows, 5) == (1, 0, 0)


def test_donations_of_one_amount_then_shopping_is_no_upline_until_the_shop_is_a_person() -> None:
    """A patient's friends give the same round sum; the patient had once given that sum to a
    friend, and buys at the same pharmacy (an organisation) after each gift: no share passed up.
    The same payments to an account named a person are one."""
    patient, friend, pharmacy = 1, 2, 3
    ev = [txn(T0, patient, friend, 20_000)]
    for n in range(3):
        ev.append(txn(T0 + (n + 1) * DAY, 10 + n, patient, 20_000))
        ev.append(txn(T0 + (n + 1) * DAY + HOUR, patient, pharmacy, 3_800, organisation=(False, True)))
    _, rows = run(ev)
    assert _fee(rows, 5) == (3, 1, 0)
    as_person = [txn(r[k.EV_TS], r[k.EV_A], r[k.EV_B], r[k.EV_AMOUNT]) for r in ev]
    _, rows = run(as_person)
    assert _fee(rows, 5) == (3, 1, pytest.approx(0.19))
    # the latest word counts: the pharmacy named a person once after it was an organisation
    relabelled = [*ev[:5], txn(T0 + 2 * DAY + 2 * HOUR, 20, pharmacy, 100), *ev[5:]]
    _, rows = run(relabelled)
    assert _fee(rows, 6) == (3, 1, pytest.approx(0.19))


def test_fee_pieces_count_only_soon_after_a_fee_and_to_an_account_that_is_not_a_hub() -> None:
    """A piece sent more than fee_forward_gap after the last fee, or to an account with more
    payers than hub_degree (a shop), is no share passed up."""
    _, slow = run(_fee_tree(), GraphParams(fee_forward_gap_ms=30 * MIN))
    assert _fee(slow, 5) == (3, 1, 0)
    # T (1) also has 6 payers of its own: with hub_degree 5 it is no one's upline
    others = [txn(T0 + n * MIN - DAY, 30 + n, 1, 777) for n in range(6)]
    _, hub = run(others + _fee_tree(), GraphParams(hub_degree=5))
    assert _fee(hub, len(others) + 5)[2] == 0 and hub[-1]["graph_hub_cuts"] >= 1


def test_fee_amount_tolerance_merges_nearby_amounts() -> None:
    """A fee paid 1 % short matches only under a tolerance of at least 1 %; a fee paid by the
    payee in the same millisecond as its first receipt is not "before"."""
    ev = [txn(T0, 2, 1, FEE), txn(T0 + DAY, 3, 2, FEE - FEE // 100), txn(T0 + 2 * DAY, 4, 2, FEE)]
    _, exact = run(ev)
    _, loose = run(ev, GraphParams(fee_amount_tolerance=0.01))
    assert _fee(exact, 2) == (1, 0, 0) and _fee(loose, 2) == (2, 1, 0)
    tie = [txn(T0 + DAY, 2, 1, FEE), txn(T0 + DAY, 3, 2, FEE), txn(T0 + 2 * DAY, 4, 2, FEE)]
    _, rows = run(tie)
    assert _fee(rows, 2) == (2, 0, 0)


def test_fee_tree_seen_the_same_when_events_arrive_late() -> None:
    """The same fee tree with the first recruit's fee and the first piece passed up reported
    after later ones: placed in time order, the last fee sees the same."""
    ev = _fee_tree()
    g, rows = run([ev[0], ev[3], ev[1], ev[4], ev[2], ev[5]])
    assert g.late_inserts >= 3
    assert _fee(rows, 5) == (3, 1, pytest.approx(0.3))


def test_proximity_reaches_listed_entities_through_calls_and_links() -> None:
    """Payer's phone was called by a listed number: 2 hops (account - phone - phone)."""
    listed = node_id(k.NK_PHONE, 7)
    ev = [call(T0, 7, 3, 600), txn(T0 + MIN, 1, 2, 100, phone=3)]
    three = GraphParams(proximity_max_hops=3)
    _, rows = run(ev, three, watch={listed: 2**62})
    assert rows[1]["graph_payer_watch_hops"] == 2 and rows[1]["graph_payee_watch_hops"] == 3
    _, two = run(ev, watch={listed: 2**62})
    assert two[1]["graph_payee_watch_hops"] == 0  # the default looks 2 hops far
    _, expired = run(ev, three, watch={listed: T0})
    assert expired[1]["graph_payer_watch_hops"] == 0


def test_hubs_are_not_expanded_and_the_cut_is_counted() -> None:
    """A merchant with more payers than hub_degree stops the proximity search there."""
    shop, listed = 1, 2
    ev = [txn(T0, listed, shop, 100)] + [txn(T0 + i, 10 + i, shop, 100) for i in range(1, 8)]
    ev.append(txn(T0 + MIN, 3, shop, 100))
    watch = {node_id(0, listed): 2**62}
    _, small = run(ev, GraphParams(hub_degree=4), watch=watch)
    _, large = run(ev, GraphParams(hub_degree=50), watch=watch)
    assert small[-1]["graph_payer_watch_hops"] == 0 and small[-1]["graph_hub_cuts"] >= 1
    assert large[-1]["graph_payer_watch_hops"] == 2 and large[-1]["graph_hub_cuts"] == 0


def test_work_budget_truncates_and_says_so() -> None:
    """A search that would read more list entries than max_work stops and sets graph_truncated."""
    ev = [txn(T0 + i, 10 + i, 1, 100) for i in range(30)]
    g, _ = run(ev, GraphParams(max_work=10))
    before = g.work_done
    g.ensure(64, 16, 16, 3)
    out = g.process(np.array([txn(T0 + MIN, 1, 2, 100)], dtype=np.int64),
                    np.zeros(1, dtype=np.int64), GraphParams(max_work=10).array())
    row = dict(zip(GRAPH_FEATURES, out[0].tolist(), strict=True))
    # the fan detectors share one budget: 1 entry for the payer's out-list, 9 of its in-list
    assert row["graph_truncated"] == 1 and row["graph_payer_fan_in"] == 9
    assert 0 < g.work_done - before <= 10 * 8  # at most max_work per detector


def test_cash_terminals_are_never_counted_or_expanded() -> None:
    """Withdrawals at one ATM by many people do not make them each other's counterparties."""
    atm = 5
    ev = [txn(T0 + i, 10 + i, atm, 100) for i in range(5)]
    for row in ev:
        row[k.EV_FLAGS] = k.TF_PAYEE_TERMINAL
    ev.append(txn(T0 + MIN, 10, 11, 100))
    _, rows = run(ev, watch={node_id(0, 12): 2**62})
    assert rows[0]["graph_payee_fan_in"] == 0 and rows[0]["graph_payer_fan_out"] == 0
    assert rows[-1]["graph_payer_watch_hops"] == 0


def test_links_are_deduplicated_within_the_refresh_interval() -> None:
    """The same phone on many payments within a day is one link edge whose use count grows."""
    ev = [txn(T0 + i * MIN, 1, 2 + i, 100, phone=4) for i in range(5)]
    ev.append(txn(T0 + 2 * DAY, 1, 9, 100, phone=4))
    g, _ = run(ev)
    assert g.edge_count == 6 + 2
    hood = g.neighbourhood([node_id(0, 1)], hops=1, lo_ms=0, hi_ms=2**62, max_nodes=50,
                           hub_degree=50, max_work=1000)
    rows = g.edges_among(hood, lo_ms=0, hi_ms=2**62, max_edges=100)
    uses = sorted(a for a, kind in zip(rows.amount, rows.kind, strict=True)
                  if kind == k.K_LINK_PHONE)
    assert uses == [1, 5]


def test_expiry_drops_old_edges_and_grows_then_evicts_at_max_edges() -> None:
    """Full slots: old edges expire first, then the store doubles, then the oldest are evicted."""
    g = LiveGraph(nodes=16, edges=16, max_edges=64)
    params = GraphParams().array()
    for day in range(40):
        g.ensure(8, 1, 1, 3, expiry_ms=10 * DAY)
        g.process(np.array([txn(T0 + day * DAY, day % 5, 5 + day % 3, 100)], dtype=np.int64),
                  np.array([day], dtype=np.int64), params)
    # 40 edges went in; expiry kept the store at 32 slots (16 doubled once), nothing evicted early
    assert g.edge_capacity == 32 and g.evicted_early == 0 and g.edge_count < 32
    small = LiveGraph(nodes=16, edges=16, max_edges=32)
    for i in range(40):
        small.ensure(8, 1, 1, 3, expiry_ms=0)
        small.process(np.array([txn(T0 + i, i % 5, 5, 100)], dtype=np.int64),
                      np.array([i], dtype=np.int64), params)
    assert small.edge_capacity == 32 and small.evicted_early > 0 and small.edge_count <= 32
    g.check((8, 1, 1))  # compaction and eviction keep what restoring a checkpoint demands
    small.check((8, 1, 1))


def test_late_events_are_placed_in_time_order() -> None:
    """An event older than a node's newest is inserted at its place, so window scans stay exact."""
    ev = [txn(T0 + 10 * MIN, 1, 2, 100), txn(T0 + 30 * MIN, 3, 2, 100), txn(T0 + 20 * MIN, 4, 2, 100),
          txn(T0 + 40 * MIN, 5, 2, 100)]
    g, rows = run(ev, GraphParams(fan_window_ms=25 * MIN))
    assert g.late_inserts == 1
    assert rows[-1]["graph_payee_fan_in"] == 3  # 20, 30 and 40 min are within 25 min of 40


def test_bytes_per_edge_is_what_the_arrays_take() -> None:
    """The documented bytes per edge slot equal the edge arrays' size divided by their slots."""
    g = LiveGraph(nodes=16, edges=1024)
    per_slot = (g.e32.nbytes + g.e64.nbytes + g.ekind.nbytes) / g.edge_capacity
    assert per_slot == BYTES_PER_EDGE == 41


def test_bad_input_is_refused_before_touching_state() -> None:
    """Ids beyond the capacity, a wrong dtype or too few free slots raise ValueError."""
    g = LiveGraph(nodes=6, edges=16)
    params = GraphParams().array()
    with pytest.raises(ValueError, match="node capacity"):
        g.process(np.array([txn(T0, 0, 5, 1)], dtype=np.int64), np.zeros(1, np.int64), params)
    with pytest.raises(ValueError, match="events must be int64"):
        g.process(np.zeros((1, 3), dtype=np.int64), np.zeros(1, np.int64), params)
    with pytest.raises(ValueError, match=r"GraphParams\.hub_degree"):
        GraphParams(hub_degree=0)
    assert g.edge_count == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 120), st.sets(st.integers(0, 29), max_size=12))
def test_forgetting_nodes_leaves_the_graph_the_other_edges_alone_would_make(
        seed: int, n_edges: int, gone: set[int]) -> None:
    """Forgetting nodes drops exactly their edges: the store, every list and every count of
    listed neighbours equal a graph fed only the other edges, in the same order."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 4, n_edges)
    joins = np.array([[k.NK_ACCOUNT, k.NK_ACCOUNT], [k.NK_PHONE, k.NK_PHONE],
                      [k.NK_ACCOUNT, k.NK_PHONE], [k.NK_ACCOUNT, k.NK_DEVICE]])
    src = rng.integers(0, 10, n_edges) * 3 + joins[kinds, 0]
    dst = rng.integers(0, 10, n_edges) * 3 + joins[kinds, 1]
    ts = T0 + rng.integers(0, 50, n_edges) * MIN  # out of order: late inserts too
    amount = rng.integers(1, 1_000, n_edges)
    listed = [n for n in rng.integers(0, 30, 4).tolist() if n not in gone]

    def build(keep: np.ndarray) -> LiveGraph:
        g = LiveGraph(nodes=30, edges=128)
        for node in listed:
            g.set_watch_node(node, 2**62)
        g.load_edges(src[keep], dst[keep], ts[keep], amount[keep], kinds[keep],
                     np.flatnonzero(keep).astype(np.int64))
        return g

    everything = build(np.ones(n_edges, dtype=bool))
    dropped = everything.forget(np.array(sorted(gone), dtype=np.int64))
    keep = ~np.isin(src, list(gone)) & ~np.isin(dst, list(gone))
    others = build(keep)
    assert dropped == n_edges - int(keep.sum()) and everything.edge_count == others.edge_count
    for name in ("e32", "e64", "ekind", "n32", "watch"):
        assert np.array_equal(everything.arrays()[name], others.arrays()[name]), name
    everything.check((10, 10, 10))
