"""Small statistics for benchmark samples: medians, percentiles, ratios and number formats."""

import math
import statistics
from typing import Sequence


def median(values: Sequence[float]) -> float:
    """Return the median of the values, NaN when there are none."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the nearest-rank percentile, the value at rank ceil(pct/100 * n), or NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def rate(value: float) -> str:
    """Format a rate in jobs/s without decimals: 12,345."""
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def ms(value: float) -> str:
    """Format milliseconds with two decimals."""
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def times(value: float) -> str:
    """Format a ratio as 0.93x."""
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def spread(values: Sequence[float], fmt=rate) -> str:
    """Format the range of the repeats, e.g. "11,900-12,400", so the noise stays visible."""
    if not values:
        return "n/a"
    return f"{fmt(min(values))}-{fmt(max(values))}"
