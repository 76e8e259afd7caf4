"""Policy loading: the default is valid, every problem names its line, rules compile right."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.layout import TXN_FEATURES
from features.state import FeatureState, empty_events
from screening.errors import ConfigError
from screening.policy import (
    ACTIONS,
    MEMO_IGNORED,
    default_policy_text,
    load_policy,
    memo_key,
    parse_policy,
)

MINI = """
[policy]
version = "1"

[thresholds]
big = 1_000_000

[[rule]]
code = "BIG"
message = "big"
action = "WARN"
score = 40
report = ["suspicious"]
when = ["amount >= $big"]

[[rule]]
code = "HUGE"
message = "huge"
action = "HOLD"
score = 50
when = ["amount > 5_000_000", "is_cash == 0"]
"""


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_default_policy_loads_and_every_rule_has_a_message() -> None:
    """The shipped policy is valid and explains each reason."""
    p = load_policy()
    assert p.version.startswith("default-2026")
    assert len(p.txn_rules) >= 20 and len(p.call_rules) >= 5
    assert all(r.message for r in p.txn_rules + p.call_rules)


def test_policy_version_changes_when_the_file_changes() -> None:
    """The version carries a content hash, so two different files never share a version."""
    a = parse_policy(MINI, "a.toml")
    b = parse_policy(MINI.replace("score = 40", "score = 41"), "b.toml")
    assert a.version != b.version and a.version.startswith("custom-1+")


@pytest.mark.parametrize(("spoil", "needle", "message"), [
    ('"amount >= $big"', '"amount >= $big"', "no threshold"),
    ('"amount >= $big"', '"amount >= $big"', "unknown feature"),
    ('action = "WARN"', 'action = "WARN"', "action must be one of"),
    ("score = 40", "score = 40", "score must be an integer 0..100"),
    ('report = ["suspicious"]', 'report = ["suspicious"]', "report must list"),
    ('"amount > 5_000_000"', '"amount > 5_000_000"', "cannot read condition"),
    ("big = 1_000_000", "big = 1_000_000", "must be an integer"),
])
def test_invalid_policy_names_the_line(spoil: str, needle: str, message: str) -> None:
    """Each kind of mistake is reported with file:line of the offending entry."""
    replacement = {
        "no threshold": '"amount >= $bigg"',
        "unknown feature": '"amout >= $big"',
        "action must be one of": 'action = "BLOCK_ALL"',
        "score must be an integer 0..100": "score = 140",
        "report must list": 'report = ["str"]',
        "cannot read condition": '"amount >> 5"',
        "must be an integer": "big = 10000.5",
    }[message]
    text = MINI.replace(spoil, replacement)
    with pytest.raises(ConfigError) as info:
        parse_policy(text, "bad.toml")
    assert f"bad.toml:{_line_of(text, replacement)}:" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(("spoil", "replacement", "message"), [
    ('action = "WARN"', "action = [1, 2]", "action must be one of"),
    ('action = "WARN"', "action = {}", "action must be one of"),
    ('report = ["suspicious"]', "report = [[1]]", "report must list"),
    ('report = ["suspicious"]', 'report = [{}, "suspicious"]', "report must list"),
    ('report = ["suspicious"]', "marks = [[1]]", "marks must list"),
    ("big = 1_000_000", "big = -1", "must be >= 0 (money in fen)"),
])
def test_values_of_another_toml_type_are_refused_with_the_line(spoil: str, replacement: str,
                                                               message: str) -> None:
    """A list or table where a name belongs is a ConfigError naming the line (found by
    `python -m bench.fuzz`: ReloadPolicy answered INTERNAL, TypeError: unhashable type)."""
    text = MINI.replace(spoil, replacement)
    with pytest.raises(ConfigError) as info:
        parse_policy(text, "bad.toml")
    assert f"bad.toml:{_line_of(text, replacement)}:" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(("first", "message"), [
    ("rule = [1]", "each [[rule]] entry must be a table"),
    ("rule = [[1]]", "each [[rule]] entry must be a table"),
    ("call_rule = [2]", "each [[call_rule]] entry must be a table"),
    ("policy = 1", "[policy] must be a table"),
])
def test_top_level_keys_of_the_wrong_type_are_refused(first: str, message: str) -> None:
    """`rule = [1]` or `policy = 1` is a ConfigError, not an AttributeError or TypeError."""
    text = first + "\n" + ("" if first.startswith("policy") else '[policy]\nversion = "1"\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_policy(text, "bad.toml")


def test_unknown_feature_suggests_the_close_name() -> None:
    """A misspelt feature gets a 'did you mean' hint."""
    text = MINI.replace('"amount >= $big"', '"payer_out_sum_1hour >= 5"')
    with pytest.raises(ConfigError, match="did you mean 'payer_out_sum_1h'"):
        parse_policy(text, "x.toml")


def test_toml_syntax_error_names_the_line() -> None:
    """A broken TOML file names the line from the parser."""
    with pytest.raises(ConfigError, match=r"x\.toml: .*line 3"):
        parse_policy('[policy]\nversion = "1"\n[[rule]\n', "x.toml")


def test_duplicate_codes_and_missing_version_are_rejected() -> None:
    """Two rules with one code, or no version, do not load."""
    with pytest.raises(ConfigError, match="duplicate rule code BIG"):
        parse_policy(MINI.replace('code = "HUGE"', 'code = "BIG"'), "x.toml")
    with pytest.raises(ConfigError, match="needs a version"):
        parse_policy(MINI.replace('version = "1"', ""), "x.toml")


def test_missing_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist says so."""
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "nope.toml")


def _decide(policy_text: str, amount: int, cash: bool = False) -> tuple[int, int, int, int]:
    policy = parse_policy(policy_text, "t.toml")
    state = FeatureState.create(4, 4, 4, 16)
    ev = empty_events(1)
    ev[0, :5] = [1, 1_700_000_000_000, 0, 1, -1]
    ev[0, 6] = amount
    ev[0, 7] = 1 if cash else 0
    _, dec = state.process(ev, policy.params_array, policy.txn_table, policy.call_table)
    a, bits, score, flags, _marks, _high = (int(x) for x in dec[0])
    return a, bits, score, flags


def test_strongest_action_wins_and_scores_combine() -> None:
    """Both rules fire: HOLD beats WARN; risk = 1-(1-.4)(1-.5) = 70; report flags OR together."""
    action, bits, score, flags = _decide(MINI, 6_000_000)
    assert action == ACTIONS["HOLD"] and bits == 0b11 and score == 70 and flags == 2


def test_threshold_boundaries_are_inclusive_or_strict_as_written() -> None:
    """'>=' fires at the threshold; '>' only above it; a failed condition stops the rule."""
    assert _decide(MINI, 999_999)[1] == 0
    assert _decide(MINI, 1_000_000)[1] == 0b01
    assert _decide(MINI, 5_000_000)[1] == 0b01
    assert _decide(MINI, 5_000_001)[1] == 0b11
    assert _decide(MINI, 5_000_001, cash=True)[1] == 0b01


def test_rules_reference_only_known_features() -> None:
    """Every condition of the default policy compiles to the index of its feature name."""
    p = load_policy()
    for rule in p.txn_rules:
        for (name, _, _), idx in zip(rule.conditions, rule.feature_indices, strict=True):
            assert TXN_FEATURES[idx] == name
    assert p.txn_table.ints.dtype == np.int64


def test_memo_keywords_match_case_insensitively() -> None:
    """Investment memos are recognised in Chinese and English, any case."""
    p = load_policy()
    assert p.memo_is_investment("季度理财收益")
    assert p.memo_is_investment("Wealth Management plan")
    assert not p.memo_is_investment("rent for May")
    assert not p.memo_is_investment("")


def test_default_text_is_what_show_prints() -> None:
    """`screening policy show` prints the same text the default policy is parsed from."""
    assert "[[rule]]" in default_policy_text()


def test_every_shipped_policy_and_settings_file_loads() -> None:
    """The extra policies (and their settings files) shipped in screening/policies/ are valid."""
    from importlib import resources

    from screening.config import load_settings

    files = [f for f in resources.files("screening").joinpath("policies").iterdir()
             if f.name.endswith(".toml")]
    assert files
    for f in files:
        text = f.read_text(encoding="utf-8")
        if "[policy]" in text:
            assert parse_policy(text, f.name).txn_rules
        else:
            load_settings(Path(str(f)))


def test_memo_keywords_match_in_one_normal_form_live_and_offline() -> None:
    """Full-width letters, spaces and invisible characters inside a keyword do not hide it, and
    the offline encoder (polars) reads memos as the live path does."""
    p = load_policy(None)
    memos = ["ｓａｆｅ ａｃｃｏｕｎｔ", "安 全\u200b账 户", "UNFREEZ\u00adE fee", "理\u3000财",
             "rent for May"]
    live = [p.memo_flags(m) for m in memos]
    assert [f for _, f in live] == [True, True, True, False, False]
    assert [i for i, _ in live] == [False, False, False, True, False]
    col = (pl.Series(memos).str.normalize("NFKC").str.to_lowercase()
           .str.replace_all(MEMO_IGNORED, ""))
    assert col.to_list() == [memo_key(m) for m in memos]
    assert col.str.contains(p.fraud_memo_regex).to_list() == [f for _, f in live]


def test_risky_contact_on_a_block_call_rule_is_refused() -> None:
    """A blocked call never connects, so marking its callee as having spoken with the caller
    would do nothing: the policy says so rather than load a rule that silently does not work."""
    rule = ('[[call_rule]]\ncode = "CALL_C"\nmessage = "m"\naction = "{action}"\nmarks = ["risky_contact"]\n'
            'when = ["first_contact == 1"]\n')
    head = '[policy]\nversion = "1"\n'
    with pytest.raises(ConfigError, match="risky_contact does nothing on a BLOCK rule"):
        parse_policy(head + rule.format(action="BLOCK"), "bad.toml")
    assert parse_policy(head + rule.format(action="ALLOW"), "ok.toml").call_rules[0].code == "CALL_C"
