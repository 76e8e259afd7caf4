"""Checkpoints whose checksums are right but whose content is not: refused with CheckpointError.

The store is a trust boundary and the kernels run without bounds checks, so a damaged or crafted
checkpoint (checksums recomputed) must be refused before any kernel sees it, never crash the
server (out-of-range list pointers), hang it (a full relationship table), or make it allocate
what the machine does not have.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from features import _kernels as fk
from features.state import FeatureState
from graph import _kernels as gk
from screening.config import load_settings
from screening.engine import Engine, EngineSnapshot
from screening.errors import CheckpointError, Conflict
from screening.model import NEVER
from screening.store import MemoryStore, encode, read_header, restore_engine
from tests.store.conftest import busy_engine, busy_txn, reassembled, small_settings


def _snapshot() -> EngineSnapshot:
    snap = busy_engine(n=200).snapshot()
    assert "graph.e32" in snap.arrays and snap.arrays["graph.e32"].shape[0] > 10
    return snap


def _restore(snap: EngineSnapshot) -> Engine:
    store = MemoryStore()
    store.write_checkpoint(encode(snap).pieces)
    engine = Engine(small_settings(), busy_engine(n=1).policy)
    restore_engine(engine, store)
    return engine


def _refused(snap: EngineSnapshot, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        _restore(snap)


def _with(snap: EngineSnapshot, name: str, change: Callable[[np.ndarray], None]) -> EngineSnapshot:
    arr = snap.arrays[name].copy()
    change(arr)
    snap.arrays[name] = arr
    return snap


def test_unchanged_snapshot_restores() -> None:
    """The control: the snapshot the other tests damage restores and screens."""
    engine = _restore(_snapshot())
    assert engine.graph is not None and engine.graph.edge_count > 10


def _set(index: tuple[int, ...], value: int) -> Callable[[np.ndarray], None]:
    def change(arr: np.ndarray) -> None:
        arr[index] = value
    return change


@pytest.mark.parametrize(("name", "index", "value", "match"), [
    # a list head past the last edge: the first scan of that node read out of bounds
    ("graph.n32", (0, gk.N_HEAD_OUT), 10**6, "out-list pointer is not an edge"),
    ("graph.n32", (0, gk.N_HEAD_IN), -7, "in-list pointer is not an edge"),
    ("graph.n32", (0, gk.N_LINK_PHONE), 10**6, "last link is not an edge"),
    # edge ends outside the node arrays: an insert wrote out of bounds
    ("graph.e32", (3, gk.E_SRC), 2**30, "edge source is not a known node"),
    ("graph.e32", (3, gk.E_DST), -1, "edge target is not a known node"),
    ("graph.e32", (3, gk.E_NEXT_OUT), 10**6, "out-list pointer is not an edge"),
    ("graph.ekind", (2,), 9, "unknown edge kind"),
    ("graph.meta", (gk.M_EDGES,), 10**9, "do not fit"),
    ("graph.meta", (gk.M_STAMP,), -5, "graph.meta: counter 1 is -5"),
    ("graph.meta", (gk.M_STAMP,), 2**63 - 1, "graph.meta: counter 1 is"),
])
def test_out_of_range_graph_values_are_refused(name: str, index: tuple[int, ...], value: int,
                                               match: str) -> None:
    _refused(_with(_snapshot(), name, _set(index, value)), match)


def _all(name: str, column: int | None, value: float) -> Callable[[EngineSnapshot], EngineSnapshot]:
    def change(snap: EngineSnapshot) -> EngineSnapshot:
        def put(arr: np.ndarray) -> None:
            if column is None:
                arr[...] = value
            else:
                arr[:, column] = value
        return _with(snap, name, put)
    return change


def _transfers_of_no_money(snap: EngineSnapshot) -> EngineSnapshot:
    def put(e64: np.ndarray) -> None:
        e64[snap.arrays["graph.ekind"] == gk.K_TRANSFER, gk.E_AMT] = 0
    return _with(snap, "graph.e64", put)


@pytest.mark.parametrize(("change", "match"), [
    # values the kernels compute with: NaN spreads, a negative variance divides by zero
    (_all("features.accounts.fl", None, float("nan")), "accounts.fl: an amount mean or variance no"),
    (_all("features.accounts.fl", fk.FL_VAR, -1.0), "accounts.fl: an amount mean or variance no"),
    (_all("features.accounts.fl", fk.FL_MEAN, 1e308), "accounts.fl: an amount mean or variance no"),
    (_transfers_of_no_money, "graph.e64: a transfer of no money"),
    # times the service answers with (a protobuf Timestamp holds years 1 to 9999)
    (_all("features.accounts.sc", fk.SC_FIRST, 2**63 - 1), "accounts.sc: a time outside years"),
    (_all("features.phones.sc", fk.PSC_LAST, -(2**63)), "phones.sc: a time outside years"),
    (_all("graph.e64", gk.E_TS, 2**62), "graph.e64: an edge time outside years"),
    # a ring position that overflows on the next decision
    (_all("recent_pos", None, 2**63 - 1), "recent_pos: a position outside"),
])
def test_values_the_service_cannot_compute_with_are_refused(
        change: Callable[[EngineSnapshot], EngineSnapshot], match: str) -> None:
    _refused(change(_snapshot()), match)


@pytest.mark.parametrize("field", [{"score": 2**40}, {"event_time_ms": 2**63 - 1},
                                   {"event_time_ms": 253_402_300_800_000}])
def test_decision_that_cannot_be_answered_again_is_refused(field: dict[str, int]) -> None:
    """A duplicate id is answered with the remembered decision: it must fit the reply."""
    snap = _snapshot()
    snap.decisions[:] = [replace(d, **field) for d in snap.decisions]  # type: ignore[arg-type]
    _refused(snap, "decisions: seq")


def test_state_larger_than_the_process_may_allocate_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Capacities within the machine's memory that the process still cannot get (a memory
    limit, other processes): a CheckpointError, not a MemoryError from deep inside numpy."""
    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError
    store = MemoryStore()
    store.write_checkpoint(encode(_snapshot()).pieces)
    engine = Engine(small_settings(), busy_engine(n=1).policy)
    monkeypatch.setattr("screening.engine.LiveGraph", no_memory)
    with pytest.raises(CheckpointError, match="does not fit in the memory this process may use"):
        restore_engine(engine, store)


def test_graph_list_that_loops_is_refused() -> None:
    """An edge whose next pointer is itself would make every scan of that list endless."""
    snap = _snapshot()
    e32 = snap.arrays["graph.e32"]
    e = int(np.nonzero(e32[:, gk.E_NEXT_OUT] >= 0)[0][0])
    _refused(_with(snap, "graph.e32", _set((e, gk.E_NEXT_OUT), e)), "out-list is not newest first")


def test_graph_edge_moved_to_another_nodes_list_is_refused() -> None:
    """Two nodes' heads naming the same edge: one of them walks a list that is not its own."""
    snap = _snapshot()
    n32 = snap.arrays["graph.n32"]
    a, b = np.nonzero(n32[:, gk.N_HEAD_OUT] >= 0)[0][:2]
    _refused(_with(snap, "graph.n32", _set((int(b), gk.N_HEAD_OUT), int(n32[a, gk.N_HEAD_OUT]))),
             "out-list holds another node's edge")


def test_full_relationship_table_is_refused() -> None:
    """Every slot taken (and the count saying 0): a lookup of a new pair would probe forever."""
    snap = _snapshot()

    def fill(pairs: np.ndarray) -> None:
        pairs[:, 0] = np.arange(1, pairs.shape[0] + 1) * 7919
    _refused(_with(snap, "features.pairs", fill), "no free slot")


def test_relationship_count_that_disagrees_with_the_table_is_refused() -> None:
    _refused(_with(_snapshot(), "features.meta", _set((0,), 0)), "meta: says")


def test_window_head_before_the_empty_epoch_is_refused() -> None:
    """A head below EMPTY_EPOCH overflows the epoch difference: the advance loop never ends."""
    _refused(_with(_snapshot(), "features.accounts.head", _set((0, 0), int(fk.EMPTY_EPOCH) - 5)),
             "accounts.head: window epochs outside")


@pytest.mark.parametrize(("caps", "match"), [
    ({"pairs": 2**40}, r"capacities.pairs is 1099511627776, the stored table has \[\d+, 2\] slots"),
    ({"pairs": "many"}, r"capacities.pairs: 'many', expected an integer"),
    ({"phones": 0}, "capacities.phones: 0"),
    ({"devices": None}, "capacities.devices: None"),
])
def test_impossible_capacities_are_refused_before_allocating(caps: dict[str, object],
                                                             match: str) -> None:
    snap = _snapshot()
    snap.capacities.update(caps)  # type: ignore[arg-type]
    if caps.get("devices", 1) is None:
        del snap.capacities["devices"]
    _refused(snap, match)


def test_claimed_capacities_are_only_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint claiming 10**15 accounts and 2**40 graph edges (a few hundred kB on disk)
    gets entity tables and graph nodes sized from its rows and the settings, edge slots at
    most the server's own max_edges."""
    snap = _snapshot()
    snap.capacities.update(accounts=10**15, phones=10**12, devices=10**12, graph_nodes=10**15,
                           graph_edges=2**40)
    store = MemoryStore()
    store.write_checkpoint(encode(snap).pieces)
    settings = load_settings(overrides={"state": {"initial_accounts": 64, "initial_phones": 16,
                                                  "initial_devices": 16, "initial_pairs": 256},
                                        "graph": {"initial_edges": 256, "max_edges": 4096}})
    engine = Engine(settings, busy_engine(n=1).policy)
    restore_engine(engine, store)
    assert engine.graph is not None
    assert engine.state.accounts.capacity <= max(64, 2 * len(snap.accounts))
    assert engine.graph.node_capacity <= 6 * len(snap.accounts)
    assert engine.graph.edge_capacity == 4096
    assert engine.state.nbytes() + engine.graph.nbytes() < 50 << 20


def test_state_larger_than_the_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capacities the machine's memory cannot hold are refused before allocating them."""
    snap = _snapshot()
    monkeypatch.setattr("screening.engine.os.sysconf",
                        lambda name: 4096 if name == "SC_PAGE_SIZE" else 16)
    _refused(snap, r"capacities: the state would take .* GiB, more than this machine's 0.0 GiB")


def test_decision_with_an_unknown_action_is_refused() -> None:
    """A remembered decision is answered again for a duplicate id: it must be one we can render."""
    snap = _snapshot()
    snap.decisions[5] = replace(snap.decisions[5], action=42)
    _refused(snap, "decisions: seq .* has action 42")


# ---------------------------------------------------------------- the container's parts
def _json(obj: object) -> tuple[str, bytes]:
    return "json", json.dumps(obj).encode()


def _meta(snap: EngineSnapshot, **change: object) -> tuple[str, bytes]:
    return _json({"next_seq": snap.next_seq, "capacities": snap.capacities, **change})


def _npy_header(shape: tuple[int, ...]) -> tuple[str, bytes]:
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<i8", "fortran_order": False, "shape": shape})
    return "npy", head.getvalue() + b"\0" * 64


def _refused_store(store: MemoryStore, match: str) -> None:
    engine = Engine(small_settings(), busy_engine(n=1).policy)
    with pytest.raises(CheckpointError, match=match):
        restore_engine(engine, store)


@pytest.mark.parametrize(("name", "part", "match"), [
    ("meta", lambda s: _meta(s, capacities=[1, 2, 3]), "capacities is not an object"),
    ("meta", lambda s: _json([1, 2]), "part meta: a list, expected a dict"),
    ("ids.accounts", lambda s: _json(["A1", "A2"]), "part ids.accounts: a list, expected a Table"),
    ("watchlist", lambda s: _json([[99, "A1", "r", "police", 0]]), "part watchlist: entry"),
    ("watchlist", lambda s: _json([[1, "A1"]]), "part watchlist: entry"),
    ("watchlist", lambda s: _json({"a": 1}), "part watchlist: a dict, expected a list"),
    ("decisions", lambda s: ("", b""), "part decisions missing"),
    ("recent", lambda s: _npy_header((2**40, 8)), r"part recent: shape \[1099511627776, 8\]"),
    ("recent", lambda s: _npy_header((-3,)), "part recent"),
    # numpy reads the header as a Python literal: a damaged one fails in the tokenizer
    ("recent", lambda s: ("npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': ('<i8'\n"), "malformed .npy header"),
])
def test_malformed_parts_are_refused_naming_the_part(
        name: str, part: Callable[[EngineSnapshot], tuple[str, bytes]], match: str) -> None:
    snap = _snapshot()
    _refused_store(reassembled(snap, {name: part(snap)}), match)


def test_call_record_of_a_call_that_is_not_there_is_refused() -> None:
    """calls.records points each record at its call by index; one past the end is refused."""
    snap = _snapshot()
    data = b"".join(bytes(p) for p in encode(snap).pieces)
    store = MemoryStore()
    store.checkpoint = data
    reader = store.open_checkpoint()
    assert reader is not None
    info = next(p for p in read_header(reader).parts if p.name == "calls.records")
    table = pa.ipc.open_stream(pa.BufferReader(data[info.offset:info.offset + info.size])).read_all()
    calls = table.column("call").to_pylist()
    table = table.set_column(table.schema.get_field_index("call"), "call",
                             pa.array([99, *calls[1:]], pa.int64()))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    _refused_store(reassembled(snap, {"calls.records": ("arrow", sink.getvalue().to_pybytes())}),
                   r"part calls.records: call 99 of")


@pytest.mark.parametrize("value", [float("inf"), 10**27, 2**63, 10**17, "7", 1.5, -1, True])
def test_journal_seq_that_is_not_a_plain_count_is_refused(value: object) -> None:
    """The journal is numbered on from journal_seq: it must be an integer with room to count."""
    _refused_store(reassembled(_snapshot(), {}, journal_seq=value),
                   r"malformed header \((Infinity is not a number|journal_seq: .*expected an integer in "
                   r"\[0, 9007199254740992\])")


def test_expiry_past_the_year_9999_from_an_earlier_build_reads_as_never() -> None:
    """Earlier builds accepted any future expires_at: such an entry restores as 'never lapses'
    (the server must not refuse its own state), while one before the year 1 is refused."""
    snap = _snapshot()
    entry = snap.watch[0]
    snap.watch[0] = replace(entry, expires_ms=2**63 - 1)
    engine = _restore(snap)
    assert {e.expires_ms for e in engine.snapshot().watch if e.value == entry.value} == {NEVER}
    snap.watch[0] = replace(entry, expires_ms=-(2**62))
    _refused(snap, "watchlist: an entry expires at")


# ---------------------------------------------------------------- idempotency records
@pytest.mark.parametrize(("change", "match"), [
    ({"fingerprint": b"\x01" * 7}, "has a fingerprint of 7 bytes, expected 16"),
    ({"transaction_id": ""}, "repeats a transaction id of its scope .or has none."),
])
def test_decision_whose_idempotency_fields_cannot_work_is_refused(
        change: dict[str, object], match: str) -> None:
    """A fingerprint of the wrong size (a retry could never match it, or match by accident) or a
    record no request could name is refused naming the record."""
    snap = _snapshot()
    snap.decisions[3] = replace(snap.decisions[3], **change)  # type: ignore[arg-type]
    _refused(snap, rf"decisions: seq {snap.decisions[3].seq} {match}")


def test_two_decisions_for_one_id_of_one_scope_are_refused() -> None:
    """One id names one payment per institution: two records for it would answer a retry with
    either; the same id in two scopes is two payments and restores."""
    snap = _snapshot()
    twin = replace(snap.decisions[4], transaction_id=snap.decisions[2].transaction_id)
    snap.decisions[4] = twin
    _refused(snap, f"decisions: seq {twin.seq} repeats a transaction id of its scope")
    snap.decisions[4] = replace(twin, scope="bank-b")
    engine = _restore(snap)
    assert engine.decisions.get("bank-b", twin.transaction_id) is not None
    assert engine.decisions.get("", twin.transaction_id) is not None


def _without(table: pa.Table, *names: str) -> tuple[str, bytes]:
    table = table.drop_columns(list(names))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return "arrow", sink.getvalue().to_pybytes()


def _part_table(snap: EngineSnapshot, name: str) -> pa.Table:
    data = b"".join(bytes(p) for p in encode(snap).pieces)
    store = MemoryStore()
    store.checkpoint = data
    reader = store.open_checkpoint()
    assert reader is not None
    info = next(p for p in read_header(reader).parts if p.name == name)
    return pa.ipc.open_stream(pa.BufferReader(data[info.offset:info.offset + info.size])).read_all()


def test_format_1_checkpoint_restores_in_the_default_scope() -> None:
    """A checkpoint of the previous format (no scopes, no fingerprints) still restores: its
    decisions and calls in the default scope; a retry there is recognised by payer, payee and
    time, another payment under the id is refused."""
    snap = _snapshot()

    def narrow(name: str, keep: int) -> tuple[str, bytes]:  # the arrays before decision memory
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(snap.arrays[name][..., :keep]), allow_pickle=False)
        return "npy", buf.getvalue()

    old = reassembled(snap, {"decisions": _without(_part_table(snap, "decisions"), "scope",
                                                   "fingerprint", "marks"),
                             "calls": _without(_part_table(snap, "calls"), "scope"),
                             "features.accounts.sc": narrow("features.accounts.sc", 16),
                             "features.phones.sc": narrow("features.phones.sc", 6),
                             "features.phones.cnt": narrow("features.phones.cnt", 3),
                             "feedback": ("", b"")}, version=1)
    engine = Engine(small_settings(), busy_engine(n=1).policy)
    restore_engine(engine, old)
    restored = engine.snapshot()
    assert len(restored.decisions) == len(snap.decisions) and restored.calls == snap.calls
    fresh = FeatureState.create(1, 1, 1, 16).arrays()
    for name, keep in (("features.accounts.sc", 16), ("features.phones.sc", 6),
                       ("features.phones.cnt", 3)):  # widened: old columns kept, new ones empty
        got = restored.arrays[name]
        assert np.array_equal(got[..., :keep], snap.arrays[name][..., :keep]), name
        empty = fresh[name.removeprefix("features.")][0][..., keep:]
        assert (got[..., keep:] == empty).all(), name
    assert {(d.scope, d.fingerprint) for d in restored.decisions} == {("", b"")}
    (rec, dup), = engine.screen([busy_txn(7)])
    assert dup and rec.seq == snap.decisions[7].seq
    with pytest.raises(Conflict, match=r"transaction_id: .* \(payee differs\)"):
        engine.screen([replace(busy_txn(7), payee=busy_txn(8).payee)])
