"""The shadow recorder and report without a server: counts by the set that decided, a version
re-added in the same run, one flush at a time, and lines the report refuses with their number."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from features import _kernels as k
from screening.model import CallInput
from screening.policy import Policy, default_policy_text, parse_policy
from screening.shadow import ShadowRecorder, report


def _policy(name: str) -> Policy:
    return parse_policy(default_policy_text().replace('version = "', f'version = "{name}-', 1), name)


ACTIVE = _policy("active")
A, B = _policy("a"), _policy("b")


def _quiet(n: int = 1) -> np.ndarray:
    """Decision rows where nothing fired (ALLOW, no reasons)."""
    dec = np.zeros((n, k.N_DEC), dtype=np.int64)
    dec[:, k.D_ACTION] = 1
    return dec


def _call(i: int) -> CallInput:
    return CallInput(f"c{i}", "+8613800000001", "+8613900000002", 1_700_000_000_000 + i, 60, 1)


def _recorder(tmp_path: Path, *shadows: Policy) -> ShadowRecorder:
    rec = ShadowRecorder(tuple(shadows), lambda v: ACTIVE, tmp_path / "shadow.jsonl", flush_s=3600)
    rec.start()
    return rec


def test_a_version_retired_and_re_added_in_one_run_counts_on(tmp_path: Path) -> None:
    """A decides 3 calls, B replaces it (2), A comes back (4): A decided 7 in this run, not 4."""
    rec = _recorder(tmp_path, A)
    for i in range(3):
        rec.call(_call(i), _quiet(), ACTIVE.version, [_quiet()], (A,))
    rec.use((B,))
    for i in range(2):
        rec.call(_call(10 + i), _quiet(), ACTIVE.version, [_quiet()], (B,))
    rec.flush()
    rec.use((A,))
    for i in range(4):
        rec.call(_call(20 + i), _quiet(), ACTIVE.version, [_quiet()], (A,))
    rec.close()
    text = report(tmp_path / "shadow.jsonl")
    section = text.split(f"shadow policy {A.version}")[1].split("shadow policy")[0]
    assert "7 calls" in section
    assert "2 calls" in text.split(f"shadow policy {B.version}")[1]


def test_decisions_count_for_the_set_that_made_them_after_a_reload(tmp_path: Path) -> None:
    """A batch decided by the old set whose recording arrives after a reload swapped the set
    (the engine lets go of its lock between chunks) counts for the old set, and raises nothing."""
    rec = _recorder(tmp_path, A, B)
    rec.use((B,))
    rec.call(_call(1), _quiet(), ACTIVE.version, [_quiet(), _quiet()], (A, B))
    rec.close()
    totals = [json.loads(line) for line in (tmp_path / "shadow.jsonl").read_text().splitlines()]
    assert {t["shadow"]: t["calls"] for t in totals if t["kind"] == "totals"} == {
        A.version: 1, B.version: 1}


def test_flushes_from_two_threads_write_each_total_once(tmp_path: Path) -> None:
    """The writer's thread and a caller flushing at once: one totals line per change."""
    rec = _recorder(tmp_path, A)
    rec.call(_call(1), _quiet(), ACTIVE.version, [_quiet()], (A,))
    threads = [threading.Thread(target=rec.flush) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    assert (tmp_path / "shadow.jsonl").read_text().count('"totals"') == 1


@pytest.mark.parametrize(("change", "says"), [
    ({"amount_fen": None}, "amount_fen is not an integer"),
    ({"shadow_action": "MAYBE"}, "shadow_action 'MAYBE' is no action"),
    ({"shadow_reasons": None}, "shadow_reasons is not a list"),
    ({"shadow": None}, "shadow is not a policy version"),
    ({"active_action": ...}, "no 'active_action'"),
])
def test_a_bad_decision_line_is_refused_naming_its_line(tmp_path: Path, change: dict[str, object],
                                                         says: str) -> None:
    good = {"kind": "decision", "shadow": "cand", "active": "default", "transaction_id": "t1",
            "event_time": "2026-12-01T00:00:00.000Z", "amount_fen": 100, "active_action": "ALLOW",
            "active_flags": 0, "active_reasons": [], "shadow_action": "WARN", "shadow_flags": 0,
            "shadow_reasons": ["X"]}
    bad = {key: value for key, value in {**good, **change}.items() if value is not ...}
    log = tmp_path / "shadow.jsonl"
    log.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=f"{log}:2: not a shadow log line: .*{says}"):
        report(log)
