"""JIT flags for every kernel, in one place.

``fastmath`` stays off: money sums must be exact and the plain-Python twins must agree.
``cache=True`` so a new process loads compiled kernels from disk instead of compiling them.
"""

from __future__ import annotations

JIT: dict[str, bool] = {"cache": True, "nogil": True, "fastmath": False}
