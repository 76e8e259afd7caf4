"""The decision policy: rules read from TOML, compiled to arrays for the rule kernel.

Pure: a Policy turns fired-rule bitmasks back into reasons and report flags. Loading checks
everything once, at start, and names the file and line of the first problem.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from features.layout import CALL_FEATURES, TXN_FEATURES, Mark, Param
from features.state import MAX_COND, MAX_RULES, Op, RuleTable
from screening.errors import ConfigError
from screening.tomllines import TomlLines, did_you_mean

__all__ = [
    "ACTIONS",
    "ACTION_NAMES",
    "CALL_ACTIONS",
    "CALL_ACTION_NAMES",
    "MEMO_IGNORED",
    "REPORT_FLAGS",
    "Policy",
    "PolicyParams",
    "Rule",
    "default_policy_text",
    "load_policy",
    "memo_key",
]

# Same numbers as the proto enums Action and CallAction.
ACTIONS: Mapping[str, int] = {"ALLOW": 1, "WARN": 2, "HOLD": 3, "STOP_PAYMENT": 4, "FREEZE": 5}
CALL_ACTIONS: Mapping[str, int] = {"ALLOW": 1, "WARN_CALLEE": 2, "BLOCK": 3}
ACTION_NAMES: Mapping[int, str] = {v: k for k, v in ACTIONS.items()}
CALL_ACTION_NAMES: Mapping[int, str] = {v: k for k, v in CALL_ACTIONS.items()}
REPORT_FLAGS: Mapping[str, int] = {"large_value": 1, "suspicious": 2, "notify_police": 4}

_COND = re.compile(
    r"^\s*([a-z0-9_]+)\s*(>=|<=|==|!=|>|<)\s*(\$[a-z0-9_]+|[-+]?[0-9][0-9_]*(?:\.[0-9_]+)?)\s*$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
_RULE_KEYS = {"code", "message", "action", "score", "report", "when", "marks"}
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Rule:
    code: str
    message: str
    action: int
    score: int
    report_flags: int
    conditions: tuple[tuple[str, str, float], ...]
    feature_indices: tuple[int, ...]
    # what the rule concludes about the parties when it fires (``Mark`` bits): decision memory
    marks: int = 0


@dataclass(frozen=True)
class PolicyParams:
    timezone_offset_hours: int = 8
    # an amount at or above (100 - this) % of its reporting line, and under it, is "just under"
    structuring_band_percent: int = 10
    short_call_seconds: int = 30
    risky_call_lookback_minutes: int = 120
    mark_callee_at: str = "WARN_CALLEE"
    ewma_alpha: float = 0.1
    memo_keywords: tuple[str, ...] = ()
    # words impersonation fraudsters have victims write ("safe account", "unfreezing fee", ...)
    fraud_memo_keywords: tuple[str, ...] = ()
    # decision memory: how long its conclusions hold
    victim_protection_hours: int = 168
    # ... and after a payment of the victim was stopped (strong evidence; the fraudster comes back)
    victim_protection_after_stop_hours: int = 720
    mule_suspicion_days: int = 30
    collector_suspicion_days: int = 90
    risky_number_days: int = 7
    # how far mule suspicion follows the money (1: not at all, 2: one hop), and the distinct
    # payers in 7 d from which a payee is a hub (a shop, a platform) it does not follow to
    mule_max_level: int = 2
    hub_payers: int = 12
    # a new suspected mule's payees of the last this many hours become suspects (level 2)
    mule_follow_hours: int = 24
    # inactivity that makes an account dormant; the learning period of a server that starts empty
    dormant_days: int = 90
    learning_days: int = 3
    # the largest transfer with which a bought or rented account is tested before use (fen)
    test_transfer_fen: int = 1_000

    def array(self) -> np.ndarray:
        p = np.zeros(Param.N, dtype=np.int64)
        p[Param.TZ_MS] = self.timezone_offset_hours * _HOUR_MS
        p[Param.SHORT_CALL_S] = self.short_call_seconds
        p[Param.RISKY_LOOKBACK_MS] = self.risky_call_lookback_minutes * 60_000
        p[Param.MARK_MIN_CALL_ACTION] = CALL_ACTIONS[self.mark_callee_at]
        p[Param.EWMA_ALPHA_PPM] = round(self.ewma_alpha * 1_000_000)
        p[Param.PROTECT_MS] = self.victim_protection_hours * _HOUR_MS
        p[Param.MULE_MS] = self.mule_suspicion_days * _DAY_MS
        p[Param.COLLECTOR_MS] = self.collector_suspicion_days * _DAY_MS
        p[Param.RISKY_NUMBER_MS] = self.risky_number_days * _DAY_MS
        p[Param.LEARN_MS] = self.learning_days * _DAY_MS
        p[Param.DORMANT_MS] = self.dormant_days * _DAY_MS
        p[Param.MULE_MAX_LEVEL] = self.mule_max_level
        p[Param.HUB_PAYERS] = self.hub_payers
        p[Param.FOLLOW_MS] = self.mule_follow_hours * _HOUR_MS
        p[Param.PROTECT_STOP_MS] = self.victim_protection_after_stop_hours * _HOUR_MS
        p[Param.TEST_TRANSFER_MAX] = self.test_transfer_fen
        return p


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    params: PolicyParams
    thresholds: Mapping[str, int]
    txn_rules: tuple[Rule, ...]
    call_rules: tuple[Rule, ...]
    txn_table: RuleTable = field(repr=False)
    call_table: RuleTable = field(repr=False)
    params_array: np.ndarray = field(repr=False)
    memo_pattern: re.Pattern[str] | None = field(repr=False)
    # the same pattern as text, valid for Python re and polars (Rust regex) alike
    memo_regex: str = field(repr=False, default="")
    fraud_memo_pattern: re.Pattern[str] | None = field(repr=False, default=None)
    fraud_memo_regex: str = field(repr=False, default="")
    source: str = field(repr=False, default="")
    # the TOML it was parsed from: a store keeps it so a restart can re-apply journalled
    # decisions under the policy that made them (``Store.save_policy``)
    text: str = field(repr=False, default="")

    def fired(self, bits: int, calls: bool = False) -> list[Rule]:
        """The rules whose bits are set in a decision's reason mask, in policy order."""
        rules = self.call_rules if calls else self.txn_rules
        return [r for i, r in enumerate(rules) if bits >> i & 1]

    def memo_flags(self, memo: str) -> tuple[bool, bool]:
        """Whether ``memo`` holds (an investment keyword, a fraud keyword), compared in the form
        ``memo_key`` gives both."""
        if not memo:
            return False, False
        key = memo_key(memo)
        return (self.memo_pattern is not None and bool(self.memo_pattern.search(key)),
                self.fraud_memo_pattern is not None and bool(self.fraud_memo_pattern.search(key)))

    def memo_is_investment(self, memo: str) -> bool:
        return self.memo_flags(memo)[0]

    def memo_is_fraud(self, memo: str) -> bool:
        return self.memo_flags(memo)[1]


# What memo matching ignores: whitespace and invisible format characters (soft hyphen,
# zero-width space and joiners, direction marks, BOM). One pattern for Python's re and polars.
MEMO_IGNORED = r"[\s\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
_MEMO_IGNORED = re.compile(MEMO_IGNORED)


def memo_key(memo: str) -> str:
    """The form in which memos and memo keywords are compared: NFKC (full-width letters and
    digits, as a Chinese input method types them, become ASCII), lower case, and without
    whitespace or invisible characters, so that "ｓａｆｅ ａｃｃｏｕｎｔ", "安 全 账 户" or a
    zero-width space inside a keyword still match it."""
    return _MEMO_IGNORED.sub("", unicodedata.normalize("NFKC", memo).lower())


def default_policy_text() -> str:
    return resources.files("screening").joinpath("default_policy.toml").read_text(encoding="utf-8")


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file (None or "", as an unset ``[policy] file`` is: the default
    shipped in the package)."""
    if not path:
        return parse_policy(default_policy_text(), "default_policy.toml")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: policy file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, origin: str) -> Policy:
    """Parse policy TOML ``text``; ``origin`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    lines = _Lines(text, origin)

    for key in data:
        if key not in ("policy", "params", "thresholds", "rule", "call_rule"):
            raise lines.error(f"unknown table [{key}]", f"[{key}]")
    meta = data.get("policy", {})
    if not isinstance(meta, dict):
        raise lines.error("[policy] must be a table", "policy")
    name = meta.get("name", "custom")
    version = meta.get("version")
    if not isinstance(version, str) or not version:
        raise lines.error("[policy] needs a version string, e.g. version = \"2026.11.1\"", "[policy]")

    params = _params(data.get("params", {}), lines)
    thresholds = _thresholds(data.get("thresholds", {}), lines)
    txn_rules = _rules(data.get("rule", []), "rule", TXN_FEATURES, ACTIONS, Mark.TXN_NAMES,
                       thresholds, lines)
    call_rules = _rules(data.get("call_rule", []), "call_rule", CALL_FEATURES, CALL_ACTIONS,
                        Mark.CALL_NAMES, thresholds, lines)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    # keywords as memo_key gives them: memos are matched in that form
    regex = ("(?i)" + "|".join(_escape(memo_key(k)) for k in params.memo_keywords)
             if params.memo_keywords else "")
    pattern = re.compile(regex) if regex else None
    fraud_regex = ("(?i)" + "|".join(_escape(memo_key(k)) for k in params.fraud_memo_keywords)
                   if params.fraud_memo_keywords else "")
    return Policy(
        name=str(name),
        version=f"{name}-{version}+{digest}",
        params=params,
        thresholds=thresholds,
        txn_rules=txn_rules,
        call_rules=call_rules,
        txn_table=_table(txn_rules),
        call_table=_table(call_rules),
        params_array=params.array(),
        memo_pattern=pattern,
        memo_regex=regex,
        fraud_memo_pattern=re.compile(fraud_regex) if fraud_regex else None,
        fraud_memo_regex=fraud_regex,
        source=origin,
        text=text,
    )


# ---------------------------------------------------------------- helpers
_REGEX_META = frozenset("\\.^$|?*+()[]{}")


def _escape(word: str) -> str:
    """Escape regex metacharacters only, so Python re and Rust regex read the pattern alike."""
    return "".join("\\" + c if c in _REGEX_META else c for c in word)


class _Lines(TomlLines):
    def __init__(self, text: str, origin: str) -> None:
        super().__init__(text, origin, ConfigError)

    def error(self, message: str, needle: str = "", start: int = 0) -> ConfigError:
        exc = super().error(message, needle, start)
        assert isinstance(exc, ConfigError)
        return exc


def _params(raw: Any, lines: _Lines) -> PolicyParams:
    if not isinstance(raw, dict):
        raise lines.error("[params] must be a table", "params")
    defaults = PolicyParams()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if not hasattr(defaults, key):
            raise lines.error(f"[params] unknown key '{key}'{_hint(key, vars(defaults))}", key)
        want = type(getattr(defaults, key))
        if key in ("memo_keywords", "fraud_memo_keywords"):
            if not isinstance(value, list) or not all(isinstance(v, str) and memo_key(v)
                                                      for v in value):
                raise lines.error(f"{key} must be a list of non-empty strings (not only "
                                  "whitespace or invisible characters)", key)
            value = tuple(value)
        elif want is float and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, want) or isinstance(value, bool):
            raise lines.error(f"[params] {key} must be {want.__name__}, got {value!r}", key)
        values[key] = value
    params = PolicyParams(**values)
    if params.mark_callee_at not in CALL_ACTIONS:
        raise lines.error(f"mark_callee_at must be one of {', '.join(CALL_ACTIONS)}",
                          "mark_callee_at")
    if not 0.0 < params.ewma_alpha <= 1.0:
        raise lines.error("ewma_alpha must be in (0, 1]", "ewma_alpha")
    if not -14 <= params.timezone_offset_hours <= 14:
        raise lines.error("timezone_offset_hours must be within -14..14", "timezone_offset_hours")
    if not 0 <= params.structuring_band_percent < 100:
        raise lines.error("structuring_band_percent must be within 0..99", "structuring_band_percent")
    for key in ("short_call_seconds", "risky_call_lookback_minutes", "victim_protection_hours",
                "victim_protection_after_stop_hours",
                "mule_suspicion_days", "collector_suspicion_days", "risky_number_days",
                "dormant_days", "mule_follow_hours"):
        if not 0 < getattr(params, key) <= 36_500:
            raise lines.error(f"{key} must be within 1..36500", key)
    if not 0 <= params.learning_days <= 3_650:
        raise lines.error("learning_days must be within 0..3650", "learning_days")
    if not 1 <= params.mule_max_level <= 8:
        raise lines.error("mule_max_level must be within 1..8", "mule_max_level")
    if not 0 <= params.test_transfer_fen <= 100_000:
        raise lines.error("test_transfer_fen must be within 0..100000 (1,000 CNY)", "test_transfer_fen")
    if not 0 <= params.hub_payers <= 16:
        # distinct payers are counted exactly up to 16 (the recent-counterparty ring)
        raise lines.error("hub_payers must be within 0..16", "hub_payers")
    return params


def _thresholds(raw: Any, lines: _Lines) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise lines.error("[thresholds] must be a table", "thresholds")
    out: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise lines.error(
                f"threshold '{key}' must be an integer (money in fen, never float), got {value!r}",
                key)
        if value < 0:  # a reporting line or an amount: a negative one would flag everything
            raise lines.error(f"threshold '{key}' must be >= 0 (money in fen), got {value}", key)
        out[key] = value
    return out


def _rules(raw: Any, table: str, features: Sequence[str], actions: Mapping[str, int],
           mark_names: Mapping[str, int], thresholds: Mapping[str, int],
           lines: _Lines) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise lines.error(f"use [[{table}]] for rules", table)
    if len(raw) > MAX_RULES:
        raise lines.error(f"at most {MAX_RULES} [[{table}]] entries, got {len(raw)}")
    index = {n: i for i, n in enumerate(features)}
    header = f"[[{table}]]"
    seen: set[str] = set()
    out = []
    for n, item in enumerate(raw):
        start = max(lines.nth_header(header, n), 0)

        def err(msg: str, needle: str = "", start: int = start) -> ConfigError:
            return lines.error(msg, needle, start)

        if not isinstance(item, dict):
            raise err(f"each {header} entry must be a table of keys (code, message, action, "
                      f"when, ...), got {item!r:.40}", table)
        unknown = set(item) - _RULE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise err(f"unknown key '{key}' in {header}{_hint(key, _RULE_KEYS)}", key)
        code = item.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            raise err("code must be UPPER_SNAKE_CASE, e.g. code = \"PAYEE_WATCHLISTED\"", "code")
        if code in seen:
            raise err(f"duplicate rule code {code}", "code")
        seen.add(code)
        message = item.get("message", "")
        if not isinstance(message, str) or not message:
            raise err(f"rule {code}: message must be a non-empty string", "message")
        action = item.get("action")
        if not isinstance(action, str) or action not in actions:
            raise err(f"rule {code}: action must be one of {', '.join(actions)}, got {action!r}",
                      "action")
        score = item.get("score", 0)
        if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100:
            raise err(f"rule {code}: score must be an integer 0..100", "score")
        flags = 0
        report = item.get("report", [])
        if not isinstance(report, list):
            raise err(f"rule {code}: report must be a list", "report")
        for r in report:
            if not isinstance(r, str) or r not in REPORT_FLAGS:
                raise err(f"rule {code}: report must list {', '.join(REPORT_FLAGS)}; got {r!r}",
                          "report")
            flags |= REPORT_FLAGS[r]
        marks = 0
        raw_marks = item.get("marks", [])
        if not isinstance(raw_marks, list):
            raise err(f"rule {code}: marks must be a list", "marks")
        for m in raw_marks:
            if not isinstance(m, str) or m not in mark_names:
                raise err(f"rule {code}: marks must list {', '.join(mark_names)}; got {m!r}"
                          f"{_hint(str(m), mark_names)}", "marks")
            marks |= mark_names[m]
        if marks & Mark.RISKY_CONTACT and action == "BLOCK":
            raise err(f"rule {code}: marks risky_contact does nothing on a BLOCK rule (a blocked "
                      "call never connects: no one spoke with it)", "marks")
        when = item.get("when")
        if not isinstance(when, list) or not when or not all(isinstance(w, str) for w in when):
            raise err(f"rule {code}: when must be a non-empty list of conditions", "when")
        if len(when) > MAX_COND:
            raise err(f"rule {code}: at most {MAX_COND} conditions", "when")
        conds: list[tuple[str, str, float]] = []
        idxs: list[int] = []
        for cond in when:
            m = _COND.match(cond)
            if not m:
                raise err(f"rule {code}: cannot read condition {cond!r} (want 'feature >= 10')",
                          cond)
            feat, op, value = m.groups()
            if feat not in index:
                raise err(f"rule {code}: unknown feature '{feat}'{_hint(feat, features)}", cond)
            if value.startswith("$"):
                if value[1:] not in thresholds:
                    raise err(f"rule {code}: no threshold '{value[1:]}' in [thresholds]", cond)
                number = float(thresholds[value[1:]])
            else:
                number = float(value.replace("_", ""))
            conds.append((feat, op, number))
            idxs.append(index[feat])
        out.append(Rule(code, message, actions[action], score, flags, tuple(conds), tuple(idxs),
                        marks))
    return tuple(out)


def _table(rules: Sequence[Rule]) -> RuleTable:
    return RuleTable.build([
        ([(i, Op.SYMBOLS[op], v) for i, (_, op, v) in zip(r.feature_indices, r.conditions,
                                                           strict=True)],
         r.action, r.score, r.report_flags, r.marks)
        for r in rules
    ])


def _hint(word: str, choices: Iterator[str] | Sequence[str] | Mapping[str, Any] | set[str]) -> str:
    return did_you_mean(word, choices)
