"""A batch's decisions counted at once give the counts of one decision at a time."""

from __future__ import annotations

from prometheus_client import generate_latest

from screening.metrics import Metrics


def _counts(m: Metrics) -> list[str]:
    return sorted(line for line in generate_latest(m.registry).decode().splitlines()
                  if line.startswith("screening_") and "_created" not in line)


def test_decided_batch_counts_as_decided_one_by_one() -> None:
    """Actions, reasons, degraded and duplicates: the same series and values either way."""
    decisions = [("ALLOW", [], False, False), ("BLOCK", ["R1", "R2"], True, False),
                 ("HOLD", ["R2"], False, True), ("BLOCK", ["R1"], False, True)]
    one, batch = Metrics("v1"), Metrics("v1")
    for action, why, degraded, dup in decisions:
        one.decided("ScreenBatch", action, why, degraded=degraded, duplicate=dup)
    batch.decided_batch("ScreenBatch", [d[0] for d in decisions], [d[1] for d in decisions],
                        degraded=1, duplicates=2)
    assert _counts(one) == _counts(batch)
    assert any("BLOCK" in line for line in _counts(batch))
