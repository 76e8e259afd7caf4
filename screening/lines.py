"""The large-value reporting lines per transaction family, and "just under the line".

A structurer keeps each amount a little under whatever line would report it: the cash line, a
person's domestic or cross-border transfer line, an organisation's line, in CNY or in foreign
currency. The live encoder and the offline one mark such an amount (``TxnFlag.NEAR_LINE``) with
the same rule, so the kernels count them per account without knowing the lines.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

from screening.config import Settings
from screening.errors import ConfigError
from screening.policy import Policy

__all__ = ["BASE_CURRENCY", "CATEGORIES", "Lines", "NearLine", "category_of", "parse_lines",
           "shipped_foreign_lines"]

CATEGORIES = ("cash", "person_domestic_transfer", "person_cross_border_transfer", "organisation_transfer")
BASE_CURRENCY = "CNY"
_ORGANISATION = 2  # proto PartyType


@dataclass(frozen=True, kw_only=True)
class Lines:
    """One reporting line per category: CNY fen, or US cents for the foreign-currency lines."""

    cash: int
    person_domestic_transfer: int
    person_cross_border_transfer: int
    organisation_transfer: int

    def of(self, category: str) -> int:
        """The line of ``category`` (one of :data:`CATEGORIES`)."""
        return int(getattr(self, category))


def parse_lines(raw: Any, where: str, *, strict: bool) -> Lines:
    """The four lines from a table; ``strict`` also refuses keys that are not categories."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} missing or not a table")
    if strict:
        unknown = sorted(set(raw) - set(CATEGORIES))
        if unknown:
            raise ConfigError(f"{where}: unknown line '{unknown[0]}' (lines: {', '.join(CATEGORIES)})")
    values: dict[str, int] = {}
    for name in CATEGORIES:
        value = raw.get(name)
        if value is None:
            raise ConfigError(f"{where}: no line '{name}'")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}: '{name}' must be a positive integer in minor units "
                              f"(never float), got {value!r}")
        values[name] = value
    return Lines(**values)


def shipped_foreign_lines() -> Lines:
    """The foreign-currency lines (US cents) of the package's ``report_thresholds.toml``."""
    text = resources.files("screening").joinpath("report_thresholds.toml").read_text("utf-8")
    table = tomllib.loads(text).get("large_value", {}).get("foreign_currency")
    return parse_lines(table, "report_thresholds.toml: [large_value.foreign_currency]", strict=True)


def category_of(cash: bool, cross_border: bool, payer_party_type: int) -> str:
    """The reporting family of a transaction, seen from its payer (the one who splits)."""
    if cash:
        return "cash"
    if payer_party_type == _ORGANISATION:
        return "organisation_transfer"
    return "person_cross_border_transfer" if cross_border else "person_domestic_transfer"


@dataclass(frozen=True)
class NearLine:
    """``(category, basis) -> (low, line)`` in CNY fen: ``low <= amount < line`` is just under.

    Basis is CNY for CNY amounts and ``foreign`` for the rest (held against the USD lines at the
    settings' USD rate, as the large-value report does). A policy without a category's CNY line
    (in [thresholds]) or settings without a USD rate leave that band out.
    """

    bands: Mapping[tuple[str, str], tuple[int, int]]

    @classmethod
    def build(cls, policy: Policy, settings: Settings) -> NearLine:
        pct = policy.params.structuring_band_percent
        lines: dict[tuple[str, str], int] = {}
        for c in CATEGORIES:
            if c in policy.thresholds:
                lines[(c, BASE_CURRENCY)] = policy.thresholds[c]
        usd = settings.currency("USD")
        if usd is not None:
            foreign = shipped_foreign_lines()
            for c in CATEGORIES:
                lines[(c, "foreign")] = usd.to_fen(foreign.of(c))
        bands = {} if pct == 0 else {key: (line - line * pct // 100, line)
                                      for key, line in lines.items()}
        return cls(bands)

    def near(self, amount_fen: int, currency: str, cash: bool, cross_border: bool,
             payer_party_type: int) -> bool:
        basis = BASE_CURRENCY if currency == BASE_CURRENCY else "foreign"
        band = self.bands.get((category_of(cash, cross_border, payer_party_type), basis))
        return band is not None and band[0] <= amount_fen < band[1]

    def near_many(self, fen: np.ndarray, base: np.ndarray, cash: np.ndarray,
                  cross_border: np.ndarray, payer_party_type: np.ndarray) -> np.ndarray:
        """``near`` of every row of these columns (``base``: the currency is CNY)."""
        out = np.zeros(fen.shape[0], dtype=bool)
        org = payer_party_type == _ORGANISATION
        category = {"cash": cash, "organisation_transfer": ~cash & org,
                    "person_cross_border_transfer": ~cash & ~org & cross_border,
                    "person_domestic_transfer": ~cash & ~org & ~cross_border}
        for (c, b), (lo, hi) in self.bands.items():
            basis = base if b == BASE_CURRENCY else ~base
            out |= category[c] & basis & (fen >= lo) & (fen < hi)
        return out

    def near_expr(self, fen: pl.Expr) -> pl.Expr:
        """The same test over an event frame's columns (``currency``, ``cash``,
        ``cross_border``, ``payer_party_type`` as text) and ``fen`` (CNY fen)."""
        cash = pl.col("cash").fill_null(False)
        category = (pl.when(cash).then(pl.lit("cash"))
                    .when(pl.col("payer_party_type") == "organisation")
                    .then(pl.lit("organisation_transfer"))
                    .when(pl.col("cross_border").fill_null(False))
                    .then(pl.lit("person_cross_border_transfer"))
                    .otherwise(pl.lit("person_domestic_transfer")))
        basis = pl.when(pl.col("currency") == BASE_CURRENCY).then(pl.lit(BASE_CURRENCY)) \
            .otherwise(pl.lit("foreign"))
        out = pl.lit(False)
        for (c, b), (lo, hi) in self.bands.items():
            out = out | ((category == c) & (basis == b) & (fen >= lo) & (fen < hi))
        return out.fill_null(False)
