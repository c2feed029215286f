"""How stored pipelines move: queueing jobs, ending attempts, retrying, advancing the DAG.

Functions over an open SQLAlchemy session; every state change goes through the core's
state machines (``app.core.states``), so an illegal one raises ``IllegalTransition``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.core.config.model import RetryReason, When
from app.core.dag import Node, pipeline_result, settle
from app.core.instances import cost_usd
from app.core.jobspec import StoredJobSpec
from app.core.retry import Final, Retry, decide_after_attempt
from app.core.states import (
    AttemptState,
    JobState,
    attempt_transition,
    job_transition,
)
from app.store.models import Attempt, Job, Pipeline, utcnow


class Changes:
    """What a unit of work changed, so the caller can wake agents and reporters after commit."""

    def __init__(self) -> None:
        self.queued = 0
        self.pipelines: set[int] = set()
        self.cancelled_attempts: set[int] = set()
        self.ended: list[tuple[str, int, str, bool]] = []  # (agent, attempt, state, fork)

    def merge(self, other: Changes) -> None:
        self.queued += other.queued
        self.pipelines |= other.pipelines
        self.cancelled_attempts |= other.cancelled_attempts
        self.ended.extend(other.ended)


def set_job_state(job: Job, target: JobState, now: datetime | None = None) -> None:
    job_transition(job.state, target)
    job.state = target.value
    now = now or utcnow()
    if target.final:
        job.finished_at = now
    elif target is JobState.RUNNING and job.started_at is None:
        job.started_at = now


def set_attempt_state(attempt: Attempt, target: AttemptState, now: datetime | None = None) -> None:
    attempt_transition(attempt.state, target)
    attempt.state = target.value
    now = now or utcnow()
    if target.final:
        attempt.finished_at = now
    elif target is AttemptState.RUNNING:
        attempt.started_at = attempt.started_at or now


def queue_job(s: Session, job: Job, reason: str, changes: Changes) -> Attempt:
    """Move ``job`` to queued with a new attempt that says why it exists."""
    now = utcnow()
    still_queued = job.state == JobState.QUEUED  # its machine never came: keep its place
    set_job_state(job, JobState.QUEUED, now)
    if not (still_queued and job.queued_at):
        job.queued_at = now
    job.finished_at = None
    job.skip_reason = None
    attempt = Attempt(job=job, number=len(job.attempts) + 1, state="queued", reason=reason)
    s.add(attempt)
    changes.queued += 1
    changes.pipelines.add(job.pipeline_id)
    return attempt


def nodes_of(pipeline: Pipeline) -> dict[str, Node]:
    return {
        j.name: Node(j.name, tuple(j.needs), When(j.when), j.allow_failure) for j in pipeline.jobs
    }


def advance(s: Session, pipeline: Pipeline, changes: Changes) -> None:
    """Queue or skip the waiting jobs whose needs settled; update the pipeline's result."""
    nodes = nodes_of(pipeline)
    by_name = {j.name: j for j in pipeline.jobs}
    states = {j.name: JobState(j.state) for j in pipeline.jobs}
    for name, target in settle(nodes, states).items():
        job = by_name[name]
        if target is JobState.QUEUED:
            queue_job(s, job, "needs succeeded" if job.needs else "pipeline started", changes)
        else:
            set_job_state(job, target)
            job.skip_reason = "a job it needs did not succeed"
        states[name] = target
    result = pipeline_result(nodes, states)
    if result.value != pipeline.state:
        pipeline.state = result.value
        pipeline.finished_at = utcnow() if result.final else None
    changes.pipelines.add(pipeline.id)


def end_attempt(
    s: Session,
    attempt: Attempt,
    final: AttemptState,
    reason: RetryReason | None,
    changes: Changes,
    *,
    exit_code: int | None = None,
    error: str | None = None,
) -> None:
    """End ``attempt`` and decide what its job does next: retry by its policy, or end."""
    now = utcnow()
    job = attempt.job
    set_attempt_state(attempt, final, now)
    attempt.end_reason = reason.value if reason else final.value
    attempt.exit_code = exit_code
    if attempt.price_hourly and attempt.claimed_at is not None:
        claimed = attempt.claimed_at
        claimed = claimed if claimed.tzinfo else claimed.replace(tzinfo=now.tzinfo)
        attempt.cost = cost_usd(attempt.price_hourly, (now - claimed).total_seconds())
    elif attempt.claimed_at is not None:
        attempt.cost = 0.0
    if attempt.agent_id:
        changes.ended.append((attempt.agent_id, attempt.id, final.value, job.pipeline.fork))
    if error:
        attempt.error = error[:4000]
    if job.state == JobState.DISPATCHING and final is not AttemptState.INTERRUPTED:
        set_job_state(job, JobState.RUNNING, now)
    spec = StoredJobSpec.from_stored(job.spec)
    match decide_after_attempt(spec.retry, final, reason, attempt.number, exit_code, spec.spot):
        case Retry() as retry:
            queue_job(s, job, retry.reason, changes)
        case Final(job_state=state):
            set_job_state(job, state, now)
    advance(s, job.pipeline, changes)


def cancel_job(s: Session, job: Job, changes: Changes) -> bool:
    """Cancel ``job``: at once when no machine runs it, else ask its agent. False if final."""
    state = JobState(job.state)
    if state.final:
        return False
    live = [a for a in job.attempts if not AttemptState(a.state).final]
    if state in (JobState.WAITING, JobState.MANUAL, JobState.QUEUED):
        for a in live:
            set_attempt_state(a, AttemptState.CANCELLED)
            a.end_reason = "cancelled"
        set_job_state(job, JobState.CANCELLED)
        changes.pipelines.add(job.pipeline_id)
        return True
    for a in live:
        a.cancel_requested = True
        changes.cancelled_attempts.add(a.id)
    return True


def reset_dependents(pipeline: Pipeline, name: str) -> list[Job]:
    """Jobs skipped because ``name`` did not succeed, transitively: back to waiting."""
    reset: list[Job] = []
    frontier = {name}
    while frontier:
        nxt: set[str] = set()
        for j in pipeline.jobs:
            if (
                j.state == JobState.SKIPPED
                and (j.skip_reason or "").startswith("a job it needs")
                and frontier & set(j.needs)
            ):
                set_job_state(j, JobState.WAITING)
                j.finished_at = None
                j.skip_reason = None
                reset.append(j)
                nxt.add(j.name)
        frontier = nxt
    return reset
