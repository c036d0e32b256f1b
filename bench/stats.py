"""Small statistics helpers: percentiles, least-squares slope, latency summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile of unsorted ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """Count, mean, p50/p95/p99 and max of durations given in seconds, reported in milliseconds."""
    ms = [s * 1000 for s in seconds]
    summary: dict[str, float | int] = {"count": len(ms)}
    if not ms:
        return summary
    summary["mean"] = round(sum(ms) / len(ms), 2)
    for pct in PERCENTILES:
        summary[f"p{pct}"] = round(percentile(ms, pct), 2)
    summary["max"] = round(max(ms), 2)
    return summary


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    var_x = sum((x - mean_x) ** 2 for x in xs)
    if var_x == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var_x


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing, NaN or the denominator is 0."""
    if numerator is None or denominator is None or math.isnan(numerator) or math.isnan(denominator):
        return None
    if denominator == 0:
        return None
    return numerator / denominator
