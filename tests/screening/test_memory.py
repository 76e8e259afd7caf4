"""The entity caps are what the machine's memory holds: derived, or refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from screening import engine as engine_module
from screening.config import load_settings
from screening.engine import Engine
from screening.errors import ConfigError
from screening.memory import MAX_IDS, available_memory, plan_memory
from screening.policy import load_policy

GIB = 2**30


def test_caps_left_at_zero_are_the_largest_that_fit_the_budget() -> None:
    """Derived caps fill the budget (one more of each would not fit); a store, whose
    checkpoints copy the arrays, leaves room for fewer."""
    settings = load_settings()
    plan = plan_memory(settings, 24 * GIB)
    assert plan.derived == ("accounts", "phones", "devices")
    assert plan.max_accounts == plan.max_phones == plan.max_devices > 1_000_000
    assert plan.need_bytes <= plan.budget_bytes == int(24 * GIB * 0.6)
    per_one_more = sum(plan.per_entity_bytes.values())
    assert plan.need_bytes + per_one_more > plan.budget_bytes
    stored = plan_memory(load_settings(overrides={"storage": {"backend": "file", "path": "/x"}}),
                         24 * GIB)
    assert stored.max_accounts < plan.max_accounts * 0.75
    half = plan_memory(load_settings(overrides={"state": {"memory_fraction": 0.3}}), 24 * GIB)
    assert half.max_accounts < plan.max_accounts


def test_explicit_caps_are_kept_and_the_rest_derived_from_what_is_left() -> None:
    settings = load_settings(overrides={"state": {"max_phones": 1_000}})
    plan = plan_memory(settings, 24 * GIB)
    assert plan.max_phones == 1_000 and plan.derived == ("accounts", "devices")
    assert plan.max_accounts > plan_memory(load_settings(), 24 * GIB).max_accounts


@pytest.mark.parametrize("state, graph, match", [
    ({"max_accounts": 20_000_000}, {},
     r"^\[state\] room for only 0 phones, devices in the 14.4 GiB this server may use .* take "
     r"4.6 GiB and max_accounts = 20000000 .* GiB; lower them"),
    ({"max_accounts": 20_000_000, "max_phones": 1, "max_devices": 1}, {},
     r"^\[state\] max_accounts = 20000000, max_phones = 1, max_devices = 1 need .* GiB of state, "
     r"more than the 14.4 GiB this server may use \(\[state\] memory_fraction 0.6 of 24.0 GiB "
     r"available\): lower them, or set them to 0 to derive them$"),
    ({}, {"max_edges": 1_000_000_000},
     r"the fixed costs \(\[graph\] max_edges 1000000000, \[state\] dedup_capacity 1000000\)"),
    ({"max_accounts": MAX_IDS + 1}, {}, r"at most 715827882"),
])
def test_caps_that_cannot_fit_stop_start_up_with_one_line(state: dict[str, int],
                                                         graph: dict[str, int], match: str) -> None:
    settings = load_settings(overrides={"state": state, "graph": graph})
    with pytest.raises(ConfigError, match=match) as info:
        plan_memory(settings, 24 * GIB)
    assert "\n" not in str(info.value)
    if available_memory() < 40 * GIB:  # the project's machines: none of these fits them either
        with pytest.raises(ConfigError):
            Engine(settings, load_policy())


def test_the_engine_runs_with_the_plan_for_this_machines_memory() -> None:
    """Without a plan given, an engine derives one from the memory available (as its module
    reads it: in the tests, the machine's, see tests/conftest.py); its stats show the caps; and
    the bytes per account used are what the arrays take."""
    engine = Engine(load_settings(), load_policy())
    plan = engine.memory
    assert plan.budget_bytes == plan_memory(load_settings(), engine_module.available_memory()
                                            ).budget_bytes
    assert 0 < plan.need_bytes <= plan.budget_bytes
    assert engine.stats()["max_accounts"] == plan.max_accounts
    one_row = engine.state.bytes_per_account() + engine._recent_rows.row_nbytes
    assert plan.per_entity_bytes["accounts"] > one_row


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683784 kB\nMemAvailable:   1000 kB\n")
    assert available_memory(meminfo) == 1_024_000
    assert available_memory(tmp_path / "absent") > 0  # the machine's memory instead


def test_bad_state_settings_are_config_errors() -> None:
    for bad in ({"memory_fraction": 0.0}, {"memory_fraction": 1.5}, {"evict_fraction": 0.0},
                {"evict_fraction": 0.9}, {"max_accounts": -1}, {"initial_phones": 0}):
        with pytest.raises(ConfigError, match=r"^\[state\] "):
            load_settings(overrides={"state": bad})
