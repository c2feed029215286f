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
