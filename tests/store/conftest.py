"""An engine with some of everything in it: transactions, calls, a watchlist, the graph."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from screening.config import Settings, load_settings
from screening.engine import Engine, EngineSnapshot
from screening.model import NEVER, CallInput, Party, TxnInput, WatchEntry
from screening.policy import load_policy
from screening.store import FileStore, MemoryStore, RedisStore, Store, encode
from tests.conftest import RedisProcess

T0 = 1_700_000_000_000


def small_settings() -> Settings:
    return load_settings(overrides={"state": {"initial_accounts": 64, "initial_phones": 16,
                                              "initial_devices": 16, "initial_pairs": 256},
                                    "graph": {"initial_edges": 256}})


def txn(i: int, payer: str, payee: str, amount: int, *, phone: str = "", device: str = "") -> TxnInput:
    return TxnInput(f"t{i:05d}", T0 + i * 60_000, Party(payer, "B1", 1, None),
                    Party(payee, "B1", 1, None), amount, "CNY", amount, 1, False, False, device,
                    phone, "")


def busy_txn(i: int) -> TxnInput:
    """Transaction ``i`` of ``busy_engine`` (sent again: an idempotent retry)."""
    return txn(i, f"A{i % 90}", f"A{(i * 7 + 3) % 97}", 1_000 + 37 * i,
               phone=f"+86138{i % 25:04d}" if i % 3 else "", device=f"dev{i % 9}" if i % 4 == 0 else "")


def busy_engine(settings: Settings | None = None, n: int = 400) -> Engine:
    """An engine that has screened ``n`` transactions (growing every array past its initial
    size), seen calls and holds watchlist entries of every kind."""
    engine = Engine(settings or small_settings(), load_policy(), clock_ms=lambda: T0 + 10**8)
    engine.screen([busy_txn(i) for i in range(n)])
    engine.report_call(CallInput("call-1", "+8613800000001", "+8613800000002", T0, 0, 1))
    engine.report_call(CallInput("call-1", "+8613800000001", "+8613800000002", T0, 45, 1))
    engine.report_call(CallInput("call-2", "+8613800000003", "+8613800000001", T0 + 1, 0, 2))
    engine.update_watchlist([WatchEntry(1, "A3", "case 17", "police", NEVER),
                             WatchEntry(2, "+8613800000003", "fraud line", "telecom", T0 + 10**9),
                             WatchEntry(3, "dev4", "stolen", "police", NEVER)], [])
    engine.update_watchlist([], [(1, "A3")])
    engine.update_watchlist([WatchEntry(1, "A5", "case 18", "police", NEVER)], [])
    return engine


def full_state(engine: Engine, *, timings: bool = True) -> dict[str, object]:
    """Every array (whole, at capacity) and every list of an engine, for comparison
    (``timings=False``: decisions without their measured latency)."""
    out: dict[str, object] = {f"features.{k}": v for k, v in engine.state.arrays().items()}
    if engine.graph is not None:
        out.update({f"graph.{k}": v for k, v in engine.graph.arrays().items()})
    out["recent"] = engine._recent
    out["recent_pos"] = engine._recent_pos
    snap = engine.snapshot()
    decisions = snap.decisions if timings else [replace(d, latency_us=0) for d in snap.decisions]
    out.update(accounts=snap.accounts, phones=snap.phones, devices=snap.devices,
               decisions=decisions, next_seq=snap.next_seq, calls=snap.calls,
               watch=snap.watch, journal_seq=snap.journal_seq, owners=snap.owners)
    led = snap.ledger
    assert led is not None
    out.update({"ledger.meta": led.meta, "ledger.days": led.days, "ledger.rows": led.rows,
                "ledger.ids": led.ids, "ledger.institutions": led.institutions,
                "ledger.currencies": led.currencies})
    return out


def assert_same_state(a: Engine, b: Engine, *, timings: bool = True) -> None:
    sa, sb = full_state(a, timings=timings), full_state(b, timings=timings)
    assert sa.keys() == sb.keys()
    for key, va in sa.items():
        vb = sb[key]
        if isinstance(va, np.ndarray):
            assert isinstance(vb, np.ndarray)
            assert va.dtype == vb.dtype and va.shape == vb.shape, key
            assert np.array_equal(va, vb), key
        else:
            assert va == vb, key


@pytest.fixture(params=["memory", "file", pytest.param("redis", marks=pytest.mark.redis)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend in turn (Redis with small chunks, so checkpoints span several keys)."""
    store: Store
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "file":
        store = FileStore(tmp_path / "state")
    else:
        redis_server: RedisProcess = request.getfixturevalue("redis_server")
        store = RedisStore(redis_server.url, "t:", chunk_bytes=256 * 1024)
    yield store
    store.close()


#: the checkpoint container's fixed prefix (magic, version, header length, header sha256)
CKPT_PREFIX = struct.Struct("<8sHI32s")


def reassembled(snap: EngineSnapshot, parts: dict[str, tuple[str, bytes]],
                 version: int | None = None, **header_fields: object) -> MemoryStore:
    """``snap``'s checkpoint with the named parts replaced by (kind, raw bytes) and the header
    fields given, every checksum recomputed (a part mapped to kind '' is left out); ``version``
    replaces the format version in the prefix and the header."""
    data = b"".join(bytes(p) for p in encode(snap).pieces)
    magic, _, hlen, _ = CKPT_PREFIX.unpack_from(data)
    header = json.loads(data[CKPT_PREFIX.size:CKPT_PREFIX.size + hlen])
    body = data[CKPT_PREFIX.size + hlen:]
    infos, raws, at = [], [], 0
    for p in header["parts"]:
        kind, raw = parts.get(p["name"], (p["kind"], body[p["offset"]:p["offset"] + p["size"]]))
        if not kind:
            continue
        p.update(kind=kind, offset=at, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        infos.append(p)
        raws.append(raw)
        at += len(raw)
    header["parts"] = infos
    header.update(header_fields)
    if version is not None:
        header["format"] = version
    new_header = json.dumps(header).encode()
    store = MemoryStore()
    store.checkpoint = (CKPT_PREFIX.pack(magic, header["format"], len(new_header),
                                     hashlib.sha256(new_header).digest()) + new_header + b"".join(raws))
    return store
