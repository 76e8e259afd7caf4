"""The benchmark smoke tests run last: by then the end-to-end tests have compiled and cached
the kernels (numba's on-disk cache), so they do not pay the one-time compile inside their budget."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    smoke = [item for item in items
             if item.nodeid.startswith(("tests/bench/test_smoke.py", "tests/bench/test_overload_smoke.py"))]
    if smoke:
        items[:] = [item for item in items if item not in smoke] + smoke
