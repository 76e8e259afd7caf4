"""The watchlist journal (watchlist changes, feedback, registry updates): durable appends, torn
tails, trimming, replay, all-or-nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from screening.engine import Engine
from screening.errors import CheckpointError, PermissionDenied, StoreUnavailable
from screening.model import NEVER, AccountProfile, WatchEntry
from screening.store import (
    FileStore,
    MemoryStore,
    RedisStore,
    Store,
    decode_registry_change,
    encode_registry_change,
    journal_writer,
    registry_journal_writer,
    restore_engine,
    save_checkpoint,
)
from tests.store.conftest import busy_engine, full_state, small_settings


def test_journal_entries_come_back_in_order_after_reopening(any_store: Store, tmp_path: Path) -> None:
    """Appended entries are numbered 1, 2, 3 and read back in order, also after a reopen."""
    seqs = [any_store.append_journal(b'{"n":%d}' % i) for i in range(3)]
    assert seqs == [1, 2, 3]
    assert any_store.read_journal(after=1) == [(2, b'{"n":1}'), (3, b'{"n":2}')]
    if isinstance(any_store, FileStore):
        any_store.close()
        with FileStore(any_store.dir) as reopened:
            assert reopened.read_journal() == [(1, b'{"n":0}'), (2, b'{"n":1}'), (3, b'{"n":2}')]
            assert reopened.append_journal(b"{}") == 4


def test_trim_keeps_only_entries_after_the_checkpoint(any_store: Store) -> None:
    """Trimming up to n drops entries 1..n; numbering continues after them."""
    for i in range(5):
        any_store.append_journal(b"%d" % i)
    assert any_store.trim_journal(3) == 3
    assert [s for s, _ in any_store.read_journal()] == [4, 5]
    assert any_store.append_journal(b"x") == 6


def test_torn_last_line_is_ignored_and_cut_off(tmp_path: Path) -> None:
    """A half-written last line (a crash mid-append, never acknowledged) is skipped, then cut."""
    with FileStore(tmp_path) as store:
        store.append_journal(b'{"a":1}')
    with open(store.journal_path, "ab") as f:
        f.write(b'2 0badc0de {"a":')
    with FileStore(tmp_path) as store:
        assert [s for s, _ in store.read_journal()] == [1]
        assert store.append_journal(b'{"b":2}') == 2
        assert store.read_journal() == [(1, b'{"a":1}'), (2, b'{"b":2}')]


def test_corrupted_line_before_good_ones_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A damaged line followed by good ones is corruption: refused with file:line."""
    with FileStore(tmp_path) as store:
        for i in range(3):
            store.append_journal(b'{"i":%d}' % i)
    lines = store.journal_path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"i":1', b'"i":7')
    store.journal_path.write_bytes(b"".join(lines))
    with pytest.raises(CheckpointError, match=rf"{store.journal_path}:2: corrupted"):
        store.read_journal()


def test_watchlist_changes_after_the_checkpoint_are_replayed_on_restore(any_store: Store) -> None:
    """Changes journaled after the last checkpoint are applied on restore, and only those."""
    engine = busy_engine()
    engine.journal = journal_writer(any_store, engine.clock_ms)
    engine.update_watchlist([WatchEntry(1, "A7", "before", "police", NEVER)], [])
    save_checkpoint(engine, any_store)
    assert any_store.read_journal() == []  # the checkpoint includes it
    engine.update_watchlist([WatchEntry(1, "A8", "after", "police", NEVER)], [(1, "A7")])
    engine.update_watchlist([WatchEntry(1, "new-acct", "after", "police", NEVER)], [])
    restored = Engine(small_settings(), engine.policy)
    report = restore_engine(restored, any_store)
    assert report.journal_applied == 2
    now = engine.clock_ms()
    assert restored.watch_entries(1, "A8", now) and not restored.watch_entries(1, "A7", now)
    assert restored.watch_entries(1, "new-acct", now)
    assert full_state(restored)["watch"] == full_state(engine)["watch"]
    assert restored.journal_seq == engine.journal_seq == 3


def _reopened(store: Store) -> Store:
    """The same store as a new process would open it, knowing only what it holds: a memory
    store's checkpoint and journal carried over; Redis without its journal counter (evicted,
    or the keys copied to a fresh Redis without it)."""
    store.close()
    if isinstance(store, MemoryStore):
        fresh = MemoryStore()
        fresh.checkpoint, fresh.journal = store.checkpoint, list(store.journal)
        return fresh
    if isinstance(store, FileStore):
        return FileStore(store.dir)
    assert isinstance(store, RedisStore)
    store.r.delete(f"{store.prefix}journal:seq")
    return RedisStore(store.url, store.prefix, chunk_bytes=256 * 1024)


def test_change_after_a_restart_from_a_trimmed_journal_survives_the_next_restore(
        any_store: Store) -> None:
    """Checkpoint (journal trimmed empty), restart, one more change, crash: the next restore
    applies it (numbering continues above the checkpoint's journal_seq, never from 1 again)."""
    engine = busy_engine()
    engine.journal = journal_writer(any_store, engine.clock_ms)
    for i in range(3):
        engine.update_watchlist([WatchEntry(1, f"early-{i}", "before", "police", NEVER)], [])
    save_checkpoint(engine, any_store)
    assert any_store.read_journal() == []
    store = _reopened(any_store)
    try:
        second = Engine(small_settings(), engine.policy)
        restore_engine(second, store)
        second.journal = journal_writer(store, second.clock_ms)
        second.update_watchlist([WatchEntry(1, "late-mule", "after restart", "police", NEVER)], [])
        assert second.journal_seq > engine.journal_seq
        store = _reopened(store)  # crash: no checkpoint; a third server restores
        third = Engine(small_settings(), engine.policy)
        report = restore_engine(third, store)
    finally:
        store.close()
    assert report.journal_applied == 1
    assert third.watch_entries(1, "late-mule", engine.clock_ms())
    assert full_state(third)["watch"] == full_state(second)["watch"]


def test_failed_journal_write_changes_nothing(tmp_path: Path) -> None:
    """When the journal cannot be written the update raises StoreUnavailable and nothing changes."""
    engine = busy_engine()
    with FileStore(tmp_path / "state") as store:
        engine.journal = journal_writer(store, engine.clock_ms)
        before = full_state(engine)
        shutil.rmtree(tmp_path / "state")
        with pytest.raises(StoreUnavailable, match=r"watchlist\.journal"):
            engine.update_watchlist([WatchEntry(1, "brand-new", "x", "police", NEVER),
                                     WatchEntry(1, "A9", "x", "police", NEVER)], [(1, "A5")])
    _assert_unchanged(before, full_state(engine))


def _profiles() -> list[AccountProfile]:
    return [AccountProfile("A9", 1, 1_400_000_000_000, 1_600_000_000_000, "", False,
                           "+8613800000009", "B1"),
            AccountProfile("brand-new", 2, None, None, "5411", True, "", "B2")]


def test_registry_entries_round_trip_and_a_malformed_one_is_refused() -> None:
    """An encoded registry update decodes to the same profiles; a damaged one names its entry."""
    assert decode_registry_change(encode_registry_change(_profiles()), "x") == _profiles()
    assert decode_registry_change(b'{"upsert":[],"remove":[]}', "x") is None  # a watchlist change
    with pytest.raises(CheckpointError, match=r"entry 4: malformed .*accounts\[0\]"):
        decode_registry_change(b'{"accounts":[["A1",1,null,null,"",0,"",""]]}', "entry 4")


def test_registry_update_after_the_checkpoint_is_replayed_with_its_owners(any_store: Store) -> None:
    """A registry update journaled after the last checkpoint comes back on restore: the
    profile arrays and the owners equal the engine's that made it."""
    engine = busy_engine()
    engine.registry_journal = registry_journal_writer(any_store)
    save_checkpoint(engine, any_store)
    assert engine.upsert_accounts(_profiles()) == 2
    restored = Engine(small_settings(), engine.policy)
    report = restore_engine(restored, any_store)
    assert report.journal_applied == 1 and restored.journal_seq == engine.journal_seq
    want, got = engine.snapshot(), restored.snapshot()
    assert (got.accounts, got.phones, got.owners) == (want.accounts, want.phones, want.owners)
    assert got.arrays.keys() == want.arrays.keys()
    for key, value in want.arrays.items():  # the used rows: profiles, phones on file, ...
        assert np.array_equal(value, got.arrays[key]), key
    assert ("brand-new", "B2") in got.owners


def test_refused_or_unjournaled_registry_update_changes_nothing(tmp_path: Path) -> None:
    """A registry update refused (another institution's entry) writes no journal entry; one whose
    journal write fails (store gone, or blocked) raises StoreUnavailable: nothing changes."""
    engine = busy_engine()
    why: list[str] = []
    with FileStore(tmp_path / "state") as store:
        engine.registry_journal = registry_journal_writer(
            store, blocked=lambda: why[0] if why else None)
        engine.upsert_accounts(_profiles()[:1])
        before = full_state(engine)
        with pytest.raises(PermissionDenied, match=r"accounts\[1\]\.account_id"):
            engine.upsert_accounts([_profiles()[1], _profiles()[0]], writer="B2")
        assert len(store.read_journal()) == 1
        why.append("the store has not answered for 3 s")
        with pytest.raises(StoreUnavailable, match="not answered"):
            engine.upsert_accounts(_profiles())
    with FileStore(tmp_path / "gone") as gone:
        engine.registry_journal = registry_journal_writer(gone)
        shutil.rmtree(tmp_path / "gone")
        with pytest.raises(StoreUnavailable, match=r"watchlist\.journal"):
            engine.upsert_accounts(_profiles())
    _assert_unchanged(before, full_state(engine))


def test_numbering_continues_past_large_sequence_numbers(any_store: Store) -> None:
    """Far along (Lua numbers are doubles: `..` would write 1e+14), entries still read back."""
    any_store.advance_journal(10**14)
    any_store.advance_journal(5)  # never backwards
    assert any_store.append_journal(b"{}") == 10**14 + 1
    assert any_store.read_journal(after=10**14) == [(10**14 + 1, b"{}")]


def _assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Every part of the engine state as it was (a refused change applied nothing)."""
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, after[key]), key
        else:
            assert value == after[key], key


def test_a_timed_store_times_each_call_failed_ones_too_and_hands_over_early_ones() -> None:
    """What the metrics see of the store: each call by operation, a failing one as well (a store
    timing out is the case worth seeing), and calls made before the metrics existed once they
    do; the results pass through unchanged."""
    from screening.store import TimedStore

    class Failing(MemoryStore):
        def trim_journal(self, upto: int) -> int:
            raise StoreUnavailable("down")

    timed = TimedStore(Failing())
    assert timed.append_journal(b"x") == 1  # before anyone listens
    seen: list[tuple[str, float]] = []
    timed.observe = lambda op, s: seen.append((op, s))
    assert [op for op, _ in seen] == ["append_journal"]
    assert timed.read_journal() == [(1, b"x")]
    with pytest.raises(StoreUnavailable):
        timed.trim_journal(1)
    assert [op for op, _ in seen] == ["append_journal", "read_journal", "trim_journal"]
    assert all(s >= 0 for _, s in seen)
