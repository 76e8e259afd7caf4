"""The case picture (``screening.case.draw``) read as an investigator reads it: a fraud case of
about 200 nodes drawn whole, nothing written over anything else, key nodes named in full."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from graph.case import CaseInput, build_case_graph
from graph.live import GraphParams, LiveGraph, node_id
from screening.case import FLOW_MAX_NODES, Drawing, draw, estimate_size, export_case
from tests.graph.test_kernels_match_reference import T0, call, txn

MIN = 60_000
MULE, DEVICE = 1, 7
VICTIMS = range(11, 51)
CALLERS = (200, 201, 202, 203)
Point = tuple[float, float]


def _fraud_case(n_victims: int = 40, n_layers: int = 8) -> CaseInput:
    """Four numbers call victims, who pay a mule (and a shop each); the mule pays eight layer
    accounts from a listed device, each passes the money to six cash-out accounts; six other
    accounts use the mule's device. Names are as long as real ones."""
    rng = np.random.default_rng(5)
    ev, t = [], T0
    for i, v in enumerate(VICTIMS[:n_victims]):
        ev.append(call(t, CALLERS[i % 4], 100 + i, 900))
        ev.append(txn(t + MIN, v, MULE, int(rng.integers(500_000, 5_000_000)), phone=100 + i))
        ev.append(txn(t + 2 * MIN, v, 120 + i, int(rng.integers(10_000, 100_000)), phone=100 + i))
        t += 3 * MIN
    for j, layer in enumerate(range(60, 60 + n_layers)):
        ev.append(txn(t, MULE, layer, 2_000_000 + j, device=DEVICE))
        ev += [txn(t + MIN, layer, 70 + 6 * j + c, 300_000, device=8 + j) for c in range(6)]
        t += 2 * MIN
    ev += [txn(t + i * MIN, 160 + i, 170 + i, 100_000, device=DEVICE) for i in range(n_layers - 2)]
    g = LiveGraph(nodes=2048, edges=4096)
    g.ensure(400, 400, 50, 3 * len(ev))
    g.process(np.array(ev, dtype=np.int64), np.arange(len(ev), dtype=np.int64), GraphParams().array())
    hi = t + DAY_MS
    hood = g.neighbourhood([node_id(0, MULE)], hops=2, lo_ms=0, hi_ms=hi, max_nodes=300,
                           hub_degree=60, max_work=10**6)
    edges = g.edges_among(hood, lo_ms=0, hi_ms=hi, max_edges=10_000)
    names = {n: (f"62220210{n // 3:011d}", f"+86138{n // 3:08d}", f"86{n // 3:013d}")[n % 3]
             for n in hood.nodes.tolist()}
    return CaseInput(centre_label=names[node_id(0, MULE)], suspects=(node_id(0, MULE),), hops=2,
                     lo_ms=0, hi_ms=hi, max_nodes=300, hood=hood, edges=edges, names=names,
                     watch={node_id(2, DEVICE): "handler device (police)"},
                     decisions={r: ("HOLD", ("CALL_THEN_TRANSFER_LARGE",)) for r in range(1, 120, 3)})


DAY_MS = 86_400_000


def _axes(poly: Sequence[Point]) -> list[Point]:
    return [(y0 - y1, x1 - x0) for (x0, y0), (x1, y1) in zip(poly, [*poly[1:], poly[0]], strict=True)]


def _overlap(p: Sequence[Point], q: Sequence[Point]) -> bool:
    """Two convex outlines overlap (no separating axis among their edges' normals)."""
    for ax, ay in _axes(p) + _axes(q):
        a = [x * ax + y * ay for x, y in p]
        b = [x * ax + y * ay for x, y in q]
        if max(a) <= min(b) or max(b) <= min(a):
            return False
    return True


def _inside(point: Sequence[float], poly: Sequence[Point]) -> bool:
    x, y = point
    sides = {(x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) > 0
             for (x0, y0), (x1, y1) in zip(poly, [*poly[1:], poly[0]], strict=True)}
    return len(sides) == 1


def _clashes(d: Drawing) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """Labels over labels, nodes under other nodes' labels, labels (partly) off the picture."""
    boxes = d.label_boxes
    over = [(m, n) for m, n in itertools.combinations(sorted(boxes), 2) if _overlap(boxes[m], boxes[n])]
    under = [(n, m) for n, pt in d.points.items() for m, box in boxes.items()
             if m != n and _inside(pt, box)]
    width, height = d.size
    off = [n for n, box in boxes.items() if any(not (0 <= x <= width and 0 <= y <= height)
                                                for x, y in box)]
    return over, under, off


@pytest.fixture(scope="module")
def fraud() -> CaseInput:
    return _fraud_case()


def test_a_200_node_case_is_drawn_whole_and_nothing_overlaps(fraud: CaseInput) -> None:
    """All ~200 nodes are drawn, in hop rings, at least a node's width apart; no label touches
    another, no label covers a node, every label is inside the picture; the picture is between
    1,500 and 3,000 pixels wide."""
    g = build_case_graph(fraud)
    assert 190 <= g.number_of_nodes() <= 250
    _, d = draw(g, "png")
    assert d.layout == "rings" and set(d.labels) == set(g.nodes)
    assert _clashes(d) == ([], [], [])
    assert 1_500 <= d.size[0] <= 3_000
    xy = np.array(list(d.positions.values()))
    apart = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert apart[~np.eye(len(xy), dtype=bool)].min() >= 0.99  # ring_layout's sep


def test_a_big_picture_names_the_key_nodes_in_full(fraud: CaseInput) -> None:
    """The suspect, the listed device and the four callers carry their whole identifier; the
    largest payers too, with what they paid; the rest their last four characters."""
    g = build_case_graph(fraud)
    _, d = draw(g, "png")
    label = dict(g.nodes(data="label"))
    full = [node for node in g if d.labels[node].startswith(label[node])]
    for node in [f"account:{fraud.centre_label}", f"device:{fraud.names[node_id(2, DEVICE)]}",
                 *(f"phone:+86138{c:08d}" for c in CALLERS)]:
        assert node in full, node
    assert d.labels[f"device:{fraud.names[node_id(2, DEVICE)]}"].endswith("WATCHLISTED")
    assert 6 < len(full) <= 30
    short = [node for node in g if node not in full]
    assert all(d.labels[node].startswith("…" + label[node][-4:]) for node in short)
    payer = f"account:62220210{node_id(0, 11) // 3:011d}"
    assert "¥" in d.labels[payer]


def test_the_payers_are_left_the_payees_right_and_phones_beside_their_accounts(
        fraud: CaseInput) -> None:
    """Rings by hop: victims left of the mule, layer accounts right, cash-out accounts further
    out than the layer accounts; a victim's phone on the victim's ring, a node's width away."""
    g = build_case_graph(fraud)
    _, d = draw(g, "png")
    pos = d.positions
    name = dict(g.nodes(data="label"))

    def at(kind: int, idx: int) -> Point:
        key = next(n for n in g if n.startswith(("account:", "phone:", "device:")[kind])
                   and name[n] == fraud.names[node_id(kind, idx)])
        x, y = pos[key]
        return x, y

    assert all(at(0, v)[0] < 0 for v in VICTIMS)
    assert all(at(0, layer)[0] > 0 for layer in range(60, 68))
    radius = {n: float(np.hypot(*at(0, n))) for n in (VICTIMS[0], 60, 70)}
    assert radius[70] > radius[60] == pytest.approx(radius[VICTIMS[0]])
    victim, phone = np.array(at(0, VICTIMS[0])), np.array(at(1, 100))
    assert np.hypot(*phone) == pytest.approx(radius[VICTIMS[0]])
    assert 0.9 < np.linalg.norm(victim - phone) < 2.5


def test_picture_files_stay_within_their_estimate(fraud: CaseInput) -> None:
    """The PNG and SVG of the big case are no bigger than ``estimate_size`` says (the server
    refuses exports from that estimate before drawing)."""
    bundle = export_case(fraud, lambda s: s, ("png", "svg"))
    for fmt in ("png", "svg"):
        assert len(bundle.files[f"case.{fmt}"]) <= estimate_size(fraud, (fmt,)).bytes


def test_a_small_case_keeps_the_left_to_right_picture() -> None:
    """Up to FLOW_MAX_NODES nodes money flows left to right and every node is named in full,
    nothing overlapping."""
    small = _fraud_case(n_victims=4, n_layers=2)
    g = build_case_graph(small)
    assert g.number_of_nodes() <= FLOW_MAX_NODES
    _, d = draw(g, "png")
    assert d.layout == "flow"
    assert all(d.labels[n].startswith(a) for n, a in g.nodes(data="label"))
    assert _clashes(d) == ([], [], [])


@pytest.mark.parametrize(("fen", "label"), [(1, "¥0.01"), (9_999, "¥99.99"), (10_000, "¥100"),
                                            (10_049, "¥100"), (10_050, "¥101"),
                                            (1_000_000_000_000_000_050, "¥10,000,000,000,000,001")])
def test_money_labels_are_integer_yuan_from_100_cny_and_fen_below(fen: int, label: str) -> None:
    """Money is fen to the last label: through a float the last would print ¥10,000,000,000,000,000."""
    from screening.case import _yuan

    assert _yuan(fen) == label
