"""Latency statistics for a run: percentiles over the jobs' timings, in milliseconds."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Percentiles of one timing (queue wait, processing or total), in milliseconds."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "p50": _round(self.p50),
            "p95": _round(self.p95),
            "p99": _round(self.p99),
            "max": _round(self.max),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of values at or below it."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(values: list[float]) -> Summary:
    """Summarize timings in milliseconds."""
    # NOTE: keeps every value (8 bytes a job per timing); fine up to a few million jobs a run.
    if not values:
        return Summary(0, None, None, None, None)
    ordered = sorted(values)
    return Summary(
        count=len(ordered),
        p50=percentile(ordered, 0.50),
        p95=percentile(ordered, 0.95),
        p99=percentile(ordered, 0.99),
        max=ordered[-1],
    )


def histogram(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    """Count values per bucket: ``(-inf, b0], (b0, b1], ..., (bn, inf)``."""
    counts = [0] * (len(bounds) + 1)
    for value in values:
        index = 0
        while index < len(bounds) and value > bounds[index]:
            index += 1
        counts[index] += 1
    return counts
