"""Settings: defaults < file < environment < flags; typos are errors."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from screening.config import load_settings
from screening.errors import ConfigError
from screening.protogen import ROOT


def test_defaults_need_no_file() -> None:
    """With nothing given, the embedded defaults apply."""
    s = load_settings()
    assert s.server.port == 50051 and s.auth.enabled
    assert s.currency("CNY") is not None and s.currency("XXX") is None


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    """Each later source wins over the earlier ones, key by key."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nport = 6000\nhost = '0.0.0.0'\n[state]\ndedup_capacity = 10\n")
    s = load_settings(cfg, {"SCREENING_SERVER__PORT": "7000"}, {"state": {"dedup_capacity": 20}})
    assert (s.server.port, s.server.host, s.state.dedup_capacity) == (7000, "0.0.0.0", 20)


def test_config_path_from_environment(tmp_path: Path) -> None:
    """SCREENING_CONFIG names the file when no path is passed."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[log]\nlevel = 'debug'\n")
    assert load_settings(None, {"SCREENING_CONFIG": str(cfg)}).log.level == "debug"


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[serve]\nport = 1\n", {}, "unknown section [serve]"),
    ("[server]\nprot = 1\n", {}, "unknown key 'prot'"),
    ("[server]\nport = '1'\n", {}, "port: expected int"),
    ("", {"SCREENING_SERVER__PORT": "abc"}, "SCREENING_SERVER__PORT: expected int"),
    ("", {"SCREENING_NOPE__X": "1"}, "unknown section 'nope'"),
    ("[currencies]\nUSD = 7.1\n", {}, "rate must be a positive integer"),
    ("[server\n", {}, "line 1"),
    ("[limits]\nmax_future_skew_seconds = 10000000000\n", {},
     "[limits] max_future_skew_seconds must be in 0..31622400"),
])
def test_bad_settings_are_named(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    """Typos and wrong types fail loudly with the key's name."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(cfg, env)


def test_currency_conversion_is_integer_round_half_up() -> None:
    """Minor units convert to fen with integer arithmetic (no float anywhere)."""
    s = load_settings()
    usd = s.currency("USD")
    jpy = s.currency("JPY")
    assert usd is not None and jpy is not None
    assert usd.to_fen(100) == 710
    assert jpy.to_fen(1) == 5  # 4.7 fen rounds half up to 5
    assert usd.to_fen(10**15) == 71 * 10**14


def test_graph_settings_defaults_are_the_detectors_defaults() -> None:
    """[graph] defaults and GraphParams defaults are the same detector configuration."""
    from graph.live import GraphParams
    from screening.config import GraphSettings

    assert GraphSettings().params() == GraphParams()


def test_graph_settings_are_checked_at_load() -> None:
    """Out-of-range graph settings are refused with the section named."""
    import pytest

    from screening.config import load_settings
    from screening.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[graph\] cycle_min_ratio"):
        load_settings(overrides={"graph": {"cycle_min_ratio": 1.5}})
    with pytest.raises(ConfigError, match=r"\[graph\] expiry_days"):
        load_settings(overrides={"graph": {"expiry_days": 1.0}})
    with pytest.raises(ConfigError, match=r"\[graph\] fee_amount_tolerance"):
        load_settings(overrides={"graph": {"fee_amount_tolerance": 0.5}})
    with pytest.raises(ConfigError, match=r"\[graph\] expiry_days"):  # must cover the fee window
        load_settings(overrides={"graph": {"fee_window_days": 200.0}})


def test_storage_defaults_to_none_and_needs_nothing() -> None:
    """Without settings the state stays in the process: no Redis, no directory."""
    s = load_settings()
    assert s.storage.backend == "none"


def test_storage_from_environment() -> None:
    """SCREENING_STORAGE__* picks the backend and its keys like every other section."""
    s = load_settings(env={"SCREENING_STORAGE__BACKEND": "redis",
                           "SCREENING_STORAGE__REDIS_URL": "redis://10.0.0.5:6380/2",
                           "SCREENING_STORAGE__CHECKPOINT_INTERVAL_S": "30"})
    assert (s.storage.backend, s.storage.redis_url, s.storage.checkpoint_interval_s) == (
        "redis", "redis://10.0.0.5:6380/2", 30.0)


@pytest.mark.parametrize(("env", "message"), [
    ({"SCREENING_STORAGE__BACKEND": "postgres"}, "backend: expected one of none, file, redis"),
    ({"SCREENING_STORAGE__BACKEND": "file"}, "path: the file backend needs a directory"),
    ({"SCREENING_STORAGE__BACKEND": "redis", "SCREENING_STORAGE__REDIS_URL": "10.0.0.5"},
     "redis_url: expected redis://"),
    ({"SCREENING_STORAGE__CHECKPOINT_INTERVAL_S": "-1"}, "checkpoint_interval_s must be >= 0"),
])
def test_bad_storage_settings_are_named(env: dict[str, str], message: str) -> None:
    """A storage typo stops start-up with the key's name."""
    with pytest.raises(ConfigError, match=re.escape(f"[storage] {message}")):
        load_settings(env=env)


def test_the_example_config_lists_every_setting_at_its_default() -> None:
    """docs/screening.example.toml loads, holds every key of every section, and changes nothing:
    a setting added to the code without its example line fails here."""
    from screening.config import _SECTIONS, DEFAULT_CURRENCIES, Settings, load_settings
    path = ROOT / "docs" / "screening.example.toml"
    assert load_settings(path) == Settings()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for section, cls in _SECTIONS.items():
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert data["currencies"] == dict(DEFAULT_CURRENCIES)


def test_config_show_reads_back_to_the_same_settings_and_masks_secrets(tmp_path: Path) -> None:
    """`render_settings` is a config file giving the same values (secrets aside), says where each
    changed value came from, and never prints the masking key or a Redis password."""
    from screening.config import load_settings, render_settings, settings_sources
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 6001\n[graph]\nhub_degree = 40\n[currencies]\nAUD = 4700000\n')
    env = {"SCREENING_SERVER__PORT": "6002", "SCREENING_LOG__MASK_KEY": "s3cret-key",
           "SCREENING_STORAGE__REDIS_URL": "redis://ops:hunter2@redis.internal:6379/0"}
    flags = {"server": {"host": "0.0.0.0"}}
    settings = load_settings(cfg, env=env, overrides=flags)
    text = render_settings(settings, settings_sources(cfg, env, flags))
    assert "s3cret-key" not in text and "hunter2" not in text
    assert 'redis_url = "redis://ops:***@redis.internal:6379/0"' in text
    assert "port = 6002  # env SCREENING_SERVER__PORT" in text
    assert f"hub_degree = 40  # file {cfg}" in text
    assert 'host = "0.0.0.0"  # command-line flag' in text
    assert f"AUD = 4700000  # file {cfg}" in text
    shown = tmp_path / "shown.toml"
    shown.write_text(text.replace('"***"', '"s3cret-key"').replace(":***@", ":hunter2@"))
    assert load_settings(shown) == settings
