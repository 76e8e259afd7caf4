"""The event journal: group-committed appends, torn tails, segments and trimming, and a restore
that re-applies it (with the watchlist changes, feedback and registry updates in between) to
exactly the uninterrupted state."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from screening import engine as engine_module
from screening.config import ServerSettings
from screening.engine import Engine, JournalEvent
from screening.errors import CheckpointError, StoreUnavailable
from screening.model import (
    NEVER,
    AccountProfile,
    CallInput,
    DecisionRecord,
    Party,
    TxnColumns,
    TxnInput,
    WatchEntry,
)
from screening.policy import default_policy_text, load_policy, parse_policy
from screening.store import (
    EventWriter,
    FileStore,
    MemoryStore,
    Store,
    decode_event,
    encode_event,
    feedback_journal_writer,
    journal_writer,
    policy_keeper,
    registry_journal_writer,
    restore_engine,
    save_checkpoint,
)
from tests.conftest import CutIn
from tests.store.conftest import T0, assert_same_state, busy_txn, small_settings


def _engine() -> Engine:
    return Engine(small_settings(), load_policy(), clock_ms=lambda: T0 + 10**8)


def _attach(engine: Engine, store: Store, fsync: str = "batch") -> EventWriter:
    engine.journal = journal_writer(store, engine.clock_ms)
    engine.feedback_journal = feedback_journal_writer(store)
    engine.registry_journal = registry_journal_writer(store)
    writer = EventWriter(store, fsync=fsync, interval_ms=20)
    writer.start_at(engine.event_seq)
    engine.events = writer
    return writer


def _traffic(engine: Engine, lo: int, hi: int) -> None:
    """Unary payments, batches, calls and watchlist changes interleaved."""
    for i in range(lo, hi, 10):
        engine.screen([busy_txn(i)])
        engine.screen([busy_txn(j) for j in range(i + 1, i + 10)], batch=True)
        engine.report_call(CallInput(f"c{i}", "+8613800000001", f"+86138{i % 25:04d}", T0 + i, 0, 1))
        if i % 50 == 0:
            engine.update_watchlist([WatchEntry(1, f"A{i % 90}", f"case {i}", "police", NEVER)], [])


def test_entries_round_trip() -> None:
    """An encoded transaction batch and call decode to the same events."""
    txn = JournalEvent(kind="txn", scope="BANK01", policy_version="v1", watch_seq=3,
                       latency_us=812, unsaved=True, graph_skipped=(False, True),
                       txns=(busy_txn(1), busy_txn(4)))
    call = JournalEvent(kind="call", scope="", policy_version="v1", watch_seq=0, latency_us=5,
                        unsaved=False, call=CallInput("c", "+8613800000001", "+8613800000002",
                                                      T0, 12, 2, 1))
    # ScreenBatch journals its columns (rows are read too: journals written before)
    cols = dataclasses.replace(txn, txns=TxnColumns.from_inputs(txn.txns))
    for ev in (txn, call, cols):
        assert decode_event(encode_event(ev), "x") == ev
    assert decode_event(encode_event(cols), "x").txns.rows() == list(txn.txns)
    with pytest.raises(CheckpointError, match="entry 7: malformed"):
        decode_event(b'{"k":"txn"}', "entry 7")
    good = json.loads(encode_event(cols))
    for bad in ([*good["T"][:19]], [*good["T"][:4], [None, None], *good["T"][5:]],
                [*good["T"][:14], [1, 0], *good["T"][15:]], [*good["T"][:1], ["1", 2], *good["T"][2:]]):
        with pytest.raises(CheckpointError, match=r"entry 8: malformed .*transaction column"):
            decode_event(json.dumps(dict(good, T=bad)).encode(), "entry 8")


def test_events_come_back_in_order_and_trim_drops_what_a_checkpoint_holds(any_store: Store) -> None:
    """Appended in batches, read back after a number; trimmed up to a number, later ones stay."""
    any_store.append_events([(1, b"a"), (2, b"b")], sync=True)
    any_store.append_events([(3, b"c")], sync=False)
    any_store.sync_events()
    assert any_store.read_events() == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert any_store.read_events(after=2) == [(3, b"c")]
    any_store.trim_events(2)
    any_store.append_events([(4, b"d")], sync=True)
    # a file store drops whole segments only: what is left below 3 is skipped by number
    assert any_store.read_events(after=2) == [(3, b"c"), (4, b"d")]
    any_store.trim_events(4)
    assert any_store.read_events() == []


def test_file_journal_ignores_a_torn_last_line_and_starts_a_new_segment(tmp_path: Path) -> None:
    """A crash mid-write leaves a torn line: never acknowledged, skipped; the next server writes
    a segment of its own after it."""
    with FileStore(tmp_path / "s") as store:
        store.append_events([(1, b'{"a":1}'), (2, b'{"a":2}')], sync=True)
    seg = next((tmp_path / "s").glob("events.*.journal"))
    with seg.open("ab") as f:
        f.write(b"3 0000")
    with FileStore(tmp_path / "s") as store:
        assert [s for s, _ in store.read_events()] == [1, 2]
        store.append_events([(3, b'{"a":3}')], sync=True)
        assert [s for s, _ in store.read_events()] == [1, 2, 3]
        assert len(list((tmp_path / "s").glob("events.*.journal"))) == 2
        store.trim_events(3)
        assert list((tmp_path / "s").glob("events.*.journal")) == []


def test_restore_reapplies_events_and_watchlist_changes_to_the_same_state(any_store: Store) -> None:
    """Checkpoint part way, more traffic, no final checkpoint (a crash): the restored engine
    equals the one that ran on, decisions, latencies, graph, ledger and all."""
    live = _engine()
    writer = _attach(live, any_store)
    _traffic(live, 0, 200)
    save_checkpoint(live, any_store)
    _traffic(live, 200, 400)
    writer.close()
    assert live.event_seq == 3 * 40

    again = _engine()
    report = restore_engine(again, any_store)
    assert report.events_applied == 3 * 20
    assert again.event_seq == live.event_seq
    assert_same_state(live, again)


DAY_MS = 86_400_000


def _dormant(account: str, at_ms: int) -> AccountProfile:
    """The registry's word on ``account`` (B1's customer): opened eleven years before ``at_ms``,
    idle for the two years before it."""
    return AccountProfile(account, 1, at_ms - 4_000 * DAY_MS, at_ms - 700 * DAY_MS, "", False, "",
                          "B1")


def _wake_and_forward(engine: Engine, at_ms: int) -> list[DecisionRecord]:
    """A victim pays 'rented' 20,000 CNY at ``at_ms``; five minutes later 'rented' passes 6,000
    on (both parties of each payment old accounts of B1)."""
    def old(account: str) -> Party:
        return Party(account, "B1", 1, at_ms - 4_000 * DAY_MS)

    pays = [TxnInput("wake-1", at_ms, old("victim"), old("rented"), 2_000_000, "CNY", 2_000_000,
                     1, False, False, "", "", ""),
            TxnInput("wake-2", at_ms + 300_000, old("rented"), old("onward"), 600_000, "CNY",
                     600_000, 1, False, False, "", "", "")]
    return [engine.screen([t])[0][0] for t in pays]


def _codes(engine: Engine, rec: DecisionRecord) -> list[str]:
    return [r.code for r in engine.policy.fired(rec.reason_bits)]


def test_registry_updates_are_re_applied_at_their_place_among_the_events(any_store: Store) -> None:
    """Registry updates between payments (a merchant before a checkpoint, an idle account after
    it, each with its owner), then a crash: the restored engine equals the one that ran on,
    owners and the decisions the idle account's entry made included."""
    live = _engine()
    writer = _attach(live, any_store)
    _traffic(live, 0, 100)
    live.upsert_accounts([AccountProfile("A8", 2, None, None, "5411", True, "+8613800000009",
                                         "B2")])
    _traffic(live, 100, 200)
    save_checkpoint(live, any_store)
    _traffic(live, 200, 250)
    at = T0 + 250 * 60_000
    live.upsert_accounts([_dormant("rented", at)], writer="B1")
    woke = _wake_and_forward(live, at)
    _traffic(live, 250, 400)
    writer.close()
    assert "WOKEN_DORMANT_FORWARDS" in _codes(live, woke[1])

    again = _engine()
    report = restore_engine(again, any_store)
    assert report.journal_applied == 5  # 4 watchlist changes and the idle account's entry
    assert "rented" in report.journal_entities
    assert_same_state(live, again)
    assert again.core.owners["rented"] == "B1" and again.core.owners["A8"] == "B2"
    # without the entry the same payments are decided otherwise: the test would see it lost
    unaware = _wake_and_forward(_engine(), at)
    assert "WOKEN_DORMANT_FORWARDS" not in _codes(live, unaware[1])


def test_concurrent_requests_share_writes(tmp_path: Path) -> None:
    """Eight threads screening at once: fewer writes than events, every event written once."""
    store = FileStore(tmp_path / "s")
    live = _engine()
    writer = _attach(live, store)

    def run(k: int) -> None:
        for i in range(k * 100, k * 100 + 100):
            live.screen([busy_txn(i)])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert writer.events == 800 and writer.batches < 800
    assert [s for s, _ in store.read_events()] == list(range(1, 801))
    again = _engine()
    restore_engine(again, store)
    assert_same_state(live, again)
    store.close()


def test_events_of_another_policy_are_refused_naming_it(any_store: Store) -> None:
    """An event decided under a policy this server does not run: start-up stops, saying so."""
    live = _engine()
    writer = _attach(live, any_store)
    live.screen([busy_txn(1)])
    writer.close()
    (seq, raw), = any_store.read_events()
    any_store.trim_events(seq)
    any_store.append_events([(seq, raw.replace(live.policy.version.encode(), b"other-policy"))],
                            sync=True)
    with pytest.raises(CheckpointError, match=r"'other-policy'.*start with that policy"):
        restore_engine(_engine(), any_store)


class _Flaky(MemoryStore):
    """A store whose event appends fail while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.syncs = 0

    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        if self.down:
            raise StoreUnavailable("storage memory: down")
        super().append_events(entries, sync=sync)

    def sync_events(self) -> None:
        self.syncs += 1


def test_an_outage_answers_at_once_and_writes_the_queue_in_order_when_back() -> None:
    """Appends failing: requests return without waiting, the problem is reported once; when the
    store answers again everything queued is written, in order, with no gap, and a restore
    equals the engine that ran on."""
    store = _Flaky()
    heard: list[str | None] = []
    live = _engine()
    writer = EventWriter(store, fsync="interval", interval_ms=20, on_problem=heard.append)
    live.events = writer
    live.screen([busy_txn(0)])
    store.down = True
    t0 = time.monotonic()
    for i in range(1, 6):
        live.screen([busy_txn(i)])
    assert time.monotonic() - t0 < 1.0
    assert heard and heard[0] is not None and len(heard) == 1
    store.down = False
    deadline = time.monotonic() + 10
    while len(store.events) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.close()
    assert [s for s, _ in store.events] == [1, 2, 3, 4, 5, 6]
    assert heard[-1] is None and store.syncs >= 1
    again = _engine()
    restore_engine(again, store)
    assert_same_state(live, again)


def test_events_under_a_swapped_policy_are_re_applied_from_its_kept_text(any_store: Store
                                                                         ) -> None:
    """A policy swapped in at run time (ReloadPolicy sends text the server's file does not
    hold) is kept in the store: a restart with the file's policy re-applies the entries decided
    under the swapped one, reaches the same state, and still runs the file's policy."""
    live = _engine()
    live.policy_keeper = policy_keeper(any_store)
    live.policy_keeper(live.policy)
    writer = _attach(live, any_store)
    _traffic(live, 0, 200)
    save_checkpoint(live, any_store)
    text = re.sub(r'(?m)^version = "([^"]+)"', r'version = "\1-hot"', default_policy_text(), count=1)
    text = text.replace("mule_inflow = 1_000_000", "mule_inflow = 200_000", 1)
    hot = parse_policy(text, "policy_toml")
    live.swap_policy(hot)
    assert any_store.load_policy(hot.version) == text
    _traffic(live, 200, 400)
    writer.close()
    again = _engine()
    restore_engine(again, any_store)
    assert_same_state(live, again)
    assert again.policy.version != hot.version  # the configured policy stays the active one


class _Stuck(MemoryStore):
    """A store whose event appends hang until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.release.set()

    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        self.release.wait(10)
        super().append_events(entries, sync=sync)


def test_a_decision_whose_event_was_not_written_is_answered_degraded() -> None:
    """The payment whose own write found the store down, and one whose write (by another
    request, hanging in the store) did not finish in ``wait_s``, were answered degraded: false
    although nothing of them was kept; they are answered degraded (and so audited), the others
    as before."""
    wide = dataclasses.replace(small_settings(), server=ServerSettings(latency_budget_ms=1e6))
    flaky = _Flaky()
    live = Engine(wide, load_policy(), clock_ms=lambda: T0 + 10**8)  # never degraded by the graph
    writer = EventWriter(flaky, fsync="batch")
    live.events = writer
    assert not live.screen([busy_txn(0)])[0][0].degraded
    flaky.down = True
    rec, dup = live.screen([busy_txn(1)])[0]
    assert rec.degraded and not dup
    flaky.down = False
    deadline = time.monotonic() + 10
    while len(flaky.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not live.screen([busy_txn(2)])[0][0].degraded
    writer.close()

    stuck = _Stuck()
    live = Engine(wide, load_policy(), clock_ms=lambda: T0 + 10**8)
    writer = EventWriter(stuck, fsync="batch", wait_s=0.2)
    live.events = writer
    stuck.release.clear()
    first = threading.Thread(target=live.screen, args=([busy_txn(0)],))
    first.start()  # its request writes the queue itself, and hangs in the store
    while writer.batches == 0 and not writer._busy:
        time.sleep(0.01)
    t0 = time.monotonic()
    rec, _ = live.screen([busy_txn(1)])[0]  # waits wait_s for that write, then answers
    assert time.monotonic() - t0 < 5 and rec.degraded
    stuck.release.set()
    first.join()
    writer.close()


def test_a_batch_in_chunks_with_a_payment_between_them_restores_to_the_same_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch screened in chunks with another caller's payment screened between two of them:
    a journal entry per chunk, in the order decided, and a restore equals the live engine."""
    monkeypatch.setattr(engine_module, "BATCH_CHUNK", 8)
    store = MemoryStore()
    live = _engine()
    writer = _attach(live, store)
    _traffic(live, 0, 40)
    seq0 = live.event_seq
    cut = CutIn(live, lambda: live.screen([busy_txn(999)], scope="another bank"))
    live.screen([busy_txn(i) for i in range(40, 80)], batch=True)
    cut.join()
    writer.close()
    assert cut.order[:3] == ["chunk", "cut in", "answered"] and cut.order.count("chunk") == 5
    assert live.event_seq == seq0 + 6  # five chunks and the payment

    again = _engine()
    restore_engine(again, store)
    assert_same_state(live, again)


def test_a_request_naming_a_transaction_of_a_batch_in_chunks_waits_for_the_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same institution sends, between two chunks of its batch, a payment the batch holds
    further on: it is answered once the batch is done, as the batch's duplicate (and a
    different payment under that id would be a Conflict then, never half a batch)."""
    monkeypatch.setattr(engine_module, "BATCH_CHUNK", 8)
    engine = _engine()
    got: list[tuple[object, bool]] = []
    cut = CutIn(engine, lambda: got.extend(engine.screen([busy_txn(37)])))
    batch = engine.screen([busy_txn(i) for i in range(40)], batch=True)
    cut.join()
    assert cut.order == ["chunk"] * 5 + ["answered"]  # it never went between the chunks
    assert got == [(batch[37][0], True)]


def test_every_bulk_path_gives_columns_the_journal_writes_and_reads_back() -> None:
    """ScreenBatch's protobuf and wire paths and Flight's Arrow path hand the journal plain
    Python values (a numpy integer or bool would not encode, or would come back refused), so a
    batch accepted from any of them is journalled and restored as it was."""
    from screening.convert import Converter
    from screening.flight import decode_batch
    from screening.flight_client import event_batches
    from screening.offline.messages import to_requests
    from screening.offline.synth import SynthConfig, generate
    from screening.v1 import screening_pb2 as pb
    from screening.wire import read_batch

    frame = generate(SynthConfig(seed=5, n_persons=100, n_organisations=10, days=7,
                                 scenario_rate=0.2)).events
    txns = [r for r in to_requests(frame) if isinstance(r, pb.Transaction)][:300]
    raw = pb.TransactionBatch(transactions=txns).SerializeToString()
    conv = Converter(small_settings(), load_policy(), lambda: time.time_ns() // 1_000_000)
    wire = read_batch(raw, max_rows=10_000)
    assert wire is not None
    tx_frame = frame.filter(frame["kind"] == "txn").head(300)
    for cols in (conv.batch_columns(pb.TransactionBatch.FromString(raw)), conv.wire_columns(wire),
                 decode_batch(next(event_batches(tx_frame, rows=300)), conv)):
        assert isinstance(cols, TxnColumns) and len(cols) == 300
        ev = JournalEvent(kind="txn", scope="BANK01", policy_version="v1", watch_seq=0,
                          latency_us=1, unsaved=False, graph_skipped=(False,) * 300, txns=cols)
        assert decode_event(encode_event(ev), "x") == ev
