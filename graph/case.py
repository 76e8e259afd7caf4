"""Case graphs for investigators: a typed networkx MultiDiGraph, its left-to-right layout, findings.

``build_case_graph`` turns a bounded neighbourhood of the live graph (``LiveGraph.neighbourhood``
and ``edges_among``) plus names, watchlist hits and decisions into a MultiDiGraph: one node per
account / phone / device, one edge per (from, to, kind) with the count, amount, first and last
time, and the decisions taken on its transactions. ``count`` is the transfers, calls or (for a
``uses_phone`` / ``uses_device`` link) the transactions made with the phone or device; ``amount``
is integer fen for transfers (``amount_text`` the same as ``12,345.67``, for people reading a
table) and 0 for calls and links; ``talk_seconds`` is a call edge's total duration; decisions sit
on transfer edges only.
``flow_layout`` places money flowing left to right; ``findings`` lists what the pattern
detectors see in the case. Writing files and drawing pictures is I/O and lives in
``screening.case``.

Node keys are ``"<kind>:<label>"`` with the label as given (clear or masked by the caller), so
no identifier reaches the graph unless the caller put it there.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from graph import _kernels as k
from graph.live import EDGE_KINDS, NODE_KINDS, EdgeRows, Neighbourhood

__all__ = [
    "ACTION_ORDER",
    "ROLES",
    "CaseInput",
    "Finding",
    "build_case_graph",
    "findings",
    "flow_layout",
    "key_nodes",
    "node_key",
    "picture_view",
    "ring_layout",
]

ROLES = ("suspect", "victim", "recipient", "linked", "other")
ACTION_ORDER = ("ALLOW", "WARN", "HOLD", "STOP_PAYMENT", "FREEZE")


@dataclass(frozen=True)
class CaseInput:
    """What the live graph knows around a case, with display names already chosen."""

    centre_label: str
    suspects: tuple[int, ...]  # node ids
    hops: int
    lo_ms: int
    hi_ms: int
    max_nodes: int
    hood: Neighbourhood
    edges: EdgeRows
    names: Mapping[int, str]  # node id -> label (clear or masked)
    victims: tuple[int, ...] = ()  # known victims, e.g. the payer of the centre transaction
    terminals: frozenset[int] = frozenset()
    watch: Mapping[int, str] = field(default_factory=dict)  # node id -> listing reason
    decisions: Mapping[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # ref ->


@dataclass(frozen=True)
class Finding:
    detector: str
    description: str
    nodes: tuple[str, ...] = ()


def node_key(kind: int, label: str) -> str:
    return f"{NODE_KINDS[kind]}:{label}"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tally(c: Counter[str]) -> str:
    return ";".join(f"{name}:{n}" for name, n in sorted(c.items(), key=lambda x: (-x[1], x[0])))


Decision = tuple[str, tuple[str, ...]]  # action, reason codes


def _decision_texts(found: tuple[Decision, ...], memo: dict[tuple[Decision, ...], tuple[str, str, str]]
                    ) -> tuple[str, str, str]:
    """(strongest action, action tally, reason tally) of an edge's decisions, computed once per
    distinct set of decisions: most edges share a few."""
    texts = memo.get(found)
    if texts is None:
        actions: Counter[str] = Counter(a for a, _ in found)
        reasons: Counter[str] = Counter(r for _, codes in found for r in codes)
        texts = memo[found] = (max(actions, key=ACTION_ORDER.index, default=""), _tally(actions),
                               _tally(reasons))
    return texts


def _edge_groups(ed: EdgeRows, decisions: Mapping[int, Decision]
                 ) -> Iterator[tuple[int, int, int, int, int, tuple[int, str], tuple[int, str],
                                     tuple[Decision, ...]]]:
    """The edge rows grouped by (from, to, kind), in order of first appearance: from, to, kind,
    count, amount, (first time, its text), (last time, its text), the decisions taken (sorted).

    Sums, counts and time bounds per group in numpy (exact int64 sums): per-group array
    indexing cost about 100 us per link, a third of a 2,000-node export."""
    n = ed.src.shape[0]
    if n == 0:
        return
    code = ed.src << 34 | ed.dst << 2 | ed.kind
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[inverse.reshape(-1)]
    m = order.size
    count = np.bincount(group, minlength=m)
    amount = np.zeros(m, dtype=np.int64)
    np.add.at(amount, group, ed.amount)
    lo = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(lo, group, ed.ts)
    hi = np.full(m, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(hi, group, ed.ts)
    taken: dict[int, list[Decision]] = {}
    if decisions:
        # a decision belongs to its transaction's transfer edge only: the phone and device links
        # the same transaction made or refreshed carry its ref too, and counting it there again
        # would double the rules' counts in the findings
        money = np.flatnonzero(ed.kind == k.K_TRANSFER)
        for gi, ref in zip(group[money].tolist(), ed.ref[money].tolist(), strict=True):
            found = decisions.get(ref)
            if found is not None:
                taken.setdefault(gi, []).append(found)
    head = first[order]
    yield from zip(ed.src[head].tolist(), ed.dst[head].tolist(), ed.kind[head].tolist(),
                   count.tolist(), amount.tolist(), zip(lo.tolist(), _iso_many(lo), strict=True),
                   zip(hi.tolist(), _iso_many(hi), strict=True),
                   [tuple(sorted(taken[gi])) if gi in taken else () for gi in range(m)],
                   strict=True)


def _iso_many(ms: np.ndarray) -> list[str]:
    """``_iso`` of each value (whole seconds, UTC, rounded down)."""
    seconds = (ms // 1000).astype("datetime64[s]")
    return [f"{t}Z" for t in np.datetime_as_string(seconds, unit="s").tolist()]


def _fen_text(fen: int) -> str:
    """``1234567`` -> ``12,345.67``: integer arithmetic, never a float."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def build_case_graph(data: CaseInput) -> nx.MultiDiGraph:
    """The case as a MultiDiGraph (see the module docstring); ``G.graph`` holds the caps."""
    hood, ed = data.hood, data.edges
    g = nx.MultiDiGraph()
    keys: dict[int, str] = {}
    hubs = []
    for node, dist, cut in zip(hood.nodes.tolist(), hood.dist.tolist(), hood.cut.tolist(),
                               strict=True):
        kind = node % k.N_NODE_KINDS
        label = data.names[node]
        key = node_key(kind, label)
        keys[node] = key
        terminal = node in data.terminals
        hub = bool(cut) and not terminal
        if hub:
            hubs.append(label)
        g.add_node(key, kind=NODE_KINDS[kind], label=label, hops=int(dist), role="other",
                   watchlisted=node in data.watch, watch_reason=data.watch.get(node, ""),
                   hub_not_expanded=hub, cash_terminal=terminal, in_amount=0, out_amount=0,
                   in_count=0, out_count=0, first_time="", last_time="")
    first_seen: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    memo: dict[tuple[Decision, ...], tuple[str, str, str]] = {}
    for s, d, kind, count, amount, lo, hi, found in _edge_groups(ed, data.decisions):
        strongest, actions, reasons = _decision_texts(found, memo)
        seconds = 0
        if kind in (k.K_LINK_PHONE, k.K_LINK_DEVICE):  # the store's "amount" of a link is its uses
            count, amount = amount, 0
        elif kind == k.K_CALL:  # ... and of a call its seconds: money only ever in ``amount``
            seconds, amount = amount, 0
        g.add_edge(keys[s], keys[d], key=EDGE_KINDS[kind], kind=EDGE_KINDS[kind], count=count,
                   amount=amount, amount_text=_fen_text(amount) if kind == k.K_TRANSFER else "",
                   talk_seconds=seconds,
                   first_time=lo[1], last_time=hi[1], decisions=actions, reasons=reasons,
                   strongest_action=strongest)
        if kind == k.K_TRANSFER:
            g.nodes[keys[s]]["out_amount"] += amount
            g.nodes[keys[s]]["out_count"] += count
            g.nodes[keys[d]]["in_amount"] += amount
            g.nodes[keys[d]]["in_count"] += count
        for key in (keys[s], keys[d]):
            if lo[0] < first_seen.get(key, lo[0] + 1):
                first_seen[key] = lo[0]
                g.nodes[key]["first_time"] = lo[1]
            if hi[0] > last_seen.get(key, hi[0] - 1):
                last_seen[key] = hi[0]
                g.nodes[key]["last_time"] = hi[1]
    _assign_roles(g, [keys[n] for n in data.suspects if n in keys],
                  [keys[n] for n in data.victims if n in keys])
    notes = []
    if hood.left_out:
        notes.append(f"{hood.left_out} neighbours left out: node cap {data.max_nodes} reached")
    if ed.left_out:
        notes.append(f"{ed.left_out} edges to nodes outside the case left out")
    if hubs:
        notes.append(f"{len(hubs)} high-degree nodes shown but not expanded")
    if hood.truncated:
        notes.append("search stopped at its work budget: the outer hops are incomplete")
    g.graph.update(
        centre=data.centre_label, from_time=_iso(data.lo_ms), to_time=_iso(data.hi_ms),
        hops=data.hops, max_nodes=data.max_nodes, nodes_left_out=hood.left_out,
        edges_left_out=ed.left_out, hubs_not_expanded=";".join(hubs),
        truncated=hood.truncated, notes="; ".join(notes), transactions=int(ed.src.shape[0]),
    )
    return g


def _assign_roles(g: nx.MultiDiGraph, suspects: list[str], victims: list[str]) -> None:
    """suspect; victim (paid suspects more than it got back; a phone a suspect phone called, and
    the account using it); recipient (got more from suspects than it paid them); linked (phone
    or device a suspect account used)."""
    sus = set(suspects)
    net: Counter[str] = Counter()
    for u, v, data in g.edges(data=True):
        if data["kind"] == "transfer":
            if v in sus and u not in sus:
                net[u] += data["amount"]
            elif u in sus and v not in sus:
                net[v] -= data["amount"]
        elif data["kind"] == "call" and u in sus and v not in sus:
            g.nodes[v]["role"] = "victim"
        elif data["kind"].startswith("uses_") and u in sus:
            g.nodes[v]["role"] = "linked"
    for n, amount in net.items():
        g.nodes[n]["role"] = "victim" if amount > 0 else "recipient" if amount < 0 else "other"
    for u, v, kind in g.edges(data="kind"):  # the owner of a phone a suspect phone called
        if kind == "uses_phone" and g.nodes[v]["role"] == "victim" and u not in net:
            g.nodes[u]["role"] = "victim"
    for n in victims:
        g.nodes[n]["role"] = "victim"
    for n in sus:
        g.nodes[n]["role"] = "suspect"


def flow_layout(g: nx.MultiDiGraph) -> dict[str, tuple[float, float]]:
    """Positions with money flowing left to right: suspects in column 0; breadth-first from
    them, a neighbour goes one column left when it paid the node more than it received from it
    (or called it more often), one column right otherwise; phones and devices stay in their
    account's column. Within a column nodes are ordered by the mean row of their neighbours."""
    start = _starts(g)
    col, link = _flow_columns(g, start)
    undirected = g.to_undirected(as_view=True)
    # the suspects' column is theirs (and their phones' and devices'): others move half a
    # column right (they get money from the suspects' payers, not from the suspects)
    own = set(start) | {n for pair in link if pair & set(start) for n in pair}
    xpos: dict[str, float] = {n: col[n] + (0.5 if col[n] == 0 and n not in own else 0.0)
                              for n in g.nodes}
    priority = {r: i for i, r in enumerate(ROLES)}
    columns: dict[float, list[str]] = {}
    for n in sorted(g.nodes, key=lambda n: (priority.get(g.nodes[n]["role"], 9), str(n))):
        columns.setdefault(xpos[n], []).append(n)
    row: dict[str, float] = {}

    def place() -> None:
        for members in columns.values():
            for i, n in enumerate(members):
                row[n] = i - (len(members) - 1) / 2

    place()
    for _ in range(2):
        for c in sorted(columns):
            members = columns[c]
            centre = {n: float(np.mean([row[m] for m in undirected[n] if xpos[m] != c] or [row[n]]))
                      for n in members}
            members.sort(key=lambda n: (centre[n], priority.get(g.nodes[n]["role"], 9)))
            columns[c] = _links_after_owner(g, members)
        place()
    return {n: (xpos[n], -row[n]) for n in g.nodes}


def _starts(g: nx.MultiDiGraph) -> list[str]:
    """The nodes a layout grows from: the suspects, else the centre, else any node."""
    return [n for n, r in g.nodes(data="role") if r == "suspect"] or [
        n for n, h in g.nodes(data="hops") if h == 0] or list(g.nodes)[:1]


def _flow_columns(g: nx.MultiDiGraph, start: list[str]
                  ) -> tuple[dict[str, int], set[frozenset[str]]]:
    """Each node's column (see ``flow_layout``) and the pairs joined by phone / device links."""
    flow: Counter[tuple[str, str]] = Counter()  # money (or calls) u -> v
    link: set[frozenset[str]] = set()
    for u, v, a in g.edges(data=True):
        if a["kind"] == "transfer":
            flow[(u, v)] += a["amount"]
        elif a["kind"] == "call":
            flow[(u, v)] += a["count"]
        else:
            link.add(frozenset((u, v)))
    col: dict[str, int] = dict.fromkeys(start, 0)
    queue = list(start)
    undirected = g.to_undirected(as_view=True)
    for u in queue:
        for v in sorted(undirected[u]):
            if v in col:
                continue
            net = flow[(u, v)] - flow[(v, u)]
            if net == 0 and frozenset((u, v)) in link:
                col[v] = col[u]
            else:
                col[v] = col[u] + (-1 if net < 0 else 1)
            queue.append(v)
    for n in g.nodes:
        col.setdefault(n, 0)
    return col, link


def picture_view(g: nx.MultiDiGraph, max_nodes: int = 250) -> nx.MultiDiGraph:
    """The part of a big case a picture can show: suspects, their direct counterparties, the
    watchlisted entities and the paths to them, then the nodes tied to most of those, up to
    ``max_nodes``. The whole case stays in the files; ``G.graph["drawn"]`` says how much is shown.
    """
    if g.number_of_nodes() <= max_nodes:
        view = g.copy()
        view.graph["drawn"] = f"all {g.number_of_nodes()} nodes"
        return view
    undirected = g.to_undirected(as_view=True)
    suspects = [n for n, r in g.nodes(data="role") if r == "suspect"]
    keep: dict[str, None] = dict.fromkeys(suspects)
    # one breadth-first search from all suspects (not one path search per listed entity: a case
    # may hold hundreds), then each listed entity's shortest path back to its nearest suspect
    parent: dict[str, str | None] = dict.fromkeys(suspects)
    frontier = list(suspects)
    while frontier:
        nxt = []
        for u in frontier:
            for v in sorted(undirected[u]):
                if v not in parent:
                    parent[v] = u
                    nxt.append(v)
        frontier = nxt
    for n, listed in g.nodes(data="watchlisted"):
        if listed and n in parent:
            path: list[str] = []
            at: str | None = n
            while at is not None:
                path.append(at)
                at = parent[at]
            keep.update(dict.fromkeys(reversed(path)))
    rank = {r: i for i, r in enumerate(ROLES)}
    near = sorted((n for n in g.nodes if g.nodes[n]["hops"] <= 1 and n not in keep),
                  key=lambda n: (rank.get(g.nodes[n]["role"], 9), -undirected.degree(n), n))
    keep.update(dict.fromkeys(near))
    rest = sorted((n for n in g.nodes if n not in keep),
                  key=lambda n: (-sum(1 for m in undirected[n] if m in keep), n))
    keep.update(dict.fromkeys(rest))
    chosen = list(keep)[:max_nodes]
    view = g.subgraph(chosen).copy()
    view.graph["drawn"] = (f"{view.number_of_nodes()} of {g.number_of_nodes()} nodes (suspects, "
                           "their counterparties and watchlist paths; the files hold all)")
    return view


def ring_layout(g: nx.MultiDiGraph, *, sep: float = 1.0, ring_gap: float = 5.0
                ) -> dict[str, tuple[float, float]]:
    """Positions for a big case: the centre in the middle, each hop on a ring around it.

    Hop 1 shares its ring by side, as ``flow_layout`` reads the money: the suspects' payers
    (and the numbers that called them) on the left half, their payees on the right, the rest
    (accounts sharing a suspect's phone or device) below; each gets an arc as wide as the
    outer nodes that hang on it (a radial tree). A node further out sits as near as it can to
    the mean angle of the inner nodes it deals with. A phone or device at its account's hop (its
    own, see ``LiveGraph.neighbourhood``) sits beside the account on the same ring. Nodes on a
    ring are at least ``sep`` apart (a ring grows to hold its nodes) and rings at least
    ``ring_gap`` apart (room for a label pointing outwards); the centre's own phones and devices
    sit below it, room for its name between."""
    hops = dict(g.nodes(data="hops"))
    start = _starts(g)
    col, _ = _flow_columns(g, start)
    owner: dict[str, str] = {}
    for u, v, kind in sorted(g.edges(data="kind")):
        if kind.startswith("uses_") and v not in owner and v not in start and hops[u] == hops[v]:
            owner[v] = u
    sats: dict[str, list[str]] = {}
    for v in sorted(owner):
        sats.setdefault(owner[v], []).append(v)
    rings: dict[int, list[str]] = {}
    for n in sorted(g.nodes):
        if n not in owner:
            rings.setdefault(hops[n], []).append(n)
    pos: dict[str, tuple[float, float]] = {}
    angle: dict[str, float] = {}
    # the centre: suspects stacked at x = 0, other centres (a transaction's payer) to their left
    centre = rings.pop(0, [])
    for x, group in ((0.0, [n for n in centre if n in start]),
                     (-ring_gap / 2, [n for n in centre if n not in start])):
        for i, n in enumerate(group):
            y = ((len(group) - 1) / 2 - i) * 3 * sep
            pos[n] = (x, y)
            for j, m in enumerate(sats.get(n, [])):  # below, leaving room for the name
                pos[m] = (x + (j - (len(sats[n]) - 1) / 2) * sep, y - 1.6 * sep)
    und = g.to_undirected(as_view=True)
    slots = {n: 1 + len(sats.get(n, ())) for n in g.nodes}

    def ring_of(m: str) -> str:
        return owner.get(m, m)

    radius = max((abs(y) for _, y in pos.values()), default=0.0)
    for h in sorted(rings):
        members = rings[h]
        if h == min(rings):
            centres = _side_sectors(members, rings.get(h + 1, []), hops, col, und, ring_of, slots)
            width = {n: w for n, (_, w) in centres.items()}
            need = max((slots[n] * sep / width[n] for n in members), default=0.0)
            radius = max(radius + ring_gap, need)
            mid = {n: a for n, (a, _) in centres.items()}
        else:
            total = sum(slots[n] for n in members) * sep
            radius = max(radius + ring_gap, total / (2 * np.pi * 0.95))
            wanted = []
            for n in members:
                near = [angle[m] for m in und[n] if m in angle and hops[m] < h] or [
                    angle[m] for m in und[n] if m in angle] or [np.pi / 2]
                wanted.append(float(np.arctan2(np.mean(np.sin(near)), np.mean(np.cos(near)))))
            spread = _spread(wanted, [slots[n] * sep / radius for n in members])
            mid = dict(zip(members, spread, strict=True))
        step = sep / radius
        for n in members:
            block = [n, *sats.get(n, [])]
            for j, m in enumerate(block):
                a = mid[n] + (j - (len(block) - 1) / 2) * step
                angle[m] = a
                pos[m] = (radius * float(np.cos(a)), radius * float(np.sin(a)))
    return pos


def _side_sectors(members: list[str], outer: list[str], hops: Mapping[str, int],
                  col: Mapping[str, int], und: nx.MultiGraph, ring_of: Callable[[str], str],
                  slots: Mapping[str, int]) -> dict[str, tuple[float, float]]:
    """The first ring's arcs: (centre angle, width) of each node. Payers left (angle pi), payees
    right (0), the rest below (-pi/2); each node's width in proportion to its own slots or the
    slots of the outer nodes that hang on it, whichever is more; neighbouring sides apart."""
    here = set(members)
    hang: Counter[str] = Counter()
    first: dict[str, str] = {}  # the shared outer neighbour that keeps nodes side by side
    for m in outer:
        inner = sorted({ring_of(x) for x in und[m] if ring_of(x) in here})
        if inner:
            hang[inner[0]] += slots[m]
            if len(inner) > 1:
                for x in inner:
                    first.setdefault(x, m)
    weight = {n: max(slots[n], hang[n]) for n in members}
    side = {n: 2 if col[n] < 0 else 0 if col[n] > 0 else 1 for n in members}
    centre_of = {0: 0.0, 2: np.pi, 1: 1.5 * np.pi}  # counter-clockwise from the right
    total = {s: sum(weight[n] for n in members if side[n] == s) for s in (0, 2, 1)}
    present = [s for s in (0, 2, 1) if total[s] > 0]
    gap = 0.1
    if len(present) <= 1:
        k = (2 * np.pi - gap) / max(sum(total.values()), 1)
    else:
        k = min((((centre_of[b] - centre_of[a]) % (2 * np.pi)) - gap) / ((total[a] + total[b]) / 2)
                for a, b in zip(present, present[1:] + present[:1], strict=True))
    out: dict[str, tuple[float, float]] = {}
    for s in present:
        group = sorted((n for n in members if side[n] == s),
                       key=lambda n: (first.get(n, "~"), -weight[n], n))
        at = centre_of[s] - k * total[s] / 2
        for n in group:
            out[n] = (at + k * weight[n] / 2, k * weight[n])
            at += k * weight[n]
    return out


def _spread(wanted: list[float], widths: list[float]) -> list[float]:
    """Angles as near ``wanted`` as they can be, in the same circular order, neighbours at least
    half their widths apart (the widths sum to less than a full turn): cut the circle at the
    widest gap, then least-squares placement of the ordered items (adjacent ones pooled while
    they overlap)."""
    n = len(wanted)
    if n == 0:
        return []
    turn = 2 * np.pi
    order = sorted(range(n), key=lambda i: wanted[i] % turn)
    a = [wanted[i] % turn for i in order]
    gaps = [(a[(j + 1) % n] - a[j]) % turn or (turn if n == 1 else 0.0) for j in range(n)]
    cut = max(range(n), key=gaps.__getitem__)
    seq = order[cut + 1:] + order[:cut + 1]
    base = wanted[seq[0]] % turn
    x = {i: (wanted[i] % turn - base) % turn for i in seq}
    clusters: list[tuple[list[int], list[float], float]] = []  # items, offsets, sum(x - offset)
    for i in seq:
        items, offs, total = [i], [0.0], x[i]
        while clusters:
            p_items, p_offs, p_total = clusters[-1]
            need = (widths[p_items[-1]] + widths[items[0]]) / 2
            if total / len(items) - (p_total / len(p_items) + p_offs[-1]) >= need:
                break
            shift = p_offs[-1] + need
            items, offs = p_items + items, p_offs + [o + shift for o in offs]
            total = p_total + total - shift * (len(items) - len(p_items))
            clusters.pop()
        clusters.append((items, offs, total))
    out = [0.0] * n
    for items, offs, total in clusters:
        start = total / len(items)
        for i, o in zip(items, offs, strict=True):
            out[i] = base + start + o
    first, last = seq[0], seq[-1]
    if out[last] - out[first] + (widths[first] + widths[last]) / 2 > turn:  # ends meet: even out
        scale = turn / sum(widths)
        at = base
        for i in seq:
            out[i] = at + widths[i] * scale / 2
            at += widths[i] * scale
    return out


def key_nodes(g: nx.MultiDiGraph, limit: int = 30) -> list[str]:
    """The nodes a big picture names in full, most important first: suspects, watchlisted
    entities, hubs and cash terminals, the numbers that called the suspects' victims, then the
    counterparties that moved the most money with the suspects, up to ``limit`` in all (the
    first three kinds whatever the limit)."""
    suspects = [n for n, r in g.nodes(data="role") if r == "suspect"]
    must = dict.fromkeys(suspects)
    must.update(dict.fromkeys(sorted(n for n, a in g.nodes(data=True) if a["watchlisted"] or
                                     a["hub_not_expanded"] or a["cash_terminal"])))
    victims = [n for n, r in g.nodes(data="role") if r == "victim"]
    callers = list(_callers_of(g, victims))
    sus = set(suspects)
    money: Counter[str] = Counter()
    for u, v, a in g.edges(data=True):
        if a["kind"] == "transfer" and (u in sus) != (v in sus):
            money[v if u in sus else u] += a["amount"]
    ranked = [*callers, *(n for n, _ in sorted(money.items(), key=lambda x: (-x[1], x[0])))]
    out = list(must)
    for n in ranked:
        if len(out) >= limit:
            break
        if n not in must:
            must[n] = None
            out.append(n)
    return out


def _links_after_owner(g: nx.MultiDiGraph, members: list[str]) -> list[str]:
    """Phones and devices right below the first account of the column that uses them."""
    here = set(members)
    owner: dict[str, str] = {}
    for n in members:
        if g.nodes[n]["kind"] != "account":
            for u, _, kind in g.in_edges(n, data="kind"):
                if kind.startswith("uses_") and u in here:
                    owner[n] = u
                    break
    out: list[str] = []
    for n in members:
        if n in owner:
            continue
        out.append(n)
        out.extend(m for m in members if owner.get(m) == n)
    return out


def findings(g: nx.MultiDiGraph, *, max_cycle_length: int = 6, min_fan: int = 5,
             cycle_budget: int = 200_000) -> list[Finding]:
    """What the detectors see in the case graph: watchlist hits, fan-in/out, cycles, scatter-
    gather and Ponzi signatures around the suspects, the phones that called the suspects'
    victims, and the reasons of decisions taken.

    The round-trip search looks only for cycles through a suspect (the only ones reported) and
    takes at most ``cycle_budget`` steps; when it stops there a finding says so."""
    out: list[Finding] = []
    label = nx.get_node_attributes(g, "label")
    suspects = [n for n, r in g.nodes(data="role") if r == "suspect"]
    listed = sorted((h, n) for n, h in g.nodes(data="hops") if g.nodes[n]["watchlisted"])
    if listed:
        out.append(Finding("watchlist", f"{len(listed)} watchlisted entities in the case, the "
                           f"nearest {listed[0][0]} hop(s) from the centre",
                           tuple(label[n] for _, n in listed)))
    money = nx.DiGraph()
    money.add_nodes_from(g.nodes)
    for u, v, kind in g.edges(data="kind"):
        if kind == "transfer":
            money.add_edge(u, v)
    for s in suspects:
        payers, payees = set(money.predecessors(s)), set(money.successors(s))
        if len(payers) >= min_fan:
            out.append(Finding("fan_in", f"{label[s]} received from {len(payers)} accounts",
                               (label[s],)))
        if len(payees) >= min_fan:
            out.append(Finding("fan_out", f"{label[s]} paid {len(payees)} accounts", (label[s],)))
        repaid = payers & payees
        if len(payers) >= min_fan and len(repaid) >= 2:
            out.append(Finding("ponzi", f"{label[s]} paid money back to {len(repaid)} of its "
                               f"{len(payers)} payers", (label[s], *sorted(label[n] for n in repaid))))
        for src in sorted({p for m in payers for p in money.predecessors(m)} - {s}):
            via = sorted(m for m in money.successors(src) if m in payers)
            if len(via) >= 3:
                out.append(Finding("scatter_gather", f"{label[src]} paid {len(via)} accounts that "
                                   f"all paid {label[s]}", (label[src], *(label[m] for m in via),
                                                           label[s])))
        for dst in sorted({q for m in payees for q in money.successors(m)} - {s}):
            via = sorted(m for m in money.predecessors(dst) if m in payees)
            if len(via) >= 3:
                out.append(Finding("scatter_gather", f"{label[s]} paid {len(via)} accounts that "
                                   f"all paid {label[dst]}", (label[s], *(label[m] for m in via),
                                                              label[dst])))
        victims = [p for p in payers if g.nodes[p]["role"] == "victim"]
        for caller, called in _callers_of(g, victims).items():
            out.append(Finding("calls_to_victims", f"{label[caller]} called the phones of "
                               f"{len(called)} account(s) that paid {label[s]}",
                               (label[caller], *(label[v] for v in called), label[s])))
    cycles, stopped = _cycles_through(money, suspects, max_cycle_length, 10, cycle_budget)
    for c in cycles:  # each read from a suspect round
        out.append(Finding("cycle", "round trip: " + " -> ".join(label[n] for n in [*c, c[0]]),
                           tuple(label[n] for n in c)))
    if stopped:
        out.append(Finding("cycle", f"the round-trip search stopped at its work budget "
                           f"({cycle_budget} steps): shorter cycles first, longer ones may be missing"))
    fired: Counter[str] = Counter()
    for _, _, reasons in g.edges(data="reasons"):
        for part in filter(None, reasons.split(";")):
            code, _, n = part.partition(":")
            fired[code] += int(n)
    for code, n in fired.most_common():
        out.append(Finding("rule", f"{code} fired on {n} transaction(s) in the case"))
    return out


def _callers_of(g: nx.MultiDiGraph, accounts: list[str]) -> dict[str, list[str]]:
    """Phones that called a phone one of ``accounts`` used, with the accounts they reached (each
    once, sorted), most reached first."""
    reached: dict[str, set[str]] = {}
    for a in accounts:
        for _, phone, kind in g.out_edges(a, data="kind"):
            if kind == "uses_phone":
                for caller, _, ckind in g.in_edges(phone, data="kind"):
                    if ckind == "call":
                        reached.setdefault(caller, set()).add(a)
    return {c: sorted(reached[c]) for c in sorted(reached, key=lambda c: (-len(reached[c]), c))}


def _cycles_through(money: nx.DiGraph, suspects: list[str], max_length: int, limit: int,
                    budget: int) -> tuple[list[list[str]], bool]:
    """Simple cycles of 3 to ``max_length`` transfers through a suspect, shortest first, at most
    ``limit``, each once (starting at the first suspect that finds it).

    Depth-first from each suspect, one length at a time, stepping only to nodes that can still
    get back to the suspect within the length left (distances from a backward breadth-first
    search), so the search stays near cycles instead of walking every path of a dense case.
    Returns the cycles and whether the search stopped after ``budget`` steps."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    back = {s: _distances_to(money, s, max_length - 1) for s in suspects}
    steps = 0
    for length in range(3, max_length + 1):
        for s in suspects:
            near = back[s]
            path = [s]
            stack = [iter(sorted(money.successors(s)))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    continue
                steps += 1
                if steps > budget:
                    return found, True
                if nxt == s:
                    key = _rotated(path)
                    if len(path) == length and key not in seen:
                        seen.add(key)
                        found.append(list(path))
                        if len(found) >= limit:
                            return found, False
                elif nxt not in path and near.get(nxt, max_length) <= length - len(path):
                    path.append(nxt)
                    stack.append(iter(sorted(money.successors(nxt))))
    return found, False


def _distances_to(money: nx.DiGraph, target: str, limit: int) -> dict[str, int]:
    """Transfers needed to reach ``target`` from each node that can within ``limit``."""
    dist = {target: 0}
    frontier = [target]
    for d in range(1, limit + 1):
        nxt = []
        for v in frontier:
            for u in money.predecessors(v):
                if u not in dist:
                    dist[u] = d
                    nxt.append(u)
        frontier = nxt
    return dist


def _rotated(cycle: list[str]) -> tuple[str, ...]:
    """A cycle's identity: its node sequence rotated to start at its smallest node."""
    i = cycle.index(min(cycle))
    return tuple(cycle[i:] + cycle[:i])
