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


def test_by_day_buckets_the_last_days_today_last() -> None:
    from datetime import UTC, datetime, timedelta

    from app.core.stats import by_day, day_labels

    now = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    pts = [
        (now, 1.0),
        (now - timedelta(hours=13, minutes=1), 2.0),  # yesterday 23:59
        (now - timedelta(days=2), 3.0),
        (now - timedelta(days=3), 9.0),  # before the window
    ]
    assert by_day(pts, now, days=3) == [[3.0], [2.0], [1.0]]
    assert day_labels(now, days=3) == ["11-30", "12-01", "12-02"]
