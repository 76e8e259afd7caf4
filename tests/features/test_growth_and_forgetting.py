"""State growth without copies, and forgetting entities whose ids go to new ones.

``FeatureState.forget`` is held equal to ``ReferenceEngine.forget`` (the naive twin: the entity,
its relationships and every ring slot naming it go) on random streams; every array of
``FeatureState.arrays()`` is checked by name, so an array added later that is not grown or
cleared with its kind fails here.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import _kernels as k
from features.state import ENTITY_KINDS, EntityArrays, FeatureState, RowTable, RuleTable, kind_of
from tests.features.test_kernels_match_reference import (
    NO_RULES,
    as_matrix,
    assert_rows_equal,
    assert_snapshots_equal,
    events_strategy,
    params_strategy,
)
from tests.reference import ReferenceEngine

ROWS = {"accounts": 8, "phones": 6, "devices": 4}


# ================================================================= row tables
def test_growing_within_the_limit_extends_the_views_without_copying() -> None:
    """Rows already in use stay where they are; new rows hold the empty row."""
    table = RowTable({"a": np.array([7, -1], dtype=np.int64), "b": np.float64(0.5)}, 10,
                     limit=1 << 20)
    table["a"][:] = np.arange(20).reshape(10, 2)
    where = table["a"].ctypes.data
    table.grow(300_000)
    assert table["a"].ctypes.data == where and table.rows == 300_000
    assert table["a"][:10].tolist() == np.arange(20).reshape(10, 2).tolist()
    assert np.all(table["a"][10:] == [7, -1]) and np.all(table["b"][10:] == 0.5)


def test_growing_past_the_limit_copies_once() -> None:
    """A table made without room to grow doubles (a copy) and keeps its rows."""
    table = RowTable({"a": np.int32(-1)}, 4)
    table["a"][:] = [1, 2, 3, 4]
    table.grow(5)
    assert table.limit >= 8 and table["a"].tolist() == [1, 2, 3, 4, -1]


def test_prefill_writes_ahead_without_touching_rows_in_use() -> None:
    """Rows written ahead on another thread are the empty row when taken, and the rows in use,
    written meanwhile by their owner, are never overwritten."""
    table = RowTable({"a": np.int64(-1)}, 1_000, limit=4_000_000)
    stop = threading.Event()

    def owner() -> None:
        i = 0
        while not stop.is_set():
            table["a"][i % 1_000] = i
            i += 1

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        assert table.prefill(4_000_000) == 3_999_000 and table.filled == 4_000_000
    finally:
        stop.set()
        thread.join()
    assert np.all(table["a"] >= 0)  # the owner's values: none reset
    table.grow(4_000_000)
    assert np.all(table["a"][1_000:] == -1)


# ================================================================= every array, by name
def _attribute_arrays(state: FeatureState) -> dict[int, str]:
    """Every numpy array reachable from the state's fields (one level into EntityArrays)."""
    found: dict[int, str] = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, np.ndarray):
            found[id(value)] = f.name
        elif isinstance(value, EntityArrays):
            for g in dataclasses.fields(value):
                found[id(getattr(value, g.name))] = f"{f.name}.{g.name}"
    return found


def test_every_state_array_is_listed_grown_and_forgotten_with_its_kind() -> None:
    """Every array the state holds is in ``arrays()``; each per-entity one grows with its kind
    and gets exactly the empty row back for a forgotten id, leaving the other rows alone."""
    empty = FeatureState.create(1, 1, 1, 16).arrays()
    state = FeatureState.create(4, 4, 4, 16, limits={"accounts": 5_000, "phones": 3_000,
                                                     "devices": 2_000})
    state.ensure(3_000, 2_000, 1_500, new_pairs=0)
    arrays = state.arrays()
    listed = {id(a) for a in arrays.values()}
    unlisted = [name for key, name in _attribute_arrays(state).items() if key not in listed]
    assert not unlisted, f"state arrays missing from arrays(): {unlisted}"
    rng = np.random.default_rng(5)
    for name, arr in arrays.items():
        kind = kind_of(name)
        if kind is None:
            continue
        assert arr.shape[0] == state.capacity(kind), name
        assert np.array_equal(arr[-1], empty[name][0]), name  # grown rows are empty rows
        arr[...] = rng.integers(1, 100, arr.shape).astype(arr.dtype)  # nothing empty left
        if name in _NAMING_PHONES:
            arr[::7, _NAMING_PHONES[name]] = 5  # some name the phone forgotten below
    before = {name: arr.copy() for name, arr in arrays.items()}
    gone = {"accounts": np.array([0, 17, 2_999]), "phones": np.array([5]),
            "devices": np.array([1_499, 3])}
    for kind in ENTITY_KINDS:
        state.forget(kind, gone[kind])
    for name, arr in state.arrays().items():
        kind = kind_of(name)
        if kind is None:
            continue
        ids = gone[kind]
        assert all(np.array_equal(arr[i], empty[name][0]) for i in ids), name
        kept = np.setdiff1d(np.arange(arr.shape[0]), ids)
        if name in ("accounts.ring", "phones.ring"):  # rings also lose the forgotten ids
            continue
        was = before[name][kept]
        if name in _NAMING_PHONES:  # and what names a forgotten phone no longer does
            col = _NAMING_PHONES[name]
            named = np.isin(was[:, col], gone["phones"])
            assert named.any(), name  # (the test names one)
            assert np.all(arr[kept][named, col] == -1), name
            was = was.copy()
            was[named, col] = -1
            if name == "accounts.sc":
                was[named, k.SC_PROFILE] &= ~k.PROF_PHONE_SEEN
        assert np.array_equal(arr[kept], was), name


# the state columns that hold a phone id: an account's phone, a callee's current caller
_NAMING_PHONES = {"accounts.sc": k.SC_PHONE, "phones.sc": k.PSC_INCALL_CALLER}


# ================================================================= forgetting = the naive twin
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_forgetting_entities_matches_the_reference(data: st.DataObject) -> None:
    """A stream, some accounts, phones and devices forgotten, a second stream that gives their
    ids to new entities: every feature and decision equals the reference's, and the state's
    invariants hold (a small relationship table: deletions inside long probe runs). Rules that
    warn or hold every payment as a victim's fill the decision memory's stops and warnings too
    (an account's go with it)."""
    params = data.draw(params_strategy())
    rules = data.draw(st.sampled_from([NO_RULES, *(RuleTable.build([([], a, 50, 0, k.MK_PAYER_VICTIM)])
                                                   for a in (k.ACTION_WARN, k.ACTION_HOLD))]))
    fan_out = data.draw(st.booleans())
    streams = [data.draw(events_strategy(params, ROWS["accounts"], ROWS["phones"],
                                         ROWS["devices"], 40, fan_out)) for _ in range(2)]
    gone = {kind: sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n)))
            for kind, n in ROWS.items()}
    state = FeatureState.create(ROWS["accounts"], ROWS["phones"], ROWS["devices"], pairs=16)
    ref = ReferenceEngine()
    for i, events in enumerate(streams):
        if i == 1:
            for kind, ids in gone.items():
                state.forget(kind, np.array(ids, dtype=np.int64))
                ref.forget(kind, ids)
            assert state.pair_count == ref.pair_count
            state.check()
        if not events:
            continue
        ev = as_matrix(events)
        state.ensure(ROWS["accounts"], ROWS["phones"], ROWS["devices"], new_pairs=3 * len(events))
        feat, dec = state.process(ev, params, rules, NO_RULES)
        ref_feat, ref_dec = ref.process(ev, params, rules, NO_RULES)
        assert_rows_equal(ev, feat, dec, ref_feat, ref_dec, 0)
    assert state.pair_count == ref.pair_count
    last = max((e[k.EV_TS] for s in streams for e in s), default=0)
    assert_snapshots_equal(state, ref, ROWS["accounts"], [last], params)
    state.check()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 40)),
                max_size=24, unique=True),
       st.sets(st.integers(0, 40)))
def test_removed_relationships_leave_every_other_one_findable(
        pairs: list[tuple[int, int, int]], gone: set[int]) -> None:
    """Deleting from a full, colliding 32-slot table keeps every other relationship at the slot
    a lookup finds (no tombstones) and the count right; only the kind asked for is touched."""
    pt = np.full((32, 2), -1, dtype=np.int64)
    pt[:, 1] = 0
    meta = np.zeros(1, dtype=np.int64)
    for kind, a, b in pairs:
        key = (kind << 62) | (a << 31) | b
        k._pair_put_at(pt, meta, k._pair_slot(pt, key), key, 5)
    mask = np.zeros(41, dtype=np.uint8)
    mask[list(gone)] = 1
    ring = np.full((41, 2, k.RING_K, 2), -1, dtype=np.int32)
    removed = k._forget_pairs(pt, meta, k.PAIR_TXN, mask, ring)
    want = {p for p in pairs if not (p[0] == k.PAIR_TXN and (p[1] in gone or p[2] in gone))}
    assert removed == len(pairs) - len(want) and int(meta[0]) == len(want)
    for kind, a, b in pairs:
        key = (kind << 62) | (a << 31) | b
        assert (pt[k._pair_slot(pt, key), 0] == key) == ((kind, a, b) in want)


def test_forgetting_an_id_beyond_the_rows_is_refused() -> None:
    state = FeatureState.create(4, 4, 4, 16)
    with pytest.raises(ValueError, match="beyond the capacity"):
        state.forget("accounts", np.array([4]))


def test_the_next_relationship_table_is_written_ahead() -> None:
    """Half way to growing, prefill writes the doubled table, which growing then fills; at the
    final size and nearly full, it writes one of the same size, which dropping the least
    recently seen then fills, and the next time it reuses the table that drop replaced."""
    state = FeatureState.create(64, 1, 1, pairs=64)
    keys = np.arange(30, dtype=np.int64)  # account 0 paid accounts 0..29
    state.pairs[:30, 0], state.pairs[:30, 1] = keys, 100 + keys  # (slots need not be hashed)
    state.meta[0] = 30
    state.rehash_pairs(64, min_ts=0)  # a consistent table of 30
    state.prefill({})
    spare = state._spare_pairs
    assert spare is not None and spare.shape[0] == 128
    state.ensure(64, 1, 1, new_pairs=20)  # grows: into the table written ahead
    assert state.pairs is spare and state.pair_count == 30 and state._stale_pairs is None
    state.prefill({}, max_pairs=32)  # final size (32 fit in 128 slots), 30 of 32: nearly full
    spare = state._spare_pairs
    assert spare is not None and spare.shape[0] == 128
    replaced = state.pairs
    assert state.drop_oldest_pairs(10) == (10, 100, 109)
    assert state.pairs is spare and state.pair_count == 20 and state._stale_pairs is replaced
    state.prefill({}, max_pairs=22)
    assert state._spare_pairs is replaced and np.all(replaced[:, 0] == k.PAIR_EMPTY)
    state.check()
