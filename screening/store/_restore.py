"""Checkpoint validation: a decoded checkpoint (``EngineSnapshot``) checked against this build
and these settings, and the engine state built from it.

Everything here runs off the engine's lock and changes nothing: a checkpoint that does not fit
(an array of another shape or dtype, ids beyond the stored rows, a record a reply could not
carry, capacities a small crafted file could use to make the server allocate more than it may)
raises ValueError naming the array or list, and the engine stays as it was. The format itself
(container, parts, checksums) is ``_format``; this module is what the parts must mean.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

from features.state import TIME_MAX_MS, TIME_MIN_MS, FeatureState
from graph.live import BYTES_PER_EDGE, BYTES_PER_NODE
from screening.core import Interner, Screener
from screening.engine import CallState, DecisionLog, Engine, EngineSnapshot, RestoredState
from screening.idempotency import FINGERPRINT_BYTES
from screening.ledger import Ledger
from screening.model import CallRecord, DecisionRecord, Feedback
from screening.policy import ACTION_NAMES, CALL_ACTION_NAMES

__all__ = ["restored_state"]


def restored_state(engine: Engine, snap: EngineSnapshot) -> tuple[RestoredState, list[str]]:
    """The state ``snap`` restores in ``engine`` (at start, before serving), built off its lock;
    ``engine.install`` swaps it in.

    Returns notes on what the settings changed (graph switched on or off, another policy).
    Raises ValueError, naming the array or list, when the snapshot does not fit this build
    or is inconsistent (nothing is changed).
    """
    notes: list[str] = []
    width = engine.settings.state.recent_decisions_per_account
    in_ckpt = "graph.meta" in snap.arrays
    accounts = Interner.from_names(snap.accounts)
    phones = Interner.from_names(snap.phones)
    devices = Interner.from_names(snap.devices)
    rows = {"accounts": len(accounts), "phones": len(phones), "devices": len(devices)}
    caps = _capacities(engine, snap, rows, graph=engine.graph is not None and in_ckpt)
    if caps["recent_width"] != width:
        raise ValueError(f"state.recent_decisions_per_account is {caps['recent_width']} in "
                         f"the checkpoint and {width} in the settings")
    state = FeatureState.create(caps["accounts"], caps["phones"], caps["devices"],
                                caps["pairs"], limits=engine.limits())
    used = _fill("features.", state.arrays(), snap.arrays,
                 lambda name: rows.get(name.partition(".")[0]))
    recent_rows = engine.new_recent(caps["accounts"])
    recent_pos = recent_rows["recent_pos"]
    used |= _fill("", dict(recent_rows.views), snap.arrays, lambda _name: len(accounts))
    if recent_pos.size and not 0 <= int(recent_pos.min()) <= int(recent_pos.max()) <= 2**62:
        raise ValueError("recent_pos: a position outside [0, 2**62]")
    state.check()
    graph = None
    if engine.graph is not None and in_ckpt:
        graph = engine.new_graph(caps["graph_nodes"], caps["graph_edges"])
        meta = snap.arrays["graph.meta"]
        edges = int(meta[0]) if meta.ndim == 1 and meta.size else -1
        if not 0 <= edges <= graph.edge_capacity:
            raise ValueError(f"graph.meta: {edges} edges do not fit (graph.max_edges is "
                             f"{engine.settings.graph.max_edges})")
        used_nodes = min(graph.node_capacity, 3 * max(*rows.values(), 1))
        targets = {"e32": graph.e32, "e64": graph.e64, "ekind": graph.ekind, "n32": graph.n32,
                   "watch": graph.watch, "meta": graph.meta}
        used |= _fill("graph.", targets, snap.arrays,
                      lambda name: edges if name in ("e32", "e64", "ekind")
                      else used_nodes if name in ("n32", "watch") else None)
        graph.check((len(accounts), len(phones), len(devices)))
    elif engine.graph is not None:
        s = engine.settings.state
        graph = engine.new_graph(3 * max(s.initial_accounts, s.initial_phones, s.initial_devices),
                                engine.settings.graph.initial_edges)
        graph.ensure(len(accounts), len(phones), len(devices), 0)
        for e in snap.watch:
            idx = (accounts, phones, devices)[e.kind - 1].get(e.value)
            if idx is not None:
                graph.set_watch(e.kind - 1, idx, e.expires_ms)
        notes.append("the checkpoint has no transaction graph ([graph] was disabled): "
                     "the graph starts empty")
    elif in_ckpt:
        used |= {n for n in snap.arrays if n.startswith("graph.")}
        notes.append("[graph] is disabled: the checkpoint's transaction graph is not loaded")
    unknown = sorted(set(snap.arrays) - used)
    if unknown:
        raise ValueError(f"{unknown[0]}: an array this build does not know")
    decisions = DecisionLog(engine.settings.state.dedup_capacity)
    last = -1
    for rec in snap.decisions:
        if not last < rec.seq < snap.next_seq:
            raise ValueError(f"decisions: seq {rec.seq} out of order (next_seq {snap.next_seq})")
        last = rec.seq
        if rec.seq < snap.next_seq - decisions.capacity:
            continue  # beyond this server's horizon (state.dedup_capacity)
        if (not _renderable(rec, ACTION_NAMES)
                or not TIME_MIN_MS <= rec.event_time_ms <= TIME_MAX_MS):
            raise ValueError(f"decisions: seq {rec.seq} has action {rec.action}, reasons "
                             f"{rec.reason_bits}, score {rec.score}, time {rec.event_time_ms}")
        # a duplicate is recognised by its fingerprint (none: a format-1 record, compared
        # by payer, payee and time), and answered with the one record its id names
        if len(rec.fingerprint) not in (0, FINGERPRINT_BYTES):
            raise ValueError(f"decisions: seq {rec.seq} has a fingerprint of "
                             f"{len(rec.fingerprint)} bytes, expected {FINGERPRINT_BYTES}")
        if not rec.transaction_id or decisions.get(rec.scope, rec.transaction_id) is not None:
            raise ValueError(f"decisions: seq {rec.seq} repeats a transaction id of its scope "
                             "(or has none)")
        decisions.add(rec)
    decisions.next_seq = snap.next_seq
    calls: OrderedDict[tuple[str, str], CallState] = OrderedDict()
    for cid, caller, callee, ringing, ended, scope in snap.calls:
        for call_rec in (ringing, ended):
            if call_rec is not None and not _renderable(call_rec, CALL_ACTION_NAMES):
                raise ValueError(f"calls: a record has action {call_rec.action}, reasons "
                                 f"{call_rec.reason_bits}, score {call_rec.score}")
        calls[(scope, cid)] = CallState(caller, callee, ringing, ended)
    while len(calls) > engine.settings.state.dedup_capacity:
        calls.popitem(last=False)
    watch = {(e.kind, e.value): e for e in snap.watch}
    feedback: OrderedDict[str, tuple[int, Feedback]] = OrderedDict()
    for name, at, fb in snap.feedback:
        feedback[name] = (at, fb)
    if snap.policy_version != engine.policy.version:
        notes.append(f"the checkpoint was written under policy {snap.policy_version}; "
                     f"this server runs {engine.policy.version}")
    if snap.ledger is None:
        ledger = engine.new_ledger()
        notes.append("the checkpoint has no report ledger (an earlier build): large-value "
                     "reports start with the next transaction")
    else:
        ledger, ledger_notes = Ledger.restored(
            snap.ledger, days=engine.settings.ledger.days, max_rows=engine.settings.ledger.max_rows,
            tz_offset_hours=engine.policy.params.timezone_offset_hours, n_accounts=len(accounts))
        notes += ledger_notes
    owners: dict[str, str] = {}
    for account, institution in snap.owners:
        if not account or not institution or account not in accounts:
            raise ValueError(f"registry.owners: entry ({account!r}, {institution!r}) names no "
                             "known account or no institution")
        owners[account] = institution
    core = Screener(state=state, graph=graph, graph_params=engine.graph_params,
                    graph_expiry_ms=engine.settings.graph.expiry_ms, recent=recent_rows,
                    accounts=accounts, phones=phones, devices=devices, owners=owners)
    restored = RestoredState(
        core=core, decisions=decisions, calls=calls, watch=watch, feedback=feedback,
        ledger=ledger, journal_seq=snap.journal_seq, event_seq=snap.event_seq)
    return restored, notes


def _capacities(engine: Engine, snap: EngineSnapshot, rows: dict[str, int], *,
                graph: bool) -> dict[str, int]:
    """The capacities to allocate for ``snap``: its own, except that the entity tables and
    graph nodes take at most what growing from this server's initial sizes to the saved
    rows could have made (they grow again on demand; their size changes no decision), graph
    edge slots at most ``max_edges``, and the relationship table must be the size stored.
    A small damaged or crafted checkpoint cannot make the server allocate more than that."""
    caps = dict(snap.capacities)
    names = _CAPACITIES + (("graph_nodes", "graph_edges") if graph else ())
    for name in names:
        value = caps.get(name)
        if type(value) is not int or value < 1:
            raise ValueError(f"capacities.{name}: {value!r}, expected a positive integer")
    s = engine.settings.state
    initial = {"accounts": s.initial_accounts, "phones": s.initial_phones,
               "devices": s.initial_devices}
    for name, n in rows.items():
        caps[name] = min(caps[name], max(initial[name], 2 * n))
    pairs = snap.arrays.get("features.pairs")
    slots = FeatureState.pair_slots(caps["pairs"])
    if pairs is None or pairs.ndim != 2 or pairs.shape[0] != slots:
        raise ValueError(f"features.pairs: capacities.pairs is {caps['pairs']}, the stored "
                         f"table has {None if pairs is None else list(pairs.shape)} slots")
    if graph:
        caps["graph_nodes"] = min(caps["graph_nodes"],
                                  max(3 * max(initial.values()), 6 * max(*rows.values(), 1)))
        # edge slots are kept as saved (up to max_edges): when they fill decides when
        # expired edges go, and so what a late transaction still sees
        caps["graph_edges"] = min(caps["graph_edges"], engine.settings.graph.max_edges)
    need = FeatureState.nbytes_for(caps["accounts"], caps["phones"], caps["devices"],
                                   caps["pairs"])
    need += caps["accounts"] * (caps["recent_width"] + 1) * 8
    if graph:
        need += caps["graph_nodes"] * BYTES_PER_NODE + caps["graph_edges"] * BYTES_PER_EDGE
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > ram:
        raise ValueError(f"capacities: the state would take {need / 2**30:.1f} GiB, more than "
                         f"this machine's {ram / 2**30:.1f} GiB of memory")
    return caps


def _renderable(rec: DecisionRecord | CallRecord, actions: Mapping[int, str]) -> bool:
    """A remembered record a reply can carry again (action known, score a protobuf int32)."""
    return rec.action in actions and rec.reason_bits >= 0 and -(2**31) <= rec.score < 2**31


_CAPACITIES = ("accounts", "phones", "devices", "pairs", "recent_width")


def _fill(prefix: str, targets: dict[str, np.ndarray], saved: dict[str, np.ndarray],
          rows_of: Callable[[str], int | None]) -> set[str]:
    """Copy ``saved[prefix + name]`` into the first rows of each freshly allocated target.

    ``rows_of(name)`` is the number of rows the saved array must have (None: the target's whole
    shape). Returns the saved names used; raises ValueError naming the array on any mismatch.
    """
    for name, target in targets.items():
        key = prefix + name
        arr = saved.get(key)
        if arr is None:
            raise ValueError(f"{key}: missing")
        want = rows_of(name)
        if arr.dtype != target.dtype or arr.ndim != target.ndim or arr.shape[1:] != target.shape[1:]:
            raise ValueError(f"{key}: {arr.dtype}{list(arr.shape)} does not match this build's "
                             f"{target.dtype}[n, {', '.join(map(str, target.shape[1:]))}]")
        if want is None and arr.shape != target.shape:
            raise ValueError(f"{key}: shape {list(arr.shape)}, expected {list(target.shape)}")
        if want is not None and not arr.shape[0] == want <= target.shape[0]:
            raise ValueError(f"{key}: {arr.shape[0]} rows, expected {want} "
                             f"(capacity {target.shape[0]})")
        target[: arr.shape[0]] = arr
    return {prefix + name for name in targets}
