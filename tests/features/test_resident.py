"""State arrays: filled, writable, and (large ones) on 2 MB-aligned memory advised for huge pages."""

from __future__ import annotations

import gc
import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from features.state import FeatureState, resident


def _mapping_flags(addr: int) -> dict[str, str]:
    """The /proc/self/smaps fields of the mapping holding ``addr``."""
    fields: dict[str, str] = {}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and ":" in head:
            fields[head.rstrip(":")] = line.split(":", 1)[1].strip()
    return fields


@pytest.mark.parametrize("shape, dtype, fill", [
    ((10, 3), np.int64, 7),  # small: a plain numpy array
    ((100_000, 35, 6), np.int32, -1),  # 84 MB: a mapping of its own
    ((300_000, 4), np.int64, -(2**62)),
    ((200_000, 2), np.float64, 0.5),
])
def test_resident_is_filled_and_writable(shape: tuple[int, ...], dtype: type[np.generic],
                                         fill: int | float) -> None:
    a = resident(shape, dtype, fill)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert np.all(a == fill)
    a[-1] = 3
    assert a[-1].min() == 3 and a[0].min() == fill


def test_large_arrays_start_on_a_huge_page_and_outlive_their_first_view() -> None:
    a = resident((1 << 18, 8), np.int64, 1)  # 16 MB
    assert a.ctypes.data % (2 << 20) == 0
    tail = a[-5:]
    del a
    gc.collect()
    tail[:] = 9  # the mapping is still there (a crash here would mean it was unmapped)
    assert int(tail.sum()) == 9 * tail.size


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"),
                    reason="huge-page advice is Linux only")
def test_large_arrays_are_advised_for_huge_pages() -> None:
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    a = resident((1 << 18, 8), np.int64, 0)
    flags = _mapping_flags(a.ctypes.data)
    assert flags.get("THPeligible") == "1", flags
    assert resident((100, 8), np.int64, 0).base is None  # small ones: a plain numpy array


def test_feature_state_of_many_accounts_is_on_advised_memory() -> None:
    state = FeatureState.create(accounts=50_000, phones=10, devices=10, pairs=16)
    assert state.accounts.cnt.ctypes.data % (2 << 20) == 0
    state.ensure(100_000, 10, 10, new_pairs=0)  # growth keeps it so
    assert state.accounts.cnt.ctypes.data % (2 << 20) == 0
    assert state.accounts.capacity == 100_000
