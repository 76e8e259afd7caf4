"""Plain-Python twin of the graph kernels in ``graph._kernels`` (the "naive" reference).

State is Python lists and dicts: every node has an out-list and an in-list of edge records kept
newest first (ties: later arrival first), and expiry filters them. Each detector is written the
way its definition in ``graph._kernels`` reads, with sets instead of stamps and recursion
instead of explicit stacks. The bounds (hub degree, fan cap, work budget) are modelled exactly:
a walk over a list charges one unit per entry read, in the order the lists are read, so the
twin and the kernels cut and truncate at the same places.
``tests/graph/test_kernels_match_reference.py`` holds them equal on random graphs; it also
checks the twin against networkx where the bounds do not bind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from graph import _kernels as k


@dataclass
class Edge:
    src: int
    dst: int
    ts: int
    amount: int
    kind: int
    ref: int


class _Stop(Exception):
    """The detector's work budget is spent."""


@dataclass
class Budget:
    limit: int
    work: int = 0
    truncated: bool = False
    cuts: int = 0

    def spend(self) -> bool:
        if self.work >= self.limit:
            self.truncated = True
            return False
        self.work += 1
        return True


@dataclass
class RefGraph:
    out: dict[int, list[Edge]] = field(default_factory=dict)
    inn: dict[int, list[Edge]] = field(default_factory=dict)
    terminals: set[int] = field(default_factory=set)
    organisations: set[int] = field(default_factory=set)  # named neither person nor terminal last
    watch: dict[int, int] = field(default_factory=dict)
    last_link: dict[tuple[int, int], Edge] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    work_done: int = 0

    # ------------------------------------------------------------ store
    @staticmethod
    def _place(lst: list[Edge], e: Edge) -> None:
        """Before the first entry that is not newer than e: newest first, later arrival first."""
        i = 0
        while i < len(lst) and lst[i].ts > e.ts:
            i += 1
        lst.insert(i, e)

    def add(self, src: int, dst: int, ts: int, amount: int, kind: int, ref: int) -> Edge:
        e = Edge(src, dst, ts, amount, kind, ref)
        self.edges.append(e)
        self._place(self.out.setdefault(src, []), e)
        self._place(self.inn.setdefault(dst, []), e)
        return e

    def link(self, a: int, target: int, ts: int, kind: int, refresh: int, ref: int) -> None:
        last = self.last_link.get((a, kind))
        if last is not None and last.dst == target and 0 <= ts - last.ts < refresh:
            last.amount += 1
            return
        self.last_link[(a, kind)] = self.add(a, target, ts, 1, kind, ref)

    def compact(self, min_ts: int) -> None:
        keep = [e for e in self.edges if e.ts >= min_ts]
        kept = {id(e) for e in keep}
        self.edges = keep
        for lists in (self.out, self.inn):
            for node, lst in lists.items():
                lists[node] = [e for e in lst if id(e) in kept]
        self.last_link = {key: e for key, e in self.last_link.items() if id(e) in kept}

    # ------------------------------------------------------------ events
    def process(self, events: list[list[int]], refs: list[int], gp: list[int],
                detect: bool = True) -> list[list[float]]:
        rows = []
        for row, ref in zip(events, refs, strict=True):
            feats = [0.0] * k.N_X
            ts = row[k.EV_TS]
            if row[k.EV_KIND] == k.KIND_TXN:
                a = row[k.EV_A] * 3 + k.NK_ACCOUNT
                b = row[k.EV_B] * 3 + k.NK_ACCOUNT
                self.name_parties(a, b, row[k.EV_FLAGS])
                self.add(a, b, ts, row[k.EV_AMOUNT], k.K_TRANSFER, ref)
                if row[k.EV_C] >= 0:
                    self.link(a, row[k.EV_C] * 3 + k.NK_PHONE, ts, k.K_LINK_PHONE,
                              gp[k.G_LINK_REFRESH], ref)
                if row[k.EV_D] >= 0:
                    self.link(a, row[k.EV_D] * 3 + k.NK_DEVICE, ts, k.K_LINK_DEVICE,
                              gp[k.G_LINK_REFRESH], ref)
                if detect:
                    feats = self.detect(a, b, ts, row[k.EV_AMOUNT], gp)
            elif row[k.EV_KIND] == k.KIND_CALL and row[k.EV_FLAGS] & k.CF_NEW:
                self.add(row[k.EV_A] * 3 + k.NK_PHONE, row[k.EV_B] * 3 + k.NK_PHONE, ts,
                         row[k.EV_AMOUNT], k.K_CALL, ref)
            rows.append(feats)
        return rows

    def name_parties(self, a: int, b: int, flags: int) -> None:
        """What the transfer's flags say the payer and payee are: a cash terminal for good; an
        organisation or not, the latest word (named neither a person nor a terminal)."""
        for v, person, terminal in ((a, k.TF_PAYER_PERSON, k.TF_PAYER_TERMINAL),
                                    (b, k.TF_PAYEE_PERSON, k.TF_PAYEE_TERMINAL)):
            if flags & terminal:
                self.terminals.add(v)
            if not flags & (person | terminal):
                self.organisations.add(v)
            elif flags & person:
                self.organisations.discard(v)

    # ------------------------------------------------------------ walks
    def walk(self, u: int, side: int, lo: int, hi: int, bud: Budget) -> Iterator[Edge]:
        """Entries of u's out- (side 0) or in-list (side 1) in [lo, hi], one unit each read."""
        lists = self.out if side == 0 else self.inn
        for e in lists.get(u, []):
            if not bud.spend():
                return
            if e.ts < lo:
                return
            if e.ts <= hi:
                yield e

    def customer(self, v: int) -> bool:
        return v not in self.terminals

    def collect(self, u: int, mode: int, money: bool, terms: bool, lo: int, hi: int, cap: int,
                bud: Budget) -> list[int]:
        found: list[int] = []
        sides = {k.D_OUT: (0,), k.D_IN: (1,), k.D_BOTH: (0, 1)}[mode]
        for side in sides:
            for e in self.walk(u, side, lo, hi, bud):
                if money and e.kind != k.K_TRANSFER:
                    continue
                v = e.dst if side == 0 else e.src
                if v == u or v in found or not (terms or self.customer(v)):
                    continue
                found.append(v)
                if len(found) > cap:
                    return found
            if bud.truncated:
                return found
        return found

    def money_in(self, u: int, lo: int, hi: int, bud: Budget) -> Iterator[Edge]:
        for e in self.walk(u, 1, lo, hi, bud):
            if e.kind == k.K_TRANSFER and self.customer(e.src):
                yield e

    def expandable(self, u: int, mode: int, lo: int, hi: int, hub: int, bud: Budget) -> bool:
        """Not a hub in this window and direction (a hub's cut is counted); _Stop when spent."""
        n = len(self.collect(u, mode, True, False, lo, hi, hub, bud))
        if bud.truncated:
            raise _Stop
        if n > hub:
            bud.cuts += 1
            return False
        return True

    # ------------------------------------------------------------ detectors
    def detect(self, a: int, b: int, t: int, x: int, gp: list[int]) -> list[float]:
        out = [0.0] * k.N_X
        budget = gp[k.G_MAX_WORK]
        work = 0
        cuts = 0
        truncated = False

        def fresh() -> Budget:
            return Budget(limit=budget)

        def done(bud: Budget) -> None:
            nonlocal work, cuts, truncated
            work += bud.work
            cuts += bud.cuts
            truncated = truncated or bud.truncated

        ta, tb = not self.customer(a), not self.customer(b)
        lo = t - gp[k.G_FAN_WINDOW]
        cap = gp[k.G_FAN_CAP]
        bud = fresh()
        a_fans_whole = False
        if not ta:
            out[k.X_PAYER_FAN_OUT] = len(self.collect(a, k.D_OUT, True, False, lo, t, cap, bud))
            out[k.X_PAYER_FAN_IN] = len(self.collect(a, k.D_IN, True, False, lo, t, cap, bud))
            a_fans_whole = not bud.truncated
        if not tb:
            out[k.X_PAYEE_FAN_IN] = len(self.collect(b, k.D_IN, True, False, lo, t, cap, bud))
            out[k.X_PAYEE_FAN_OUT] = len(self.collect(b, k.D_OUT, True, False, lo, t, cap, bud))
        done(bud)
        if not ta and not tb:
            bud = fresh()
            out[k.X_SCATTER_GATHER] = self.scatter_gather(a, b, t, gp, bud)
            done(bud)
            bud = fresh()
            if a_fans_whole and gp[k.G_SG_WINDOW] == gp[k.G_FAN_WINDOW]:
                out[k.X_GATHER_SCATTER] = min(out[k.X_PAYER_FAN_IN], out[k.X_PAYER_FAN_OUT])
            else:
                lo_sg = t - gp[k.G_SG_WINDOW]
                gathered = self.collect(a, k.D_IN, True, False, lo_sg, t, cap, bud)
                scattered = self.collect(a, k.D_OUT, True, False, lo_sg, t, cap, bud)
                out[k.X_GATHER_SCATTER] = min(len(gathered), len(scattered))
            done(bud)
            bud = fresh()
            out[k.X_CYCLE_LEN], out[k.X_CYCLE_RATIO] = self.cycle(a, b, t, x, gp, bud)
            done(bud)
            bud = fresh()
            self.ponzi(a, b, t, gp, bud, out)
            done(bud)
            bud = fresh()
            self.fee_tree(a, b, t, x, gp, bud, out)
            done(bud)
        if not ta:
            bud = fresh()
            out[k.X_CHAIN_HOPS] = self.chain(a, b, t, x, gp, bud)
            done(bud)
            bud = fresh()
            out[k.X_PAYER_WATCH_HOPS] = self.proximity(a, t, gp, bud)
            done(bud)
        if not tb:
            bud = fresh()
            out[k.X_PAYEE_WATCH_HOPS] = self.proximity(b, t, gp, bud)
            done(bud)
        out[k.X_HUB_CUTS] = cuts
        out[k.X_TRUNCATED] = 1.0 if truncated else 0.0
        self.work_done += work
        return [float(v) for v in out]

    def scatter_gather(self, a: int, b: int, t: int, gp: list[int], bud: Budget) -> int:
        lo, hub = t - gp[k.G_SG_WINDOW], gp[k.G_HUB_DEGREE]
        payers_of_b = self.collect(b, k.D_IN, True, False, lo, t, hub, bud)
        if bud.truncated:
            return 0
        if len(payers_of_b) > hub:
            bud.cuts += 1
            return 0
        sources = self.collect(a, k.D_IN, True, False, lo, t, hub, bud)
        if bud.truncated:
            return 0
        if len(sources) > hub:
            bud.cuts += 1
            return 0
        best = 0
        for s in sources:
            if s == b:
                continue
            reached = self.collect(s, k.D_OUT, True, False, lo, t, hub, bud)
            if bud.truncated:
                break
            if len(reached) > hub:
                bud.cuts += 1
                continue
            best = max(best, len([m for m in reached if m != b and m in payers_of_b]))
        return best

    def cycle(self, a: int, b: int, t: int, x0: int, gp: list[int], bud: Budget
              ) -> tuple[int, float]:
        top = gp[k.G_CYCLE_MAX_LEN]
        if top < 3:
            return 0, 0.0
        lo, hub, ordered = t - gp[k.G_CYCLE_WINDOW], gp[k.G_HUB_DEGREE], gp[k.G_CYCLE_ORDERED]
        floor = gp[k.G_CYCLE_MIN_PPM] / 1e6
        found: list[tuple[int, float]] = []

        def ratio(x: int, y: int) -> float:
            return min(x, y) / max(x, y)

        def dfs(path: list[int], hi: int, later_amount: int, kept: float) -> None:
            for e in self.money_in(path[-1], lo, hi, bud):
                r = min(kept, ratio(e.amount, later_amount))
                if r < floor:  # amounts changed too much: not extended, not a cycle
                    continue
                if e.src == b:
                    if len(path) >= 2:  # b -> ... -> a has >= 2 transfers
                        found.append((len(path) + 1, r))
                    continue
                if len(path) + 2 > top or e.src in path:
                    continue
                hi_u = e.ts if ordered else t
                if self.expandable(e.src, k.D_IN, lo, hi_u, hub, bud):
                    dfs([*path, e.src], hi_u, e.amount, r)
                if bud.truncated:
                    raise _Stop
            if bud.truncated:
                raise _Stop

        try:
            if self.expandable(a, k.D_IN, lo, t, hub, bud):
                dfs([a], t, x0, 1.0)
        except _Stop:
            pass
        if not found:
            return 0, 0.0
        return min(n for n, _ in found), max(r for _, r in found)

    def chain(self, a: int, b: int, t: int, x0: int, gp: list[int], bud: Budget) -> int:
        top = gp[k.G_CHAIN_MAX_HOPS]
        if top < 2:
            return 0
        gap, hub = gp[k.G_CHAIN_GAP], gp[k.G_HUB_DEGREE]
        rlo, rhi = gp[k.G_CHAIN_MIN_PPM] / 1e6, gp[k.G_CHAIN_MAX_PPM] / 1e6
        best = 0

        def dfs(path: list[int], when: int, passed_on: int) -> None:
            nonlocal best
            for e in self.money_in(path[-1], when - gap, when, bud):
                if e.src == b or e.src in path:
                    continue
                if not rlo <= passed_on / e.amount <= rhi:
                    continue
                length = len(path) + 1
                best = max(best, length)
                if length >= top:
                    continue
                if self.expandable(e.src, k.D_IN, e.ts - gap, e.ts, hub, bud):
                    dfs([*path, e.src], e.ts, e.amount)
                if bud.truncated:
                    raise _Stop
            if bud.truncated:
                raise _Stop

        try:
            if self.expandable(a, k.D_IN, t - gap, t, hub, bud):
                dfs([a], t, x0)
        except _Stop:
            pass
        return best

    def ponzi(self, a: int, b: int, t: int, gp: list[int], bud: Budget, out: list[float]) -> None:
        lo, cap, small, hub = (t - gp[k.G_FUND_WINDOW], gp[k.G_FAN_CAP], gp[k.G_FUND_SMALL_MAX],
                               gp[k.G_HUB_DEGREE])
        first: dict[int, int] = {}
        largest: dict[int, int] = {}
        order: list[int] = []
        for e in self.walk(a, 1, lo, t, bud):
            if e.kind != k.K_TRANSFER or e.src == a or not self.customer(e.src):
                continue
            if e.src not in first:
                order.append(e.src)
                if len(order) > cap:
                    bud.cuts += 1
                    return
            first[e.src] = min(first.get(e.src, e.ts), e.ts)
            largest[e.src] = max(largest.get(e.src, e.amount), e.amount)
        if bud.truncated or b not in first or largest[b] > small:
            return
        payers = [p for p in order if largest[p] <= small]
        members = set(payers)
        out[k.X_PONZI_PAYERS] = len(payers)
        repaid: list[int] = []
        for e in self.walk(a, 0, lo, t, bud):
            if (e.kind == k.K_TRANSFER and e.dst in members and e.dst not in repaid
                    and e.ts >= first[e.dst]):
                # a refund: the payer's own amount back (the walk stops at the first match)
                refund = any(f.kind == k.K_TRANSFER and f.dst == a and f.amount == e.amount
                             for f in self.walk(e.dst, 0, lo, e.ts, bud))
                if bud.truncated:
                    break
                if not refund:
                    repaid.append(e.dst)
        out[k.X_PONZI_REPAID] = len(repaid)
        if bud.truncated:
            return
        unrelated = 0
        for p in repaid:
            around = self.collect(p, k.D_BOTH, True, False, lo, t, hub, bud)
            if bud.truncated:
                break
            if len(around) > hub:
                bud.cuts += 1
                continue
            if not members.intersection(around):
                unrelated += 1
        out[k.X_PONZI_UNRELATED] = unrelated

    def fee_tree(self, a: int, b: int, t: int, x: int, gp: list[int], bud: Budget,
                 out: list[float]) -> None:
        """Pyramid fee tree: b's fee payers, whether b paid the fee itself, its upline share."""
        lo, gap, hub = t - gp[k.G_FEE_WINDOW], gp[k.G_FEE_GAP], gp[k.G_HUB_DEGREE]
        tol = x * gp[k.G_FEE_TOL_PPM] // 1_000_000
        band = range(x - tol, x + tol + 1)
        payers: set[int] = set()
        fee_payers: set[int] = set()
        receipts: list[Edge] = []
        for e in self.walk(b, 1, lo, t, bud):
            if e.kind != k.K_TRANSFER or e.src == b or not self.customer(e.src):
                continue
            payers.add(e.src)
            if len(payers) > hub:  # a shop or a platform
                bud.cuts += 1
                return
            if e.amount in band:
                receipts.append(e)
                fee_payers.add(e.src)
        if bud.truncated:
            return
        out[k.X_FEE_PAYERS] = len(fee_payers)
        if len(fee_payers) < 2:
            return
        first_in = min(r.ts for r in receipts)
        paid = 0
        pieces: list[Edge] = []
        uplines: list[int] = []  # candidates, first seen first
        spread = False
        for e in self.walk(b, 0, lo, t, bud):
            u = e.dst
            if e.kind != k.K_TRANSFER or u == b or u in fee_payers or not self.customer(u):
                continue
            if e.amount in band:
                if e.ts < first_in:
                    paid = 1
            elif (e.amount < band.start and not spread and u not in self.organisations
                  and any(r.ts <= e.ts <= r.ts + gap for r in receipts)):
                if u not in uplines:
                    if len(uplines) >= hub:
                        spread = True
                        bud.cuts += 1
                        continue
                    uplines.append(u)
                pieces.append(e)
        out[k.X_FEE_PAID_SAME] = paid
        if bud.truncated or spread:
            return
        due = [r for r in receipts if r.ts <= t - max(gap, 1)]
        best = 0.0
        for u in uplines:
            shares = [float(sum(p.amount for p in pieces if p.dst == u and r.ts <= p.ts <= r.ts + gap))
                      / float(r.amount) for r in due]
            if shares and min(shares) > best:
                around = self.collect(u, k.D_IN, True, False, lo, t, hub, bud)
                if bud.truncated:
                    break
                if len(around) > hub:
                    bud.cuts += 1
                    continue
                best = min(shares)
        out[k.X_FEE_UPLINE_SHARE] = best

    def proximity(self, s: int, t: int, gp: list[int], bud: Budget) -> int:
        top = gp[k.G_PROX_MAX_HOPS]
        if top < 1:
            return 0
        lo, hub = t - gp[k.G_PROX_WINDOW], gp[k.G_HUB_DEGREE]
        seen = {s}
        queue = deque([(s, 0)])
        while queue:
            u, d = queue.popleft()
            if d >= top or (d == top - 1 and not self.near_listed(u)):
                continue
            around = self.collect(u, k.D_BOTH, False, False, lo, t, hub, bud)
            if bud.truncated:
                return 0
            if len(around) > hub:
                bud.cuts += 1
                continue
            for v in around:
                if v in seen:
                    continue
                seen.add(v)
                if self.watch.get(v, 0) > t:
                    return d + 1
                queue.append((v, d + 1))
        return 0

    def near_listed(self, u: int) -> bool:
        """Some stored edge of u (any time, any kind) has a watchlisted other end."""
        return (any(self.watch.get(e.dst, 0) > 0 for e in self.out.get(u, []))
                or any(self.watch.get(e.src, 0) > 0 for e in self.inn.get(u, [])))

    # ------------------------------------------------------------ case-graph neighbourhood
    def neighbourhood(self, centers: list[int], hops: int, lo: int, hi: int, hub: int,
                      max_work: int, max_nodes: int) -> tuple[list[tuple[int, int, int]], int, bool]:
        """Breadth-first from the centres; an account's own phones and devices (its links in the
        range) are kept right after it at its distance."""
        bud = Budget(limit=max_work)
        rows: list[list[int]] = []
        seen: set[int] = set()
        left = 0

        def own(v: int, d: int) -> None:
            """The phones and devices account v (not a cash terminal) used, at its distance."""
            nonlocal left
            if v % 3 != k.NK_ACCOUNT or not self.customer(v):
                return
            for e in self.walk(v, 0, lo, hi, bud):
                if e.kind in (k.K_LINK_PHONE, k.K_LINK_DEVICE) and e.dst not in seen:
                    seen.add(e.dst)
                    if len(rows) < max_nodes:
                        rows.append([e.dst, d, 0])
                    else:
                        left += 1

        def keep(v: int, d: int) -> None:
            nonlocal left
            seen.add(v)
            if len(rows) < max_nodes:
                rows.append([v, d, 0])
                own(v, d)
            else:
                left += 1

        for c in centers:
            if c not in seen and len(rows) < max_nodes:
                seen.add(c)
                rows.append([c, 0, 0])
        n_centres = len(rows)
        for c in [r[0] for r in rows]:
            own(c, 0)
        i = 0
        while i < len(rows) and not bud.truncated:
            row = rows[i]
            u, d = row[0], row[1]
            i += 1
            if d >= hops:
                continue
            if i > n_centres and not self.customer(u):
                row[2] = 1
                continue
            if i <= n_centres:  # a centre: all its neighbours, kept while there is room
                before = left
                for side in (0, 1):
                    for e in self.walk(u, side, lo, hi, bud):
                        v = e.dst if side == 0 else e.src
                        if v == u or v in seen:
                            continue
                        keep(v, 1)
                if left > before:
                    row[2] = 1
                continue
            around = self.collect(u, k.D_BOTH, False, True, lo, hi, hub, bud)
            if bud.truncated:
                break
            if len(around) > hub:
                row[2] = 1
                continue
            for v in around:
                if v not in seen:
                    keep(v, d + 1)
        return [(r[0], r[1], r[2]) for r in rows], left, bud.truncated
