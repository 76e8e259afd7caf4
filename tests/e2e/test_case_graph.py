"""ExportCaseGraph through a real server and channel: files, picture, masking, caps, errors;
and the latency budget: decisions made without graph features are marked degraded."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import networkx as nx
import numpy as np
import pytest
from matplotlib import image as mpimg

from screening.client import call_event, timestamp, transaction, watch_entry
from screening.config import load_settings
from screening.convert import case_files
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, _start, _stop, recent, uid

SUSPECT_RGB = (0xD6, 0x27, 0x28)  # screening.case.ROLE_COLOURS["suspect"]


@dataclass
class Case:
    mule: str
    victims: list[str]
    subs: list[str]
    caller: str
    device: str
    first_txn: str


def _plant(live: Live, n_victims: int = 3) -> Case:
    """A fraud number calls victims; they pay a mule, who fans out from a listed device."""
    mule, device = uid("mule"), uid("dev")
    caller = "+86170" + uid("")[-5:].rjust(8, "0")
    victims = [uid("victim") for _ in range(n_victims)]
    subs = [uid("sub") for _ in range(2)]
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_DEVICE, device, "handler", "police")])
    first_txn = ""
    for i, v in enumerate(victims):
        phone = "138" + uid("")[-5:].rjust(8, "0")
        live.telecom.report_call(call_event(uid("c"), recent(100 - i), caller, phone,
                                            duration_seconds=600))
        tid = uid("t")
        first_txn = first_txn or tid
        live.bank.screen(transaction(tid, recent(90 - i), v, mule, 3_000_000 + i, payer_phone=phone))
    for j, s in enumerate(subs):
        live.bank.screen(transaction(uid("t"), recent(80 - j), mule, s, 4_000_000, device_id=device))
    return Case(mule, victims, subs, caller, device, first_txn)


def _export(client, **kw) -> pb.CaseGraph:  # type: ignore[no-untyped-def]
    return client.export_case_graph(pb.ExportCaseGraphRequest(**kw))


def _error(client, **kw) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        _export(client, **kw)
    return info.value


@pytest.fixture(scope="module")
def case(live: Live) -> Case:
    return _plant(live)


def test_police_export_loads_back_in_every_format(live: Live, case: Case) -> None:
    """GraphML, GEXF, node-link JSON and the CSVs load back with the suspect, victims and amounts."""
    msg = _export(live.police, account_id=case.mule, hops=2)
    files = case_files(msg)
    assert set(files) == {"case.graphml", "case.gexf", "case.json", "nodes.csv", "edges.csv",
                          "case.png", "case.svg"}
    suspect = f"account:{case.mule}"
    g = nx.read_graphml(io.BytesIO(files["case.graphml"]), force_multigraph=True)
    assert g.nodes[suspect]["role"] == "suspect"
    assert {g.nodes[f"account:{v}"]["role"] for v in case.victims} == {"victim"}
    edge = g.get_edge_data(f"account:{case.victims[0]}", suspect)["transfer"]
    assert (edge["amount"], edge["count"], edge["kind"]) == (3_000_000, 1, "transfer")
    assert g.nodes[f"device:{case.device}"]["watchlisted"] is True
    gexf = nx.read_gexf(io.BytesIO(files["case.gexf"]))
    assert suspect in gexf and gexf.number_of_nodes() == g.number_of_nodes()
    data = json.loads(files["case.json"])
    linked = nx.node_link_graph(data, edges="edges")
    assert linked.number_of_edges() == g.number_of_edges() == msg.summary.edges
    assert linked.nodes[suspect]["label"] == case.mule
    nodes = list(csv.DictReader(io.StringIO(files["nodes.csv"].decode("utf-8-sig"))))
    edges = list(csv.DictReader(io.StringIO(files["edges.csv"].decode("utf-8-sig"))))
    assert {r["id"] for r in nodes} == set(g.nodes)
    assert len(edges) == msg.summary.edges and {"source", "target", "amount"} <= set(edges[0])
    assert msg.summary.centre == case.mule and not msg.summary.identifiers_masked
    assert msg.summary.nodes == g.number_of_nodes() and msg.summary.hops == 2
    kinds = {f.detector for f in msg.summary.findings}
    assert "watchlist" in kinds


def test_graphml_reloads_as_the_multidigraph_the_json_holds(live: Live, case: Case) -> None:
    """``nx.read_graphml(f, force_multigraph=True)`` gives back the case's MultiDiGraph: the
    nodes, the edges keyed by kind and the typed attributes of the node-link JSON (each edge
    also has its key as ``key``); no edge has an id (networkx would repeat the kind there and
    Gephi drops repeated ids). Without ``force_multigraph`` networkx makes a DiGraph: no two
    edges of a case join the same (from, to)."""
    msg = _export(live.police, account_id=case.mule, hops=2,
                  formats=[pb.CASE_FORMAT_GRAPHML, pb.CASE_FORMAT_JSON])
    g = nx.read_graphml(io.BytesIO(msg.graphml), force_multigraph=True)
    want = nx.node_link_graph(json.loads(msg.json), edges="edges")
    assert isinstance(g, nx.MultiDiGraph) and isinstance(want, nx.MultiDiGraph)
    assert dict(g.nodes(data=True)) == dict(want.nodes(data=True))
    assert g.number_of_edges() == want.number_of_edges() == msg.summary.edges > 10
    assert sorted(g.edges(keys=True)) == sorted(want.edges(keys=True))
    for u, v, key, data in want.edges(keys=True, data=True):
        assert g.edges[u, v, key] == {"key": key, **data} and key == data["kind"]
    assert {k: g.graph[k] for k in want.graph} == want.graph
    edges = list(ET.fromstring(msg.graphml).iter("{http://graphml.graphdrawing.org/xmlns}edge"))
    assert len(edges) == msg.summary.edges and all(e.get("id") is None for e in edges)
    plain = nx.read_graphml(io.BytesIO(msg.graphml))
    assert type(plain) is nx.DiGraph and plain.number_of_edges() == msg.summary.edges


def test_picture_shows_the_suspect_in_red(live: Live, case: Case) -> None:
    """The PNG decodes, has pixels of the suspect colour; the SVG names the suspect."""
    files = case_files(_export(live.police, account_id=case.mule,
                               formats=[pb.CASE_FORMAT_PNG, pb.CASE_FORMAT_SVG]))
    assert set(files) == {"case.png", "case.svg"}
    assert files["case.png"][:8] == b"\x89PNG\r\n\x1a\n"
    pixels = (mpimg.imread(io.BytesIO(files["case.png"]), format="png")[..., :3] * 255).round()
    red = np.all(np.abs(pixels - np.array(SUSPECT_RGB)) <= 2, axis=-1)
    assert red.sum() > 50
    assert case.mule in files["case.svg"].decode("utf-8")


def test_a_case_of_about_200_nodes_is_drawn_whole_in_hop_rings(live: Live) -> None:
    """A mule with 40 victims (called first, each also paying a shop) and 8 layer accounts each
    passing money to 6 cash-out accounts: 182 nodes at 2 hops, all drawn. The picture
    grows with the case (hop rings; 1,500 to 3,000 pixels wide, where a small case's is about
    1,300) and shows the suspect in red; the reply fits."""
    mule, device = uid("mule"), uid("dev")
    calls, txns = [], []
    for i in range(40):
        victim, phone = uid("victim"), "+86137" + uid("")[-5:].rjust(8, "0")
        calls.append(call_event(uid("c"), recent(200 - i), "+86171" + f"{i % 4:08d}", phone,
                                duration_seconds=600))
        txns.append(transaction(uid("t"), recent(199 - i), victim, mule, 1_000_000 + i,
                                payer_phone=phone))
        txns.append(transaction(uid("t"), recent(198 - i), victim, uid("shop"), 5_000))
    for j in range(8):
        layer = uid("layer")
        txns.append(transaction(uid("t"), recent(100 - j), mule, layer, 4_000_000, device_id=device))
        txns += [transaction(uid("t"), recent(90 - j), layer, uid("cash"), 600_000) for _ in range(6)]
    for call in calls:
        live.telecom.report_call(call)
    fired = Counter(r.code for d in live.bank.screen_batch(txns).decisions for r in d.reasons)
    msg = _export(live.police, account_id=mule, hops=2,
                  formats=[pb.CASE_FORMAT_PNG, pb.CASE_FORMAT_SVG, pb.CASE_FORMAT_JSON])
    assert {f.description for f in msg.summary.findings if f.detector == "rule"} == {
        f"{code} fired on {n} transaction(s) in the case" for code, n in fired.items()}
    assert msg.summary.nodes == 182 and not msg.summary.nodes_left_out
    g = nx.node_link_graph(json.loads(msg.json), edges="edges")
    assert sum(1 for _, _, k in g.edges(keys=True) if k == "call") == 40
    pixels = mpimg.imread(io.BytesIO(msg.png), format="png")[..., :3]
    assert 1_500 <= pixels.shape[1] <= 3_000
    red = np.all(np.abs(pixels * 255 - np.array(SUSPECT_RGB)) <= 2, axis=-1)
    assert red.sum() > 50
    assert msg.svg.startswith(b"<?xml") and msg.ByteSize() < 16 << 20


def test_regulator_gets_masked_identifiers(live: Live, case: Case) -> None:
    """Non-police callers see no account, phone or device identifier in clear in any file."""
    msg = _export(live.client("regulator"), account_id=case.mule)
    assert msg.summary.identifiers_masked and msg.summary.centre != case.mule
    blob = b"".join(case_files(msg).values()).decode("utf-8", errors="replace")
    for secret in (case.mule, *case.victims, case.device):
        assert secret not in blob
    g = nx.read_graphml(io.BytesIO(msg.graphml))
    assert all(g.nodes[n]["label"].startswith("…") for n in g.nodes)
    admin = _export(live.client("admin"), account_id=case.mule, formats=[pb.CASE_FORMAT_JSON])
    assert not admin.summary.identifiers_masked


def test_banks_may_not_export(live: Live, case: Case) -> None:
    """A bank token gets PERMISSION_DENIED."""
    assert _error(live.bank, account_id=case.mule).code() == grpc.StatusCode.PERMISSION_DENIED


def test_transaction_and_phone_centres(live: Live, case: Case) -> None:
    """Around a transaction its payee is the suspect and its payer the victim; a phone works too."""
    msg = _export(live.police, transaction_id=case.first_txn, hops=1, formats=[pb.CASE_FORMAT_JSON])
    g = nx.node_link_graph(json.loads(msg.json), edges="edges")
    assert g.nodes[f"account:{case.mule}"]["role"] == "suspect"
    assert g.nodes[f"account:{case.victims[0]}"]["role"] == "victim"
    msg = _export(live.police, phone_number=case.caller, hops=3, formats=[pb.CASE_FORMAT_JSON])
    g = nx.node_link_graph(json.loads(msg.json), edges="edges")
    assert g.nodes[f"phone:{case.caller}"]["role"] == "suspect"
    assert f"account:{case.mule}" in g


def test_calls_to_the_victims_are_in_a_two_hop_case(live: Live, case: Case) -> None:
    """Around the mule, 2 hops hold its victims, the phones they paid from (their own: same hop)
    and the number that called those phones before each payment, with a finding saying so;
    1 hop holds the victims and their phones but not the caller."""
    msg = _export(live.police, account_id=case.mule, hops=2, formats=[pb.CASE_FORMAT_GRAPHML])
    g = nx.read_graphml(io.BytesIO(msg.graphml), force_multigraph=True)
    caller = f"phone:{case.caller}"
    assert g.nodes[caller]["hops"] == 2
    for v in case.victims:
        phones = [p for _, p, kind in g.out_edges(f"account:{v}", keys=True) if kind == "uses_phone"]
        assert len(phones) == 1 and g.nodes[phones[0]]["hops"] == 1
        call = g.edges[caller, phones[0], "call"]
        assert (call["count"], call["amount"], call["talk_seconds"]) == (1, 0, 600)  # 600 s
    found = [f for f in msg.summary.findings if f.detector == "calls_to_victims"]
    assert [f.description for f in found] == [
        f"{case.caller} called the phones of 3 account(s) that paid {case.mule}"]
    assert list(found[0].nodes) == [case.caller, *sorted(case.victims), case.mule]
    one = nx.read_graphml(io.BytesIO(_export(live.police, account_id=case.mule, hops=1,
                                             formats=[pb.CASE_FORMAT_GRAPHML]).graphml),
                          force_multigraph=True)
    assert caller not in one
    assert all(one.nodes[p]["hops"] == 1 for p in g if p.startswith("phone:") and p != caller)


def test_node_cap_and_hubs_are_reported(live: Live) -> None:
    """A capped neighbourhood says how much was left out; a hub is shown but not expanded."""
    shop, buyer = uid("shop"), uid("buyer")
    payers = [uid("p") for _ in range(60)]
    live.bank.screen_batch([transaction(uid("t"), recent(50), p, shop, 100) for p in payers])
    live.bank.screen(transaction(uid("t"), recent(40), buyer, shop, 100))
    capped = _export(live.police, account_id=shop, hops=1, max_nodes=10,
                     formats=[pb.CASE_FORMAT_JSON]).summary
    assert capped.nodes == 10 and capped.nodes_left_out == 61 - 9  # 61 payers, 9 kept
    assert any("node cap 10" in n for n in capped.notes)
    hub = _export(live.police, account_id=buyer, hops=2, formats=[pb.CASE_FORMAT_PNG]).summary
    assert list(hub.hubs_not_expanded) == [shop]
    assert hub.nodes == 2


def test_a_rule_fired_once_is_counted_once(live: Live) -> None:
    """Two payments to a listed payee from one phone and device: the rule's finding counts 2,
    the decisions sit on the transfer edge only, and the phone and device links carry no amount
    (their count is the payments made with them)."""
    payer, payee = uid("payer"), uid("listed")
    phone, device = "+86139" + uid("")[-5:].rjust(8, "0"), uid("dev")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, payee, "mule", "police")])
    fired: Counter[str] = Counter()
    for i, amount in enumerate((50_000, 70_000)):
        d = live.bank.screen(transaction(uid("t"), recent(30 - i), payer, payee, amount,
                                         payer_phone=phone, device_id=device))
        fired.update(r.code for r in d.reasons)
    assert fired["PAYEE_WATCHLISTED"] == 2
    msg = _export(live.police, account_id=payee, hops=2, formats=[pb.CASE_FORMAT_GRAPHML])
    rules = {f.description for f in msg.summary.findings if f.detector == "rule"}
    assert rules == {f"{code} fired on {n} transaction(s) in the case" for code, n in fired.items()}
    g = nx.read_graphml(io.BytesIO(msg.graphml), force_multigraph=True)
    money = g.edges[f"account:{payer}", f"account:{payee}", "transfer"]
    assert (money["count"], money["amount"]) == (2, 120_000)
    assert money["reasons"] == ";".join(f"{c}:{n}" for c, n in sorted(fired.items(),
                                                                       key=lambda x: (-x[1], x[0])))
    for target, kind in ((f"phone:{phone}", "uses_phone"), (f"device:{device}", "uses_device")):
        link = g.edges[f"account:{payer}", target, kind]
        assert (link["count"], link["amount"], link["decisions"], link["reasons"]) == (2, 0, "", "")


@pytest.mark.parametrize(("request_kw", "code", "field"), [
    ({"account_id": "never-seen-account"}, grpc.StatusCode.NOT_FOUND, "account_id"),
    ({"phone_number": "+8613900000999"}, grpc.StatusCode.NOT_FOUND, "phone_number"),
    ({"transaction_id": "no-such-txn"}, grpc.StatusCode.NOT_FOUND, "transaction_id"),
    ({}, grpc.StatusCode.INVALID_ARGUMENT, "centre"),
    ({"account_id": "a", "hops": 5}, grpc.StatusCode.INVALID_ARGUMENT, "hops"),
    ({"account_id": "a", "hops": -1}, grpc.StatusCode.INVALID_ARGUMENT, "hops"),
    ({"account_id": "a", "max_nodes": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "max_nodes"),
    ({"account_id": "a", "formats": [99]}, grpc.StatusCode.INVALID_ARGUMENT, "formats[0]"),
    ({"account_id": "a", "from_time": timestamp(recent(10)), "to_time": timestamp(recent(20))},
     grpc.StatusCode.INVALID_ARGUMENT, "from_time"),
    ({"account_id": "a", "from_time": timestamp(recent(60 * 24 * 400))},
     grpc.StatusCode.INVALID_ARGUMENT, "from_time"),
    ({"account_id": "a", "to_time": timestamp(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))},
     grpc.StatusCode.INVALID_ARGUMENT, "to_time"),
    ({"phone_number": "not a phone"}, grpc.StatusCode.INVALID_ARGUMENT, "phone_number"),
])
def test_bad_requests_name_the_field(live: Live, request_kw: dict[str, object],
                                     code: grpc.StatusCode, field: str) -> None:
    """Unknown centres are NOT_FOUND; out-of-bounds hops, caps, formats, times INVALID_ARGUMENT."""
    err = _error(live.police, **request_kw)
    assert err.code() == code
    assert (err.details() or "").startswith(f"{field}:")


# ---------------------------------------------------------------- the latency budget
@pytest.fixture(scope="module")
def no_budget() -> Iterator[Live]:
    """A server whose latency budget is zero: every graph stage is over budget."""
    srv = _start(load_settings(overrides={"server": {"latency_budget_ms": 0.0}}))
    yield srv
    _stop(srv)


def test_decisions_without_graph_checks_are_marked_degraded(no_budget: Live, live: Live) -> None:
    """Over budget the graph stage is skipped (edges still recorded) and the decision is degraded."""
    a, b = uid("a"), uid("b")
    d = no_budget.bank.screen(transaction(uid("t"), recent(5), a, b, 10_000))
    assert d.degraded and d.action == pb.ACTION_ALLOW
    batch = no_budget.bank.screen_batch([transaction(uid("t"), recent(4), b, a, 100)])
    assert all(x.degraded for x in batch.decisions)
    g = nx.read_graphml(io.BytesIO(_export(no_budget.police, account_id=a,
                                           formats=[pb.CASE_FORMAT_GRAPHML]).graphml))
    assert g.has_edge(f"account:{a}", f"account:{b}") and g.has_edge(f"account:{b}", f"account:{a}")
    ok = live.bank.screen(transaction(uid("t"), recent(5), uid("a"), uid("b"), 10_000))
    assert not ok.degraded


def test_degraded_decisions_are_logged(no_budget: Live) -> None:
    """A decision made without graph checks is logged at info level with degraded=true."""
    tid = uid("t")
    no_budget.bank.screen(transaction(tid, recent(3), uid("a"), uid("b"), 100))
    lines = [json.loads(x) for x in no_budget.log.getvalue().splitlines() if tid in x]
    assert lines and lines[-1]["degraded"] is True and lines[-1]["level"] == "info"


# ---------------------------------------------------------------- bounded exports
@dataclass
class Dense:
    live: Live
    centre: str


@pytest.fixture(scope="module")
def dense() -> Iterator[Dense]:
    """A server holding a dense graph: 1,000 accounts, 15,000 transfers among them (about 30
    counterparties each, below the hub degree), so 4 hops reach every account."""
    srv = _start(load_settings(overrides={"state": {"initial_accounts": 2048},
                                          "server": {"latency_budget_ms": 1000.0}}))
    rng = np.random.default_rng(17)
    accounts = [uid("dense") for _ in range(1_000)]
    pairs = rng.integers(0, len(accounts), (15_000, 2))
    txns = [transaction(uid("t"), recent(300 - i / 100), accounts[a],
                        accounts[b if b != a else (a + 1) % 1000], 1_000 + i)
            for i, (a, b) in enumerate(pairs.tolist())]
    for start in range(0, len(txns), 7_500):
        srv.bank.screen_batch(txns[start:start + 7_500])
    yield Dense(srv, accounts[0])
    _stop(srv)


def test_export_too_big_for_a_reply_is_refused_before_it_is_built(dense: Dense) -> None:
    """All formats at 4 hops of a dense case (about 30 MB) is RESOURCE_EXHAUSTED from the node
    and link counts, naming formats, hops and max_nodes that would fit; nothing was built."""
    err = _error(dense.live.police, account_id=dense.centre, hops=4, max_nodes=2000)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    detail = err.details() or ""
    assert detail.startswith("formats: this case (4 hops: 1000 nodes, "), detail
    assert "a reply carries at most 16.8 MB ([graph] export_max_bytes); what would fit: " in detail
    assert "csv alone" in detail and "hops 1 (about" in detail and "max_nodes " in detail
    assert dense.centre not in detail  # counts, never identifiers
    logged = [json.loads(x) for x in dense.live.log.getvalue().splitlines()]
    assert [e for e in logged if e["event"] == "case_exported"] == []
    assert [e["code"] for e in logged if e.get("rpc") == "ExportCaseGraph"] == ["RESOURCE_EXHAUSTED"]
    # what the refusal said would fit, fits
    max_nodes = int(detail.rsplit("max_nodes ", 1)[1].split(";")[0])
    ok = _export(dense.live.police, account_id=dense.centre, hops=4, max_nodes=max_nodes)
    assert ok.summary.nodes == max_nodes and ok.ByteSize() <= 16 << 20


def test_screening_goes_on_while_a_case_renders(dense: Dense, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """An export that is allowed renders outside the engine's lock: payments screened from
    another thread meanwhile are all answered before the export finishes."""
    import screening.service as service

    rendering, events = threading.Event(), []
    real = service.export_case

    def watched(*args: Any, **kwargs: Any) -> Any:
        rendering.set()
        out = real(*args, **kwargs)
        events.append("export finished")
        return out

    monkeypatch.setattr(service, "export_case", watched)
    result: list[pb.CaseGraph] = []
    exporter = threading.Thread(target=lambda: result.append(_export(
        dense.live.police, account_id=dense.centre, hops=4, max_nodes=2000,
        formats=[pb.CASE_FORMAT_JSON, pb.CASE_FORMAT_CSV])))
    exporter.start()
    assert rendering.wait(60), "the export never started rendering"
    for _ in range(5):
        d = dense.live.bank.screen(transaction(uid("t"), recent(1), uid("a"), uid("b"), 100))
        events.append(f"screened {d.action}")
    exporter.join(120)
    assert result and result[0].summary.nodes == 1000
    assert events == [f"screened {pb.ACTION_ALLOW}"] * 5 + ["export finished"]
