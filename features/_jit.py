"""JIT flags for every kernel, in one place.

``fastmath`` stays off: money sums must be exact and the plain-Python twins must agree.
``cache=True`` so a new process loads compiled kernels from disk instead of compiling them.

``_nrt=False``: the kernels only read and write arrays their caller allocated, and never
allocate. Without numba's runtime every array they pass around is a plain pointer; with it,
each array handed to a function or sliced into a view costs an atomic incref and decref, which
measured half of the per-event time of the feature kernels (2.1 -> 1.05 µs per transaction).
A kernel that tries to allocate now fails to compile instead of silently paying for it.

``helper`` is for the small functions the per-event kernels call: numba inlines them in its own
IR, so a call costs no argument marshalling (~0.7 µs per transaction when they were calls).
"""

from __future__ import annotations

from typing import Any

from numba import njit

from features import (
    _inline_copy,  # noqa: F401  (cheaper inlining: see the module)
    _llvm_inline,
)

# numba's dispatchers are untyped for mypy: the drivers around the kernels carry the types.
# (``_nrt`` is a jit option numba's type stubs do not list, hence the dict.)
_FLAGS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False, "_nrt": False}
kernel: Any = njit(**_FLAGS)
helper: Any = njit(inline="always", **_FLAGS)


def inlined(func: Any) -> Any:
    """A kernel of its own for numba's front end that LLVM inlines into the kernels calling
    it (``features._llvm_inline``): for the large per-event steps."""
    return _llvm_inline.mark(kernel(func))
