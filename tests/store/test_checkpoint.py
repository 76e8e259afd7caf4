"""Checkpoints: exact round trip, refusal of corrupted or foreign ones, atomic replacement."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from screening.engine import Engine, EngineSnapshot
from screening.errors import CheckpointError, PermissionDenied
from screening.model import AccountProfile
from screening.store import (
    FORMAT_VERSION,
    FileStore,
    MemoryStore,
    Piece,
    RedisStore,
    Store,
    decode,
    encode,
    read_latest_header,
    restore_engine,
    save_checkpoint,
)
from tests.conftest import RedisProcess
from tests.store.conftest import (
    CKPT_PREFIX,
    assert_same_state,
    busy_engine,
    busy_txn,
    reassembled,
    small_settings,
    txn,
)


def _restored(store: Store) -> Engine:
    engine = Engine(small_settings(), busy_engine(n=1).policy)
    restore_engine(engine, store)
    return engine


def test_round_trip_restores_every_array_and_list(any_store: Store) -> None:
    """Checkpoint then restore: every array (at capacity) and every list is equal."""
    engine = busy_engine()
    stats = save_checkpoint(engine, any_store)
    assert stats.counts["accounts"] == 97 and stats.counts["decisions"] == 400
    restored = _restored(any_store)
    assert_same_state(engine, restored)
    assert restored.state.accounts.capacity == engine.state.accounts.capacity


def test_restored_engine_continues_exactly() -> None:
    """After a restore, the next transactions get the same decisions and the same state."""
    engine = busy_engine()
    store = MemoryStore()
    save_checkpoint(engine, store)
    restored = _restored(store)
    more = [txn(10_000 + i, f"A{i % 90}", f"A{(i * 13) % 120}", 50_000 + i) for i in range(150)]
    first = engine.screen([*more, busy_txn(5)])  # t00005 again: a duplicate
    again = restored.screen([*more, busy_txn(5)])
    assert [(r.seq, r.action, r.reason_bits, r.features, d) for r, d in first] == [
        (r.seq, r.action, r.reason_bits, r.features, d) for r, d in again]
    assert first[-1][1] is True
    assert_same_state(engine, restored, timings=False)


def _profile(account: str, institution: str) -> AccountProfile:
    return AccountProfile(account, 0, None, None, "5411", False, "", institution)


def test_registry_owners_survive_a_checkpoint_and_an_earlier_builds_have_none() -> None:
    """The owner of each registry entry is restored with it (another institution still cannot
    overwrite it); a checkpoint without the registry.owners part (an earlier build) restores
    every entry ownerless."""
    engine = busy_engine(n=50)
    engine.upsert_accounts([_profile("A1", "BANK01"), _profile("A2", "BANK02")])
    store = MemoryStore()
    save_checkpoint(engine, store)
    restored = _restored(store)
    assert restored.core.owners == {"A1": "BANK01", "A2": "BANK02"}
    with pytest.raises(PermissionDenied, match=r"accounts\[0\]\.account_id"):
        restored.upsert_accounts([_profile("A1", "BANK02")], writer="BANK02")
    older = Engine(small_settings(), engine.policy)
    restore_engine(older, reassembled(engine.snapshot(), {"registry.owners": ("", b"")}))
    assert older.core.owners == {}
    assert older.upsert_accounts([_profile("A1", "BANK02")], writer="BANK02") == 1
    assert older.core.owners == {"A1": "BANK02"}


def test_reasons_past_the_63rd_rule_survive_a_checkpoint_and_an_earlier_build_reads_the_rest() -> None:
    """A decision's reasons are one int (bit i: rule i) in a record and two int64 columns in the
    checkpoint; the high one only when a rule past the 63rd fired, so that the checkpoint of a
    smaller policy keeps the columns an earlier build reads (a rollback), and reads back."""
    engine = busy_engine(n=50)
    snap = engine.snapshot()
    assert "reason_bits_high" not in _columns(snap, "decisions")
    narrow = Engine(small_settings(), engine.policy)
    restore_engine(narrow, reassembled(snap, {}))
    assert [r.reason_bits for r in narrow.decisions.records()] == [r.reason_bits for r in snap.decisions]
    wide = [dataclasses.replace(r, reason_bits=r.reason_bits | 1 << 63 | 1 << 100)
            for r in snap.decisions]
    wide_snap = dataclasses.replace(snap, decisions=wide)
    assert "reason_bits_high" in _columns(wide_snap, "decisions")
    restored = Engine(small_settings(), engine.policy)
    restore_engine(restored, reassembled(wide_snap, {}))
    assert [r.reason_bits for r in restored.decisions.records()] == [r.reason_bits for r in wide]


def _columns(snap: EngineSnapshot, name: str) -> list[str]:
    return list(pa.ipc.open_stream(_part_bytes(snap, name)).read_all().column_names)


def _part_bytes(snap: EngineSnapshot, name: str) -> bytes:
    data = b"".join(bytes(p) for p in encode(snap).pieces)
    _, _, hlen, _ = CKPT_PREFIX.unpack_from(data)
    header = json.loads(data[CKPT_PREFIX.size:CKPT_PREFIX.size + hlen])
    body = data[CKPT_PREFIX.size + hlen:]
    part = next(p for p in header["parts"] if p["name"] == name)
    return body[part["offset"]:part["offset"] + part["size"]]


def test_graph_switched_off_drops_the_checkpoints_graph_with_a_note() -> None:
    """A checkpoint with a graph restores into a server whose graph is disabled, with a note."""
    store = MemoryStore()
    save_checkpoint(busy_engine(), store)
    settings = small_settings()
    from dataclasses import replace

    no_graph = replace(settings, graph=replace(settings.graph, enabled=False))
    engine = Engine(no_graph, busy_engine(n=1).policy)
    report = restore_engine(engine, store)
    assert engine.graph is None
    assert any("graph" in n for n in report.notes)


# ---------------------------------------------------------------- refusals
def _file_checkpoint(tmp_path: Path) -> tuple[FileStore, Path, dict[str, tuple[int, int]]]:
    store = FileStore(tmp_path / "state")
    save_checkpoint(busy_engine(), store)
    header = read_latest_header(store)
    assert header is not None
    return store, store.checkpoint_path, {p.name: (p.offset, p.size) for p in header.parts}


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupted_part_is_refused_naming_the_file_and_part(tmp_path: Path) -> None:
    """One flipped bit in an array: refused, naming the file and the part."""
    store, path, parts = _file_checkpoint(tmp_path)
    offset, size = parts["features.accounts.amt"]
    _flip(path, offset + size // 2)
    with pytest.raises(CheckpointError, match=rf"{path}: corrupted \(part features.accounts.amt"):
        _restored(store)


def test_corrupted_header_is_refused(tmp_path: Path) -> None:
    """A flipped bit in the header: refused by the header checksum."""
    store, path, _ = _file_checkpoint(tmp_path)
    _flip(path, CKPT_PREFIX.size + 20)
    with pytest.raises(CheckpointError, match=rf"{path}: corrupted \(header checksum"):
        read_latest_header(store)


def test_other_format_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A checkpoint of another format version is refused before anything is read."""
    store, path, _ = _file_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, FORMAT_VERSION + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path}: format version {FORMAT_VERSION + 1}, "
                                              rf"this build reads versions 1, {FORMAT_VERSION}"):
        _restored(store)


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    """A checkpoint cut short is refused as truncated."""
    store, path, _ = _file_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        _restored(store)


@pytest.mark.redis
def test_corrupted_chunk_is_refused_naming_the_redis_key(redis_server: RedisProcess) -> None:
    """A changed byte in one Redis chunk: refused, naming that chunk's key."""
    store = RedisStore(redis_server.url, "t:", chunk_bytes=64 * 1024)
    save_checkpoint(busy_engine(), store)
    header = read_latest_header(store)
    assert header is not None
    part = next(p for p in header.parts if p.name == "features.accounts.cnt")
    at = part.offset  # in the chunk the part starts in: the one a mismatch names
    key = f"t:ckpt:1:{at // (64 * 1024)}"
    old = store.r.getrange(key, at % (64 * 1024), at % (64 * 1024))
    store.r.setrange(key, at % (64 * 1024), bytes([old[0] ^ 1]))
    with pytest.raises(CheckpointError, match=rf"key {key}: corrupted \(part features.accounts.cnt"):
        _restored(store)


def test_pickled_array_is_refused_even_with_valid_checksums() -> None:
    """An object array (a pickle inside a .npy) is never loaded, checksums or not."""
    evil = io.BytesIO()
    np.save(evil, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    store = reassembled(busy_engine(n=20).snapshot(), {"recent": ("npy", evil.getvalue())})
    reader = store.open_checkpoint()
    assert reader is not None
    with pytest.raises(CheckpointError, match=r"part recent: .*allow_pickle"):
        decode(reader)


# ---------------------------------------------------------------- atomic replacement
def _failing(pieces: list[Piece], after_bytes: int) -> Iterator[Piece]:
    """The pieces of a checkpoint, until the writer 'crashes' after ``after_bytes``."""
    sent = 0
    for p in pieces:
        yield p
        sent += memoryview(p).nbytes
        if sent >= after_bytes:
            raise RuntimeError("writer died")


@pytest.mark.parametrize("backend", ["file", pytest.param("redis", marks=pytest.mark.redis)])
def test_interrupted_write_leaves_the_previous_checkpoint_readable(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A write that dies half way changes nothing: the previous checkpoint is still the latest."""
    store: Store
    if backend == "file":
        store = FileStore(tmp_path / "state")
    else:
        store = RedisStore(request.getfixturevalue("redis_server").url, "t:", chunk_bytes=64 * 1024)
    small = busy_engine(n=50)
    save_checkpoint(small, store)
    big = busy_engine(n=400)
    enc = encode(big.snapshot())
    with pytest.raises(RuntimeError, match="writer died"):
        store.write_checkpoint(_failing(enc.pieces, enc.size // 2))
    header = read_latest_header(store)
    assert header is not None and header.counts["decisions"] == 50
    assert_same_state(small, _restored(store))
    if isinstance(store, FileStore):
        assert [p.name for p in store.dir.iterdir()] == ["checkpoint.ckpt"]
    else:
        chunks = set(store.r.keys("t:ckpt:*")) - {b"t:ckpt:gen", b"t:ckpt:latest"}
        assert chunks and all(k.startswith(b"t:ckpt:1:") for k in chunks)  # none of generation 2
    store.close()


def test_file_left_by_a_crashed_writer_is_ignored_then_removed(tmp_path: Path) -> None:
    """A temp file from a writer that crashed is not read, and goes when the next server
    claims the directory."""
    store, path, _ = _file_checkpoint(tmp_path)
    stale = path.parent / ".checkpoint.ckpt.tmp-99999-deadbeef"
    stale.write_bytes(path.read_bytes()[:1000])
    assert read_latest_header(store) is not None
    FileStore(path.parent)
    assert stale.exists(), "only the writer cleans up (another server may be writing it)"
    with FileStore(path.parent) as writer:
        writer.claim_writer("test")
        assert not stale.exists()


@pytest.mark.redis
def test_redis_chunks_of_a_crashed_writer_are_ignored_then_removed(redis_server: RedisProcess) -> None:
    """Chunks of a generation that never became the latest are ignored, then deleted."""
    store = RedisStore(redis_server.url, "t:", chunk_bytes=64 * 1024)
    save_checkpoint(busy_engine(n=50), store)
    crashed = store.r.incr("t:ckpt:gen")  # the crashed writer took generation 2 ...
    store.r.set(f"t:ckpt:{crashed}:0", b"half a checkpoint")  # ... and wrote part of it
    assert read_latest_header(store) is not None
    save_checkpoint(busy_engine(n=60), store)
    keys = sorted(store.r.keys("t:ckpt:*"))
    assert b"t:ckpt:2:0" not in keys and b"t:ckpt:1:0" not in keys
    assert b"t:ckpt:3:0" in keys
    header = read_latest_header(store)
    assert header is not None and header.counts["decisions"] == 60


def test_snapshot_copied_in_pieces_on_several_threads_is_exact(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy under the lock splits big arrays between threads; split at a tiny size (every
    array but the smallest in pieces, some spares too small or of another dtype) it is exact."""
    from screening import engine as engine_mod

    engine = busy_engine()
    whole = engine.snapshot().arrays
    monkeypatch.setattr(engine_mod, "_SPLIT_BYTES", 1000)
    monkeypatch.setattr(engine_mod.os, "cpu_count", lambda: 3)  # uneven pieces
    rng = np.random.default_rng(5)
    parts = []
    for i, (key, arr) in enumerate(whole.items()):
        src, rows, rest = arr.copy(), arr.shape[0], arr.shape[1:]
        spare = [None,
                 np.zeros((max(rows - 1, 0), *rest), src.dtype),  # too small
                 np.zeros((rows, *rest), np.int8 if src.dtype != np.int8 else np.int16),
                 np.zeros((rows + int(rng.integers(0, 50)), *rest), src.dtype)][i % 4]
        parts.append((key, src, spare))
    chunked = engine_mod._copy_all(parts)
    assert chunked.keys() == whole.keys()
    assert any(arr[:1].nbytes < 1000 < arr.nbytes for arr in whole.values())  # really chunked
    for key, arr in whole.items():
        assert chunked[key].dtype == arr.dtype and np.array_equal(chunked[key], arr), key
