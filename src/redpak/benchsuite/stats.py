"""Statistics of the benchmark: order statistics and a least-squares line, on plain lists."""

from __future__ import annotations

import math


def percentile(samples: list[float], pct: float) -> float:
    """The nearest-rank percentile (the smallest sample with at least PCT % of the samples
    at or below it). Raises ValueError on an empty list."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: list[float]) -> float:
    """The median (mean of the two middle samples for an even count)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def quartiles(samples: list[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3): the medians of the lower and upper halves (Tukey's hinges)."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 1:
        return ordered[0], ordered[0], ordered[0]
    half = n // 2
    return median(ordered[:half]), median(ordered), median(ordered[n - half:])


def summary(samples: list[float]) -> dict[str, float]:
    """What the JSON keeps for a list of latencies (ms): median, p95, min, max, n."""
    return {"median": median(samples), "p95": percentile(samples, 95),
            "min": min(samples), "max": max(samples), "n": len(samples)}


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares line y = slope * x + intercept, and r² (1 when the points are on it).
    Needs two distinct x values."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("a line needs two points with distinct x")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return {"slope": slope, "intercept": intercept, "r2": r2}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
