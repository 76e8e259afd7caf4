"""Case files (``screening.case``) as the tools that read them see them: GraphML reloads."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import networkx as nx

from graph.case import build_case_graph
from graph.live import node_id
from screening.case import render
from tests.graph.test_case_graph import MIN, _case
from tests.graph.test_kernels_match_reference import T0, call, txn

GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"


def _graphml(g: nx.MultiDiGraph) -> bytes:
    return render(g, [], ["graphml"])[0]["case.graphml"]


def test_graphml_reloads_as_the_same_multidigraph_with_parallel_edges() -> None:
    """``nx.read_graphml(path, force_multigraph=True)`` gives back the MultiDiGraph: its nodes,
    every edge with its key (two edges between one pair included), the typed node, edge and
    graph attributes; each edge also carries its key as a ``key`` attribute."""
    ev = [call(T0, 5, 1, 600), txn(T0 + MIN, 7, 0, 100_000, phone=1),
          txn(T0 + 2 * MIN, 0, 9, 90_000, device=2), txn(T0 + 3 * MIN, 9, 0, 1_000)]
    g = build_case_graph(_case(ev, node_id(0, 0), decisions={1: ("HOLD", ("CALL_THEN",))}))
    # a case holds one edge per (from, to, kind) and the kind follows from the ends, so no two
    # edges share a pair; the file must keep them apart all the same
    g.add_edge("account:acct7", "account:acct0", key="refund", **g.edges["account:acct7",
                                                                          "account:acct0", "transfer"])
    back = nx.read_graphml(io.BytesIO(_graphml(g)), force_multigraph=True)
    assert isinstance(back, nx.MultiDiGraph)
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    assert back.number_of_edges() == g.number_of_edges() == 7
    assert sorted(back.edges(keys=True)) == sorted(g.edges(keys=True))
    assert back.number_of_edges("account:acct7", "account:acct0") == 2
    for u, v, key, data in g.edges(keys=True, data=True):
        assert back.edges[u, v, key] == {"key": key, **data}
    assert {k: back.graph[k] for k in g.graph} == g.graph
    assert type(back.nodes["account:acct0"]["in_amount"]) is int
    assert back.nodes["account:acct0"]["watchlisted"] is False
    plain = nx.read_graphml(io.BytesIO(_graphml(g)))  # parallel edges: a multigraph unasked
    assert isinstance(plain, nx.MultiDiGraph) and plain.number_of_edges() == 7


def test_graphml_ids_are_unique_for_tools_that_require_it() -> None:
    """Key ids are unique in the document (node and edge attributes share names); edges carry no
    id (networkx would write the kind, repeated, and Gephi drops edges whose id repeats)."""
    ev = [txn(T0 + i * MIN, 10 + i, 0, 500, phone=i % 2) for i in range(4)]
    g = build_case_graph(_case(ev, node_id(0, 0)))
    root = ET.fromstring(_graphml(g))
    ids = [k.get("id") for k in root.iter(f"{GRAPHML}key")]
    assert len(ids) == len(set(ids))
    names = {(k.get("for"), k.get("attr.name")) for k in root.iter(f"{GRAPHML}key")}
    assert {("node", "kind"), ("edge", "kind"), ("node", "hops"), ("graph", "hops")} <= names
    edges = list(root.iter(f"{GRAPHML}edge"))
    assert len(edges) == g.number_of_edges() == 8
    assert all(e.get("id") is None for e in edges)
