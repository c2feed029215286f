"""What the operators' dashboard shows, read in one transaction into frozen values: the
jobs queued or running, the machines not terminated, the attempts claimed since a time,
and the cost of attempts finished since a time, by repository.

Timestamps are as the database gives them back (naive UTC on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app.core.instances import InstanceState
from app.store import instances
from app.store.db import Database
from app.store.instances import InstanceView
from app.store.models import Attempt, Instance, Job, Pipeline, Repository

ACTIVE = ("waiting", "queued", "dispatching", "running")


@dataclass(frozen=True)
class ActiveJob:
    """A job waiting, queued, dispatching or running."""

    id: int
    repo: str
    name: str
    state: str
    hardware: tuple[str, ...]
    waiting_reason: str | None
    waiting_since: datetime | None
    queued_at: datetime | None
    created_at: datetime | None


@dataclass(frozen=True)
class ClaimedAttempt:
    hardware: tuple[str, ...]  # what it asked for
    created_at: datetime | None
    claimed_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class DashboardSummary:
    active: tuple[ActiveJob, ...]  # by job id
    machines: tuple[InstanceView, ...]
    claimed: tuple[ClaimedAttempt, ...]
    cost: tuple[tuple[str, float], ...]  # (repository, dollars), the most first


@dataclass(frozen=True)
class PastAttempt:
    """An attempt created since a time, for the dashboard's charts."""

    hardware: tuple[str, ...]
    repo: str
    state: str
    created_at: datetime | None
    claimed_at: datetime | None
    finished_at: datetime | None
    cost: float | None


@dataclass(frozen=True)
class Failure:
    """A job that failed recently, for the dashboard's "what failed" list."""

    job_id: int
    job: str
    pipeline_id: int
    repo: str
    ref: str
    state: str
    why: str
    finished_at: datetime | None


FAILED = ("failed", "timed_out", "interrupted")
ENDED = {  # an attempt's end_reason, as people say it
    "script_failure": "a step failed",
    "spot_interruption": "the spot machine was reclaimed",
    "timeout": "it ran past its timeout",
    "infrastructure": "the machine failed",
    "cancelled": "cancelled",
    "refused": "the agent refused it",
}


def history(db: Database, since: datetime, limit: int = 50_000) -> tuple[PastAttempt, ...]:
    """The attempts created since ``since`` (at most ``limit``, the newest)."""
    with db.session() as s:
        rows = s.execute(
            select(Attempt, Repository.full_name)
            .join(Job, Attempt.job_id == Job.id)
            .join(Pipeline, Job.pipeline_id == Pipeline.id)
            .join(Repository, Pipeline.repository_id == Repository.id)
            .where(Attempt.created_at >= since)
            .order_by(Attempt.id.desc())
            .limit(limit)
        )
        return tuple(
            PastAttempt(
                tuple(str(h) for h in (a.hardware or ())),
                repo,
                a.state,
                a.created_at,
                a.claimed_at,
                a.finished_at,
                a.cost,
            )
            for a, repo in rows
        )


def failures(db: Database, since: datetime, limit: int = 20) -> tuple[Failure, ...]:
    """Jobs that are failed now and finished since ``since``, the latest first."""
    with db.session() as s:
        rows = s.execute(
            select(Job, Pipeline, Repository.full_name)
            .join(Pipeline, Job.pipeline_id == Pipeline.id)
            .join(Repository, Pipeline.repository_id == Repository.id)
            .where(Job.state.in_(FAILED), Job.finished_at >= since)
            .order_by(Job.finished_at.desc(), Job.id.desc())
            .limit(limit)
        ).all()
        last = {
            a.job_id: a
            for a in s.scalars(
                select(Attempt)
                .where(Attempt.job_id.in_([j.id for j, _, _ in rows]))
                .order_by(Attempt.number)
            )
        }
        out = []
        for job, p, repo in rows:
            a = last.get(job.id)
            why = (a.error or ENDED.get(a.end_reason or "", a.end_reason or "")) if a else ""
            code = f" (exit {a.exit_code})" if a is not None and a.exit_code else ""
            out.append(
                Failure(job.id, job.name, p.id, repo, p.ref, job.state, why + code, job.finished_at)
            )
        return tuple(out)


def running_jobs_by_agent(db: Database) -> dict[str, tuple[int, str, str]]:
    """For each agent (or machine) running an attempt: (job id, job name, repository)."""
    live = ("dispatching", "running")
    with db.session() as s:
        rows = s.execute(
            select(Attempt.agent_id, Attempt.machine, Job.id, Job.name, Repository.full_name)
            .join(Job, Attempt.job_id == Job.id)
            .join(Pipeline, Job.pipeline_id == Pipeline.id)
            .join(Repository, Pipeline.repository_id == Repository.id)
            .where(Attempt.state.in_(live))
        )
        out: dict[str, tuple[int, str, str]] = {}
        for agent, machine, job_id, name, repo in rows:
            for key in {agent, machine} - {None}:
                out[str(key)] = (int(job_id), str(name), str(repo))
        return out


def dashboard_summary(
    db: Database, *, claimed_since: datetime, finished_since: datetime, active_limit: int = 500
) -> DashboardSummary:
    """The first ``active_limit`` active jobs, the machines whose state is not
    ``terminated``, the attempts claimed since ``claimed_since``, and the cost of the
    attempts finished since ``finished_since`` by repository."""
    with db.session() as s:
        jobs = s.execute(
            select(Job, Repository.full_name)
            .join(Pipeline, Job.pipeline_id == Pipeline.id)
            .join(Repository, Pipeline.repository_id == Repository.id)
            .where(Job.state.in_(ACTIVE))
            .order_by(Job.id)
            .limit(active_limit)
        )
        active = tuple(
            ActiveJob(
                id=job.id,
                repo=repo,
                name=job.name,
                state=job.state,
                hardware=tuple(job.hardware or ()),
                waiting_reason=job.waiting_reason,
                waiting_since=job.waiting_since,
                queued_at=job.queued_at,
                created_at=job.created_at,
            )
            for job, repo in jobs
        )
        machines = tuple(
            instances.view(m)
            for m in s.scalars(
                select(Instance).where(Instance.state != InstanceState.TERMINATED.value)
            )
        )
        claimed = tuple(
            ClaimedAttempt(tuple(a.hardware or ()), a.created_at, a.claimed_at, a.finished_at)
            for a in s.scalars(select(Attempt).where(Attempt.claimed_at >= claimed_since))
        )
        cost = tuple(
            (repo, float(total or 0))
            for repo, total in s.execute(
                select(Repository.full_name, func.sum(Attempt.cost))
                .join(Job, Attempt.job_id == Job.id)
                .join(Pipeline, Job.pipeline_id == Pipeline.id)
                .join(Repository, Pipeline.repository_id == Repository.id)
                .where(Attempt.finished_at >= finished_since)
                .group_by(Repository.full_name)
                .order_by(func.sum(Attempt.cost).desc())
            )
        )
    return DashboardSummary(active, machines, claimed, cost)
