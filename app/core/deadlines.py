"""The deadlines the sweeper enforces on an attempt, over plain values.

* a running attempt past its job's timeout plus a grace (its agent should have stopped
  it): timed out, a timeout as far as the retry policy goes;
* a claimed or running attempt whose agent's last heartbeat is older than the heartbeat
  timeout: interrupted (the engine says whether by a spot reclaim or the infrastructure);
* a queued attempt that waited longer than its job's ``retry.capacity_wait`` (default:
  its timeout) for a machine, unless its pipeline is held for approval: timed out for
  no capacity, which the retry policy covers when its ``when`` has ``no_capacity``.

Each limit is exceeded only when strictly passed: at exactly the limit, nothing happens.
The engine applies the answer to its rows (``app.engine.engine.Engine.sweep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.config.model import RetryReason
from app.core.states import AttemptState

# How long a running attempt may overrun its timeout before the sweeper ends it: its
# agent stops it at the timeout and reports, which takes a moment.
TIMEOUT_GRACE = timedelta(seconds=60)

RAN_PAST_TIMEOUT = "the job ran past its timeout and its agent did not stop it"
LOST_HEARTBEAT = "lost the agent's heartbeat"
NO_MACHINE = "no machine became free"


@dataclass(frozen=True, slots=True)
class TimeOut:
    """End the attempt ``timed_out`` with ``error``; ``reason`` is what the job's retry
    policy sees (``no_capacity`` for an attempt that never got a machine)."""

    error: str
    reason: RetryReason | None


@dataclass(frozen=True, slots=True)
class Interrupt:
    """End the attempt ``interrupted``: its agent went silent."""

    error: str


def overdue(
    state: AttemptState,
    *,
    now: datetime,
    timeout_s: int,
    heartbeat_timeout: timedelta,
    started: datetime | None = None,
    heartbeat: datetime | None = None,
    queued: datetime | None = None,
    held: bool = False,
    waiting_reason: str | None = None,
    capacity_wait_s: int | None = None,
    grace: timedelta = TIMEOUT_GRACE,
) -> TimeOut | Interrupt | None:
    """What to do with an attempt in ``state`` at ``now``; None: nothing.

    ``started``: when it started running, ``heartbeat``: its agent's last sign of life
    (for a claimed or running attempt); ``queued``: since when the attempt waits for a
    machine, ``held``: its pipeline waits for approval, ``waiting_reason``: why no
    machine came, ``capacity_wait_s``: how long it may wait (None: ``timeout_s``; for a
    queued attempt). A time that is None is not checked.
    """
    limit = timedelta(seconds=timeout_s)
    if state in (AttemptState.DISPATCHING, AttemptState.RUNNING):
        if state is AttemptState.RUNNING and started is not None and now - started > limit + grace:
            return TimeOut(RAN_PAST_TIMEOUT, RetryReason.TIMEOUT)
        if heartbeat is not None and now - heartbeat > heartbeat_timeout:
            return Interrupt(LOST_HEARTBEAT)
    elif state is AttemptState.QUEUED and queued is not None and not held:
        wait = limit if capacity_wait_s is None else timedelta(seconds=capacity_wait_s)
        if now - queued > wait:
            what = "its timeout" if capacity_wait_s is None else "retry.capacity_wait"
            why = waiting_reason or NO_MACHINE
            return TimeOut(
                f"no capacity: waited longer than {what} ({wait}) for a machine: {why}",
                RetryReason.NO_CAPACITY,
            )
    return None
