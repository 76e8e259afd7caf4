"""Make numba's IR-level inlining copy a variable scope cheaply: a third off the first start.

Every ``helper`` (``inline="always"``) call site makes numba copy the callee's IR, one block at
a time, each ``copy.deepcopy`` with its own memo, so the callee's whole variable ``Scope`` (every
variable, each deep-copied) is copied again for every block: quadratic in the size of the
helpers, and most of the first start's compile time (cProfile of the feature kernels' compile:
113 of 194 s in ``deepcopy`` under ``inline_closurecall.copy_ir``).

A scope copy here copies the scope's own containers and shares the variables in them: numba's
``ir.Var`` objects are never changed in place (renaming makes new ones), and the copied
blocks' statements still get their own variables, pointing at the copied scope. The kernels
compiled are the same: every kernel is checked against its plain-Python twin
(``tests/features``, ``tests/graph``), and ``tests/features/test_inline_copy.py`` checks the
copy itself. Applied only to the numba versions it was checked with, and only when ``ir.Scope``
has no copy of its own.

Measured (``Engine.warm_up`` on a fresh cache each time, runs alternated, load average 2-2.6
from other work): with 80.3 s and 78.9 s, without 120.6 s and 110.8 s.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import numba
from numba.core import ir

__all__ = ["APPLIED", "scope_copy"]

_CHECKED = ("0.60", "0.61", "0.62", "0.63", "0.64", "0.65", "0.66", "0.67", "0.68")


def scope_copy(self: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy`` of an ``ir.Scope``: its own maps, the same (immutable) variables."""
    new = ir.Scope.__new__(ir.Scope)
    memo[id(self)] = new
    new.parent = copy.deepcopy(self.parent, memo)
    new.loc = self.loc
    new.localvars = ir.VarMap()  # type: ignore[no-untyped-call]
    new.localvars._con = dict(self.localvars._con)
    new.redefined = defaultdict(int, self.redefined)
    new.var_redefinitions = defaultdict(set, {k: set(v) for k, v in
                                              self.var_redefinitions.items()})
    return new


def _apply() -> bool:
    if ".".join(numba.__version__.split(".")[:2]) not in _CHECKED:
        return False
    if "__deepcopy__" in vars(ir.Scope) and vars(ir.Scope)["__deepcopy__"] is not scope_copy:
        return False  # numba copies scopes its own way now
    fields = {"parent", "localvars", "loc", "redefined", "var_redefinitions"}
    probe = ir.Scope(None, ir.Loc("probe", 0))  # type: ignore[no-untyped-call]
    if set(vars(probe)) != fields or not hasattr(probe.localvars, "_con"):
        return False  # another layout than the one this copy knows
    ir.Scope.__deepcopy__ = scope_copy  # type: ignore[attr-defined]
    return True


APPLIED = _apply()
