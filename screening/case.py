"""Case-graph exports for police: files for link-analysis tools and a picture.

``export_case`` takes what the live graph knows around a case (``graph.case.CaseInput``), masks
identifiers for callers who may not see them, builds the networkx MultiDiGraph
(``graph.case.build_case_graph``) and renders the requested formats to bytes:

- ``case.graphml`` (yEd, Gephi, Neo4j ``apoc.import.graphml``; networkx reads it back with
  ``read_graphml(path, force_multigraph=True)``, see ``_write_graphml``) and ``case.gexf`` (Gephi);
- ``case.json``: networkx node-link JSON (``nodes`` / ``edges``);
- ``nodes.csv`` and ``edges.csv`` (UTF-8 with BOM): the entity and link lists i2 Analyst's
  Notebook and spreadsheets import;
- ``case.png`` / ``case.svg``: money flowing left to right, amounts on edges, the suspect in red,
  victims in orange, watchlisted entities ringed in black, a legend and a caption saying what
  the time range was and what was left out.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from networkx.readwrite.graphml import GraphMLWriter

from graph.case import CaseInput, Finding, build_case_graph, findings, flow_layout, picture_view
from screening.errors import CapacityExceeded

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
_EDGE_COLUMNS = ("source", "target", "kind", "count", "amount", "amount_yuan", "first_time",
                 "last_time", "decisions", "reasons", "strongest_action")
# Bytes of each format: (fixed, per node, per link), plus 2 per label character for each node
# and each link end. Fitted on random and dense cases of 13 to 2,000 nodes and up to 27,600
# links, rounded up by about a tenth; the pictures show at most 60 nodes whatever the case.
_SIZE = {"graphml": (4_096, 640, 580), "gexf": (4_096, 720, 740), "json": (2_048, 370, 425),
         "csv": (1_024, 115, 175), "png": (1_572_864, 0, 0), "svg": (655_360, 0, 0)}


@dataclass(frozen=True)
class Drawing:
    """What the picture shows: node positions (data units) and the node labels drawn."""

    positions: Mapping[str, tuple[float, float]]
    labels: Mapping[str, str]
    highlighted: tuple[str, ...]  # nodes drawn in the suspect colour


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
        fixed, per_node, per_link = _SIZE[fmt]
        if per_node:
            total += fixed + per_node * n + 2 * label + links * (per_link + 4 * mean)
        else:
            total += fixed
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
def _yuan(fen: int) -> str:
    y = fen / 100
    return f"¥{y:,.0f}" if y >= 100 else f"¥{y:,.2f}"


def _involved(g: nx.MultiDiGraph, u: str, v: str, roles: set[str]) -> bool:
    """The edge touches a suspect, or a victim and a suspect's phone/device... any key role."""
    return g.nodes[u]["role"] in roles or g.nodes[v]["role"] in roles


def draw(case: nx.MultiDiGraph, fmt: str = "png", max_nodes: int = 60) -> tuple[bytes, Drawing]:
    """The case as a picture (PNG or SVG bytes), money flowing left to right; a big case is
    cut to its ``max_nodes`` most relevant nodes (``graph.case.picture_view``)."""
    g = picture_view(case, max_nodes)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    pos = flow_layout(g)
    cols = sorted({x for x, _ in pos.values()}) or [0.0]
    per_col: dict[float, int] = {}
    for x, _ in pos.values():
        per_col[x] = per_col.get(x, 0) + 1
    tall = max(per_col.values(), default=1)
    xs, ys = 3.4, 1.1  # data units per column / row
    width = min(max(2.6 * len(cols) + 4.0, 10.0), 40.0)
    height = min(max(0.62 * tall + 3.2, 6.5), 40.0)
    font = 8 if tall <= 25 else 6 if tall <= 60 else 4
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.11, 0.80, 0.82))
    ax.set_axis_off()
    xy = {n: (x * xs, y * ys) for n, (x, y) in pos.items()}

    # edges first (under the nodes): the money trail of the suspects and victims dark and
    # labelled, other activity of their counterparties light (and unlabelled in big cases);
    # pairs with edges both ways or of several kinds bend apart
    key_roles = {"suspect"}
    many = g.number_of_edges() > 60
    seen_pairs: dict[frozenset[str], int] = {}
    for u, v, a in sorted(g.edges(data=True), key=lambda e: _involved(g, e[0], e[1], key_roles)):
        pair = frozenset((u, v))
        nth = seen_pairs.get(pair, 0)
        seen_pairs[pair] = nth + 1
        rad = 0.0 if nth == 0 and not g.has_edge(v, u) else 0.18 * (1 + nth // 2) * (-1) ** nth
        kind = a["kind"]
        main = _involved(g, u, v, key_roles)
        alpha = 1.0 if main or not many else 0.28
        if kind == "transfer":
            stopped = a["strongest_action"] in ("HOLD", "STOP_PAYMENT", "FREEZE")
            colour, style = ("#b2182b" if stopped else "#404040"), "-"
            lw = 0.8 + min(3.5, math.log10(max(a["amount"], 100)) - 2) * 0.6
        elif kind == "call":
            colour, style, lw = "#1a9850", "--", 0.9
        else:
            colour, style, lw = "#9e9e9e", ":", 0.8
        if not main and many:
            lw = min(lw, 1.0)
        ax.add_patch(FancyArrowPatch(
            xy[u], xy[v], arrowstyle="-|>", mutation_scale=9, lw=lw, color=colour, alpha=alpha,
            linestyle=style, connectionstyle=f"arc3,rad={rad}", shrinkA=7, shrinkB=7, zorder=1))
        if kind in ("transfer", "call") and (main or not many):
            (x0, y0), (x1, y1) = xy[u], xy[v]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            mx, my = mx + rad * (y1 - y0) / 2, my - rad * (x1 - x0) / 2
            text = _yuan(a["amount"]) if kind == "transfer" else f"{a['count']} call(s)"
            if kind == "transfer" and a["count"] > 1:
                text += f" ×{a['count']}"
            ax.text(mx, my, text, fontsize=font - 1, color=colour, ha="center", va="center",
                    zorder=3, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                    "alpha": 0.85})

    labels: dict[str, str] = {}
    highlighted = []
    for n, a in g.nodes(data=True):
        x, y = xy[n]
        role = a["role"]
        size = 260 if role == "suspect" else 120
        ax.scatter([x], [y], s=size, marker=KIND_MARKERS[a["kind"]], c=ROLE_COLOURS[role],
                   edgecolors="black" if a["watchlisted"] else "white",
                   linewidths=2.6 if a["watchlisted"] else 0.8, zorder=4)
        if role == "suspect":
            highlighted.append(n)
        text = a["label"] if len(a["label"]) <= 22 else a["label"][:21] + "…"
        extra = []
        if a["cash_terminal"]:
            extra.append("cash terminal")
        if a["hub_not_expanded"]:
            extra.append("hub, not expanded")
        if a["watchlisted"]:
            extra.append("WATCHLISTED")
        if extra:
            text += "\n" + ", ".join(extra)
        labels[n] = text
        ax.text(x, y - 0.32 * ys, text, fontsize=font, ha="center", va="top", zorder=5,
                fontweight="bold" if role == "suspect" else "normal",
                color="#7f0000" if role == "suspect" else "black")
    xs_all = [p[0] for p in xy.values()] or [0.0]
    ys_all = [p[1] for p in xy.values()] or [0.0]
    ax.set_xlim(min(xs_all) - xs * 0.6, max(xs_all) + xs * 0.6)
    ax.set_ylim(min(ys_all) - ys * 1.0, max(ys_all) + ys * 0.7)

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
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.995, 0.93), fontsize=8,
               frameon=True, title="legend", title_fontsize=9)
    meta = g.graph
    fig.suptitle(f"Case graph around {meta.get('centre', '?')}  —  money flows left to right",
                 fontsize=12, fontweight="bold", x=0.42, y=0.985)
    caption = (f"Edges from {meta.get('from_time', '?')} to {meta.get('to_time', '?')} (UTC), "
               f"up to {meta.get('hops', '?')} hop(s) from the centre: {case.number_of_nodes()} "
               f"nodes, {case.number_of_edges()} links, {meta.get('transactions', 0)} "
               f"transactions/calls/links. Drawn: {meta['drawn']}.")
    notes = meta.get("notes", "")
    caption += "\n" + (f"Capped: {notes}." if notes else "Nothing was left out.")
    fig.text(0.01, 0.015, caption, fontsize=8.5, ha="left", va="bottom", wrap=True)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Title": f"case graph {meta.get('centre', '')}"}
                if fmt == "svg" else None)
    return buf.getvalue(), Drawing(pos, labels, tuple(highlighted))
