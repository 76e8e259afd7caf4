"""The cheaper scope copy numba's inliner uses (features/_inline_copy.py) is a real copy."""

from __future__ import annotations

import copy

import numpy as np
from numba import njit
from numba.core import ir

from features import _inline_copy


def test_the_copy_is_in_effect_on_this_numba() -> None:
    """Applied here (a numba version it was checked with): a silent no-op would hide a slow start."""
    assert _inline_copy.APPLIED
    assert ir.Scope.__deepcopy__ is _inline_copy.scope_copy  # type: ignore[attr-defined]


def test_a_copied_scope_and_block_are_independent_of_the_original() -> None:
    """New names and redefinitions in the copy leave the original alone; the copied block's
    statements use new variables of the copied scope; the scope's own variables are shared."""
    loc = ir.Loc("t.py", 1)
    scope = ir.Scope(None, loc)
    a = scope.define("a", loc)
    scope.redefine("a", loc)
    block = ir.Block(scope, loc)
    block.append(ir.Assign(ir.Const(1, loc), a, loc))
    block.append(ir.Return(a, loc))

    new_block = copy.deepcopy(block)
    new_scope = new_block.scope
    assert new_scope is not scope and new_scope == scope
    new_scope.redefine("b", loc)
    new_scope.redefine("a", loc)
    assert "b" not in scope.localvars._con and "b" in new_scope.localvars._con
    assert scope.redefined["a"] == 1 and new_scope.redefined["a"] == 2
    assert scope.var_redefinitions["a"] != new_scope.var_redefinitions["a"]
    target = new_block.body[0].target
    assert target is not a and target.name == "a" and target.scope is new_scope
    assert new_scope.localvars._con["a"] is a  # shared: numba never changes a Var in place


def test_inlined_helpers_still_compute_the_same() -> None:
    """A small inline='always' chain (a helper calling a helper, branches, loops) gives the
    plain-Python answer."""

    @njit(inline="always")
    def clamp(x: float, lo: float, hi: float) -> float:
        return lo if x < lo else hi if x > hi else x

    @njit(inline="always")
    def step(acc: float, x: float) -> float:
        for _ in range(2):
            acc = clamp(acc + x, -5.0, 5.0)
        return acc

    @njit
    def run(xs: np.ndarray) -> float:
        acc = 0.0
        for x in xs:
            acc = step(acc, x)
        return acc

    xs = np.array([1.5, -4.0, 3.25, 2.0, -0.5])
    want = 0.0
    for x in xs:
        for _ in range(2):
            want = min(max(want + x, -5.0), 5.0)
    assert run(xs) == want
