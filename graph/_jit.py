"""JIT flags for the graph kernels, in one place (the same flags as ``features._jit``).

``fastmath`` stays off: amount ratios must compare exactly as in the plain-Python twins.
``cache=True`` so a new process loads compiled kernels from disk instead of compiling them.
"""

from __future__ import annotations

from typing import Any

from numba import njit

# numba's dispatchers are untyped for mypy: the drivers around the kernels carry the types.
kernel: Any = njit(cache=True, nogil=True, fastmath=False)
