"""JIT flags for the graph kernels, in one place (the same flags as ``features._jit``).

``fastmath`` stays off: amount ratios must compare exactly as in the plain-Python twins.
``cache=True`` so a new process loads compiled kernels from disk instead of compiling them.

``_nrt=False``: the kernels only read and write arrays their caller allocated (the store, and
the detectors' scratch arrays ``graph.live.LiveGraph`` keeps between calls), and never
allocate. Without numba's runtime every array they pass around is a plain pointer; with it,
each array handed to a function or sliced into a view costs an atomic incref and decref. A
kernel that tries to allocate now fails to compile instead of silently paying for it.

``helper`` is for the small functions the per-event kernels call in their loops (list
insertion, the budgeted list scan): numba inlines them in its own IR, so a call costs no
argument marshalling (an array argument is seven machine words).
"""

from __future__ import annotations

from typing import Any

from numba import njit

from features import _inline_copy  # noqa: F401  (cheaper inlining: see the module)

# numba's dispatchers are untyped for mypy: the drivers around the kernels carry the types.
# (``_nrt`` is a jit option numba's type stubs do not list, hence the dict.)
_FLAGS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False, "_nrt": False}
kernel: Any = njit(**_FLAGS)
helper: Any = njit(inline="always", **_FLAGS)
