"""The report ledger in checkpoints: it round-trips, an earlier format-2 checkpoint without it
restores with an empty ledger, and crafted ledger values are refused with CheckpointError."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from screening.engine import Engine, EngineSnapshot
from screening.errors import CheckpointError
from screening.ledger import LedgerSnapshot, day_of
from screening.offline.reports import large_value_rows, thresholds_from_policy
from screening.store import MemoryStore, encode, restore_engine
from screening.store._format import LEDGER_PARTS
from tests.store.conftest import T0, busy_engine, reassembled, small_settings, txn

DAY = 86_400_000


def _engine() -> Engine:
    """busy_engine plus three large transfers on each of two later days."""
    engine = busy_engine(n=200)
    for d in (1, 2):
        engine.screen([dataclasses.replace(txn(1000 * d + i, "P1", "P2", 20_000_000),
                                           event_time_ms=T0 + d * DAY + i) for i in range(3)])
    return engine


def _report(engine: Engine, day: int) -> list[tuple[object, ...]]:
    view, name = engine.ledger_view(day)
    return large_value_rows(view.frame(name), thresholds_from_policy(engine.policy),
                            engine.settings).rows()


def _restore(store: MemoryStore, settings_change: Callable[..., object] | None = None
             ) -> tuple[Engine, list[str]]:
    settings = small_settings()
    if settings_change is not None:
        settings = settings_change(settings)  # type: ignore[assignment]
    engine = Engine(settings, busy_engine(n=1).policy)  # type: ignore[arg-type]
    return engine, restore_engine(engine, store).notes


def _stored(snap: EngineSnapshot) -> MemoryStore:
    store = MemoryStore()
    store.write_checkpoint(encode(snap).pieces)
    return store


def test_ledger_round_trips_and_gives_the_same_report() -> None:
    """Same reports after a restore, and the restored ledger keeps appending to the same day."""
    engine = _engine()
    day = day_of(T0 + DAY, 8)
    before = _report(engine, day)
    assert len(before) == 2  # P1 out, P2 in: 600,000 CNY in three transfers
    restored, notes = _restore(_stored(engine.snapshot()))
    assert not [n for n in notes if "ledger" in n]
    assert restored.ledger.horizon() == engine.ledger.horizon()
    assert _report(restored, day) == before
    more = dataclasses.replace(txn(9_999, "P1", "P2", 100), event_time_ms=T0 + DAY + 50)
    for e in (engine, restored):
        e.screen([more])
    assert _report(restored, day) == _report(engine, day)
    assert restored.ledger.rows == engine.ledger.rows


def test_checkpoint_without_the_ledger_restores_an_empty_ledger_with_a_note() -> None:
    """A format-2 checkpoint of an earlier build (no ledger parts) still restores."""
    store = reassembled(_engine().snapshot(), {name: ("", b"") for name in LEDGER_PARTS})
    engine, notes = _restore(store)
    assert any("no report ledger" in n for n in notes)
    assert engine.ledger.horizon() is None and engine.ledger.rows == 0
    assert len(engine.accounts) > 0


def test_checkpoint_with_part_of_the_ledger_is_refused() -> None:
    store = reassembled(_engine().snapshot(), {"ledger.ids": ("", b"")})
    with pytest.raises(CheckpointError, match=r"part ledger\.ids missing"):
        _restore(store)


def _ledger(snap: EngineSnapshot, **change: object) -> EngineSnapshot:
    assert snap.ledger is not None
    return dataclasses.replace(snap, ledger=dataclasses.replace(snap.ledger, **change))


def _rows(column: int, value: int) -> Callable[[LedgerSnapshot], dict[str, object]]:
    def change(led: LedgerSnapshot) -> dict[str, object]:
        rows = led.rows.copy()
        rows[-1, column] = value
        return {"rows": rows}
    return change


def _meta(index: int, value: int) -> Callable[[LedgerSnapshot], dict[str, object]]:
    def change(led: LedgerSnapshot) -> dict[str, object]:
        meta = led.meta.copy()
        meta[index] = value
        return {"meta": meta}
    return change


def _days(change_days: Callable[[np.ndarray], None]) -> Callable[[LedgerSnapshot], dict[str, object]]:
    def change(led: LedgerSnapshot) -> dict[str, object]:
        days = led.days.copy()
        change_days(days)
        return {"days": days}
    return change


def _set(index: tuple[int, int], value: int) -> Callable[[np.ndarray], None]:
    def put(a: np.ndarray) -> None:
        a[index] = value
    return put


def _swap(a: np.ndarray) -> None:
    a[[0, 1]] = a[[1, 0]]


@pytest.mark.parametrize(("change", "match"), [
    (_rows(2, 10**9), "payer is not a known account"),
    (_rows(3, -1), "payee is not a known account"),
    (_rows(1, T0 + 40 * DAY), "a row's time is not on its day"),
    (_rows(1, 2**62), "event_time_ms outside years"),
    (_rows(4, 0), "amount_fen outside"),
    (_rows(5, 1 << 40), "flags unknown bits"),
    (_rows(6, 99), "currency is not a named currency"),
    (_rows(6, 0), "currency is not a named currency"),
    (_rows(7, 7 << 32), "institutions is not a named institution"),
    (_rows(0, -3), "seq outside"),
    (_meta(0, 99), "time zone 99"),
    (_meta(1, 2**50), "newest day .* outside years"),
    (_meta(4, -1), "late -1"),
    (_days(_set((0, 1), 10**6)), "do not add up"),
    (_days(_swap), "not ascending"),
    (lambda led: {"ids": [*led.ids[:-1], "a;b"]}, "ledger.ids: an id"),
    (lambda led: {"institutions": [1, 2]}, "ledger.names institutions"),
    (lambda led: {"currencies": ["CNY", "CNY"]}, "ledger.names currencies"),
    (lambda led: {"rows": led.rows[:, :3].copy()}, r"expected int64\[n, 8\]"),
    (lambda led: {"rows": led.rows.astype(np.float64)}, "ledger.rows: float64"),
    (lambda led: {"meta": led.meta[:3].copy()}, r"expected int64\[5\]"),
])
def test_crafted_ledger_values_are_refused(change: Callable[[LedgerSnapshot], dict[str, object]],
                                           match: str) -> None:
    """Checksums recomputed, values wrong: refused before the ledger serves a report."""
    snap = _engine().snapshot()
    assert snap.ledger is not None and snap.ledger.days.shape[0] >= 2
    with pytest.raises(CheckpointError, match=match):
        _restore(_stored(_ledger(snap, **change(snap.ledger))))


def test_another_time_zone_starts_an_empty_ledger_with_a_note() -> None:
    """Days counted at UTC+8 do not fit a policy counting at UTC+0: not reused, said so."""
    snap = _engine().snapshot()
    assert snap.ledger is not None
    meta = snap.ledger.meta.copy()
    meta[0] = 0
    shifted = snap.ledger.rows.copy()
    shifted[:, 1] += 8 * 3_600_000  # the same days, had they been counted at UTC+0
    engine, notes = _restore(_stored(_ledger(snap, meta=meta, rows=shifted)))
    assert any("UTC+0" in n and "starts empty" in n for n in notes)
    assert engine.ledger.rows == 0


def test_fewer_max_rows_or_days_drop_the_oldest_days_with_a_note() -> None:
    """Settings smaller than the checkpoint's ledger: the oldest days go, whole, and say so."""
    store = _stored(_engine().snapshot())

    def rows(n: int) -> Callable[..., object]:
        return lambda s: dataclasses.replace(s, ledger=dataclasses.replace(s.ledger, max_rows=n))

    engine, notes = _restore(store, rows(6))
    assert engine.ledger.rows == 6
    first, last = engine.ledger.horizon() or (0, 0)
    assert (first, last) == (day_of(T0 + DAY, 8), day_of(T0 + 2 * DAY, 8))
    assert any("max_rows = 6" in n for n in notes)
    engine, notes = _restore(store, lambda s: dataclasses.replace(
        s, ledger=dataclasses.replace(s.ledger, days=1)))
    assert engine.ledger.rows == 3 and any("[ledger] days" in n for n in notes)
