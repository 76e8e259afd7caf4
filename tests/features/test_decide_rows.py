"""`decide_rows` (a rule table on given feature rows: shadow policies) agrees with the
plain-Python rule evaluation, and with the decisions `process` made from the same rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import _kernels as k
from features.state import Op, RuleTable, decide_rows
from tests.reference import _decide, read_rules

N_FEAT = 6  # the features the random rules read (the first few columns)
VALUES = (-1.0, 0.0, 0.5, 1.0, 2.0, 100.0, 1e12, math.nan)
OPS = sorted(Op.SYMBOLS.values())


@st.composite
def tables(draw: st.DrawFn) -> RuleTable:
    rules = []
    for _ in range(draw(st.integers(0, 12))):
        conds = [(draw(st.integers(0, N_FEAT - 1)), draw(st.sampled_from(OPS)),
                  draw(st.sampled_from(VALUES[:-1])))
                 for _ in range(draw(st.integers(0, 4)))]
        rules.append((conds, draw(st.integers(1, 5)), draw(st.integers(0, 100)),
                      draw(st.integers(0, 7)), draw(st.integers(0, 3))))
    return RuleTable.build(rules)


@settings(max_examples=200, deadline=None)
@given(tables(), st.lists(st.lists(st.sampled_from(VALUES), min_size=N_FEAT, max_size=N_FEAT),
                          max_size=8))
def test_decide_rows_matches_the_reference(table: RuleTable, rows: list[list[float]]) -> None:
    """Every row: the same action, reason bits, score, flags and marks as the reference."""
    feat = np.zeros((len(rows), k.N_TXN_FEATURE), dtype=np.float64)
    for i, row in enumerate(rows):
        feat[i, :N_FEAT] = row
    got = decide_rows(table, feat)
    rules = read_rules(table)
    for i in range(len(rows)):
        assert got[i].tolist() == _decide(rules, feat[i].tolist())


def test_decide_rows_refuses_rows_of_another_width() -> None:
    """A feature matrix of the wrong shape or type is a ValueError, never a wrong decision."""
    table = RuleTable.build([])
    with pytest.raises(ValueError, match="float64"):
        decide_rows(table, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="float64"):
        decide_rows(table, np.zeros((2, k.N_TXN_FEATURE), dtype=np.float32))
    assert decide_rows(table, np.zeros((0, k.N_TXN_FEATURE))).shape == (0, k.N_DEC)
