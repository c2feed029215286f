"""Small statistics for the dashboard and benches: percentiles and hourly buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def hourly(times: Iterable[datetime], now: datetime, hours: int = 24) -> list[int]:
    """How many of ``times`` fall in each of the last ``hours`` hours, oldest first."""
    counts = [0] * hours
    start = now - timedelta(hours=hours)
    for t in times:
        if start <= t < now:
            counts[int((t - start).total_seconds() // 3600)] += 1
    return counts


def by_day(
    points: Iterable[tuple[datetime, float]], now: datetime, days: int = 14
) -> list[list[float]]:
    """The values of ``points`` in each of the last ``days`` UTC calendar days (today
    last), oldest first."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    out: list[list[float]] = [[] for _ in range(days)]
    for t, v in points:
        if start <= t < today + timedelta(days=1):
            out[(t - start).days].append(v)
    return out


def day_labels(now: datetime, days: int = 14) -> list[str]:
    """``MM-DD`` of each of the last ``days`` days, oldest first."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(today - timedelta(days=days - 1 - i)).strftime("%m-%d") for i in range(days)]
