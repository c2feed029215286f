from datetime import UTC, datetime, timedelta

import pytest

from app.core.stats import hourly, percentile


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([5.0], 95, 5.0),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 95, 4),
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 95, 95),
        ([3, 1, 2], 0, 1),
    ],
)
def test_percentile(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


def test_hourly() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    times = [
        now - timedelta(minutes=5),
        now - timedelta(minutes=50),
        now - timedelta(hours=23, minutes=30),
        now - timedelta(hours=30),
        now,
    ]
    counts = hourly(times, now)
    assert len(counts) == 24 and counts[-1] == 2 and counts[0] == 1 and sum(counts) == 3
