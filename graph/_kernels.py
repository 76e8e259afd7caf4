"""Numba kernels of the live transaction graph: compact edge store and pattern detectors.

Private. Plain loops over preallocated arrays; the public driver ``graph.live.LiveGraph``
validates, allocates and grows. ``tests/graph/reference.py`` holds the plain-Python twin (lists
and dicts) and hypothesis tests hold the two equal on random graphs.

All layout constants live in this file (numba's on-disk cache is keyed on it); the event-matrix
constants are copies of ``features._kernels`` ones and a test holds them equal.

**Store.** Node ``3 * id + kind`` (kind 0 account, 1 phone, 2 device; the engine's three dense
id spaces interleaved). Edge ``e`` is a row of ``e32`` (src, dst, next_out, next_in), ``e64``
(time ms, amount, ref) and ``ekind``: transfer (account -> account, amount in fen), call (phone
-> phone, amount = duration s), link (account -> phone or device, amount = uses). Edges are
appended in arrival order; every node heads two singly linked lists through ``next_out`` /
``next_in`` (its out- and in-edges), kept **sorted newest first** (ties: the later arrival
first). An in-order edge is pushed at the front in O(1); a late one is walked to its place.
Expiry drops every edge older than a cut-off and renumbers the rest in place (``_compact``):
because each list is sorted, the kept edges of a list are a prefix of it.

**Scans.** A scan of node u's list for window [lo, hi] walks it from the head: an entry newer
than hi is skipped, the first entry older than lo ends the scan. Every entry walked costs one
unit of *work*; each detector has ``max_work`` units per transaction and stops where it runs
out (``truncated``). Counterparties that are cash terminals (ATM / counter accounts) are never
counted, entered or expanded. "Money" scans see transfer edges only.

**Hubs.** A search expands a node only if it has at most ``hub_degree`` distinct counterparties
in the scan's window and direction; otherwise the node is a hub: it is not expanded and the
cut is counted (``hub_cuts``). Direct counts (fan-in/out) saturate at ``fan_cap + 1``.

Detectors, for a transfer a -> b of amount x at time t (after it has been added):

* fan: distinct payees / payers of a and of b in [t - fan_window, t];
* scatter-gather: max over sources s that paid a (s != b) of the number of distinct m with
  s -> m and m -> b in [t - sg_window, t] (a itself is one such m);
* gather-scatter: a is a collection-and-dispersal account: the smaller of its distinct payers
  and distinct payees in [t - sg_window, t] (each saturating at ``fan_cap + 1``); when
  sg_window is fan_window and a's two fan scans ran out of no budget, those are its counts and
  nothing is scanned again;
* cycle: simple paths b -> ... -> a of >= 2 transfers in [t - cycle_window, t] (times
  non-decreasing along the path when ``cycle_ordered``), closing cycles of 3..cycle_max_len
  edges with a -> b, whose consecutive amounts (pairs from b's out-edge to a -> b) all have a
  ratio min/max >= ``cycle_min_ratio`` (the search does not extend a path below it); the
  shortest length, and the best (max) over those cycles of their smallest such ratio;
* chain (layering): longest sequence of transfers ending with a -> b where each one leaves
  its payer at most ``chain_gap`` after the previous arrived there, passing on between
  ``chain_min`` and ``chain_max`` times what arrived (out / in), nodes distinct, b excluded;
* ponzi: when b paid a in [t - fund_window, t]: a's distinct payers whose every payment was
  <= ``fund_small_max`` (b among them), how many of them a has paid at or after their first
  payment ("repaid"; a payment of exactly an amount the payer paid a in the window, at or
  before it, is a refund of its own money and does not count), and how many repaid ones have
  no transfer with another such payer;
* fee tree (pyramid, 传销: members join by paying a fixed entry fee to their recruiter, who
  passes a share of each fee up to its own recruiter promptly): the fee band is [x - tol, x +
  tol], tol = floor(x * fee_tol_ppm / 10**6). b's *fee receipts* are its transfers in the band
  from customers in [t - fee_window, t] (a -> b is one). Unless b has more than ``hub_degree``
  distinct payers in that window (a shop or a platform: cut, all three 0): the distinct payers
  of its fee receipts ("fee payers", a among them). When there are at least two of them:
  whether b paid an amount in the band to an account that is not a fee payer before its
  earliest fee receipt (its own entry fee, to its recruiter); and its *upline share*. A
  *piece* is a transfer from b below the band (a share of a fee is less than a fee) to an
  account that is not a fee payer nor an organisation (the up-line is members; a purchase at a
  shop or a hospital bill paid from donations is no share passed up), within ``fee_gap`` after
  one of b's fee receipts. For each receipt r earlier than t whose time to pass on has run out
  (r <= t - max(fee_gap, 1)), an account's share of it is what the account got in pieces in
  [r, r + fee_gap], over r's amount; the upline share is the largest over accounts of the
  smallest over those receipts (a share of *each* fee: one payment after one fee is none). An
  account with more than ``hub_degree`` distinct payers in the window is no one's upline (cut,
  not counted); when b sends pieces to more than ``hub_degree`` accounts the share is 0 (cut).
  A club, a tutor or a shop collecting one price keeps the fees or settles them in one sum,
  and did not pay that price itself;
* proximity: BFS over all edge kinds, both directions, in [t - prox_window, t], from a (and
  separately from b): hops to the nearest watchlisted node other than the start, 0 if none
  within ``prox_max_hops``. A node on the last level is expanded only when one of its stored
  edges leads to a listed node (``N_NEAR`` > 0): nothing else could be found there, so this
  only saves work (most of it: the last level is the largest).
"""

from __future__ import annotations

import numpy as np

from graph._jit import helper, kernel

# ---------------------------------------------------------------- nodes and edges
NK_ACCOUNT, NK_PHONE, NK_DEVICE = 0, 1, 2
N_NODE_KINDS = 3
K_TRANSFER, K_CALL, K_LINK_PHONE, K_LINK_DEVICE = 0, 1, 2, 3
# edge int32 columns / int64 columns
E_SRC, E_DST, E_NEXT_OUT, E_NEXT_IN = 0, 1, 2, 3
N_E32 = 4
E_TS, E_AMT, E_REF = 0, 1, 2
N_E64 = 3
# node int32 columns (the first four are edge numbers: compaction renumbers them); N_NEAR counts
# the node's list entries whose other end is watchlisted (watch > 0)
N_HEAD_OUT, N_HEAD_IN, N_LINK_PHONE, N_LINK_DEVICE, N_FLAGS, N_NEAR = 0, 1, 2, 3, 4, 5
N_N32 = 6
NF_TERMINAL = 1
# set when a transaction names the account neither a person nor a cash terminal (an
# organisation: a shop, a hospital, a firm), cleared when one names it a person (naming it a
# terminal leaves it): no pyramid upline (a purchase is not a fee passed up)
NF_ORGANISATION = 2
# node scratch int64 columns (stamped, so never cleared)
S_SEEN, S_MARK, S_VAL, S_VAL2 = 0, 1, 2, 3
N_SCR = 4
# meta
M_EDGES, M_STAMP, M_NEWEST, M_LATE, M_EVICTED, M_WORK = 0, 1, 2, 3, 4, 5
N_META = 8
NO_TS = np.int64(-(2**62))

# ---------------------------------------------------------------- event matrix (= features._kernels)
EV_KIND, EV_TS, EV_A, EV_B, EV_C, EV_D, EV_AMOUNT, EV_FLAGS = 0, 1, 2, 3, 4, 5, 6, 7
N_EV = 12  # as features._kernels (EV_E, the payee's phone, is not read here)
KIND_TXN, KIND_CALL = 1, 2
TF_PAYER_PERSON, TF_PAYEE_PERSON = 8, 16
TF_PAYER_TERMINAL, TF_PAYEE_TERMINAL = 32, 64
CF_NEW = 1

# ---------------------------------------------------------------- parameters
(G_FAN_WINDOW, G_SG_WINDOW, G_CYCLE_WINDOW, G_CYCLE_MAX_LEN, G_CYCLE_ORDERED, G_CHAIN_GAP,
 G_CHAIN_MAX_HOPS, G_CHAIN_MIN_PPM, G_CHAIN_MAX_PPM, G_FUND_WINDOW, G_FUND_SMALL_MAX,
 G_PROX_WINDOW, G_PROX_MAX_HOPS, G_HUB_DEGREE, G_FAN_CAP, G_MAX_WORK, G_LINK_REFRESH,
 G_CYCLE_MIN_PPM, G_FEE_WINDOW, G_FEE_GAP, G_FEE_TOL_PPM) = range(21)
N_GPARAM = 21

# ---------------------------------------------------------------- output features (the engine's ``extra``)
(X_PAYER_FAN_OUT, X_PAYER_FAN_IN, X_PAYEE_FAN_IN, X_PAYEE_FAN_OUT, X_SCATTER_GATHER,
 X_CYCLE_LEN, X_CYCLE_RATIO, X_CHAIN_HOPS, X_PONZI_PAYERS, X_PONZI_REPAID, X_PONZI_UNRELATED,
 X_PAYER_WATCH_HOPS, X_PAYEE_WATCH_HOPS, X_HUB_CUTS, X_TRUNCATED, X_GATHER_SCATTER,
 X_FEE_PAYERS, X_FEE_PAID_SAME, X_FEE_UPLINE_SHARE) = range(19)
N_X = 19

# per-transaction counters
C_WORK, C_LIMIT, C_CUTS, C_TRUNC = 0, 1, 2, 3
N_CTR = 4
D_OUT, D_IN, D_BOTH = 0, 1, 2


def scratch_sizes(gp: np.ndarray) -> tuple[int, int, int]:
    """Lengths the detectors' scratch arrays need under parameters ``gp``: counterparty
    lists (``lst``, ``lst2``, ``fsum``: a scan stops at cap + 1), breadth-first queue, or fee
    receipts and pieces (``qn``, ``qd``: one entry per unit of work at most), search path
    (``path``, ``cur``, ``his``, ``amts``, ``rmin``)."""
    return (max(int(gp[G_HUB_DEGREE]), int(gp[G_FAN_CAP])) + 2, int(gp[G_MAX_WORK]) + 2,
            max(int(gp[G_CYCLE_MAX_LEN]), int(gp[G_CHAIN_MAX_HOPS])) + 2)


# ================================================================= the store
@helper
def _stamp(meta: np.ndarray) -> int:
    meta[M_STAMP] += 1
    return meta[M_STAMP]


@helper
def _list_insert(e32: np.ndarray, e64: np.ndarray, n32: np.ndarray, meta: np.ndarray, u: int,
                 hcol: int, ncol: int, e: int, ts: int) -> None:
    """Put edge e into u's list (head column hcol, next column ncol), newest first."""
    h = n32[u, hcol]
    if h < 0 or ts >= e64[h, E_TS]:
        e32[e, ncol] = h
        n32[u, hcol] = e
        return
    meta[M_LATE] += 1
    p = h
    while True:
        q = e32[p, ncol]
        if q < 0 or e64[q, E_TS] <= ts:
            break
        p = q
    e32[e, ncol] = e32[p, ncol]
    e32[p, ncol] = e


@helper
def _insert(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
            watch: np.ndarray, meta: np.ndarray, src: int, dst: int, ts: int, amt: int, kind: int,
            ref: int) -> int:
    e = meta[M_EDGES]
    meta[M_EDGES] = e + 1
    e32[e, E_SRC] = src
    e32[e, E_DST] = dst
    e64[e, E_TS] = ts
    e64[e, E_AMT] = amt
    e64[e, E_REF] = ref
    ekind[e] = kind
    _list_insert(e32, e64, n32, meta, src, N_HEAD_OUT, E_NEXT_OUT, e, ts)
    _list_insert(e32, e64, n32, meta, dst, N_HEAD_IN, E_NEXT_IN, e, ts)
    if watch[dst] > 0:
        n32[src, N_NEAR] += 1
    if watch[src] > 0:
        n32[dst, N_NEAR] += 1
    if ts > meta[M_NEWEST]:
        meta[M_NEWEST] = ts
    return e


@helper
def _link(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
          watch: np.ndarray, meta: np.ndarray, a: int, target: int, ts: int, kind: int, slot: int,
          refresh: int, ref: int) -> None:
    """Account a used phone/device ``target``: a new link edge unless a's last link of this kind
    goes to the same target and is at most ``refresh`` ms older (then its use count grows)."""
    last = n32[a, slot]
    if last >= 0 and e32[last, E_DST] == target and 0 <= ts - e64[last, E_TS] < refresh:
        e64[last, E_AMT] += 1
        return
    n32[a, slot] = _insert(e32, e64, ekind, n32, watch, meta, a, target, ts, 1, kind, ref)


@helper
def _renumber(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
              meta: np.ndarray, remap: np.ndarray) -> int:
    """Move the kept edges (``remap[e]`` >= 0, their new numbers, in order) down in place and
    point every list at the new numbers; returns how many edges went."""
    m = meta[M_EDGES]
    k = 0
    for e in range(m):
        r = remap[e]
        if r < 0:
            continue
        k += 1
        no = e32[e, E_NEXT_OUT]
        ni = e32[e, E_NEXT_IN]
        e32[r, E_SRC] = e32[e, E_SRC]
        e32[r, E_DST] = e32[e, E_DST]
        e32[r, E_NEXT_OUT] = remap[no] if no >= 0 else -1
        e32[r, E_NEXT_IN] = remap[ni] if ni >= 0 else -1
        for c in range(N_E64):
            e64[r, c] = e64[e, c]
        ekind[r] = ekind[e]
    for u in range(n32.shape[0]):
        for c in range(N_FLAGS):
            h = n32[u, c]
            if h >= 0:
                n32[u, c] = remap[h]
    meta[M_EDGES] = k
    return m - k


@helper
def _drop_edge(e32: np.ndarray, n32: np.ndarray, watch: np.ndarray, e: int) -> None:
    """Bookkeeping for an edge about to go: its ends' counts of listed neighbours."""
    if watch[e32[e, E_DST]] > 0:
        n32[e32[e, E_SRC], N_NEAR] -= 1
    if watch[e32[e, E_SRC]] > 0:
        n32[e32[e, E_DST], N_NEAR] -= 1


@kernel
def _compact(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
             watch: np.ndarray, meta: np.ndarray, min_ts: int, remap: np.ndarray) -> int:
    """Drop edges older than min_ts and renumber the rest in place; returns how many went."""
    k = 0
    for e in range(meta[M_EDGES]):
        if e64[e, E_TS] >= min_ts:
            remap[e] = k
            k += 1
        else:
            remap[e] = -1
            _drop_edge(e32, n32, watch, e)
    return _renumber(e32, e64, ekind, n32, meta, remap)


@helper
def _first_kept(e32: np.ndarray, remap: np.ndarray, e: int, ncol: int) -> int:
    """The first edge from ``e`` on along a list (next column ``ncol``) that is kept, or -1."""
    while e >= 0 and remap[e] < 0:
        e = e32[e, ncol]
    return e


@kernel
def _drop_nodes(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
                watch: np.ndarray, meta: np.ndarray, gone: np.ndarray, remap: np.ndarray) -> int:
    """Drop every edge with an end marked in ``gone`` (uint8 per node) and renumber the rest in
    place; returns how many went. The marked nodes' own rows are the caller's to reset.

    Unlike expiry, the dropped edges can sit anywhere in a list, so every list is first linked
    past them (each dropped edge is stepped over once per list it is in)."""
    m = meta[M_EDGES]
    k = 0
    for e in range(m):
        if gone[e32[e, E_SRC]] or gone[e32[e, E_DST]]:
            remap[e] = -1
            _drop_edge(e32, n32, watch, e)
        else:
            remap[e] = k
            k += 1
    if k == m:
        return 0
    for u in range(n32.shape[0]):
        n32[u, N_HEAD_OUT] = _first_kept(e32, remap, n32[u, N_HEAD_OUT], E_NEXT_OUT)
        n32[u, N_HEAD_IN] = _first_kept(e32, remap, n32[u, N_HEAD_IN], E_NEXT_IN)
    for e in range(m):
        if remap[e] >= 0:
            e32[e, E_NEXT_OUT] = _first_kept(e32, remap, e32[e, E_NEXT_OUT], E_NEXT_OUT)
            e32[e, E_NEXT_IN] = _first_kept(e32, remap, e32[e, E_NEXT_IN], E_NEXT_IN)
    return _renumber(e32, e64, ekind, n32, meta, remap)


@kernel
def _insert_many(src: np.ndarray, dst: np.ndarray, ts: np.ndarray, amt: np.ndarray,
                 kind: np.ndarray, ref: np.ndarray, e32: np.ndarray, e64: np.ndarray,
                 ekind: np.ndarray, n32: np.ndarray, watch: np.ndarray, meta: np.ndarray) -> None:
    """Bulk load of ready-made edges (node ids, not entity ids), in the given order."""
    for i in range(src.shape[0]):
        _insert(e32, e64, ekind, n32, watch, meta, src[i], dst[i], ts[i], amt[i], kind[i],
                ref[i])


@kernel
def _set_watch(e32: np.ndarray, n32: np.ndarray, watch: np.ndarray, node: int,
               until: int) -> None:
    """List (until > 0) or unlist (0) a node, keeping its neighbours' N_NEAR counts."""
    step = (1 if until > 0 else 0) - (1 if watch[node] > 0 else 0)
    watch[node] = until
    if step == 0:
        return
    for side in range(2):
        e = n32[node, N_HEAD_OUT if side == 0 else N_HEAD_IN]
        while e >= 0:
            n32[e32[e, E_DST if side == 0 else E_SRC], N_NEAR] += step
            e = e32[e, E_NEXT_OUT if side == 0 else E_NEXT_IN]


# ================================================================= scans
@helper
def _spend(ctr: np.ndarray) -> bool:
    """Take one unit of work; False (and truncated) when the detector's budget is spent."""
    if ctr[C_WORK] >= ctr[C_LIMIT]:
        ctr[C_TRUNC] = 1
        return False
    ctr[C_WORK] += 1
    return True


@helper
def _collect(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
             scr: np.ndarray, meta: np.ndarray, u: int, mode: int, money: bool, terms: bool,
             lo: int, hi: int, cap: int, out: np.ndarray, ctr: np.ndarray) -> int:
    """Distinct counterparties of u in [lo, hi] in list order (out-list first for D_BOTH).

    Stops once it has cap + 1 of them (u is over the cap) or its budget is spent. ``money``:
    transfers only; ``terms``: cash terminals count too. Returns how many are in ``out``.
    """
    st = _stamp(meta)
    n = 0
    for side in range(2):
        if side == 0:
            if mode == D_IN:
                continue
            e = n32[u, N_HEAD_OUT]
            nxt = E_NEXT_OUT
            other = E_DST
        else:
            if mode == D_OUT:
                continue
            e = n32[u, N_HEAD_IN]
            nxt = E_NEXT_IN
            other = E_SRC
        while e >= 0:
            if not _spend(ctr):
                return n
            ts = e64[e, E_TS]
            if ts < lo:
                break
            if ts <= hi and (not money or ekind[e] == K_TRANSFER):
                v = e32[e, other]
                if v != u and scr[v, S_SEEN] != st and (
                        terms or (n32[v, N_FLAGS] & NF_TERMINAL) == 0):
                    scr[v, S_SEEN] = st
                    out[n] = v
                    n += 1
                    if n > cap:
                        return n
            e = e32[e, nxt]
    return n


@helper
def _next_in(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray, e: int,
             lo: int, hi: int, ctr: np.ndarray) -> int:
    """From in-list entry e on: the first transfer from a customer in [lo, hi]; -1 at the end."""
    while e >= 0:
        if not _spend(ctr):
            return -1
        ts = e64[e, E_TS]
        if ts < lo:
            return -1
        if (ts <= hi and ekind[e] == K_TRANSFER
                and (n32[e32[e, E_SRC], N_FLAGS] & NF_TERMINAL) == 0):
            return e
        e = e32[e, E_NEXT_IN]
    return -1


@helper
def _ratio(x: int, y: int) -> float:
    lo = min(x, y)
    hi = max(x, y)
    return lo / hi if hi > 0 else 1.0


# ================================================================= detectors
@kernel
def _scatter_gather(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
                    scr: np.ndarray, meta: np.ndarray, a: int, b: int, t: int, gp: np.ndarray,
                    lst: np.ndarray, lst2: np.ndarray, ctr: np.ndarray) -> int:
    lo = t - gp[G_SG_WINDOW]
    hub = gp[G_HUB_DEGREE]
    nb = _collect(e32, e64, ekind, n32, scr, meta, b, D_IN, True, False, lo, t, hub, lst, ctr)
    if ctr[C_TRUNC]:
        return 0
    if nb > hub:
        ctr[C_CUTS] += 1
        return 0
    st = _stamp(meta)
    for k in range(nb):
        scr[lst[k], S_MARK] = st
    na = _collect(e32, e64, ekind, n32, scr, meta, a, D_IN, True, False, lo, t, hub, lst, ctr)
    if ctr[C_TRUNC]:
        return 0
    if na > hub:
        ctr[C_CUTS] += 1
        return 0
    best = 0
    for i in range(na):
        s = lst[i]
        if s == b:
            continue
        ns = _collect(e32, e64, ekind, n32, scr, meta, s, D_OUT, True, False, lo, t, hub, lst2,
                      ctr)
        if ctr[C_TRUNC]:
            break
        if ns > hub:
            ctr[C_CUTS] += 1
            continue
        c = 0
        for k in range(ns):
            m = lst2[k]
            if m != b and scr[m, S_MARK] == st:
                c += 1
        if c > best:
            best = c
    return best


@kernel
def _cycle(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
           scr: np.ndarray, meta: np.ndarray, a: int, b: int, t: int, x0: int, gp: np.ndarray,
           lst: np.ndarray, path: np.ndarray, cur: np.ndarray, his: np.ndarray,
           amts: np.ndarray, rmin: np.ndarray, ctr: np.ndarray) -> tuple[int, float]:
    """(shortest cycle length, best kept ratio) of cycles closed by a -> b; (0, 0.0) if none."""
    top = gp[G_CYCLE_MAX_LEN]
    if top < 3:
        return 0, 0.0
    lo = t - gp[G_CYCLE_WINDOW]
    ordered = gp[G_CYCLE_ORDERED] != 0
    floor = gp[G_CYCLE_MIN_PPM] / 1e6
    hub = gp[G_HUB_DEGREE]
    n = _collect(e32, e64, ekind, n32, scr, meta, a, D_IN, True, False, lo, t, hub, lst, ctr)
    if ctr[C_TRUNC]:
        return 0, 0.0
    if n > hub:
        ctr[C_CUTS] += 1
        return 0, 0.0
    best_len = 0
    best_ratio = 0.0
    depth = 0
    path[0] = a
    cur[0] = n32[a, N_HEAD_IN]
    his[0] = t
    amts[0] = x0
    rmin[0] = 1.0
    while depth >= 0:
        e = _next_in(e32, e64, ekind, n32, cur[depth], lo, his[depth], ctr)
        if e < 0:
            if ctr[C_TRUNC]:
                break
            depth -= 1
            continue
        cur[depth] = e32[e, E_NEXT_IN]
        u = e32[e, E_SRC]
        xe = e64[e, E_AMT]
        r = min(rmin[depth], _ratio(xe, amts[depth]))
        if r < floor:
            continue
        if u == b:
            if depth >= 1:
                length = depth + 2
                if best_len == 0 or length < best_len:
                    best_len = length
                if r > best_ratio:
                    best_ratio = r
            continue
        if depth + 3 > top:
            continue
        on_path = False
        for k in range(depth + 1):
            if path[k] == u:
                on_path = True
                break
        if on_path:
            continue
        hi_u = e64[e, E_TS] if ordered else t
        n = _collect(e32, e64, ekind, n32, scr, meta, u, D_IN, True, False, lo, hi_u, hub, lst,
                     ctr)
        if ctr[C_TRUNC]:
            break
        if n > hub:
            ctr[C_CUTS] += 1
            continue
        depth += 1
        path[depth] = u
        cur[depth] = n32[u, N_HEAD_IN]
        his[depth] = hi_u
        amts[depth] = xe
        rmin[depth] = r
    return best_len, best_ratio


@kernel
def _chain(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
           scr: np.ndarray, meta: np.ndarray, a: int, b: int, t: int, x0: int, gp: np.ndarray,
           lst: np.ndarray, path: np.ndarray, cur: np.ndarray, his: np.ndarray,
           amts: np.ndarray, ctr: np.ndarray) -> int:
    """Edges in the longest layering chain ending with a -> b (0 when it has no predecessor)."""
    top = gp[G_CHAIN_MAX_HOPS]
    if top < 2:
        return 0
    gap = gp[G_CHAIN_GAP]
    rlo = gp[G_CHAIN_MIN_PPM] / 1e6
    rhi = gp[G_CHAIN_MAX_PPM] / 1e6
    hub = gp[G_HUB_DEGREE]
    n = _collect(e32, e64, ekind, n32, scr, meta, a, D_IN, True, False, t - gap, t, hub, lst, ctr)
    if ctr[C_TRUNC]:
        return 0
    if n > hub:
        ctr[C_CUTS] += 1
        return 0
    best = 0
    depth = 0
    path[0] = a
    cur[0] = n32[a, N_HEAD_IN]
    his[0] = t
    amts[0] = x0
    while depth >= 0:
        e = _next_in(e32, e64, ekind, n32, cur[depth], his[depth] - gap, his[depth], ctr)
        if e < 0:
            if ctr[C_TRUNC]:
                break
            depth -= 1
            continue
        cur[depth] = e32[e, E_NEXT_IN]
        u = e32[e, E_SRC]
        if u == b:
            continue
        on_path = False
        for k in range(depth + 1):
            if path[k] == u:
                on_path = True
                break
        if on_path:
            continue
        xe = e64[e, E_AMT]
        q = amts[depth] / xe
        if q < rlo or q > rhi:
            continue
        length = depth + 2
        if length > best:
            best = length
        if length >= top:
            continue
        te = e64[e, E_TS]
        n = _collect(e32, e64, ekind, n32, scr, meta, u, D_IN, True, False, te - gap, te, hub,
                     lst, ctr)
        if ctr[C_TRUNC]:
            break
        if n > hub:
            ctr[C_CUTS] += 1
            continue
        depth += 1
        path[depth] = u
        cur[depth] = n32[u, N_HEAD_IN]
        his[depth] = te
        amts[depth] = xe
    return best


@helper
def _paid_same_to(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray, q: int, a: int,
                  amt: int, lo: int, hi: int, ctr: np.ndarray) -> bool:
    """Whether q paid a exactly ``amt`` in [lo, hi]: a's payment back is then a refund of q's own
    money (a group buy's sold-out item, a cancelled order), not a 'return' paid out of others'."""
    e = n32[q, N_HEAD_OUT]
    while e >= 0:
        if not _spend(ctr):
            return False
        ts = e64[e, E_TS]
        if ts < lo:
            return False
        if ts <= hi and ekind[e] == K_TRANSFER and e32[e, E_DST] == a and e64[e, E_AMT] == amt:
            return True
        e = e32[e, E_NEXT_OUT]
    return False


@kernel
def _ponzi(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
           scr: np.ndarray, meta: np.ndarray, a: int, b: int, t: int, gp: np.ndarray,
           lst: np.ndarray, lst2: np.ndarray, ctr: np.ndarray, out: np.ndarray, i: int) -> None:
    lo = t - gp[G_FUND_WINDOW]
    cap = gp[G_FAN_CAP]
    small = gp[G_FUND_SMALL_MAX]
    hub = gp[G_HUB_DEGREE]
    # a's payers with their earliest time (S_VAL) and largest amount (S_VAL2) in the window
    st = _stamp(meta)
    n = 0
    e = n32[a, N_HEAD_IN]
    while e >= 0:
        if not _spend(ctr):
            return
        ts = e64[e, E_TS]
        if ts < lo:
            break
        if ts <= t and ekind[e] == K_TRANSFER:
            u = e32[e, E_SRC]
            if u != a and (n32[u, N_FLAGS] & NF_TERMINAL) == 0:
                amt = e64[e, E_AMT]
                if scr[u, S_SEEN] != st:
                    scr[u, S_SEEN] = st
                    scr[u, S_VAL] = ts
                    scr[u, S_VAL2] = amt
                    lst[n] = u
                    n += 1
                    if n > cap:
                        ctr[C_CUTS] += 1
                        return
                else:
                    scr[u, S_VAL] = ts
                    if amt > scr[u, S_VAL2]:
                        scr[u, S_VAL2] = amt
        e = e32[e, E_NEXT_IN]
    if scr[b, S_SEEN] != st or scr[b, S_VAL2] > small:
        return
    st2 = _stamp(meta)
    payers = 0
    for k in range(n):
        p = lst[k]
        if scr[p, S_VAL2] <= small:
            scr[p, S_MARK] = st2
            payers += 1
    out[i, X_PONZI_PAYERS] = payers
    # repaid: a paid them at or after their first payment
    st3 = _stamp(meta)
    r = 0
    e = n32[a, N_HEAD_OUT]
    while e >= 0:
        if not _spend(ctr):
            break
        ts = e64[e, E_TS]
        if ts < lo:
            break
        if ts <= t and ekind[e] == K_TRANSFER:
            q = e32[e, E_DST]
            if scr[q, S_MARK] == st2 and ts >= scr[q, S_VAL]:
                refund = _paid_same_to(e32, e64, ekind, n32, q, a, e64[e, E_AMT], lo, ts, ctr)
                if ctr[C_TRUNC]:
                    break
                if not refund:
                    scr[q, S_MARK] = st3
                    lst2[r] = q
                    r += 1
        e = e32[e, E_NEXT_OUT]
    out[i, X_PONZI_REPAID] = r
    if ctr[C_TRUNC]:
        return
    # unrelated: no transfer with another of a's small payers
    unrelated = 0
    for k in range(r):
        p = lst2[k]
        c = _collect(e32, e64, ekind, n32, scr, meta, p, D_BOTH, True, False, lo, t, hub, lst, ctr)
        if ctr[C_TRUNC]:
            break
        if c > hub:
            ctr[C_CUTS] += 1
            continue
        related = False
        for j in range(c):
            v = lst[j]
            if scr[v, S_MARK] == st2 or scr[v, S_MARK] == st3:
                related = True
                break
        if not related:
            unrelated += 1
    out[i, X_PONZI_UNRELATED] = unrelated


@kernel
def _fee_tree(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
              scr: np.ndarray, meta: np.ndarray, a: int, b: int, t: int, x: int, gp: np.ndarray,
              lst: np.ndarray, lst2: np.ndarray, rcv: np.ndarray, pcs: np.ndarray,
              fsum: np.ndarray, ctr: np.ndarray, out: np.ndarray, i: int) -> None:
    """Fee payers of b, whether b paid the fee itself, b's upline share (module docstring).

    Scratch (lists run newest first): ``rcv`` the fee receipts and ``pcs`` the pieces b passed
    on (edge numbers: at most one per unit of work each); ``lst2`` the candidate uplines (S_VAL:
    the index there), ``lst`` what each got in the current receipt's window, ``fsum`` its
    smallest share so far.
    """
    lo = t - gp[G_FEE_WINDOW]
    gap = gp[G_FEE_GAP]
    hub = gp[G_HUB_DEGREE]
    ppm = gp[G_FEE_TOL_PPM]
    tol = (x // 1_000_000) * ppm + (x % 1_000_000) * ppm // 1_000_000  # no int64 overflow
    band_lo = x - tol
    band_hi = x + tol
    # b's payers (S_SEEN) and fee payers (S_MARK); the fee receipts
    st = _stamp(meta)
    payers = 0
    fee_payers = 0
    nr = 0
    e = n32[b, N_HEAD_IN]
    while e >= 0:
        if not _spend(ctr):
            return
        ts = e64[e, E_TS]
        if ts < lo:
            break
        if ts <= t and ekind[e] == K_TRANSFER:
            p = e32[e, E_SRC]
            if p != b and (n32[p, N_FLAGS] & NF_TERMINAL) == 0:
                if scr[p, S_SEEN] != st:
                    scr[p, S_SEEN] = st
                    payers += 1
                    if payers > hub:
                        ctr[C_CUTS] += 1
                        return
                amt = e64[e, E_AMT]
                if band_lo <= amt <= band_hi:
                    rcv[nr] = e
                    nr += 1
                    if scr[p, S_MARK] != st:
                        scr[p, S_MARK] = st
                        fee_payers += 1
        e = e32[e, E_NEXT_IN]
    out[i, X_FEE_PAYERS] = fee_payers
    if fee_payers < 2:
        return
    first_in = e64[rcv[nr - 1], E_TS]
    # b's payments out: its own fee before its first receipt; pieces soon after receipts (S_SEEN
    # now marks candidate uplines, S_VAL their index in lst2)
    st2 = _stamp(meta)
    paid = 0
    nc = 0
    npc = 0
    spread = False
    j = 0  # receipts newer than the payment are skipped
    e = n32[b, N_HEAD_OUT]
    while e >= 0:
        if not _spend(ctr):
            break
        ts = e64[e, E_TS]
        if ts < lo:
            break
        if ts <= t and ekind[e] == K_TRANSFER:
            u = e32[e, E_DST]
            if u != b and scr[u, S_MARK] != st and (n32[u, N_FLAGS] & NF_TERMINAL) == 0:
                amt = e64[e, E_AMT]
                if band_lo <= amt <= band_hi:
                    if ts < first_in:
                        paid = 1
                elif amt < band_lo and not spread and (n32[u, N_FLAGS] & NF_ORGANISATION) == 0:
                    while j < nr and e64[rcv[j], E_TS] > ts:
                        j += 1
                    if j < nr and e64[rcv[j], E_TS] >= ts - gap:
                        if scr[u, S_SEEN] != st2:
                            if nc >= hub:
                                spread = True
                                ctr[C_CUTS] += 1
                            else:
                                scr[u, S_SEEN] = st2
                                scr[u, S_VAL] = nc
                                lst2[nc] = u
                                nc += 1
                        if not spread:
                            pcs[npc] = e
                            npc += 1
        e = e32[e, E_NEXT_OUT]
    out[i, X_FEE_PAID_SAME] = paid
    if ctr[C_TRUNC] or spread:
        return
    # each candidate's smallest share over the receipts whose time to pass on has run out: the
    # pieces it got within gap after the receipt, over the fee (a sliding window over pcs)
    due = t - max(gap, 1)
    for c in range(nc):
        lst[c] = 0
        fsum[c] = -1.0
    top = 0
    end = 0
    for q in range(nr):
        r = e64[rcv[q], E_TS]
        if r > due:
            continue
        while end < npc and e64[pcs[end], E_TS] >= r:
            lst[scr[e32[pcs[end], E_DST], S_VAL]] += e64[pcs[end], E_AMT]
            end += 1
        while top < end and e64[pcs[top], E_TS] > r + gap:
            lst[scr[e32[pcs[top], E_DST], S_VAL]] -= e64[pcs[top], E_AMT]
            top += 1
        fee = e64[rcv[q], E_AMT]
        for c in range(nc):
            f = lst[c] / fee
            if fsum[c] < 0.0 or f < fsum[c]:
                fsum[c] = f
    # the largest of them, of an account that is not a hub
    best = 0.0
    for c in range(nc):
        if fsum[c] > best:
            n = _collect(e32, e64, ekind, n32, scr, meta, lst2[c], D_IN, True, False, lo, t, hub,
                         lst, ctr)
            if ctr[C_TRUNC]:
                break
            if n > hub:
                ctr[C_CUTS] += 1
                continue
            best = fsum[c]
    out[i, X_FEE_UPLINE_SHARE] = best


@kernel
def _proximity(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
               scr: np.ndarray, meta: np.ndarray, watch: np.ndarray, s: int, t: int,
               gp: np.ndarray, lst: np.ndarray, qn: np.ndarray, qd: np.ndarray,
               ctr: np.ndarray) -> int:
    top = gp[G_PROX_MAX_HOPS]
    if top < 1:
        return 0
    lo = t - gp[G_PROX_WINDOW]
    hub = gp[G_HUB_DEGREE]
    st = _stamp(meta)
    scr[s, S_MARK] = st
    qn[0] = s
    qd[0] = 0
    head = 0
    tail = 1
    while head < tail:
        u = qn[head]
        d = qd[head]
        head += 1
        if d >= top or (d == top - 1 and n32[u, N_NEAR] == 0):
            continue
        c = _collect(e32, e64, ekind, n32, scr, meta, u, D_BOTH, False, False, lo, t, hub, lst,
                     ctr)
        if ctr[C_TRUNC]:
            return 0
        if c > hub:
            ctr[C_CUTS] += 1
            continue
        for k in range(c):
            v = lst[k]
            if scr[v, S_MARK] == st:
                continue
            scr[v, S_MARK] = st
            if watch[v] > t:
                return d + 1
            if tail < qn.shape[0]:
                qn[tail] = v
                qd[tail] = d + 1
                tail += 1
    return 0


@helper
def _next_group(ctr: np.ndarray, budget: int) -> int:
    """Start a detector with a fresh budget; returns whether the previous one was truncated."""
    was = ctr[C_TRUNC]
    ctr[C_TRUNC] = 0
    ctr[C_LIMIT] = ctr[C_WORK] + budget
    return was


@kernel
def _detect(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
            scr: np.ndarray, meta: np.ndarray, watch: np.ndarray, a: int, b: int, t: int, x: int,
            gp: np.ndarray, lst: np.ndarray, lst2: np.ndarray, qn: np.ndarray, qd: np.ndarray,
            path: np.ndarray, cur: np.ndarray, his: np.ndarray, amts: np.ndarray,
            rmin: np.ndarray, fsum: np.ndarray, ctr: np.ndarray, out: np.ndarray, i: int) -> None:
    """Every detector for the transfer a -> b (x at t, already in the store) into ``out[i]``."""
    for c in range(N_X):
        out[i, c] = 0.0
    budget = gp[G_MAX_WORK]
    ctr[C_WORK] = 0
    ctr[C_CUTS] = 0
    ctr[C_TRUNC] = 0
    trunc = 0
    ta = (n32[a, N_FLAGS] & NF_TERMINAL) != 0
    tb = (n32[b, N_FLAGS] & NF_TERMINAL) != 0
    lo = t - gp[G_FAN_WINDOW]
    cap = gp[G_FAN_CAP]
    _next_group(ctr, budget)
    a_fans_whole = False
    if not ta:
        out[i, X_PAYER_FAN_OUT] = _collect(e32, e64, ekind, n32, scr, meta, a, D_OUT, True, False,
                                        lo, t, cap, lst, ctr)
        out[i, X_PAYER_FAN_IN] = _collect(e32, e64, ekind, n32, scr, meta, a, D_IN, True, False,
                                       lo, t, cap, lst, ctr)
        a_fans_whole = ctr[C_TRUNC] == 0
    if not tb:
        out[i, X_PAYEE_FAN_IN] = _collect(e32, e64, ekind, n32, scr, meta, b, D_IN, True, False,
                                       lo, t, cap, lst, ctr)
        out[i, X_PAYEE_FAN_OUT] = _collect(e32, e64, ekind, n32, scr, meta, b, D_OUT, True, False,
                                        lo, t, cap, lst, ctr)
    if not ta and not tb:
        trunc |= _next_group(ctr, budget)
        out[i, X_SCATTER_GATHER] = _scatter_gather(e32, e64, ekind, n32, scr, meta, a, b, t, gp, lst,
                                                lst2, ctr)
        trunc |= _next_group(ctr, budget)
        if a_fans_whole and gp[G_SG_WINDOW] == gp[G_FAN_WINDOW]:
            # the same scans with a budget of their own would find the same counts
            out[i, X_GATHER_SCATTER] = min(out[i, X_PAYER_FAN_IN], out[i, X_PAYER_FAN_OUT])
        else:
            lo_sg = t - gp[G_SG_WINDOW]
            gathered = _collect(e32, e64, ekind, n32, scr, meta, a, D_IN, True, False, lo_sg, t,
                                cap, lst, ctr)
            scattered = _collect(e32, e64, ekind, n32, scr, meta, a, D_OUT, True, False, lo_sg, t,
                                 cap, lst, ctr)
            out[i, X_GATHER_SCATTER] = min(gathered, scattered)
        trunc |= _next_group(ctr, budget)
        length, ratio = _cycle(e32, e64, ekind, n32, scr, meta, a, b, t, x, gp, lst, path, cur,
                               his, amts, rmin, ctr)
        out[i, X_CYCLE_LEN] = length
        out[i, X_CYCLE_RATIO] = ratio
        trunc |= _next_group(ctr, budget)
        _ponzi(e32, e64, ekind, n32, scr, meta, a, b, t, gp, lst, lst2, ctr, out, i)
        trunc |= _next_group(ctr, budget)
        _fee_tree(e32, e64, ekind, n32, scr, meta, a, b, t, x, gp, lst, lst2, qd, qn, fsum, ctr,
                  out, i)
    if not ta:
        trunc |= _next_group(ctr, budget)
        out[i, X_CHAIN_HOPS] = _chain(e32, e64, ekind, n32, scr, meta, a, b, t, x, gp, lst, path,
                                   cur, his, amts, ctr)
        trunc |= _next_group(ctr, budget)
        out[i, X_PAYER_WATCH_HOPS] = _proximity(e32, e64, ekind, n32, scr, meta, watch, a, t, gp,
                                             lst, qn, qd, ctr)
    if not tb:
        trunc |= _next_group(ctr, budget)
        out[i, X_PAYEE_WATCH_HOPS] = _proximity(e32, e64, ekind, n32, scr, meta, watch, b, t, gp,
                                             lst, qn, qd, ctr)
    out[i, X_HUB_CUTS] = ctr[C_CUTS]
    out[i, X_TRUNCATED] = trunc | ctr[C_TRUNC]
    meta[M_WORK] += ctr[C_WORK]


@kernel
def _process(ev: np.ndarray, refs: np.ndarray, detect: bool, e32: np.ndarray, e64: np.ndarray,
             ekind: np.ndarray, n32: np.ndarray, watch: np.ndarray, scr: np.ndarray,
             meta: np.ndarray, gp: np.ndarray, lst: np.ndarray, lst2: np.ndarray, qn: np.ndarray,
             qd: np.ndarray, path: np.ndarray, cur: np.ndarray, his: np.ndarray, amts: np.ndarray,
             rmin: np.ndarray, fsum: np.ndarray, ctr: np.ndarray, out: np.ndarray) -> None:
    """Add each event's edges in order; after each transfer run the detectors (when ``detect``).

    ``out`` has a row per event (transactions' features; other rows stay 0) or no rows. The
    scratch arrays are the caller's, with at least the lengths of ``scratch_sizes(gp)``.
    """
    for c in range(N_CTR):
        ctr[c] = 0
    keep = out.shape[0] == ev.shape[0]
    for i in range(ev.shape[0]):
        kind = ev[i, EV_KIND]
        ts = ev[i, EV_TS]
        if kind == KIND_TXN:
            a = ev[i, EV_A] * N_NODE_KINDS + NK_ACCOUNT
            b = ev[i, EV_B] * N_NODE_KINDS + NK_ACCOUNT
            fl = ev[i, EV_FLAGS]
            if fl & TF_PAYER_TERMINAL:
                n32[a, N_FLAGS] |= NF_TERMINAL
            if fl & TF_PAYEE_TERMINAL:
                n32[b, N_FLAGS] |= NF_TERMINAL
            if fl & (TF_PAYER_PERSON | TF_PAYER_TERMINAL) == 0:
                n32[a, N_FLAGS] |= NF_ORGANISATION
            elif fl & TF_PAYER_PERSON:
                n32[a, N_FLAGS] &= ~NF_ORGANISATION
            if fl & (TF_PAYEE_PERSON | TF_PAYEE_TERMINAL) == 0:
                n32[b, N_FLAGS] |= NF_ORGANISATION
            elif fl & TF_PAYEE_PERSON:
                n32[b, N_FLAGS] &= ~NF_ORGANISATION
            amount = ev[i, EV_AMOUNT]
            _insert(e32, e64, ekind, n32, watch, meta, a, b, ts, amount, K_TRANSFER, refs[i])
            if ev[i, EV_C] >= 0:
                _link(e32, e64, ekind, n32, watch, meta, a,
                      ev[i, EV_C] * N_NODE_KINDS + NK_PHONE, ts, K_LINK_PHONE, N_LINK_PHONE,
                      gp[G_LINK_REFRESH], refs[i])
            if ev[i, EV_D] >= 0:
                _link(e32, e64, ekind, n32, watch, meta, a,
                      ev[i, EV_D] * N_NODE_KINDS + NK_DEVICE, ts, K_LINK_DEVICE, N_LINK_DEVICE,
                      gp[G_LINK_REFRESH], refs[i])
            if detect and keep:
                _detect(e32, e64, ekind, n32, scr, meta, watch, a, b, ts, amount, gp, lst, lst2,
                        qn, qd, path, cur, his, amts, rmin, fsum, ctr, out, i)
        elif kind == KIND_CALL and ev[i, EV_FLAGS] & CF_NEW:
            _insert(e32, e64, ekind, n32, watch, meta, ev[i, EV_A] * N_NODE_KINDS + NK_PHONE,
                    ev[i, EV_B] * N_NODE_KINDS + NK_PHONE, ts, ev[i, EV_AMOUNT], K_CALL, refs[i])


# ================================================================= case-graph neighbourhood
@helper
def _keep_own(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
              scr: np.ndarray, u: int, d: int, lo: int, hi: int, st: int, nodes: np.ndarray,
              dist: np.ndarray, cut: np.ndarray, n: int, ctr: np.ndarray) -> tuple[int, int]:
    """Keep the phones and devices account u used in [lo, hi] (its link edges, read from its
    out-list) at u's own distance d. Returns (nodes kept, neighbours left out at the cap)."""
    left = 0
    if u % N_NODE_KINDS != NK_ACCOUNT or (n32[u, N_FLAGS] & NF_TERMINAL) != 0:
        return n, 0
    e = n32[u, N_HEAD_OUT]
    while e >= 0:
        if not _spend(ctr):
            break
        ts = e64[e, E_TS]
        if ts < lo:
            break
        if ts <= hi and (ekind[e] == K_LINK_PHONE or ekind[e] == K_LINK_DEVICE):
            v = e32[e, E_DST]
            if scr[v, S_MARK] != st:
                scr[v, S_MARK] = st
                if n < nodes.shape[0]:
                    nodes[n] = v
                    dist[n] = d
                    cut[n] = 0
                    n += 1
                else:
                    left += 1
        e = e32[e, E_NEXT_OUT]
    return n, left


@kernel
def _neighbourhood(e32: np.ndarray, e64: np.ndarray, ekind: np.ndarray, n32: np.ndarray,
                   scr: np.ndarray, meta: np.ndarray, centers: np.ndarray, hops: int, lo: int,
                   hi: int, hub: int, max_work: int, nodes: np.ndarray, dist: np.ndarray,
                   cut: np.ndarray, lst: np.ndarray, ctr: np.ndarray) -> tuple[int, int, int, int]:
    """Breadth-first, all edge kinds, both directions, in [lo, hi], up to ``hops`` from the centres.

    Hops count steps between parties: the phones and devices an account (not a cash terminal)
    used in the range are its own and are kept right after it at its distance (``_keep_own``),
    so the calls to a payer's phone are one hop from the payer, like its payments. Around a mule
    its victims and their phones are 1 hop away and the number that called them 2. The other
    accounts that used a phone or device are other parties, one hop beyond it.

    Fills at most ``nodes.shape[0]`` nodes (centres first) with their distance; ``cut[i]`` is 1
    for a hub or cash terminal that was not expanded. A centre is always expanded, whatever its
    degree: its neighbours fill the node cap and the rest are counted as left out (it is then
    marked cut too); its own phones and devices are not centres. Returns (nodes, neighbours left
    out, truncated, the stamp in S_MARK of every node seen, kept or left out). ``lst``
    (scratch) holds at least max(hub, nodes.shape[0]) + 2 entries, ``ctr`` N_CTR.
    """
    cap_nodes = nodes.shape[0]
    for c in range(N_CTR):
        ctr[c] = 0
    ctr[C_LIMIT] = max_work
    st = _stamp(meta)
    n = 0
    for k in range(centers.shape[0]):
        c = centers[k]
        if scr[c, S_MARK] != st and n < cap_nodes:
            scr[c, S_MARK] = st
            nodes[n] = c
            dist[n] = 0
            cut[n] = 0
            n += 1
    n_centres = n
    left = 0
    for k in range(n_centres):
        n, more = _keep_own(e32, e64, ekind, n32, scr, nodes[k], 0, lo, hi, st, nodes, dist, cut,
                            n, ctr)
        left += more
    head = 0
    while head < n and ctr[C_TRUNC] == 0:
        u = nodes[head]
        d = dist[head]
        head += 1
        if d >= hops:
            continue
        if head > n_centres and (n32[u, N_FLAGS] & NF_TERMINAL) != 0:
            cut[head - 1] = 1
            continue
        if head <= n_centres:  # a centre: every neighbour is kept or counted as left out
            before = left
            for side in range(2):
                e = n32[u, N_HEAD_OUT if side == 0 else N_HEAD_IN]
                while e >= 0:
                    if not _spend(ctr):
                        break
                    ts = e64[e, E_TS]
                    if ts < lo:
                        break
                    v = e32[e, E_DST if side == 0 else E_SRC]
                    if ts <= hi and v != u and scr[v, S_MARK] != st:
                        scr[v, S_MARK] = st
                        if n < cap_nodes:
                            nodes[n] = v
                            dist[n] = 1
                            cut[n] = 0
                            n += 1
                            n, more = _keep_own(e32, e64, ekind, n32, scr, v, 1, lo, hi, st,
                                                nodes, dist, cut, n, ctr)
                            left += more
                        else:
                            left += 1
                    e = e32[e, E_NEXT_OUT if side == 0 else E_NEXT_IN]
            if left > before:
                cut[head - 1] = 1
            continue
        c = _collect(e32, e64, ekind, n32, scr, meta, u, D_BOTH, False, True, lo, hi, hub, lst,
                     ctr)
        if ctr[C_TRUNC]:
            break
        if c > hub:
            cut[head - 1] = 1
            continue
        for k in range(c):
            v = lst[k]
            if scr[v, S_MARK] == st:
                continue
            scr[v, S_MARK] = st
            if n < cap_nodes:
                nodes[n] = v
                dist[n] = d + 1
                cut[n] = 0
                n += 1
                n, more = _keep_own(e32, e64, ekind, n32, scr, v, d + 1, lo, hi, st, nodes,
                                    dist, cut, n, ctr)
                left += more
            else:
                left += 1
    return n, left, ctr[C_TRUNC], st


@kernel
def _edges_among(e32: np.ndarray, e64: np.ndarray, n32: np.ndarray, scr: np.ndarray,
                 meta: np.ndarray, nodes: np.ndarray, seen: int, lo: int, hi: int,
                 out: np.ndarray) -> tuple[int, int]:
    """Edges in [lo, hi] between ``nodes`` (at most ``out.shape[0]``). Returns (kept, left out):
    left out are the edges beyond that cap and those between a kept node and a node the
    neighbourhood search saw (S_MARK == seen) but left out at its node cap."""
    st = _stamp(meta)
    for k in range(nodes.shape[0]):
        scr[nodes[k], S_SEEN] = st
    n = 0
    left = 0
    for k in range(nodes.shape[0]):
        for side in range(2):
            e = n32[nodes[k], N_HEAD_OUT if side == 0 else N_HEAD_IN]
            while e >= 0:
                ts = e64[e, E_TS]
                if ts < lo:
                    break
                other = e32[e, E_DST if side == 0 else E_SRC]
                if ts <= hi:
                    if scr[other, S_SEEN] == st:
                        if side == 0:
                            if n < out.shape[0]:
                                out[n] = e
                                n += 1
                            else:
                                left += 1
                    elif scr[other, S_MARK] == seen:
                        left += 1
                e = e32[e, E_NEXT_OUT if side == 0 else E_NEXT_IN]
    return n, left
