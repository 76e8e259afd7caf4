"""Case-graph exports for police: files for link-analysis tools and a picture.

``export_case`` takes what the live graph knows around a case (``graph.case.CaseInput``), masks
identifiers for callers who may not see them, builds the networkx MultiDiGraph
(``graph.case.build_case_graph``) and renders the requested formats to bytes:

- ``case.graphml`` (yEd, Gephi, Neo4j ``apoc.import.graphml``; networkx reads it back with
  ``read_graphml(path, force_multigraph=True)``, see ``_write_graphml``) and ``case.gexf`` (Gephi);
- ``case.json``: networkx node-link JSON (``nodes`` / ``edges``);
- ``nodes.csv`` and ``edges.csv`` (UTF-8 with BOM): the entity and link lists i2 Analyst's
  Notebook and spreadsheets import;
- ``case.png`` / ``case.svg``: a small case left to right (money flowing from the payers to the
  payees, every node named, amounts on edges), a big one in hop rings (``draw``); the suspect in
  red, victims in orange, watchlisted entities ringed in black, a legend and a caption saying
  what the time range was and what was left out.

The same bytes go into the ExportCaseGraph response and into the files ``screening case
export`` writes (``write_files``).

A server bounds the work before building: ``export_case(..., max_bytes=...)`` estimates each
format's size from the case's node and link counts (``estimate_size``) and refuses with
``CapacityExceeded`` (RESOURCE_EXHAUSTED), naming what would fit, before anything is built;
render time grows with the bytes written.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from networkx.readwrite.graphml import GraphMLWriter

from graph.case import (
    CaseInput,
    Finding,
    build_case_graph,
    findings,
    flow_layout,
    key_nodes,
    picture_view,
    ring_layout,
)
from screening.errors import CapacityExceeded
from screening.model import fen_text

__all__ = ["FILE_NAMES", "FORMATS", "CaseBundle", "Drawing", "SizeEstimate", "draw",
           "estimate_size", "export_case", "masked_input", "render", "write_files"]

FORMATS = ("graphml", "gexf", "json", "csv", "png", "svg")
# format -> the files it produces
FILE_NAMES: Mapping[str, tuple[str, ...]] = {
    "graphml": ("case.graphml",), "gexf": ("case.gexf",), "json": ("case.json",),
    "csv": ("nodes.csv", "edges.csv"), "png": ("case.png",), "svg": ("case.svg",),
}
ROLE_COLOURS = {"suspect": "#d62728", "victim": "#ff7f0e", "recipient": "#9467bd",
                "linked": "#8c8c8c", "other": "#1f77b4"}
KIND_MARKERS = {"account": "o", "phone": "s", "device": "^"}
_NODE_COLUMNS = ("id", "kind", "label", "role", "hops", "watchlisted", "watch_reason",
                 "hub_not_expanded", "cash_terminal", "in_amount", "out_amount", "in_count",
                 "out_count", "first_time", "last_time")
_EDGE_COLUMNS = ("source", "target", "kind", "count", "amount", "amount_text", "talk_seconds",
                 "first_time", "last_time", "decisions", "reasons", "strongest_action")
# Bytes of each format: (fixed, per node, per link), plus 2 per label character for each node
# and each link end. Fitted on random and dense cases of 13 to 2,000 nodes and up to 27,600
# links, rounded up by about a tenth.
_SIZE = {"graphml": (4_096, 640, 580), "gexf": (4_096, 720, 740), "json": (2_048, 370, 425),
         "csv": (1_024, 115, 175)}
# Bytes of a picture: (fixed, per node drawn); it draws at most PICTURE_MAX_NODES nodes and
# PICTURE_MAX_LINKS links, and grows with its rings. Fitted on random, dense and planted fraud
# cases of 31 to 2,000 nodes (at most 3.4 MB and 0.66 MB at 250 nodes drawn), rounded up.
_PICTURE_SIZE = {"png": (307_200, 14_336), "svg": (153_600, 2_560)}


@dataclass(frozen=True)
class Drawing:
    """What the picture shows: node positions (the axes' data units), the node labels drawn, the
    layout ("flow" or "rings"), and in pixels of the PNG each label's corners, each node's
    centre and the picture's size."""

    positions: Mapping[str, tuple[float, float]]
    labels: Mapping[str, str]
    highlighted: tuple[str, ...]  # nodes drawn in the suspect colour
    layout: str = "flow"
    label_boxes: Mapping[str, tuple[tuple[float, float], ...]] = dataclasses.field(
        default_factory=dict)  # each label's corners
    points: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)  # nodes
    size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class CaseBundle:
    graph: nx.MultiDiGraph
    findings: list[Finding]
    files: dict[str, bytes]
    drawing: Drawing | None


def masked_input(data: CaseInput, show: Callable[[str], str]) -> CaseInput:
    """The same case with every identifier passed through ``show`` (identity or a Masker)."""
    return dataclasses.replace(data, centre_label=show(data.centre_label),
                               names={n: show(v) for n, v in data.names.items()})


@dataclass(frozen=True)
class SizeEstimate:
    """How big a case's files would be: nodes, links (edges of the case graph) and bytes."""

    nodes: int
    links: int
    bytes: int

    def mb(self) -> str:
        return f"{self.bytes / 1e6:.1f} MB"


def estimate_size(data: CaseInput, formats: Iterable[str], *, first_nodes: int | None = None,
                  within_hops: int | None = None) -> SizeEstimate:
    """The size of ``formats`` for the case, or for the part of it a smaller request would get:
    its ``first_nodes`` nodes (the search's order: ``max_nodes``) or the nodes ``within_hops``.
    From counts only: nothing is built."""
    nodes = data.hood.nodes
    keep = np.ones(nodes.size, dtype=bool)
    if first_nodes is not None:
        keep[first_nodes:] = False
    if within_hops is not None:
        keep &= data.hood.dist <= within_hops
    order = np.argsort(nodes)
    ed = data.edges
    ends = [order[np.searchsorted(nodes, col, sorter=order)] for col in (ed.src, ed.dst)]
    links = np.unique((ed.src << 34 | ed.dst << 2 | ed.kind)[keep[ends[0]] & keep[ends[1]]]).size
    n = int(keep.sum())
    label = sum(len(data.names[int(x)]) for x in nodes[keep].tolist())
    mean = label / max(n, 1)
    total = 0.0
    for fmt in set(formats):
        if fmt in _PICTURE_SIZE:
            fixed, per_drawn = _PICTURE_SIZE[fmt]
            total += fixed + per_drawn * min(n, PICTURE_MAX_NODES)
        else:
            fixed, per_node, per_link = _SIZE[fmt]
            total += fixed + per_node * n + 2 * label + links * (per_link + 4 * mean)
    return SizeEstimate(n, links, round(total))


def _refusal(data: CaseInput, formats: tuple[str, ...], limit: int, est: SizeEstimate) -> str:
    """Why a case is refused and what would fit: fewer formats, fewer hops, a lower node cap."""
    fits = []
    alone = [f"{f} alone ({e.mb()})" for f in formats
             if (e := estimate_size(data, (f,))).bytes <= limit]
    if alone and len(formats) > 1:
        fits.append(", ".join(alone))
    for h in range(data.hops - 1, 0, -1):
        e = estimate_size(data, formats, within_hops=h)
        if e.bytes <= limit:
            fits.append(f"hops {h} (about {e.nodes} nodes, {e.mb()})")
            break
    lo, hi = 0, est.nodes  # the largest node cap that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_size(data, formats, first_nodes=mid).bytes <= limit:
            lo = mid
        else:
            hi = mid - 1
    if lo:
        fits.append(f"max_nodes {lo}")
    return (f"formats: this case ({data.hops} hops: {est.nodes} nodes, {est.links} links) would "
            f"take about {est.mb()} as {', '.join(formats)}; a reply carries at most "
            f"{limit / 1e6:.1f} MB ([graph] export_max_bytes); what would fit: "
            + ("; ".join(fits) if fits else "nothing smaller than this centre's hops 1"))


def export_case(data: CaseInput, show: Callable[[str], str], formats: Iterable[str] = FORMATS,
                *, max_bytes: int | None = None) -> CaseBundle:
    """Mask, build the MultiDiGraph and its findings, render ``formats``.

    With ``max_bytes``: a case whose files would be larger is refused (CapacityExceeded, naming
    formats, hops and node cap that would fit) before anything is built, and files that still
    come out larger than the estimate are refused after rendering.
    """
    wanted = tuple(dict.fromkeys(formats))
    masked = masked_input(data, show)
    if max_bytes is not None:
        est = estimate_size(masked, wanted)
        if est.bytes > max_bytes:
            raise CapacityExceeded(_refusal(masked, wanted, max_bytes, est))
    g = build_case_graph(masked)
    found = findings(g)
    files, drawing = render(g, found, wanted)
    size = sum(len(b) for b in files.values())
    if max_bytes is not None and size > max_bytes:
        raise CapacityExceeded(f"formats: the files came to {size / 1e6:.1f} MB as "
                               f"{', '.join(wanted)}, more than the {max_bytes / 1e6:.1f} MB a "
                               "reply carries; ask for fewer formats, hops or max_nodes")
    return CaseBundle(g, found, files, drawing)


def render(g: nx.MultiDiGraph, found: list[Finding], formats: Iterable[str]
           ) -> tuple[dict[str, bytes], Drawing | None]:
    wanted = set(formats)
    unknown = wanted - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown case formats {sorted(unknown)} (known: {', '.join(FORMATS)})")
    files: dict[str, bytes] = {}
    drawing = None
    if "graphml" in wanted:
        buf = io.BytesIO()
        _write_graphml(g, buf)
        files["case.graphml"] = buf.getvalue()
    if "gexf" in wanted:
        buf = io.BytesIO()
        nx.write_gexf(_gexf_ready(g), buf, encoding="utf-8")
        files["case.gexf"] = buf.getvalue()
    if "json" in wanted:
        data = nx.node_link_data(g, edges="edges")
        data["findings"] = [dataclasses.asdict(f) for f in found]
        files["case.json"] = json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")
    if "csv" in wanted:
        files["nodes.csv"] = _csv(_NODE_COLUMNS, ([n, *(a[c] for c in _NODE_COLUMNS[1:])]
                                                  for n, a in g.nodes(data=True)))
        files["edges.csv"] = _csv(_EDGE_COLUMNS, ([u, v, *(a[c] for c in _EDGE_COLUMNS[2:])]
                                                  for u, v, a in g.edges(data=True)))
    for fmt in ("png", "svg"):
        if fmt in wanted:
            files[f"case.{fmt}"], drawing = draw(g, fmt)
    return files, drawing


class _KeyedGraphMLWriter(GraphMLWriter):  # type: ignore[misc]  # networkx is untyped
    """networkx's GraphML writer with a multigraph's edge keys in a ``key`` attribute, not in
    the edge ids.

    networkx writes each edge's key as its GraphML id; ours (``transfer``, ``call``, ...) repeat
    across the file, and Gephi takes ids as unique and drops every repeat (networkx#4347). An
    edge without an id is valid GraphML, tools number it themselves, and ``nx.read_graphml``
    takes the ``key`` attribute of an edge without an id as its key.
    """

    def add_edges(self, G: nx.MultiDiGraph, graph_element: Any) -> None:
        default = G.graph.get("edge_default", {})
        for u, v, key, data in G.edges(keys=True, data=True):
            edge = self.myElement("edge", source=str(u), target=str(v))
            self.add_attributes("edge", edge, {"key": key, **data}, default)
            graph_element.append(edge)


def _write_graphml(g: nx.MultiDiGraph, out: io.BytesIO) -> None:
    """The case as GraphML that ``nx.read_graphml(path, force_multigraph=True)`` reads back as
    the same MultiDiGraph (keys, parallel edges, typed attributes, plus each edge's ``key``).

    Key ids are networkx's ``d0``, ``d1``, ..., not the attribute names: ``kind``, ``hops`` and
    ``first_time`` name attributes of nodes and of edges or the graph, and a key id must be
    unique in the document; ``attr.name`` names each attribute."""
    writer = _KeyedGraphMLWriter(encoding="utf-8")
    writer.add_graph_element(g)
    writer.dump(out)


def _gexf_ready(g: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """GEXF wants unique edge ids and no graph-level attributes beyond its own."""
    h = nx.MultiDiGraph()
    h.add_nodes_from(g.nodes(data=True))
    for i, (u, v, key, a) in enumerate(g.edges(keys=True, data=True)):
        h.add_edge(u, v, key=key, id=f"e{i}", **a)
    return h


def _csv(columns: tuple[str, ...], rows: Iterable[list[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(row)
    return buf.getvalue().encode("utf-8-sig")


def write_files(files: Mapping[str, bytes], out_dir: Path) -> list[Path]:
    """Write each file atomically into ``out_dir`` (created); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in sorted(files.items()):
        path = out_dir / name
        tmp = out_dir / f".{name}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(content)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


# ---------------------------------------------------------------- the picture
# A case of more nodes is drawn as its most relevant ones (``picture_view``; the files hold all).
PICTURE_MAX_NODES = 250
# ... and at most this many of their links (the suspects' first: ``_ring_edges``).
PICTURE_MAX_LINKS = 600
# Up to this many nodes the picture is the left-to-right flow, every node named in full; a
# bigger one is drawn in hop rings (``ring_layout``) with the key nodes named in full
# (``key_nodes``) and the others by the last characters of their identifier.
FLOW_MAX_NODES = 40
FLOW_MAX_ROWS = 20  # ... and at most this many in one column
_UNIT_IN = 0.2  # inches per ring-layout unit: the least distance between two nodes on a ring
_RING_FONT = 6.5  # points, ring labels


def _yuan(fen: int) -> str:
    """Whole yuan from 100 CNY (a picture label), fen below; integer arithmetic throughout."""
    fen = int(fen)
    return f"¥{(fen + 50) // 100:,}" if fen >= 10_000 else "¥" + fen_text(fen)


def _involved(g: nx.MultiDiGraph, u: str, v: str, roles: set[str]) -> bool:
    """The edge touches a suspect, or a victim and a suspect's phone/device... any key role."""
    return g.nodes[u]["role"] in roles or g.nodes[v]["role"] in roles


def _flags(a: Mapping[str, Any]) -> list[str]:
    extra = []
    if a["cash_terminal"]:
        extra.append("cash terminal")
    if a["hub_not_expanded"]:
        extra.append("hub, not expanded")
    if a["watchlisted"]:
        extra.append("WATCHLISTED")
    return extra


def draw(case: nx.MultiDiGraph, fmt: str = "png", max_nodes: int = PICTURE_MAX_NODES
         ) -> tuple[bytes, Drawing]:
    """The case as a picture (PNG or SVG bytes). Up to ``FLOW_MAX_NODES`` nodes (``FLOW_MAX_ROWS``
    in a column): money flowing left to right, every node named. More: hop rings around the
    centre (payers left, payees right), the figure growing with the rings so that nodes and
    labels keep their size and do not overlap. A case of more than ``max_nodes`` is cut to its
    most relevant ones (``picture_view``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    g = picture_view(case, max_nodes)
    flow = flow_layout(g) if g.number_of_nodes() <= FLOW_MAX_NODES else {}
    if flow and max(Counter(x for x, _ in flow.values()).values(), default=0) <= FLOW_MAX_ROWS:
        fig, pos, texts, highlighted = _flow_picture(g, flow)
        layout = "flow"
    else:
        fig, pos, texts, highlighted = _ring_picture(g)
        layout = "rings"
    canvas = FigureCanvasAgg(fig)
    _legend_and_caption(fig, g, case, layout)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Title": f"case graph {g.graph.get('centre', '')}"}
                if fmt == "svg" else None)
    boxes = {n: _outline(t) for n, t in texts.items()}
    width, height = canvas.get_width_height()
    ax = fig.axes[0]
    points = {n: tuple(float(c) for c in ax.transData.transform(xy)) for n, xy in pos.items()}
    return buf.getvalue(), Drawing(pos, {n: t.get_text() for n, t in texts.items()},
                                   tuple(highlighted), layout, boxes, points, (width, height))


def _outline(text: Any) -> tuple[tuple[float, float], ...]:
    """The corners of a drawn label in pixels (from its box, turned with it; its extent when it
    has none)."""
    patch = text.get_bbox_patch()
    if patch is None:
        x0, y0, x1, y1 = text.get_window_extent().extents.tolist()
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    corners = patch.get_transform().transform(patch.get_path().vertices[:4])
    return tuple((float(x), float(y)) for x, y in corners)


def _flow_picture(g: nx.MultiDiGraph, pos: Mapping[str, tuple[float, float]]
                  ) -> tuple[Any, Mapping[str, tuple[float, float]], dict[str, Any], list[str]]:
    """A small case left to right (``pos`` from ``flow_layout``): every node named, amounts on
    the edges (only on the suspects' when there are many edges)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    per_col = Counter(x for x, _ in pos.values())
    cols, tall = max(len(per_col), 1), max(per_col.values(), default=1)
    xs, ys = 3.4, 1.1  # data units per column / row
    width = min(max(2.6 * cols + 4.0, 10.0), 40.0)
    height = min(max(0.62 * tall + 3.2, 6.5), 40.0)
    font = 8
    fig = Figure(figsize=(width, height), dpi=110)
    ax = fig.add_axes((0.02, 0.11, 0.80, 0.82))
    ax.set_axis_off()
    xy = {n: (x * xs, y * ys) for n, (x, y) in pos.items()}

    # edges first (under the nodes): the money trail of the suspects dark and labelled, other
    # activity of their counterparties light (and unlabelled in dense cases); pairs with edges
    # both ways or of several kinds bend apart
    key_roles = {"suspect"}
    many = g.number_of_edges() > 60
    seen_pairs: dict[frozenset[str], int] = {}
    for u, v, a in sorted(g.edges(data=True), key=lambda e: _involved(g, e[0], e[1], key_roles)):
        pair = frozenset((u, v))
        nth = seen_pairs.get(pair, 0)
        seen_pairs[pair] = nth + 1
        rad = 0.0 if nth == 0 and not g.has_edge(v, u) else 0.18 * (1 + nth // 2) * (-1) ** nth
        colour, style, lw = _edge_style(a)
        main = _involved(g, u, v, key_roles)
        ax.add_patch(FancyArrowPatch(
            xy[u], xy[v], arrowstyle="-|>", mutation_scale=9, lw=lw if main or not many else
            min(lw, 1.0), color=colour, alpha=1.0 if main or not many else 0.28, linestyle=style,
            connectionstyle=f"arc3,rad={rad}", shrinkA=7, shrinkB=7, zorder=1))
        if a["kind"] in ("transfer", "call") and (main or not many):
            (x0, y0), (x1, y1) = xy[u], xy[v]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            mx, my = mx + rad * (y1 - y0) / 2, my - rad * (x1 - x0) / 2
            text = _yuan(a["amount"]) if a["kind"] == "transfer" else f"{a['count']} call(s)"
            if a["kind"] == "transfer" and a["count"] > 1:
                text += f" ×{a['count']}"
            ax.text(mx, my, text, fontsize=font - 1, color=colour, ha="center", va="center",
                    zorder=3, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                    "alpha": 0.85})

    _markers(ax, g, xy, {n: 260 if r == "suspect" else 120 for n, r in g.nodes(data="role")})
    texts: dict[str, Any] = {}
    highlighted = [n for n, r in g.nodes(data="role") if r == "suspect"]
    for n, a in g.nodes(data=True):
        x, y = xy[n]
        text = a["label"] if len(a["label"]) <= 22 else a["label"][:21] + "…"
        if _flags(a):
            text += "\n" + ", ".join(_flags(a))
        texts[n] = ax.text(x, y - 0.32 * ys, text, fontsize=font, ha="center", va="top", zorder=5,
                           fontweight="bold" if a["role"] == "suspect" else "normal",
                           color="#7f0000" if a["role"] == "suspect" else "black")
    xs_all = [p[0] for p in xy.values()] or [0.0]
    ys_all = [p[1] for p in xy.values()] or [0.0]
    ax.set_xlim(min(xs_all) - xs * 0.6, max(xs_all) + xs * 0.6)
    ax.set_ylim(min(ys_all) - ys * 1.0, max(ys_all) + ys * 0.7)
    return fig, xy, texts, highlighted


def _ring_picture(g: nx.MultiDiGraph) -> tuple[Any, Mapping[str, tuple[float, float]],
                                                dict[str, Any], list[str]]:
    """A big case in hop rings: key nodes named in full, the others by their identifier's last
    four characters; each counterparty of a suspect with the money it moved with the suspects;
    labels point outwards along their node's ray, rings far enough apart to hold them."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    key = set(key_nodes(g))
    sus = {n for n, r in g.nodes(data="role") if r == "suspect"}
    money: Counter[str] = Counter()
    times: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for u, v, a in g.edges(data=True):
        if a["kind"] == "transfer" and (u in sus) != (v in sus):
            money[v if u in sus else u] += a["amount"]
            times[v if u in sus else u] += a["count"]
        elif a["kind"] == "call":
            calls[u] += a["count"]
    text: dict[str, str] = {}
    for n, a in g.nodes(data=True):
        label = a["label"]
        short = label if n in key else (label.split("#")[0] if label.startswith("…")
                                        else "…" + label[-4:])  # masked: "…1234#a1b2c3d4"
        parts = [short if len(short) <= 24 else short[:23] + "…"]
        if money[n]:
            parts.append(_yuan(money[n]) + (f" ×{times[n]}" if times[n] > 1 else ""))
        if calls[n] and n in key:
            parts.append(f"{calls[n]} call(s) out")
        parts += _flags(a)
        text[n] = " · ".join(parts)
    font = {n: FontProperties(size=_RING_FONT + (2 if n in sus else 0.5 if n in key else 0),
                              weight="bold" if n in key else "normal") for n in g}
    # each label's length in layout units, with the gap to its node, as the renderer sets it
    measure = RendererAgg(1, 1, 72)  # type: ignore[no-untyped-call]  # 72 dpi: points
    length = {n: measure.get_text_width_height_descent(  # type: ignore[no-untyped-call]
        text[n], font[n], ismath=False)[0] / (72 * _UNIT_IN) + 0.6 for n in g}
    outer = max((h for _, h in g.nodes(data="hops")), default=0)
    gap = max(4.0, max((length[n] for n, h in g.nodes(data="hops") if h < outer), default=0.0) + 1.0)
    pos = ring_layout(g, sep=1.0, ring_gap=gap)
    reach = max((float(np.hypot(x, y)) + (length[n] if np.hypot(x, y) > 0 else 1.5)
                 for n, (x, y) in pos.items()), default=1.0)
    side = 2 * reach + 1.0
    axes_in = side * _UNIT_IN
    width, height = axes_in + 3.0, axes_in + 1.6
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0.1 / width, 1.0 / height, axes_in / width, axes_in / height))
    ax.set_axis_off()
    ax.set_xlim(-side / 2, side / 2)
    ax.set_ylim(-side / 2, side / 2)

    edges = _ring_edges(g, sus, PICTURE_MAX_LINKS)
    _straight_arrows(ax, g, pos, sus, edges)
    if len(edges) < g.number_of_edges():
        g.graph["drawn"] += f"; {len(edges)} of its {g.number_of_edges()} links"
    _markers(ax, g, pos, {n: 220 if a["role"] == "suspect" else 60 if a["kind"] == "account" else 40
                          for n, a in g.nodes(data=True)})
    texts: dict[str, Any] = {}
    highlighted = [n for n in g if n in sus]
    for n, a in g.nodes(data=True):
        x, y = pos[n]
        role = a["role"]
        style: dict[str, Any] = {"fontproperties": font[n], "zorder": 5,
                                 "color": "#7f0000" if role == "suspect" else "black",
                                 "bbox": {"boxstyle": "square,pad=0.05", "fc": "white",
                                          "ec": "none", "alpha": 0.8}}
        r = float(np.hypot(x, y))
        if a["hops"] == 0 or r == 0:  # the centre: below its node, level
            texts[n] = ax.text(x, y - 0.45, text[n], ha="center", va="top", **style)
            continue
        theta = float(np.arctan2(y, x))
        ux, uy = x / r, y / r
        right = ux >= -1e-9
        texts[n] = ax.text(x + 0.45 * ux, y + 0.45 * uy, text[n], ha="left" if right else "right",
                           va="center", rotation=np.degrees(theta if right else theta - np.pi),
                           rotation_mode="anchor", **style)
    return fig, pos, texts, highlighted


def _edge_style(a: Mapping[str, Any]) -> tuple[str, str, float]:
    """Colour, line style and width of an edge: transfers dark (held/stopped red), wider with
    the amount; calls green dashed; phone and device links grey dotted."""
    if a["kind"] == "transfer":
        stopped = a["strongest_action"] in ("HOLD", "STOP_PAYMENT", "FREEZE")
        lw = 0.8 + min(3.5, math.log10(max(a["amount"], 100)) - 2) * 0.6
        return ("#b2182b" if stopped else "#404040"), "-", lw
    if a["kind"] == "call":
        return "#1a9850", "--", 0.9
    return "#9e9e9e", ":", 0.8


def _ring_edges(g: nx.MultiDiGraph, sus: set[str], limit: int
                ) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The edges a ring picture draws, bottom to top: at most ``limit``, the suspects' first,
    then those between neighbouring rings (the paths out from the centre), then the most money;
    the suspects' are drawn last (on top)."""
    hops = dict(g.nodes(data="hops"))

    def rank(e: tuple[str, str, Mapping[str, Any]]) -> tuple[bool, bool, int]:
        u, v, a = e
        return (u in sus or v in sus, abs(hops[u] - hops[v]) == 1, a["amount"])

    ranked = sorted(g.edges(data=True), key=rank, reverse=True)[:limit]
    return ranked[::-1]


def _straight_arrows(ax: Any, g: nx.MultiDiGraph, pos: Mapping[str, tuple[float, float]],
                     sus: set[str], edges: list[tuple[str, str, Mapping[str, Any]]]) -> None:
    """``edges`` as straight arrows in two collections (lines, heads), in order: one patch per
    edge costs milliseconds to draw, hundreds of them seconds. A pair with edges both ways is
    drawn as two parallel lines."""
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import to_rgba

    lines, heads, colours, widths, styles = [], [], [], [], []
    for u, v, a in edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        length = float(np.hypot(x1 - x0, y1 - y0))
        if length < 0.8:
            continue
        dx, dy = (x1 - x0) / length, (y1 - y0) / length
        off = 0.12 if g.has_edge(v, u) else 0.0  # to the right of the direction of travel
        x0, y0, x1, y1 = x0 + dy * off, y0 - dx * off, x1 + dy * off, y1 - dx * off
        start, end = 0.3, length - 0.35 - (0.25 if g.nodes[v]["role"] == "suspect" else 0.0)
        tip = (x0 + dx * end, y0 + dy * end)
        base = (tip[0] - dx * 0.3, tip[1] - dy * 0.3)
        colour, style, lw = _edge_style(a)
        main = u in sus or v in sus
        rgba = to_rgba(colour, 0.9 if main else 0.5)
        lines.append(((x0 + dx * start, y0 + dy * start), base))
        heads.append((tip, (base[0] - dy * 0.11, base[1] + dx * 0.11),
                      (base[0] + dy * 0.11, base[1] - dx * 0.11)))
        colours.append(rgba)
        widths.append(lw if main else min(lw, 1.0))
        styles.append(style)
    ax.add_collection(LineCollection(lines, colors=colours, linewidths=widths, linestyles=styles,
                                     zorder=1))
    ax.add_collection(PolyCollection(heads, facecolors=colours, edgecolors="none", zorder=1))


def _markers(ax: Any, g: nx.MultiDiGraph, pos: Mapping[str, tuple[float, float]],
             size: Mapping[str, float]) -> None:
    """The nodes, one scatter per marker shape (a scatter per node costs milliseconds each)."""
    for kind, marker in KIND_MARKERS.items():
        group = [n for n, k in g.nodes(data="kind") if k == kind]
        if not group:
            continue
        listed = [g.nodes[n]["watchlisted"] for n in group]
        ax.scatter([pos[n][0] for n in group], [pos[n][1] for n in group],
                   s=[size[n] for n in group], marker=marker,
                   c=[ROLE_COLOURS[g.nodes[n]["role"]] for n in group],
                   edgecolors=["black" if w else "white" for w in listed],
                   linewidths=[2.4 if w else 0.8 for w in listed], zorder=4)


def _legend_and_caption(fig: Any, g: nx.MultiDiGraph, case: nx.MultiDiGraph, layout: str) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=c, markersize=8, label=r)
               for r, c in ROLE_COLOURS.items()]
    handles += [Line2D([], [], marker=m, ls="", color="#555555", markersize=7, label=k)
                for k, m in KIND_MARKERS.items()]
    handles += [
        Line2D([], [], marker="o", ls="", mfc="white", mec="black", mew=2.4, markersize=9,
               label="watchlisted"),
        Line2D([], [], color="#404040", lw=1.6, label="transfer (amount, ×count)"),
        Line2D([], [], color="#b2182b", lw=1.6, label="transfer held/stopped"),
        Line2D([], [], color="#1a9850", lw=1.2, ls="--", label="call"),
        Line2D([], [], color="#9e9e9e", lw=1.2, ls=":", label="uses phone/device"),
    ]
    inch = 1 / fig.get_figheight()
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.995, 1 - 0.55 * inch),
               fontsize=8, frameon=True, title="legend", title_fontsize=9)
    meta = g.graph
    how = ("money flows left to right" if layout == "flow" else
           "hops as rings, payers left, payees right")
    fig.suptitle(f"Case graph around {meta.get('centre', '?')}  —  {how}", fontsize=12,
                 fontweight="bold", x=0.02, y=1 - 0.15 * inch, ha="left", va="top")
    caption = (f"Edges from {meta.get('from_time', '?')} to {meta.get('to_time', '?')} (UTC), "
               f"up to {meta.get('hops', '?')} hop(s) from the centre: {case.number_of_nodes()} "
               f"nodes, {case.number_of_edges()} links, {meta.get('transactions', 0)} "
               f"transactions/calls/links. Drawn: {meta['drawn']}.")
    if layout == "rings":
        caption += ("\nNamed in full: the suspects, watchlisted entities, hubs, the numbers that "
                    "called the victims and the largest counterparties; the others by their last "
                    "4 characters. Amounts: what each node paid or got from the suspects (the "
                    "files hold every edge's).")
    notes = meta.get("notes", "")
    caption += "\n" + (f"Capped: {notes}." if notes else "Nothing was left out.")
    fig.text(0.01, 0.1 * inch, caption, fontsize=8.5, ha="left", va="bottom", wrap=True)
