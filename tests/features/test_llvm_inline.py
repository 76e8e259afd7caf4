"""Kernels marked for LLVM inlining (features/_llvm_inline.py) end up inside their callers."""

from __future__ import annotations

import re

import numpy as np
from numba import njit

from features import _kernels as k
from features import _llvm_inline


def _step(out: np.ndarray, i: int) -> None:
    for j in range(out.shape[1]):
        out[i, j] += i * j


def _other_step(out: np.ndarray, i: int) -> None:
    for j in range(out.shape[1]):
        out[i, j] += i * j


def _loop(out: np.ndarray) -> None:
    for i in range(out.shape[0]):
        _step_marked(out, i)
        _step_plain(out, i)


_step_marked = _llvm_inline.mark(njit(_nrt=False)(_step))
_step_plain = njit(_nrt=False)(_other_step)  # (marks go by the function's name)
_loop_jit = njit(_nrt=False)(_loop)


def _called(ir: str) -> set[str]:
    return {m for m in re.findall(r"call [^@]*@\"?([\w.$]+)", ir) if "_step" in m}


def test_a_marked_kernel_is_inlined_into_its_caller() -> None:
    """The copy of a marked kernel linked into callers says ``alwaysinline`` (an unmarked one's
    does not), the caller's optimised module does not call it, and the results are those of
    plain Python."""
    out = np.zeros((4, 3), dtype=np.int64)
    _loop_jit(out)
    want = np.zeros((4, 3), dtype=np.int64)
    for i in range(want.shape[0]):
        _step(want, i)
        _step(want, i)
    np.testing.assert_array_equal(out, want)
    (ir,) = _loop_jit.inspect_llvm().values()
    assert not any("_step_marked" in name for name in _called(ir))
    for kernel, marked in ((_step_marked, True), (_step_plain, False)):
        (cres,) = kernel.overloads.values()
        linked = cres.library._get_module_for_linking()
        attrs = [b" ".join(fn.attributes) for fn in linked.functions
                 if not fn.is_declaration and fn.name.startswith("_ZN") and "step" in fn.name
                 and "cpython" not in fn.name]
        assert attrs and all((b"alwaysinline" in a) is marked for a in attrs)


def test_the_per_event_steps_are_marked() -> None:
    """``_txn`` and ``_call`` (kernels of their own for numba's front end) are inlined by LLVM."""
    names = {f"{f.py_func.__module__}.{f.py_func.__qualname__}" for f in (k._txn, k._call)}
    assert {_llvm_inline._prefix(n) for n in names} <= _llvm_inline._PREFIXES
