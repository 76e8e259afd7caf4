"""Column mappings: other people's CSV/Parquet files read as the event schema, with no code.

A mapping is a small TOML file; ``screening/mappings/`` ships ``amlsim``, ``synth`` (the files
``screening synth`` writes) and ``bank_export`` (a generic bank/operator export, documented in the
file). Every table is optional::

    [source]
    format = "csv"            # csv | parquet (default: from the file suffix)
    time_zone = "UTC"         # zone of ISO times written without an offset, and the zone whose
                              # calendar day an opening *time* becomes an opening *date* in

    [columns]                 # schema column = source column, or a table:
    event_id = "txn_ref"
    kind = "record_type"      # one file holding both kinds: its values mapped in [values.kind]
    memo = { column = "remark", optional = true }     # the file may lack the column: null
    currency = { column = "ccy", default = "CNY" }    # null (empty) cells get the default

    [values.channel]          # value map: source value = schema value, for any mapped column;
    mobile_app = "mobile_app" # a value missing from the map is a problem (never passed through)
    third_party = "third_party_payment"

    [amount]
    column = "amount"
    unit = "minor"            # "minor": integer minor units of the row's currency;
                              # "major": decimal text like 945.46, exactly (never via float)
    decimals = 2              # major: minor units per major unit = 10 ** decimals ...
    decimals_by_currency = { JPY = 0 }   # ... per currency where it differs

    [times.event_time]        # also payer_opened_date, payee_opened_date ([time] = event_time)
    column = "ts"
    kind = "epoch"            # epoch (integer; unit s | ms | us) | iso (text with or without
    unit = "ms"               # an offset; optional strftime `format`) | offset (count of `unit`
                              # second | minute | hour | day after `origin`)

    [terminals]               # derived cash-terminal parties, see below
    column = "terminal_id"
    pattern = '^(?:ATM|CTR)-(?:(?P<bank>[A-Z]{2,10})-)?[0-9]+(?:-[0-9]+)*$'

    [constants]               # schema column = value on every row
    [labels]                  # optional label columns (scenario, scenario_id, positive)

    [registry]                # the accounts registry file beside the events (REGISTRY_SCHEMA)
    [registry.columns] / [registry.values.X] / [registry.times.opened_date] / [registry.constants]

**Cash terminals.** A transaction whose payer (or payee) account is empty while the other side is
not, and whose ``[terminals] column`` holds a value matching ``pattern``, is a cash leg: that side
becomes the terminal, as the live API and ``screening synth`` spell it: account = the terminal id
as written, party type ``cash_terminal``, no opening date, and ``cash`` true. Its institution is
the pattern's ``bank`` group when the id carries one (``CTR-ICBC-0372-007`` -> ``ICBC``), else the
other side's institution (a customer uses their own bank's ATM: ``ATM-0372-0041``). Where the
device column is the terminal column, the row's ``device_id`` is left empty: a terminal is the
party, not the customer's device. Values the row's side gives for a derived party (type, bank,
opening time) are not used.

**One file, both kinds.** ``kind`` mapped from a column (its values in ``[values.kind]``); a
source column mapped to a transaction column and to a call column (``from`` as payer account and
caller number) gives each kind its own.

``check_mapping`` (``screening mapping check``) reports per column what maps and what does not;
``apply_mapping`` stops at the first such problem, naming the column, the values and their counts.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from screening.config import DEFAULT_CURRENCIES, Settings
from screening.errors import InputFileError
from screening.offline.events import (
    CALL_REQUIRED,
    TXN_REQUIRED,
    conform,
    read_table,
    validate_events,
    validate_registry,
)
from screening.offline.schema import (
    CALL_OUTCOMES,
    CHANNELS,
    EVENT_SCHEMA,
    KIND_CALL,
    KIND_TXN,
    LABEL_COLUMNS,
    NUMBER_CLASSES,
    PARTY_TYPES,
    REGISTRY_PARTY_TYPES,
    REGISTRY_SCHEMA,
)
from screening.tomllines import TomlLines, did_you_mean

__all__ = ["BUILTIN_MAPPINGS", "ColumnCheck", "ColumnMapping", "MappingReport", "apply_mapping",
           "builtin_mapping", "check_mapping", "format_report", "load_mapping", "map_frame",
           "parse_mapping", "read_mapped_registry"]

BUILTIN_MAPPINGS = ("amlsim", "bank_export", "synth")
_OFFSET_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_EPOCH_UNITS = ("s", "ms", "us")
_TIME_KINDS = ("epoch", "iso", "offset", "timestamp")  # timestamp: the older name of iso
_SECTIONS = {"source", "columns", "values", "amount", "time", "times", "terminals", "constants",
             "labels", "registry"}
_REGISTRY_SECTIONS = {"format", "columns", "values", "times", "constants"}
# schema values of the enum-like columns (a value map must name one of them)
_ENUMS: dict[str, tuple[str, ...]] = {
    "kind": (KIND_TXN, KIND_CALL), "channel": CHANNELS, "payer_party_type": PARTY_TYPES,
    "payee_party_type": PARTY_TYPES, "caller_class": NUMBER_CLASSES, "call_outcome": CALL_OUTCOMES,
}
_REGISTRY_ENUMS: dict[str, tuple[str, ...]] = {"party_type": REGISTRY_PARTY_TYPES}
_TXN_ONLY = ("payer_account", "payer_institution", "payer_party_type", "payer_opened_date",
             "payee_account", "payee_institution", "payee_party_type", "payee_opened_date",
             "amount_minor", "currency", "channel", "cash", "cross_border", "device_id",
             "payer_phone", "payee_phone", "memo")
_CALL_ONLY = ("caller_number", "callee_number", "duration_seconds", "call_outcome", "caller_class")
_SIDES = ("payer", "payee")


# ------------------------------------------------------------------------------ the language
@dataclass(frozen=True)
class _Column:
    target: str
    source: str
    optional: bool = False
    default: Any = None
    values: Mapping[str, Any] | None = None  # value map, source text -> schema value


@dataclass(frozen=True)
class _Time:
    target: str
    source: str
    kind: str  # epoch | iso | offset
    unit: str = "ms"
    origin_ms: int = 0
    format: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class _Table:
    """How one file's columns become one schema's: events or the account registry."""

    columns: tuple[_Column, ...] = ()
    times: tuple[_Time, ...] = ()
    constants: Mapping[str, Any] = field(default_factory=dict)
    format: str | None = None

    def sources(self) -> dict[str, str]:
        """schema column -> source column (as the report names them)."""
        out = {c.target: c.source for c in self.columns}
        out.update({t.target: t.source for t in self.times})
        return out


@dataclass(frozen=True)
class _Amount:
    source: str
    unit: str  # minor | major
    decimals: int = 2
    by_currency: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Terminals:
    source: str
    pattern: str
    bank_group: int  # index of the ``bank`` group, 0 when the pattern has none


@dataclass(frozen=True)
class ColumnMapping:
    """A validated mapping file (see the module docstring for the language)."""

    origin: str
    time_zone: str = "UTC"
    events: _Table = field(default_factory=_Table)
    amount: _Amount | None = None
    terminals: _Terminals | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    positive: str | None = None
    registry: _Table | None = None


def builtin_mapping(name: str) -> ColumnMapping:
    text = resources.files("screening").joinpath("mappings", f"{name}.toml").read_text("utf-8")
    return parse_mapping(text, f"screening/mappings/{name}.toml")


def load_mapping(path_or_name: str) -> ColumnMapping:
    """A mapping from a TOML file, or a built-in one by name (``amlsim``, ``synth``,
    ``bank_export``)."""
    if path_or_name in BUILTIN_MAPPINGS:
        return builtin_mapping(path_or_name)
    path = Path(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{path}: mapping file not found (built-in: "
                             f"{', '.join(BUILTIN_MAPPINGS)})") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_mapping(text, str(path))


def parse_mapping(text: str, origin: str) -> ColumnMapping:
    """Parse and validate mapping TOML; an error names ``origin:line`` and what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(f"{origin}: {exc}") from None
    return _Parser(data, TomlLines(text, origin, InputFileError)).mapping()


class _Parser:
    def __init__(self, data: dict[str, Any], lines: TomlLines) -> None:
        self.data = data
        self.lines = lines

    def fail(self, table: str, key: str, message: str) -> InputFileError:
        exc = self.lines.error_at(self.lines.key_line(table, key), message)
        assert isinstance(exc, InputFileError)
        return exc

    def table(self, name: str, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(name, "", f"[{name}] must be a table")
        return raw

    def mapping(self) -> ColumnMapping:
        for key in self.data:
            if key not in _SECTIONS:
                exc = self.lines.error(f"unknown section [{key}]{did_you_mean(key, _SECTIONS)}",
                                       f"[{key}")
                raise exc
        source = self.table("source", self.data.get("source"))
        for key in source:
            if key not in ("format", "time_zone"):
                raise self.fail("source", key, f"[source] unknown key '{key}'"
                                f"{did_you_mean(key, ('format', 'time_zone'))}")
        fmt = self.format("source", source.get("format"))
        zone = source.get("time_zone", "UTC")
        if not isinstance(zone, str) or not _known_zone(zone):
            raise self.fail("source", "time_zone", f"time_zone {zone!r} is not a time zone "
                            "(an IANA name such as 'Asia/Shanghai', or 'UTC')")
        event_cols = {**EVENT_SCHEMA, **LABEL_COLUMNS}
        times = self.table("times", self.data.get("times"))
        if "time" in self.data:
            if "event_time" in times:
                raise self.fail("time", "", "[time] and [times.event_time] both given: keep one")
            times = {**times, "event_time": self.table("time", self.data["time"])}
        events = self.table_mapping("", event_cols, _ENUMS, fmt, times)
        amount = self.amount(self.table("amount", self.data.get("amount")))
        terminals = self.terminals(self.table("terminals", self.data.get("terminals")))
        labels = dict(self.table("labels", self.data.get("labels")))
        positive = labels.pop("positive", None)
        for key, value in labels.items():
            if key not in LABEL_COLUMNS:
                raise self.fail("labels", key, f"[labels] {key}: not a label column "
                                f"({', '.join([*LABEL_COLUMNS, 'positive'])})")
            if not isinstance(value, str):
                raise self.fail("labels", key, f"[labels] {key} must name a source column")
        if positive is not None and not isinstance(positive, str):
            raise self.fail("labels", "positive", "[labels] positive must name a source column")
        registry = None
        if "registry" in self.data:
            reg = self.table("registry", self.data["registry"])
            for key in reg:
                if key not in _REGISTRY_SECTIONS:
                    raise self.fail("registry", key, f"[registry] unknown key '{key}'"
                                    f"{did_you_mean(key, _REGISTRY_SECTIONS)}")
            registry = self.table_mapping("registry.", REGISTRY_SCHEMA, _REGISTRY_ENUMS,
                                          self.format("registry", reg.get("format")),
                                          self.table("registry.times", reg.get("times")), reg)
        if amount is not None and "amount_minor" in events.sources():
            raise self.fail("amount", "column", "amount_minor is mapped in [columns] and "
                            "[amount]: keep one")
        return ColumnMapping(origin=self.lines.origin, time_zone=zone, events=events,
                             amount=amount, terminals=terminals, labels=labels,
                             positive=positive, registry=registry)

    def format(self, table: str, value: Any) -> str | None:
        if value is not None and value not in ("csv", "parquet"):
            raise self.fail(table, "format", f"[{table}] format must be 'csv' or 'parquet'")
        return str(value) if value is not None else None

    def table_mapping(self, prefix: str, schema: Mapping[str, pl.DataType],
                      enums: Mapping[str, tuple[str, ...]], fmt: str | None,
                      times: dict[str, Any], raw: Mapping[str, Any] | None = None) -> _Table:
        raw = self.data if raw is None else raw
        columns_raw = self.table(f"{prefix}columns", raw.get("columns"))
        values_raw = self.table(f"{prefix}values", raw.get("values"))
        constants = dict(self.table(f"{prefix}constants", raw.get("constants")))
        time_targets = [n for n, t in schema.items() if isinstance(t, pl.Datetime | pl.Date)]
        columns = []
        for target, spec in columns_raw.items():
            where = f"{prefix}columns"
            if target not in schema:
                raise self.fail(where, target, f"[{where}] {target}: not a column of the "
                                f"{'registry' if prefix else 'event'} schema"
                                f"{did_you_mean(target, schema)}")
            if isinstance(spec, str):
                spec = {"column": spec}
            if not isinstance(spec, dict) or not isinstance(spec.get("column"), str):
                raise self.fail(where, target, f"[{where}] {target} must be a source column "
                                "name or a table {{ column = \"...\", optional = true, "
                                "default = ... }}")
            for key in spec:
                if key not in ("column", "optional", "default"):
                    raise self.fail(where, target, f"[{where}] {target}: unknown key '{key}'")
            default = spec.get("default")
            if default is not None:
                self.check_value(where, target, target, default, schema, enums)
            columns.append(_Column(target, spec["column"], bool(spec.get("optional", False)),
                                   default))
        by_target = {c.target: c for c in columns}
        for target, vmap in values_raw.items():
            where = f"{prefix}values.{target}"
            if target not in by_target:
                raise self.fail(where, "", f"[{where}]: {target} is not mapped from a column in "
                                f"[{prefix}columns]")
            dtype = schema[target]
            if dtype not in (pl.String(), pl.Boolean()):
                raise self.fail(where, "", f"[{where}]: value maps are for text and true/false "
                                f"columns; {target} is {dtype}")
            vmap = self.table(where, vmap)
            for key, value in vmap.items():
                self.check_value(where, key, target, value, schema, enums)
            by_target[target] = _Column(target, by_target[target].source,
                                        by_target[target].optional, by_target[target].default,
                                        dict(vmap))
        for target, value in constants.items():
            where = f"{prefix}constants"
            if target not in schema or target in by_target:
                raise self.fail(where, target, f"[{where}] {target}: "
                                + ("also mapped in [columns]" if target in by_target
                                   else f"not a column of the schema{did_you_mean(target, schema)}"))
            self.check_value(where, target, target, value, schema, enums)
        parsed_times = []
        for target, spec in times.items():
            legacy = not prefix and target == "event_time" and "time" in self.data
            where = "time" if legacy else f"{prefix}times.{target}"
            if target not in time_targets:
                raise self.fail(where, "", f"[{where}]: {target} is not a time column (time "
                                f"columns: {', '.join(time_targets)})")
            if target in by_target:
                raise self.fail(where, "", f"[{where}]: {target} is also mapped in [columns]")
            parsed_times.append(self.time(where, target, self.table(where, spec)))
        return _Table(tuple(by_target.values()), tuple(parsed_times), constants, fmt)

    def check_value(self, where: str, key: str, target: str, value: Any,
                    schema: Mapping[str, pl.DataType], enums: Mapping[str, tuple[str, ...]]) -> None:
        dtype = schema[target]
        if target in enums:
            if value not in enums[target]:
                raise self.fail(where, key, f"[{where}] {key}: {value!r} is not a {target} value "
                                f"(one of {', '.join(enums[target])})"
                                f"{did_you_mean(str(value), enums[target])}")
        elif dtype == pl.Boolean():
            if not isinstance(value, bool):
                raise self.fail(where, key, f"[{where}] {key}: {target} takes true or false")
        elif dtype == pl.Int64():
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.fail(where, key, f"[{where}] {key}: {target} takes an integer")
        elif dtype == pl.String():
            if not isinstance(value, str):
                raise self.fail(where, key, f"[{where}] {key}: {target} takes text")
            if target == "currency" and not re.fullmatch(r"[A-Z]{3}", value):
                raise self.fail(where, key, f"[{where}] {key}: {value!r} is not an ISO 4217 "
                                "currency code")
        elif dtype == pl.Date():
            if not isinstance(value, dt.date):
                raise self.fail(where, key, f"[{where}] {key}: {target} takes a date "
                                "(1999-04-01, unquoted)")
        else:
            raise self.fail(where, key, f"[{where}] {key}: {target} cannot be a constant")

    def time(self, where: str, target: str, spec: dict[str, Any]) -> _Time:
        for key in spec:
            if key not in ("column", "kind", "unit", "origin", "format", "optional"):
                raise self.fail(where, key, f"[{where}] unknown key '{key}'"
                                f"{did_you_mean(key, ('column', 'kind', 'unit', 'origin', 'format'))}")
        source = spec.get("column")
        if not isinstance(source, str):
            raise self.fail(where, "column", f"[{where}] column must name a source column")
        kind = spec.get("kind", "iso")
        if kind not in _TIME_KINDS:
            raise self.fail(where, "kind", f"[{where}] kind must be epoch, iso or offset, got "
                            f"{kind!r}")
        kind = "iso" if kind == "timestamp" else kind
        unit = spec.get("unit", "ms" if kind == "epoch" else "")
        origin_ms = 0
        if kind == "epoch" and unit not in _EPOCH_UNITS:
            raise self.fail(where, "unit", f"[{where}] unit of epoch times must be one of "
                            f"{', '.join(_EPOCH_UNITS)}, got {unit!r}")
        if kind == "offset":
            if unit not in _OFFSET_MS:
                raise self.fail(where, "unit", f"[{where}] unit must be one of "
                                f"{', '.join(_OFFSET_MS)}")
            try:
                origin = dt.datetime.fromisoformat(str(spec.get("origin", "")))
            except ValueError:
                raise self.fail(where, "origin", f"[{where}] origin must be an ISO 8601 "
                                "time") from None
            origin = origin if origin.tzinfo else origin.replace(tzinfo=dt.UTC)
            origin_ms = int(origin.timestamp() * 1000)
        fmt = spec.get("format")
        if fmt is not None and (kind != "iso" or not isinstance(fmt, str)):
            raise self.fail(where, "format", f"[{where}] format is for kind = \"iso\" (a "
                            "strftime pattern like '%Y%m%d %H%M%S')")
        return _Time(target, source, kind, str(unit), origin_ms, fmt, bool(spec.get("optional")))

    def amount(self, spec: dict[str, Any]) -> _Amount | None:
        if not spec:
            return None
        for key in spec:
            if key not in ("column", "unit", "decimals", "decimals_by_currency"):
                raise self.fail("amount", key, f"[amount] unknown key '{key}'")
        if not isinstance(spec.get("column"), str):
            raise self.fail("amount", "column", "[amount] column must name a source column")
        unit = spec.get("unit", "minor")
        if unit not in ("minor", "major"):
            raise self.fail("amount", "unit", "[amount] unit must be 'minor' or 'major'")
        decimals = spec.get("decimals", 2)
        by_currency = spec.get("decimals_by_currency", {})
        for key, value in {"decimals": decimals, **by_currency}.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 6:
                raise self.fail("amount", key, f"[amount] {key}: decimals must be an integer "
                                "0..6")
        if (by_currency or "decimals" in spec) and unit == "minor":
            raise self.fail("amount", "decimals", "[amount] decimals are for unit = \"major\" "
                            "(minor units are already integers of the row's currency)")
        return _Amount(spec["column"], unit, decimals, dict(by_currency))

    def terminals(self, spec: dict[str, Any]) -> _Terminals | None:
        if not spec:
            return None
        for key in spec:
            if key not in ("column", "pattern"):
                raise self.fail("terminals", key, f"[terminals] unknown key '{key}'")
        if not isinstance(spec.get("column"), str):
            raise self.fail("terminals", "column", "[terminals] column must name a source column")
        pattern = spec.get("pattern", r"^(?:ATM|CTR)-(?:(?P<bank>[A-Z]{2,10})-)?[0-9]+(?:-[0-9]+)*$")
        try:
            compiled = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise self.fail("terminals", "pattern", f"[terminals] pattern: {exc}") from None
        return _Terminals(spec["column"], pattern, compiled.groupindex.get("bank", 0))


def _known_zone(zone: str) -> bool:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


# ------------------------------------------------------------------------------ what maps
@dataclass(frozen=True)
class ColumnCheck:
    """One schema column after mapping: where it came from and what did not fit."""

    column: str
    source: str  # the source column(s), or how the value is made
    applies: str  # "all", "txn" or "call": the rows that carry it
    rows: int  # rows that carry it
    mapped: int  # of those, with a value
    nulls: int  # of those, without one
    problems: tuple[str, ...] = ()  # "3 unmapped values: 'wechat' x2, 'x' x1", "1 bad time: ..."
    notes: tuple[str, ...] = ()  # not problems: "4 cash-terminal payers derived from terminal_id"


@dataclass(frozen=True)
class MappingReport:
    origin: str
    mapping: str
    rows: int
    txns: int
    calls: int
    columns: tuple[ColumnCheck, ...]
    unused: tuple[str, ...]  # source columns the mapping does not read
    after: tuple[str, ...] = ()  # problems the mapped rows have (the replay's own checks)

    @property
    def ok(self) -> bool:
        return not self.after and not any(c.problems for c in self.columns)


def _read(path: Path, fmt: str | None) -> pl.DataFrame:
    if fmt is None:
        return read_table(path, hint=" (or set [source] format)")
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    try:
        return pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputFileError(f"{path}: cannot read: {exc}") from None


def _text(src: str) -> pl.Expr:
    return pl.col(src).cast(pl.String).str.strip_chars()


def _present(src: str) -> pl.Expr:
    """A cell with something in it (CSV reads an empty cell as null already)."""
    return pl.col(src).is_not_null() & (pl.col(src).cast(pl.String) != "")


def _blank(expr: pl.Expr) -> pl.Expr:
    return expr.is_null() | (expr.cast(pl.String) == "")


def _examples(frame: pl.DataFrame, bad: pl.Expr, src: str, limit: int = 5) -> str:
    """'wechat' x1523, 'alipay' x12 (the most common first)."""
    counts = (frame.filter(bad.fill_null(False)).select(pl.col(src).cast(pl.String).alias("v"))
              .group_by("v").len().sort(["len", "v"], descending=[True, False]))
    shown = ", ".join(f"{v!r} x{n:,}" for v, n in counts.head(limit).iter_rows())
    more = f", ... ({counts.height - limit:,} more)" if counts.height > limit else ""
    return shown + more


class _Mapper:
    """Builds the schema columns of one file and counts what does not map (one home for both
    ``apply_mapping``, which stops at the first problem, and ``check_mapping``, which lists them)."""

    def __init__(self, raw: pl.DataFrame, mapping: ColumnMapping, table: _Table, origin: str,
                 schema: Mapping[str, pl.DataType], enums: Mapping[str, tuple[str, ...]]) -> None:
        self.raw = raw
        self.mapping = mapping
        self.table = table
        self.origin = origin
        self.schema = schema
        self.enums = enums
        self.exprs: dict[str, pl.Expr] = {}  # schema column -> value
        self._done: set[str] = set()
        self.bad: dict[str, list[tuple[str, pl.Expr, str]]] = {}  # column -> (problem, mask, src)
        self.sources: dict[str, str] = {}
        self.defaults: dict[str, pl.Expr] = {}  # filled in after the problems are known

    @staticmethod
    def staged(target: str) -> pl.Expr:
        return pl.col(f"__m_{target}")

    def stage(self) -> None:
        """Compute every mapped column once (problem masks and later steps read the result:
        an expression used twice in one select is computed twice)."""
        todo = {n: e for n, e in self.exprs.items() if n not in self._done}
        self.raw = self.raw.with_columns(e.alias(f"__m_{n}") for n, e in todo.items())
        for n in todo:
            self.exprs[n] = self.staged(n)
            self._done.add(n)

    def fill_defaults(self) -> None:
        for n, value in self.defaults.items():
            self.exprs[n] = self.exprs[n].fill_null(value)

    def need(self, src: str, target: str, optional: bool = False) -> bool:
        if src in self.raw.columns:
            return True
        if optional:
            return False
        raise InputFileError(f"{self.origin}: mapping {self.mapping.origin} wants source column "
                             f"{src!r} for {target}, not in the file (has: "
                             f"{', '.join(self.raw.columns[:24])})")

    def columns(self) -> None:
        for col in self.table.columns:
            self.sources[col.target] = col.source
            if not self.need(col.source, col.target, col.optional):
                self.sources[col.target] = f"{col.source} (absent)"
                self.exprs[col.target] = pl.lit(col.default, dtype=self.schema[col.target])
                continue
            dtype = self.schema[col.target]
            raw_dtype = self.raw.schema[col.source]
            expr = pl.col(col.source)
            if dtype in (pl.String(), pl.Boolean()) and raw_dtype != pl.String():
                expr = expr.cast(pl.String)
            present = _present(col.source)
            mapped = self.staged(col.target)  # the value as mapped, before defaults
            if col.values is not None:
                # keys match with surrounding blanks trimmed (fixed-width exports pad values)
                expr = expr.str.strip_chars().replace_strict(col.values, default=None,
                                                             return_dtype=dtype)
                self.problem(col.target, "unmapped value", present & mapped.is_null(), col.source)
            elif dtype == pl.Boolean():
                low = expr.str.strip_chars().str.to_lowercase()
                self.problem(col.target, "not true/false (add [values." + col.target + "])",
                             present & mapped.is_null(), col.source)
                expr = (pl.when(low.is_in(["true", "1"])).then(True)
                        .when(low.is_in(["false", "0"])).then(False).otherwise(None))
            elif col.target in self.enums:
                allowed = self.enums[col.target]
                self.problem(col.target, f"value not one of {', '.join(allowed)} (add "
                             f"[values.{col.target}])", present & ~mapped.is_in(list(allowed)),
                             col.source)
            if dtype == pl.String() and raw_dtype == pl.String() and col.values is None:
                expr = pl.when(expr == "").then(None).otherwise(expr)
            if col.default is not None:
                self.defaults[col.target] = pl.lit(col.default, dtype=dtype)
            self.exprs[col.target] = expr

    def problem(self, target: str, text: str, mask: pl.Expr, src: str) -> None:
        self.bad.setdefault(target, []).append((text, mask, src))

    def times(self) -> None:
        zone = self.mapping.time_zone
        for t in self.table.times:
            self.sources[t.target] = f"{t.source} ({t.kind}{' ' + t.unit if t.unit else ''})"
            if not self.need(t.source, t.target, t.optional):
                self.sources[t.target] = f"{t.source} (absent)"
                self.exprs[t.target] = pl.lit(None, dtype=self.schema[t.target])
                continue
            col = pl.col(t.source)
            text = _text(t.source)
            present = _present(t.source)
            if t.kind in ("epoch", "offset"):
                number = text.cast(pl.Int64, strict=False)
                self.problem(t.target, "bad time (not an integer)",
                             present & self.staged(t.target).is_null(), t.source)
                if t.kind == "epoch":
                    ms = {"s": number * 1000, "ms": number, "us": number // 1000}[t.unit]
                else:
                    ms = number * _OFFSET_MS[t.unit] + t.origin_ms
                when = pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC")
            elif self.raw.schema[t.source] in (pl.Datetime, pl.Date) or isinstance(
                    self.raw.schema[t.source], pl.Datetime):
                when = col.cast(pl.Datetime("ms", getattr(self.raw.schema[t.source],
                                                          "time_zone", None)))
                if getattr(self.raw.schema[t.source], "time_zone", None) is None:
                    when = when.dt.replace_time_zone(zone, ambiguous="null", non_existent="null")
            else:
                when = self._iso(t, zone)
                self.problem(t.target, "bad time (not ISO 8601" + (f" '{t.format}'" if t.format
                             else "") + ")", present & self.staged(t.target).is_null(), t.source)
            when = when.dt.convert_time_zone("UTC")
            if self.schema[t.target] == pl.Date():
                # an opening time falls on a calendar day of the bank's zone
                self.exprs[t.target] = when.dt.convert_time_zone(zone).dt.date()
            else:
                self.exprs[t.target] = when

    def _iso(self, t: _Time, zone: str) -> pl.Expr:
        """Text with an offset is an instant; text without one is a wall time of ``zone``. The
        column is parsed here, eagerly: polars infers a format from the values only then (one
        format per column; give ``format`` for anything unusual)."""
        text = self.raw.get_column(t.source).cast(pl.String).str.strip_chars()
        parsed = (text.str.to_datetime(t.format, time_unit="ms", strict=False) if t.format
                  else text.str.to_datetime(time_unit="ms", strict=False))
        dtype = parsed.dtype
        if not (isinstance(dtype, pl.Datetime) and dtype.time_zone is not None):
            parsed = parsed.dt.replace_time_zone(zone, ambiguous="null", non_existent="null")
        name = f"__time_{t.target}"
        self.raw = self.raw.with_columns(parsed.dt.convert_time_zone("UTC").alias(name))
        return pl.col(name)

    def constants(self) -> None:
        for target, value in self.table.constants.items():
            self.sources[target] = f"= {value!r}"
            self.exprs[target] = pl.lit(value, dtype=self.schema[target])


def _amount(m: _Mapper, amount: _Amount, currency: pl.Expr | None) -> None:
    src = amount.source
    m.need(src, "amount_minor")
    text = _text(src)
    present = _present(src)
    if amount.unit == "minor":
        m.sources["amount_minor"] = f"{src} (minor units)"
        value = text.cast(pl.Int64, strict=False)
        m.problem("amount_minor", "not an integer amount of minor units",
                  present & m.staged("amount_minor").is_null(), src)
        m.exprs["amount_minor"] = value
        return
    m.sources["amount_minor"] = f"{src} (major units)"
    ok = text.str.contains(r"^-?[0-9]+(\.[0-9]*)?$")
    whole = text.str.extract(r"^-?([0-9]+)", 1).cast(pl.Int64, strict=False)
    frac = text.str.extract(r"\.([0-9]*)$", 1).fill_null("")
    decimals: pl.Expr = pl.lit(amount.decimals, dtype=pl.Int64)
    if amount.by_currency and currency is not None:
        decimals = currency.replace_strict(dict(amount.by_currency), default=amount.decimals,
                                           return_dtype=pl.Int64)
    # digits past the currency's decimals must be 0: an amount never loses money in mapping
    extra = frac.str.slice(decimals).str.contains(r"[1-9]")
    m.problem("amount_minor", "not a decimal amount", present & ~ok.fill_null(False), src)
    m.problem("amount_minor", "more decimals than the currency has", present
              & ok.fill_null(False) & extra.fill_null(False), src)
    digits = frac.str.pad_end(6, "0").str.slice(0, decimals)
    fraction = pl.when(decimals > 0).then(digits.cast(pl.Int64, strict=False)).otherwise(0)
    sign = pl.when(text.str.starts_with("-")).then(-1).otherwise(1)
    m.exprs["amount_minor"] = (whole * pl.lit(10, dtype=pl.Int64).pow(decimals) + fraction) * sign


def _terminals(m: _Mapper, term: _Terminals, is_txn: pl.Expr) -> dict[str, pl.Expr]:
    """Derive cash-terminal parties; returns side -> mask of the rows whose side was derived."""
    m.need(term.source, "cash-terminal parties")
    text = pl.col(term.source).cast(pl.String)
    m.raw = m.raw.with_columns(
        text.alias("__tid"), text.str.contains(term.pattern).fill_null(False).alias("__is_term"),
        (text.str.extract(term.pattern, term.bank_group) if term.bank_group
         else pl.lit(None, pl.String)).alias("__bank"))
    tid, is_term, bank = pl.col("__tid"), pl.col("__is_term"), pl.col("__bank")
    empty = {s: _blank(m.exprs.get(f"{s}_account", pl.lit(None, pl.String))) for s in _SIDES}
    m.raw = m.raw.with_columns(
        (is_txn & empty["payer"] & ~empty["payee"] & is_term).alias("__derived_payer"),
        (is_txn & empty["payee"] & ~empty["payer"] & is_term).alias("__derived_payee"))
    derived = {s: pl.col(f"__derived_{s}") for s in _SIDES}
    for side, other in (("payer", "payee"), ("payee", "payer")):
        d = derived[side]
        m.exprs[f"{side}_account"] = pl.when(d).then(tid).otherwise(
            m.exprs.get(f"{side}_account", pl.lit(None, pl.String)))
        m.exprs[f"{side}_party_type"] = pl.when(d).then(pl.lit("cash_terminal")).otherwise(
            m.exprs.get(f"{side}_party_type", pl.lit(None, pl.String)))
        other_bank = m.exprs.get(f"{other}_institution", pl.lit(None, pl.String))
        m.exprs[f"{side}_institution"] = pl.when(d).then(pl.coalesce(bank, other_bank)).otherwise(
            m.exprs.get(f"{side}_institution", pl.lit(None, pl.String)))
        m.exprs[f"{side}_opened_date"] = pl.when(d).then(None).otherwise(
            m.exprs.get(f"{side}_opened_date", pl.lit(None, pl.Date)))
        m.sources[f"{side}_account"] = (f"{m.sources.get(f'{side}_account', '-')} or "
                                        f"terminal {term.source}")
        bank_how = "the id's bank or " if term.bank_group else ""
        m.sources[f"{side}_institution"] = (f"{m.sources.get(f'{side}_institution', '-')}; "
                                            f"terminal: {bank_how}{other}'s")
    any_derived = derived["payer"] | derived["payee"]
    m.exprs["cash"] = pl.when(any_derived).then(True).otherwise(
        m.exprs.get("cash", pl.lit(None, pl.Boolean)))
    device = next((c for c in m.table.columns if c.target == "device_id"), None)
    if device is not None and device.source == term.source:
        m.exprs["device_id"] = pl.when(any_derived).then(None).otherwise(m.exprs["device_id"])
    return derived


def _build_events(raw: pl.DataFrame, mapping: ColumnMapping, origin: str,
                  currencies: Sequence[str]) -> tuple[pl.DataFrame, list[ColumnCheck]]:
    """The mapped frame (columns not yet cast) and what maps per column."""
    m = _Mapper(raw, mapping, mapping.events, origin, {**EVENT_SCHEMA, **LABEL_COLUMNS}, _ENUMS)
    m.columns()
    m.times()
    m.constants()
    currency = next((c for c in mapping.events.columns if c.target == "currency"), None)
    if currency is not None and currency.source in raw.columns:
        cur = m.staged("currency")
        m.problem("currency", f"unknown currency (known: {', '.join(sorted(currencies))})",
                  cur.is_not_null() & ~cur.is_in(list(currencies)), currency.source)
    if mapping.amount is not None:
        _amount(m, mapping.amount, m.exprs.get("currency"))
    _stage(m, mapping)
    kind = m.exprs.get("kind", pl.lit(KIND_TXN))
    is_txn = kind == KIND_TXN
    derived: dict[str, pl.Expr] = {}
    if mapping.terminals is not None:
        derived = _terminals(m, mapping.terminals, is_txn)
    for side in _SIDES:  # a derived side's own party type is not read
        if side in derived and f"{side}_party_type" in m.bad:
            m.bad[f"{side}_party_type"] = [(t, mask & ~derived[side], s)
                                           for t, mask, s in m.bad[f"{side}_party_type"]]
    # one source column for a transaction column and a call column: each kind its own; and a
    # constant or default of a transaction column fills transactions only (calls alike)
    shared = _shared_sources(mapping.events) | set(mapping.events.constants) | {
        c.target for c in mapping.events.columns if c.default is not None}
    if "kind" not in mapping.events.sources():
        shared = set()  # one kind in the file (a constant kind, or none: transactions)
    applies: dict[str, pl.Expr] = {c: is_txn for c in _TXN_ONLY}
    applies.update({c: kind == KIND_CALL for c in _CALL_ONLY})
    for target in list(m.exprs):
        if target in shared and target in applies:
            m.exprs[target] = pl.when(applies[target]).then(m.exprs[target])
    if mapping.labels:
        is_positive = (_text(mapping.positive).str.to_lowercase().is_in(["1", "true"])
                       if mapping.positive else pl.lit(True))
        for target, src in mapping.labels.items():
            m.need(src, target)
            m.sources[target] = src
            m.exprs[target] = pl.when(is_positive).then(pl.col(src)).otherwise(None)
        if mapping.positive:
            m.need(mapping.positive, "positive")
    for target in {t for t in m.bad if t in applies}:
        m.bad[target] = [(t, mask & applies[target], s) for t, mask, s in m.bad[target]]
    names = list(m.exprs)
    flags = _flags(m)
    try:
        work = m.raw.select(*[e.alias(n) for n, e in m.exprs.items()],
                          *[v[2].fill_null(False).alias(k) for k, v in flags.items()],
                          *[pl.col(v[3]).alias(f"_src{k}") for k, v in flags.items()],
                          *[mask.alias(f"_derived_{s}") for s, mask in derived.items()])
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(f"{origin}: mapping {mapping.origin} does not apply: {exc}") from None
    checks = _checks(work, m, names, flags)
    frame = work.select(names)
    if "scenario" in frame.columns:
        frame = frame.with_columns(pl.col("scenario").fill_null(""))
    if "scenario_id" in frame.columns:
        frame = frame.with_columns(pl.col("scenario_id").cast(pl.Int64, strict=False).fill_null(-1))
    return frame, checks


def _stage(m: _Mapper, mapping: ColumnMapping) -> None:
    try:
        m.stage()
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(f"{m.origin}: mapping {mapping.origin} does not apply: {exc}") from None
    m.fill_defaults()


def _flags(m: _Mapper) -> dict[str, tuple[str, str, pl.Expr, str]]:
    """One helper column per (column, problem): _bad0, _bad1, ..."""
    problems = [(t, text, mask, src) for t, ps in m.bad.items() for text, mask, src in ps]
    return {f"_bad{i}": p for i, p in enumerate(problems)}


def _shared_sources(table: _Table) -> set[str]:
    src_txn = {c.source for c in table.columns if c.target in _TXN_ONLY}
    src_txn |= {t.source for t in table.times if t.target in _TXN_ONLY}
    src_call = {c.source for c in table.columns if c.target in _CALL_ONLY}
    both = src_txn & src_call
    return ({c.target for c in table.columns if c.source in both}
            | {t.target for t in table.times if t.source in both})


def _checks(work: pl.DataFrame, m: _Mapper, names: list[str],
            flags: Mapping[str, tuple[str, str, pl.Expr, str]]) -> list[ColumnCheck]:
    """Per schema column: rows, values, nulls, problems (counted in one pass over the flags)."""
    counts = work.select([pl.col(k).sum() for k in flags]).row(0) if flags else ()
    is_txn = (pl.col("kind") == KIND_TXN) if "kind" in work.columns else pl.lit(True)
    kinds = {"all": pl.repeat(True, pl.len()), "txn": is_txn, "call": ~is_txn}
    required = {**dict.fromkeys(TXN_REQUIRED, "txn"), **dict.fromkeys(CALL_REQUIRED, "call")}
    stats_exprs = []
    applies: dict[str, str] = {}
    for n in names:
        a = "txn" if n in _TXN_ONLY else "call" if n in _CALL_ONLY else "all"
        applies[n] = a
        flagged = pl.any_horizontal([pl.col(k) for k, v in flags.items() if v[0] == n]
                                    or [pl.lit(False)])
        stats_exprs += [kinds[a].sum().alias(f"{n}#rows"),
                        (kinds[a] & pl.col(n).is_null()).sum().alias(f"{n}#nulls"),
                        (kinds[a] & pl.col(n).is_null() & ~flagged).sum().alias(f"{n}#blank")]
    stats_exprs += [(pl.col(f"_derived_{s}").sum() if f"_derived_{s}" in work.columns
                     else pl.lit(0)).alias(f"{s}#derived") for s in _SIDES]
    stats = work.select(stats_exprs).row(0, named=True) if stats_exprs else {}
    problems: dict[str, list[str]] = {}
    for (key, (target, text, _mask, _src)), n in zip(flags.items(), counts, strict=True):
        if n:
            problems.setdefault(target, []).append(
                f"{n:,} {text}: {_examples(work, pl.col(key), f'_src{key}')}")
    out = []
    order = {c: i for i, c in enumerate([*EVENT_SCHEMA, *LABEL_COLUMNS, *REGISTRY_SCHEMA])}
    for n in sorted(names, key=lambda c: order.get(c, len(order))):
        rows, nulls = int(stats[f"{n}#rows"]), int(stats[f"{n}#nulls"])
        found = list(problems.get(n, []))
        blank = int(stats[f"{n}#blank"])  # empty in the file, not made empty by a problem
        if n in required and blank:
            on = {"txn": " on transactions", "call": " on calls", "all": ""}[applies[n]]
            found.append(f"{blank:,} empty{on} (required)")
        notes = []
        side = n.removesuffix("_account")
        if side in _SIDES and stats[f"{side}#derived"]:
            notes.append(f"{stats[f'{side}#derived']:,} cash-terminal {side}s derived")
        out.append(ColumnCheck(n, m.sources.get(n, "-"), applies[n], rows, rows - nulls, nulls,
                               tuple(found), tuple(notes)))
    return out


# ------------------------------------------------------------------------------ public drivers
def apply_mapping(path: Path, mapping: ColumnMapping,
                  currencies: Sequence[str] = tuple(DEFAULT_CURRENCIES)) -> pl.DataFrame:
    """Read ``path`` as described by ``mapping`` and return it in the event schema; the first
    column that does not map stops it (``screening mapping check`` lists them all)."""
    return map_frame(_read(path, mapping.events.format), mapping, str(path), currencies)


def map_frame(raw: pl.DataFrame, mapping: ColumnMapping, origin: str,
              currencies: Sequence[str] = tuple(DEFAULT_CURRENCIES)) -> pl.DataFrame:
    """A file's frame as read (CSV columns as text) in the event schema, as ``apply_mapping``."""
    frame, checks = _build_events(raw, mapping, origin, currencies)
    for c in checks:
        if c.problems:
            raise InputFileError(f"{origin}: column {c.column} (from {c.source}): "
                                 f"{c.problems[0]} (mapping {mapping.origin}; `screening mapping "
                                 "check` lists every problem)")
    return conform(frame, origin, time_zone=mapping.time_zone)


def read_mapped_registry(path: Path, mapping: ColumnMapping) -> pl.DataFrame:
    """An account registry file read through the mapping's ``[registry]`` tables, checked as
    ``validate_registry`` checks a native one."""
    frame, checks = _build_registry(path, mapping)
    for c in checks:
        if c.problems:
            raise InputFileError(f"{path}: column {c.column} (from {c.source}): {c.problems[0]} "
                                 f"(mapping {mapping.origin})")
    return validate_registry(frame, str(path))


def _build_registry(path: Path, mapping: ColumnMapping) -> tuple[pl.DataFrame, list[ColumnCheck]]:
    if mapping.registry is None:
        raise InputFileError(f"mapping {mapping.origin} has no [registry] tables for {path}")
    raw = _read(path, mapping.registry.format)
    m = _Mapper(raw, mapping, mapping.registry, str(path), REGISTRY_SCHEMA, _REGISTRY_ENUMS)
    m.columns()
    m.times()
    m.constants()
    _stage(m, mapping)
    for name, dtype in REGISTRY_SCHEMA.items():
        if name not in m.exprs:
            m.exprs[name] = pl.lit(None, dtype=dtype)
            m.sources[name] = "(not mapped)"
    flags = _flags(m)
    try:
        work = m.raw.select(*[e.alias(n) for n, e in m.exprs.items()],
                          *[v[2].fill_null(False).alias(k) for k, v in flags.items()],
                          *[pl.col(v[3]).alias(f"_src{k}") for k, v in flags.items()])
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(f"{path}: mapping {mapping.origin} does not apply: {exc}") from None
    checks = _checks(work, m, list(REGISTRY_SCHEMA), flags)
    return work.select(list(REGISTRY_SCHEMA)), checks


def check_mapping(path: Path, mapping: ColumnMapping, settings: Settings | None = None,
                  registry: Path | None = None) -> list[MappingReport]:
    """What maps and what does not, per column, for an events file (and a registry file); then
    the replay's own checks on the mapped events when every column maps."""
    settings = settings or Settings()
    raw = _read(path, mapping.events.format)
    frame, checks = _build_events(raw, mapping, str(path), tuple(settings.currencies))
    after: list[str] = []
    if not any(c.problems for c in checks):
        try:
            validate_events(conform(frame, str(path), time_zone=mapping.time_zone), settings,
                            str(path))
        except InputFileError as exc:
            after.append(str(exc))
    kinds = frame.get_column("kind") if "kind" in frame.columns else None
    txns = int((kinds == KIND_TXN).sum()) if kinds is not None else frame.height
    reports = [MappingReport(str(path), mapping.origin, raw.height, txns,
                             frame.height - txns if kinds is not None else 0, tuple(checks),
                             _unused(raw, mapping.events, mapping), tuple(after))]
    if registry is not None:
        reg_raw_cols = _read(registry, mapping.registry.format if mapping.registry else None)
        reg, reg_checks = _build_registry(registry, mapping)
        reg_after: list[str] = []
        if not any(c.problems for c in reg_checks):
            try:
                validate_registry(reg, str(registry))
            except InputFileError as exc:
                reg_after.append(str(exc))
        assert mapping.registry is not None
        reports.append(MappingReport(str(registry), mapping.origin, reg.height, 0, 0,
                                     tuple(reg_checks),
                                     _unused(reg_raw_cols, mapping.registry, None),
                                     tuple(reg_after)))
    return reports


def _unused(raw: pl.DataFrame, table: _Table, mapping: ColumnMapping | None) -> tuple[str, ...]:
    used = set(table.sources().values())
    if mapping is not None:
        used |= set(mapping.labels.values()) | {mapping.positive or ""}
        used |= {mapping.amount.source} if mapping.amount else set()
        used |= {mapping.terminals.source} if mapping.terminals else set()
    return tuple(c for c in raw.columns if c not in used)


def format_report(report: MappingReport) -> str:
    """A readable table: one line per schema column, problems under it, then a verdict."""
    head = (f"{report.origin}: {report.rows:,} rows"
            + (f" ({report.txns:,} transactions, {report.calls:,} calls)"
               if report.txns or report.calls else "") + f", mapping {report.mapping}")
    width = max([len(c.column) for c in report.columns] + [6])
    swidth = min(max([len(c.source) for c in report.columns] + [6]), 48)
    lines = [head, "",
             f"{'column':<{width}}  {'from':<{swidth}}  {'rows':>5}  {'mapped':>9}  {'empty':>9}"
             "  problems"]
    for c in report.columns:
        rows = {"all": "all", "txn": "txn", "call": "call"}[c.applies]
        mark = "  ".join(c.problems) if c.problems else "ok"
        lines.append(f"{c.column:<{width}}  {c.source[:swidth]:<{swidth}}  {rows:>5}  "
                     f"{c.mapped:>9,}  {c.nulls:>9,}  {mark}")
        lines += [f"{'':<{width}}  {'':<{swidth}}  {'':>5}  {'':>9}  {'':>9}  ({n})"
                  for n in c.notes]
    if report.unused:
        lines += ["", "not read: " + ", ".join(report.unused)]
    lines += [f"after mapping: {a}" for a in report.after]
    bad = [c for c in report.columns if c.problems]
    lines.append("")
    if report.ok:
        lines.append("OK: every column maps")
    else:
        what = ", ".join(f"{c.column} ({len(c.problems)})" for c in bad)
        lines.append(f"PROBLEMS: {what}" if bad else "PROBLEMS: the mapped rows do not validate")
    return "\n".join(lines)
