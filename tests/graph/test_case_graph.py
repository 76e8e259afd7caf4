"""Case graphs (``graph.case``): aggregation, roles, the left-to-right layout, findings, trimming."""

from __future__ import annotations

import numpy as np

from graph import _kernels as k
from graph.case import CaseInput, build_case_graph, findings, flow_layout, picture_view
from graph.live import GraphParams, LiveGraph, node_id
from tests.graph.test_kernels_match_reference import T0, call, txn

MIN = 60_000


def _case(events: list[list[int]], centre: int, hops: int = 2, max_nodes: int = 100,
          decisions: dict[int, tuple[str, tuple[str, ...]]] | None = None) -> CaseInput:
    g = LiveGraph(nodes=64, edges=256)
    g.ensure(64, 16, 16, 3 * len(events))
    g.process(np.array(events, dtype=np.int64), np.arange(len(events), dtype=np.int64),
              GraphParams().array())
    hood = g.neighbourhood([centre], hops=hops, lo_ms=0, hi_ms=T0 + 86_400_000, max_nodes=max_nodes,
                           hub_degree=50, max_work=10_000)
    edges = g.edges_among(hood, lo_ms=0, hi_ms=T0 + 86_400_000, max_edges=1000)
    kinds = ("acct", "phone", "dev")
    names = {n: f"{kinds[n % 3]}{n // 3}" for n in hood.nodes.tolist()}
    return CaseInput(centre_label=names[centre], suspects=(centre,), hops=hops, lo_ms=0,
                     hi_ms=T0 + 86_400_000, max_nodes=max_nodes, hood=hood, edges=edges, names=names,
                     decisions=decisions or {})


def test_edges_aggregate_per_pair_and_kind_with_decisions() -> None:
    """Three transfers v -> s become one edge: count 3, amount summed, first/last time, actions."""
    ev = [txn(T0 + i * MIN, 1, 0, 1000 * (i + 1), phone=2) for i in range(3)]
    data = _case(ev, node_id(0, 0), decisions={0: ("ALLOW", ()), 2: ("HOLD", ("MULE", "X"))})
    g = build_case_graph(data)
    e = g.get_edge_data("account:acct1", "account:acct0")["transfer"]
    assert (e["count"], e["amount"], e["decisions"], e["strongest_action"]) == (3, 6000,
                                                                               "ALLOW:1;HOLD:1",
                                                                               "HOLD")
    assert e["first_time"] == "2023-12-31T16:00:00Z" and e["reasons"] == "MULE:1;X:1"
    assert (e["amount_text"], e["talk_seconds"]) == ("60.00", 0)  # money as text, never float
    assert g.nodes["account:acct1"]["role"] == "victim"
    assert g.nodes["account:acct0"]["in_amount"] == 6000
    assert g.has_edge("account:acct1", "phone:phone2", key="uses_phone")


def test_a_decision_counts_once_on_its_transfer_and_links_carry_no_amount() -> None:
    """The payer's phone and device links carry the transaction's ref too, but its decision sits
    on the transfer edge only (a rule fired once is counted once); a link's count is the
    transactions made with it, its amount 0."""
    ev = [txn(T0, 1, 0, 5000, phone=2, device=3), txn(T0 + MIN, 1, 0, 7000, phone=2, device=3)]
    g = build_case_graph(_case(ev, node_id(0, 0), decisions={0: ("HOLD", ("RULE_A",)),
                                                              1: ("WARN", ("RULE_A", "RULE_B"))}))
    money = g.get_edge_data("account:acct1", "account:acct0")["transfer"]
    assert (money["count"], money["amount"], money["reasons"]) == (2, 12_000, "RULE_A:2;RULE_B:1")
    for target, kind in (("phone:phone2", "uses_phone"), ("device:dev3", "uses_device")):
        link = g.get_edge_data("account:acct1", target)[kind]
        assert (link["count"], link["amount"], link["amount_text"], link["talk_seconds"]) == (
            2, 0, "", 0)
        assert link["decisions"] == link["reasons"] == link["strongest_action"] == ""
    rules = [f.description for f in findings(g) if f.detector == "rule"]
    assert rules == ["RULE_A fired on 2 transaction(s) in the case",
                     "RULE_B fired on 1 transaction(s) in the case"]


def test_an_accounts_phones_and_devices_sit_at_its_hop() -> None:
    """Hops count parties: the mule's device is at 0, its victim's phone at 1 with the victim, the
    number that called that phone at 2; another account on the mule's device is 1 hop away."""
    ev = [call(T0, 5, 1, 600), txn(T0 + MIN, 7, 0, 100_000, phone=1),
          txn(T0 + 2 * MIN, 0, 9, 90_000, device=2), txn(T0 + 3 * MIN, 11, 12, 500, device=2)]
    g = build_case_graph(_case(ev, node_id(0, 0), hops=2))
    hops = dict(g.nodes(data="hops"))
    assert hops == {"account:acct0": 0, "device:dev2": 0, "account:acct7": 1, "phone:phone1": 1,
                    "account:acct9": 1, "account:acct11": 1, "phone:phone5": 2, "account:acct12": 2}
    assert g.has_edge("phone:phone5", "phone:phone1", key="call")
    assert "phone:phone5" not in build_case_graph(_case(ev, node_id(0, 0), hops=1))


def test_layout_puts_payers_left_and_payees_right_of_the_suspect() -> None:
    """Money flows left to right; a phone sits in its account's column."""
    ev = [txn(T0, 1, 0, 500, phone=3), txn(T0 + MIN, 0, 2, 450), txn(T0 + 2 * MIN, 2, 4, 400)]
    g = build_case_graph(_case(ev, node_id(0, 0)))
    pos = flow_layout(g)
    assert pos["account:acct1"][0] < pos["account:acct0"][0] < pos["account:acct2"][0]
    assert pos["account:acct2"][0] < pos["account:acct4"][0]
    assert pos["phone:phone3"][0] == pos["account:acct1"][0]


def test_findings_name_cycles_ponzi_and_fan_in() -> None:
    """The case's own detectors see a round trip through the suspect and its repaid payers."""
    ev = [txn(T0 + i, 10 + i, 0, 500) for i in range(6)]
    ev += [txn(T0 + MIN + i, 0, 10 + i, 50) for i in range(3)]
    ev += [txn(T0 + 2 * MIN, 0, 20, 900), txn(T0 + 3 * MIN, 20, 21, 890),
           txn(T0 + 4 * MIN, 21, 0, 880)]
    found = {f.detector: f for f in findings(build_case_graph(_case(ev, node_id(0, 0))))}
    assert "fan_in" in found and "ponzi" in found
    assert found["cycle"].description == "round trip: acct0 -> acct20 -> acct21 -> acct0"


def test_calls_make_the_called_phone_and_its_owner_victims() -> None:
    """Around a fraud number, the numbers it called and the accounts using them are victims."""
    ev = [call(T0, 5, 1, 600), txn(T0 + MIN, 7, 8, 100, phone=1)]
    g = build_case_graph(_case(ev, node_id(k.NK_PHONE, 5), hops=3))
    assert g.nodes["phone:phone5"]["role"] == "suspect"
    assert g.nodes["phone:phone1"]["role"] == "victim"
    assert g.nodes["account:acct7"]["role"] == "victim"


def test_picture_view_keeps_the_suspect_its_counterparties_and_watchlist_paths() -> None:
    """A big case is trimmed for the picture: the centre and hop-1 nodes first, and it says so."""
    ev = [txn(T0 + i, 1 + i, 0, 100) for i in range(5)]
    ev += [txn(T0 + MIN + i, 1 + i % 5, 30 + i, 10) for i in range(20)]
    g = build_case_graph(_case(ev, node_id(0, 0)))
    view = picture_view(g, max_nodes=8)
    assert view.number_of_nodes() == 8 and "account:acct0" in view
    assert all(f"account:acct{i}" in view for i in range(1, 6))
    assert view.graph["drawn"].startswith("8 of 26 nodes")
    assert picture_view(g, max_nodes=100).graph["drawn"] == "all 26 nodes"


def test_round_trip_search_finds_what_networkx_finds() -> None:
    """The bounded search (cycles through a suspect only) against networkx's simple_cycles on
    300 random graphs: the same cycles, each once, shortest first, read from a suspect."""
    import random

    import networkx as nx

    from graph.case import _cycles_through, _rotated

    for seed in range(300):
        r = random.Random(seed)
        n = r.randint(3, 12)
        g = nx.DiGraph()
        g.add_nodes_from(f"n{i}" for i in range(n))
        g.add_edges_from((f"n{a}", f"n{b}") for a, b in
                         ((r.randrange(n), r.randrange(n)) for _ in range(r.randint(0, 40))) if a != b)
        suspects = r.sample(sorted(g.nodes), r.randint(1, 2))
        want = {_rotated(c) for c in nx.simple_cycles(g, length_bound=6)
                if len(c) >= 3 and set(c) & set(suspects)}
        got, stopped = _cycles_through(g, suspects, 6, 10**9, 10**9)
        assert not stopped and len(got) == len(want) and {_rotated(c) for c in got} == want, seed
        assert [len(c) for c in got] == sorted(len(c) for c in got)
        assert all(c[0] in suspects for c in got)


def test_round_trip_search_stops_at_its_budget_and_says_so() -> None:
    """A dense case (every account paid every other) cannot make the search run away."""
    ev = [txn(T0 + i * 60 + j, i, j, 1000) for i in range(12) for j in range(12) if i != j]
    found = findings(build_case_graph(_case(ev, node_id(0, 0), max_nodes=100)), cycle_budget=20)
    assert any(f.detector == "cycle" and "stopped at its work budget (20 steps)" in f.description
               for f in found)
