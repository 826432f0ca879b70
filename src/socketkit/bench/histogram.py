"""A log-linear (HDR-style) latency histogram: constant relative error, fixed memory.

Values are integers (nanoseconds here). Below ``2**SUB_BITS`` every value has its own bucket;
above, each power-of-two range is split into ``2**(SUB_BITS-1)`` equal buckets, so a recorded
value is known to within 1/128 (0.8 %) whatever its magnitude, as in Gil Tene's HdrHistogram.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LatencyHistogram"]

SUB_BITS = 8
_SUB = 1 << SUB_BITS
_HALF = _SUB >> 1
#: Values up to 2**MAX_BITS ns (about 18 minutes) are kept; larger ones land in the top bucket.
MAX_BITS = 40
_BUCKETS = _SUB + (MAX_BITS - SUB_BITS + 1) * _HALF


def _index(value: int) -> int:
    if value < _SUB:
        return max(value, 0)
    shift = value.bit_length() - SUB_BITS
    top = value >> shift  # in [_HALF, _SUB)
    return min(_SUB + (shift - 1) * _HALF + (top - _HALF), _BUCKETS - 1)


def _upper(index: int) -> int:
    """The largest value that falls in bucket ``index``."""
    if index < _SUB:
        return index
    shift, rest = divmod(index - _SUB, _HALF)
    shift += 1
    return ((rest + _HALF + 1) << shift) - 1


class LatencyHistogram:
    """Counts of values in log-linear buckets, plus the exact min, max and sum."""

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int) -> None:
        self.counts[_index(value)] += 1
        if not self.count or value < self.min:
            self.min = value
        self.max = max(self.max, value)
        self.count += 1
        self.total += value

    def merge(self, others: Iterable[LatencyHistogram]) -> LatencyHistogram:
        for other in others:
            if not other.count:
                continue
            for i, c in enumerate(other.counts):
                if c:
                    self.counts[i] += c
            self.min = other.min if not self.count else min(self.min, other.min)
            self.max = max(self.max, other.max)
            self.count += other.count
            self.total += other.total
        return self

    def percentile(self, pct: float) -> int:
        """The value at percentile ``pct`` (0-100): a bucket's upper edge, at most ``max``."""
        if not self.count:
            return 0
        rank = max(1, round(self.count * pct / 100.0 + 0.4999999))
        seen = 0
        for index, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(_upper(index), self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary_us(self) -> dict[str, float]:
        """p50/p90/p99/p99.9/max and mean in microseconds."""
        return {
            "count": self.count,
            "min_us": self.min / 1000,
            "mean_us": self.mean / 1000,
            "p50_us": self.percentile(50) / 1000,
            "p90_us": self.percentile(90) / 1000,
            "p99_us": self.percentile(99) / 1000,
            "p99_9_us": self.percentile(99.9) / 1000,
            "max_us": self.max / 1000,
        }
