"""The state machines of jobs and attempts, with every legal transition listed here.

A job is what the user wrote (after matrix expansion); an attempt is one try at running it
on one machine. A retry is a new attempt of the same job.

Job states::

    waiting      its needs have not finished yet
    manual       `when: manual`: created, started only by a command
    queued       ready, waiting for a machine
    dispatching  a machine is being found / the agent is claiming it
    running      an agent runs its steps
    succeeded, failed, cancelled, timed_out, skipped, interrupted   (final)

Legal job transitions::

    waiting     -> queued (needs met) | skipped (a need failed) | cancelled
    manual      -> queued (a command ran it) | cancelled | skipped (pipeline ended)
    queued      -> dispatching | cancelled | timed_out (waited past its timeout)
                 | queued (its machine never came up; retried) | interrupted (not retried)
                 | failed (refused before any machine: policy, budget, a missing secret)
    dispatching -> running | queued (machine lost before start, retried) | cancelled
                 | timed_out | interrupted (machine lost, not retried)
    running     -> succeeded | failed | timed_out | cancelled | interrupted
                 | queued (retried after an attempt ended)
    failed, timed_out, cancelled, interrupted, skipped, succeeded
                -> queued (retried by a person: `/ployd retry`)
                -> waiting (a job it needs was retried, so it may run after all)

Attempt states::

    queued -> dispatching | cancelled | interrupted (the machine started for it never
              registered: boot timeout) | timed_out (no machine within the job's timeout)
              | failed (refused before any machine: policy, budget, a missing secret)
    dispatching -> running | interrupted (machine lost) | cancelled | queued (machine gave it back)
    running -> succeeded | failed | timed_out | cancelled | interrupted
    (the last five are final)

Every other transition raises ``IllegalTransition``.
"""

from __future__ import annotations

from enum import StrEnum


class IllegalTransition(ValueError):
    """A state change that the state machine does not allow."""

    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(f"illegal {kind} transition: {current} -> {target}")
        self.kind = kind
        self.current = current
        self.target = target


class JobState(StrEnum):
    WAITING = "waiting"
    MANUAL = "manual"
    QUEUED = "queued"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self in JOB_FINAL

    @property
    def active(self) -> bool:
        """Holding or about to hold a machine."""
        return self in (JobState.QUEUED, JobState.DISPATCHING, JobState.RUNNING)


class AttemptState(StrEnum):
    QUEUED = "queued"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self in ATTEMPT_FINAL


class PipelineState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self is not PipelineState.RUNNING


J = JobState
JOB_FINAL = frozenset({J.SUCCEEDED, J.FAILED, J.CANCELLED, J.TIMED_OUT, J.SKIPPED, J.INTERRUPTED})
# The final states a person may retry a job from (`/ployd retry`, the re-run buttons).
RETRYABLE = frozenset({J.FAILED, J.CANCELLED, J.TIMED_OUT, J.INTERRUPTED})

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    J.WAITING: frozenset({J.QUEUED, J.SKIPPED, J.CANCELLED}),
    J.MANUAL: frozenset({J.QUEUED, J.CANCELLED, J.SKIPPED}),
    J.QUEUED: frozenset(
        {J.DISPATCHING, J.CANCELLED, J.TIMED_OUT, J.QUEUED, J.INTERRUPTED, J.FAILED}
    ),
    J.DISPATCHING: frozenset({J.RUNNING, J.QUEUED, J.CANCELLED, J.TIMED_OUT, J.INTERRUPTED}),
    J.RUNNING: frozenset(
        {J.SUCCEEDED, J.FAILED, J.TIMED_OUT, J.CANCELLED, J.INTERRUPTED, J.QUEUED}
    ),
    **{s: frozenset({J.QUEUED, J.WAITING}) for s in JOB_FINAL},
}

A = AttemptState
ATTEMPT_FINAL = frozenset({A.SUCCEEDED, A.FAILED, A.CANCELLED, A.TIMED_OUT, A.INTERRUPTED})

ATTEMPT_TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    A.QUEUED: frozenset({A.DISPATCHING, A.CANCELLED, A.INTERRUPTED, A.TIMED_OUT, A.FAILED}),
    A.DISPATCHING: frozenset({A.RUNNING, A.INTERRUPTED, A.CANCELLED, A.QUEUED}),
    A.RUNNING: frozenset({A.SUCCEEDED, A.FAILED, A.TIMED_OUT, A.CANCELLED, A.INTERRUPTED}),
    **{s: frozenset() for s in ATTEMPT_FINAL},
}


def job_transition(current: JobState | str, target: JobState | str) -> JobState:
    """Return ``target`` as a JobState if ``current -> target`` is legal, else raise."""
    cur, tgt = JobState(current), JobState(target)
    if tgt not in JOB_TRANSITIONS[cur]:
        raise IllegalTransition("job", cur.value, tgt.value)
    return tgt


def attempt_transition(current: AttemptState | str, target: AttemptState | str) -> AttemptState:
    """Return ``target`` as an AttemptState if ``current -> target`` is legal, else raise."""
    cur, tgt = AttemptState(current), AttemptState(target)
    if tgt not in ATTEMPT_TRANSITIONS[cur]:
        raise IllegalTransition("attempt", cur.value, tgt.value)
    return tgt


def job_state_for_attempt(state: AttemptState) -> JobState:
    """The job state that a final attempt state leaves the job in, when not retried."""
    return {
        A.SUCCEEDED: J.SUCCEEDED,
        A.FAILED: J.FAILED,
        A.CANCELLED: J.CANCELLED,
        A.TIMED_OUT: J.TIMED_OUT,
        A.INTERRUPTED: J.INTERRUPTED,
    }[state]
