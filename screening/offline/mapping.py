"""Column mappings: other people's CSV/Parquet files read as the event schema.

A mapping is a small TOML file (``screening/mappings/amlsim.toml`` is one)::

    [source]
    format = "csv"            # csv | parquet (default: from the file suffix)
    time_zone = "UTC"         # zone of timestamps written without one

    [columns]                 # schema column = source column
    event_id = "tran_id"
    payer_account = "orig_acct"

    [amount]
    column = "amount"
    unit = "major"            # "minor": integer minor units; "major": decimal text like 945.46
    decimals = 2              # minor units per major unit = 10 ** decimals

    [time]
    column = "step"
    kind = "offset"           # "timestamp" (text or datetime) | "offset" (count of `unit`)
    unit = "day"              # second | minute | hour | day
    origin = "2017-01-01T00:00:00+08:00"

    [constants]               # schema column = value on every row
    currency = "CNY"

    [labels]                  # optional label columns
    scenario = "alert_type_fixed"
    scenario_id = "alert_id_fixed"
    positive = "is_sar_fixed" # rows labelled only where this column is 1/true (decoys are not)

Amounts in major units are converted from their text, never through float.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from screening.errors import InputFileError
from screening.offline.events import conform
from screening.offline.schema import EVENT_SCHEMA, LABEL_COLUMNS

__all__ = ["BUILTIN_MAPPINGS", "apply_mapping", "builtin_mapping", "load_mapping"]

BUILTIN_MAPPINGS = ("amlsim",)
_UNITS_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_SECTIONS = {"source", "columns", "amount", "time", "constants", "labels"}


def builtin_mapping(name: str) -> dict[str, Any]:
    text = resources.files("screening").joinpath("mappings", f"{name}.toml").read_text("utf-8")
    return _validate(tomllib.loads(text), f"builtin mapping {name}")


def load_mapping(path_or_name: str) -> dict[str, Any]:
    """A mapping from a TOML file, or a built-in one by name (``amlsim``)."""
    if path_or_name in BUILTIN_MAPPINGS:
        return builtin_mapping(path_or_name)
    path = Path(path_or_name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: mapping file not found (built-in: "
                             f"{', '.join(BUILTIN_MAPPINGS)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(f"{path}: {exc}") from None
    return _validate(data, str(path))


def _validate(data: dict[str, Any], origin: str) -> dict[str, Any]:
    unknown = set(data) - _SECTIONS
    if unknown:
        raise InputFileError(f"{origin}: unknown section [{sorted(unknown)[0]}]")
    known = set(EVENT_SCHEMA) | set(LABEL_COLUMNS)
    for section in ("columns", "constants", "labels"):
        for key in data.get(section, {}):
            if key not in known and not (section == "labels" and key == "positive"):
                raise InputFileError(f"{origin}: [{section}] {key}: not a column of the event schema")
    amount = data.get("amount", {})
    if amount.get("unit", "minor") not in ("minor", "major"):
        raise InputFileError(f"{origin}: [amount] unit must be 'minor' or 'major'")
    time = data.get("time", {})
    if time.get("kind", "timestamp") not in ("timestamp", "offset"):
        raise InputFileError(f"{origin}: [time] kind must be 'timestamp' or 'offset'")
    if time.get("kind") == "offset":
        if time.get("unit") not in _UNITS_MS:
            raise InputFileError(f"{origin}: [time] unit must be one of {', '.join(_UNITS_MS)}")
        try:
            dt.datetime.fromisoformat(str(time.get("origin", "")))
        except ValueError:
            raise InputFileError(f"{origin}: [time] origin must be an ISO 8601 time") from None
    return data


def _major_to_minor(col: pl.Expr, decimals: int, name: str) -> pl.Expr:
    """'945.46' -> 94546 exactly (text arithmetic; no float)."""
    text = col.cast(pl.String).str.strip_chars()
    whole = text.str.extract(r"^(-?[0-9]+)", 1)
    frac = text.str.extract(r"\.([0-9]*)$", 1).fill_null("")
    frac_norm = frac.str.pad_end(decimals, "0").str.slice(0, decimals)
    scale = 10 ** decimals
    sign = pl.when(whole.str.starts_with("-")).then(-1).otherwise(1)
    value: pl.Expr = (whole.cast(pl.Int64).abs() * scale
                      + (frac_norm.cast(pl.Int64) if decimals else pl.lit(0))) * sign
    return value.alias(name)


def apply_mapping(path: Path, mapping: Mapping[str, Any]) -> pl.DataFrame:
    """Read ``path`` as described by ``mapping`` and return it in the event schema."""
    source = mapping.get("source", {})
    fmt = source.get("format") or ("parquet" if path.suffix == ".parquet" else "csv")
    try:
        raw = (pl.read_parquet(path) if fmt == "parquet"
               else pl.read_csv(path, infer_schema=False))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputFileError(f"{path}: cannot read: {exc}") from None
    exprs: list[pl.Expr] = []
    used: dict[str, str] = {}
    for target, src in mapping.get("columns", {}).items():
        used[target] = src
    amount = mapping.get("amount", {})
    if amount.get("column"):
        used["amount_minor"] = amount["column"]
    time = mapping.get("time", {})
    if time.get("column"):
        used["event_time"] = time["column"]
    labels = dict(mapping.get("labels", {}))
    positive = labels.pop("positive", None)
    for target, src in {**used, **labels, **({"positive": positive} if positive else {})}.items():
        if src not in raw.columns:
            raise InputFileError(f"{path}: mapping wants source column {src!r} for {target}, "
                                 f"not in the file (has: {', '.join(raw.columns[:12])})")
    for target, src in mapping.get("columns", {}).items():
        exprs.append(pl.col(src).alias(target))
    if amount.get("column"):
        col = pl.col(amount["column"])
        if amount.get("unit", "minor") == "major":
            bad = raw.filter(~pl.col(amount["column"]).cast(pl.String).str.strip_chars()
                             .str.contains(r"^-?[0-9]+(\.[0-9]*)?$"))
            if bad.height:
                raise InputFileError(f"{path}: column {amount['column']}: not a decimal amount "
                                     f"({bad.get_column(amount['column'])[0]!r})")
            exprs.append(_major_to_minor(col, int(amount.get("decimals", 2)), "amount_minor"))
        else:
            exprs.append(col.alias("amount_minor"))
    if time.get("column"):
        col = pl.col(time["column"])
        if time.get("kind") == "offset":
            origin = dt.datetime.fromisoformat(str(time["origin"]))
            if origin.tzinfo is None:
                origin = origin.replace(tzinfo=dt.UTC)
            origin_ms = int(origin.timestamp() * 1000)
            ms = col.cast(pl.Int64) * _UNITS_MS[time["unit"]] + origin_ms
            exprs.append(pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC")
                         .alias("event_time"))
        elif time.get("format"):
            exprs.append(col.cast(pl.String).str.to_datetime(time["format"], time_unit="ms")
                         .alias("event_time"))
        else:
            exprs.append(col.alias("event_time"))
    for target, value in mapping.get("constants", {}).items():
        exprs.append(pl.lit(value).alias(target))
    is_positive = (pl.col(positive).cast(pl.String).str.to_lowercase().is_in(["1", "true"])
                   if positive else pl.lit(True))
    for target, src in labels.items():
        exprs.append(pl.when(is_positive).then(pl.col(src)).otherwise(None).alias(target))
    try:
        frame = raw.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(f"{path}: mapping does not apply: {exc}") from None
    if "scenario" in frame.columns:
        frame = frame.with_columns(pl.col("scenario").fill_null(""))
    if "scenario_id" in frame.columns:
        frame = frame.with_columns(pl.col("scenario_id").cast(pl.Int64, strict=False).fill_null(-1))
    return conform(frame, str(path), time_zone=str(source.get("time_zone", "UTC")))
