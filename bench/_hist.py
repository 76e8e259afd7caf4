"""A log-linear latency histogram in numpy (the HDR histogram layout, no dependency).

Values are non-negative integers (nanoseconds here). Below ``2**(s+1)`` every value has its own
bucket; above, each power-of-two range ``[2**m, 2**(m+1))`` is split into ``2**s`` equal
sub-buckets. A bucket is therefore at most ``2**-s`` of its lower bound wide: with the default
``s = 7`` a reported percentile is the bucket's upper bound, at most 0.79 % above the true value
and never below it (the maximum is kept exactly). Histograms of the same ``s`` add bucket-wise,
so per-worker or per-step histograms merge without losing precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_SUB_BITS", "MAX_VALUE", "LatencyHistogram"]

DEFAULT_SUB_BITS = 7
MAX_VALUE = 2**42  # ns: 73 minutes; larger values are clamped (and counted in ``clamped``)

IntArray = npt.NDArray[np.int64]


def _n_buckets(sub_bits: int) -> int:
    top_shift = max(0, MAX_VALUE.bit_length() - (sub_bits + 1))
    return (top_shift + 1) * (1 << sub_bits) + (1 << sub_bits)


@dataclass
class LatencyHistogram:
    """Counts of values in log-linear buckets; ``record`` takes whole numpy arrays."""

    sub_bits: int = DEFAULT_SUB_BITS
    counts: IntArray = field(init=False)
    total: int = field(init=False, default=0)
    max_value: int = field(init=False, default=0)
    min_value: int = field(init=False, default=0)
    clamped: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.counts = np.zeros(_n_buckets(self.sub_bits), dtype=np.int64)

    @property
    def relative_precision(self) -> float:
        """Upper bound of (reported - true) / true for any percentile."""
        return float(2.0 ** -self.sub_bits)

    def bucket_index(self, values: IntArray) -> IntArray:
        """Bucket of each value (values already clamped to ``[0, MAX_VALUE]``)."""
        s = self.sub_bits
        v = values.astype(np.int64)
        # bit_length via frexp: exact, since every value is below 2**53
        _, exp = np.frexp(v.astype(np.float64))
        shift = np.maximum(exp.astype(np.int64) - (s + 1), 0)
        top = v >> shift
        out: IntArray = np.where(shift == 0, v, shift * (1 << s) + top).astype(np.int64)
        return out

    def bucket_upper(self, index: IntArray) -> IntArray:
        """The largest value that falls in each bucket."""
        s = self.sub_bits
        idx = index.astype(np.int64)
        linear = idx < (1 << (s + 1))
        shift = np.where(linear, 0, idx // (1 << s) - 1)
        top = np.where(linear, idx, idx - shift * (1 << s))
        upper: IntArray = (((top + 1) << shift) - 1).astype(np.int64)
        return upper

    def record(self, values: npt.ArrayLike) -> LatencyHistogram:
        v = np.asarray(values, dtype=np.int64).ravel()
        if v.size == 0:
            return self
        if (v < 0).any():
            raise ValueError("latencies must be >= 0")
        over = v > MAX_VALUE
        self.clamped += int(over.sum())
        v = np.minimum(v, MAX_VALUE)
        vmax, vmin = int(v.max()), int(v.min())
        self.min_value = vmin if self.total == 0 else min(self.min_value, vmin)
        self.max_value = max(self.max_value, vmax)
        self.counts += np.bincount(self.bucket_index(v), minlength=self.counts.size)[: self.counts.size]
        self.total += int(v.size)
        return self

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        if other.sub_bits != self.sub_bits:
            raise ValueError("histograms of different precision do not merge")
        if other.total:
            self.min_value = other.min_value if self.total == 0 else min(self.min_value, other.min_value)
        self.counts += other.counts
        self.total += other.total
        self.max_value = max(self.max_value, other.max_value)
        self.clamped += other.clamped
        return self

    def percentile(self, q: float) -> int:
        """The value at quantile ``q`` in [0, 100] (bucket upper bound, capped at the max)."""
        if not 0.0 <= q <= 100.0:
            raise ValueError("q must be within [0, 100]")
        if self.total == 0:
            return 0
        rank = max(1, int(np.ceil(q / 100.0 * self.total)))
        idx = int(np.searchsorted(np.cumsum(self.counts), rank))
        upper = int(self.bucket_upper(np.array([idx]))[0])
        return min(upper, self.max_value)

    def summary_ms(self) -> dict[str, float]:
        """p50 / p90 / p99 / p99.9 / max (and mean of bucket bounds) in milliseconds."""
        if self.total == 0:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0, "max": 0.0}
        out = {
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "p99_9": self.percentile(99.9),
            "max": self.max_value,
        }
        return {k: round(v / 1e6, 4) for k, v in out.items()}

    def to_json(self) -> dict[str, Any]:
        """Sparse form: only the non-empty buckets (index -> count)."""
        nz = np.flatnonzero(self.counts)
        return {
            "sub_bits": self.sub_bits,
            "unit": "ns",
            "total": self.total,
            "max": self.max_value,
            "min": self.min_value,
            "buckets": {str(int(i)): int(self.counts[i]) for i in nz},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        h = cls(int(data["sub_bits"]))
        for i, c in data["buckets"].items():
            h.counts[int(i)] = int(c)
        h.total = int(data["total"])
        h.max_value = int(data["max"])
        h.min_value = int(data["min"])
        return h
