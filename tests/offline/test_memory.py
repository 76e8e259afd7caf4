"""The batch commands turn numpy's huge-page advice off (see screening.offline.memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from screening.cli import main
from screening.offline import memory


@pytest.fixture
def advice_restored() -> object:
    switch = memory._numpy_switch()
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = switch(True)
    yield switch
    switch(before)


def test_for_batch_jobs_turns_numpy_advice_off(advice_restored: object) -> None:
    switch = memory._numpy_switch()
    assert switch is not None
    assert memory.for_batch_jobs() is True  # it was on (the fixture set it)
    assert switch(False) is False  # and is off now
    assert memory.for_batch_jobs() is False


def test_synth_command_runs_with_the_advice_off(advice_restored: object, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--events", "2000", "--out", str(tmp_path)]) == 0
    assert "events" in capsys.readouterr().out
    switch = memory._numpy_switch()
    assert switch is not None and switch(False) is False
