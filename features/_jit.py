"""JIT flags for every kernel, in one place.

``fastmath`` stays off: money sums must be exact and the plain-Python twins must agree.
``cache=True`` so a new process loads compiled kernels from disk instead of compiling them.
"""

from __future__ import annotations

from typing import Any

from numba import njit

# numba's dispatchers are untyped for mypy: the drivers around the kernels carry the types.
kernel: Any = njit(cache=True, nogil=True, fastmath=False)
