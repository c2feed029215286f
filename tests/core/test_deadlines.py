"""The sweeper's deadlines: run timeout plus grace, heartbeat, waiting for a machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core.config.model import RetryReason
from app.core.deadlines import (
    LOST_HEARTBEAT,
    RAN_PAST_TIMEOUT,
    TIMEOUT_GRACE,
    Interrupt,
    TimeOut,
    overdue,
)
from app.core.states import AttemptState

A = AttemptState
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HB = timedelta(seconds=60)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


RAN_OUT = TimeOut(RAN_PAST_TIMEOUT, RetryReason.TIMEOUT)
SILENT = Interrupt(LOST_HEARTBEAT)


@pytest.mark.parametrize(
    ("state", "started", "heartbeat", "expected"),
    [
        # timeout 600 s + grace 60 s: only strictly past 660 s
        (A.RUNNING, ago(600), ago(1), None),
        (A.RUNNING, ago(660), ago(1), None),
        (A.RUNNING, ago(660.001), ago(1), RAN_OUT),
        (A.RUNNING, ago(5000), ago(1), RAN_OUT),
        # the run timeout wins over a lost heartbeat
        (A.RUNNING, ago(5000), ago(5000), RAN_OUT),
        # heartbeat timeout 60 s: exactly at the limit is not lost
        (A.RUNNING, ago(100), ago(60), None),
        (A.RUNNING, ago(100), ago(60.001), SILENT),
        # a claimed attempt that has not started: no run timeout, the heartbeat still counts
        (A.DISPATCHING, ago(5000), ago(30), None),
        (A.DISPATCHING, ago(5000), ago(61), SILENT),
        # times not known are not checked
        (A.RUNNING, None, ago(1), None),
        (A.RUNNING, ago(100), None, None),
        (A.RUNNING, None, ago(61), SILENT),
        # final and queued attempts have no run or heartbeat deadline
        (A.SUCCEEDED, ago(5000), ago(5000), None),
        (A.INTERRUPTED, ago(5000), ago(5000), None),
        (A.QUEUED, ago(5000), ago(5000), None),
    ],
)
def test_running_and_heartbeat(
    state: AttemptState,
    started: datetime | None,
    heartbeat: datetime | None,
    expected: TimeOut | Interrupt | None,
) -> None:
    got = overdue(
        state, now=NOW, timeout_s=600, heartbeat_timeout=HB, started=started, heartbeat=heartbeat
    )
    assert got == expected


@pytest.mark.parametrize(
    ("grace", "started", "expected"),
    [
        (timedelta(0), ago(600), None),
        (timedelta(0), ago(600.5), RAN_OUT),
        (timedelta(seconds=120), ago(720), None),
        (timedelta(seconds=120), ago(721), RAN_OUT),
    ],
)
def test_the_grace_is_added_to_the_timeout(
    grace: timedelta, started: datetime, expected: TimeOut | None
) -> None:
    got = overdue(
        A.RUNNING, now=NOW, timeout_s=600, heartbeat_timeout=HB, started=started,
        heartbeat=NOW, grace=grace,
    )
    assert got == expected


def test_the_default_grace_is_a_minute() -> None:
    assert timedelta(seconds=60) == TIMEOUT_GRACE
    for started, expected in ((ago(120), None), (ago(121), RAN_OUT)):
        got = overdue(
            A.RUNNING, now=NOW, timeout_s=60, heartbeat_timeout=HB, started=started, heartbeat=NOW
        )
        assert got == expected


WAITED = "no capacity: waited longer than its timeout (0:05:00) for a machine: "
NO_CAP = RetryReason.NO_CAPACITY


@pytest.mark.parametrize(
    ("state", "queued", "held", "why", "expected"),
    [
        (A.QUEUED, ago(299), False, None, None),
        (A.QUEUED, ago(300), False, None, None),  # exactly the timeout: not yet
        (A.QUEUED, ago(301), False, None, TimeOut(WAITED + "no machine became free", NO_CAP)),
        (A.QUEUED, ago(301), False, "", TimeOut(WAITED + "no machine became free", NO_CAP)),
        (
            A.QUEUED, ago(301), False, "waiting for capacity: tried p5.4xlarge spot us-east-1a",
            TimeOut(WAITED + "waiting for capacity: tried p5.4xlarge spot us-east-1a", NO_CAP),
        ),
        # a held pipeline (a fork's, waiting for approval) never times out while queued
        (A.QUEUED, ago(301), True, None, None),
        (A.QUEUED, ago(10**6), True, "anything", None),
        (A.QUEUED, None, False, None, None),
        # the wait for a machine is only a queued attempt's
        (A.RUNNING, ago(10**6), False, None, None),
        (A.DISPATCHING, ago(10**6), False, None, None),
        (A.TIMED_OUT, ago(10**6), False, None, None),
    ],
)
def test_waiting_for_a_machine(
    state: AttemptState,
    queued: datetime | None,
    held: bool,
    why: str | None,
    expected: TimeOut | None,
) -> None:
    got = overdue(
        state, now=NOW, timeout_s=300, heartbeat_timeout=HB, queued=queued, held=held,
        waiting_reason=why,
    )
    assert got == expected


def test_the_wait_message_writes_the_timeout_as_a_timedelta() -> None:
    got = overdue(A.QUEUED, now=NOW, timeout_s=1800, heartbeat_timeout=HB, queued=ago(1801))
    assert got == TimeOut(
        "no capacity: waited longer than its timeout (0:30:00) for a machine: no machine "
        "became free",
        NO_CAP,
    )
    got = overdue(A.QUEUED, now=NOW, timeout_s=90000, heartbeat_timeout=HB, queued=ago(90001))
    assert isinstance(got, TimeOut)
    assert got.error.startswith("no capacity: waited longer than its timeout (1 day, 1:00:00)")


def test_a_queued_attempt_ignores_its_heartbeat() -> None:
    assert overdue(A.QUEUED, now=NOW, timeout_s=300, heartbeat_timeout=HB,
                   heartbeat=ago(10**6), queued=ago(10)) is None


def test_retry_capacity_wait_replaces_the_timeout_for_the_wait() -> None:
    def wait(seconds: int) -> TimeOut | Interrupt | None:
        return overdue(A.QUEUED, now=NOW, timeout_s=1800, heartbeat_timeout=HB,
                       queued=ago(seconds), capacity_wait_s=120, waiting_reason="no l4 left")
    assert wait(120) is None  # exactly the wait: not yet
    assert wait(121) == TimeOut(
        "no capacity: waited longer than retry.capacity_wait (0:02:00) for a machine: "
        "no l4 left",
        NO_CAP,
    )
    # a running attempt keeps its timeout: capacity_wait is only about getting a machine
    assert overdue(A.RUNNING, now=NOW, timeout_s=1800, heartbeat_timeout=HB,
                   started=ago(1000), heartbeat=ago(1), capacity_wait_s=120) is None
