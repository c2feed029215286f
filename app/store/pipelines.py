"""Pipelines, their jobs and attempts as the JSON API shows them: frozen records read in
one short transaction, no ORM row outside it.

Timestamps are as the database gives them back (naive UTC on SQLite, aware on
PostgreSQL), so that what is shown of them stays exactly what was shown of the rows.
Lists are tuples and JSON objects plain dicts (copies): ``json.dumps`` writes them as
it wrote the rows' values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.store.db import Database
from app.store.models import Attempt, Job, Pipeline, Repository


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    job_id: int
    number: int
    state: str
    reason: str
    end_reason: str | None
    error: str | None
    machine: str | None
    instance_type: str | None
    spot: bool
    exit_code: int | None
    failed_step: int | None
    cost: float | None
    steps: tuple[Any, ...]
    log_path: str | None
    log_size: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class JobRecord:
    id: int
    pipeline_id: int
    name: str
    base_name: str
    matrix: dict[str, Any]
    needs: tuple[Any, ...]
    when: str
    allow_failure: bool
    hardware: tuple[Any, ...]
    candidates: tuple[Any, ...]
    state: str
    skip_reason: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: tuple[AttemptRecord, ...]  # by number


@dataclass(frozen=True)
class PipelineRecord:
    id: int
    tenant_id: int
    repo: str  # the repository's full name
    forge: str
    ref: str
    sha: str
    trigger: str
    actor: str
    state: str
    created_at: datetime | None
    finished_at: datetime | None
    jobs: tuple[JobRecord, ...] = field(default=())  # by position; empty unless asked for
    pr_number: int | None = None
    clone_url: str = ""


def _attempt(a: Attempt) -> AttemptRecord:
    return AttemptRecord(
        id=a.id,
        job_id=a.job_id,
        number=a.number,
        state=a.state,
        reason=a.reason,
        end_reason=a.end_reason,
        error=a.error,
        machine=a.machine,
        instance_type=a.instance_type,
        spot=a.spot,
        exit_code=a.exit_code,
        failed_step=a.failed_step,
        cost=a.cost,
        steps=tuple(a.steps),
        log_path=a.log_path,
        log_size=a.log_size,
        created_at=a.created_at,
        started_at=a.started_at,
        finished_at=a.finished_at,
    )


def _job(j: Job, attempts: Sequence[Attempt]) -> JobRecord:
    return JobRecord(
        id=j.id,
        pipeline_id=j.pipeline_id,
        name=j.name,
        base_name=j.base_name,
        matrix=dict(j.matrix),
        needs=tuple(j.needs),
        when=j.when,
        allow_failure=j.allow_failure,
        hardware=tuple(j.hardware),
        candidates=tuple(j.candidates),
        state=j.state,
        skip_reason=j.skip_reason,
        queued_at=j.queued_at,
        started_at=j.started_at,
        finished_at=j.finished_at,
        attempts=tuple(_attempt(a) for a in attempts),
    )


def _pipeline(p: Pipeline, repo: Repository, jobs: tuple[JobRecord, ...] = ()) -> PipelineRecord:
    return PipelineRecord(
        id=p.id,
        tenant_id=repo.tenant_id,
        repo=repo.full_name,
        forge=p.forge,
        ref=p.ref,
        sha=p.sha,
        trigger=p.trigger,
        actor=p.actor,
        state=p.state,
        created_at=p.created_at,
        finished_at=p.finished_at,
        jobs=jobs,
        pr_number=p.pr_number,
        clone_url=repo.clone_url,
    )


def _attempts_of(s: Session, job_ids: Sequence[int]) -> dict[int, list[Attempt]]:
    by_job: dict[int, list[Attempt]] = {i: [] for i in job_ids}
    if job_ids:
        rows = s.scalars(
            select(Attempt).where(Attempt.job_id.in_(job_ids)).order_by(Attempt.number)
        )
        for a in rows:
            by_job[a.job_id].append(a)
    return by_job


def list_pipelines(
    db: Database, limit: int, *, tenant_id: int | None = None
) -> list[PipelineRecord]:
    """The newest ``limit`` pipelines first (without their jobs), of every tenant or of
    ``tenant_id``'s."""
    q = select(Pipeline, Repository).join(Repository, Pipeline.repository_id == Repository.id)
    if tenant_id is not None:
        q = q.where(Repository.tenant_id == tenant_id)
    with db.session() as s:
        rows = s.execute(q.order_by(Pipeline.id.desc()).limit(limit))
        return [_pipeline(p, repo) for p, repo in rows]


@dataclass(frozen=True)
class PipelineFilter:
    """What the pipelines list is narrowed to; None: any."""

    repo: str | None = None  # the repository's full name
    branch: str | None = None  # ``main`` matches ``main`` and ``refs/heads/main``
    state: str | None = None
    forge: str | None = None
    tenant_id: int | None = None


def find_pipelines(
    db: Database, where: PipelineFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[PipelineRecord], bool]:
    """A page of the pipelines list: the newest ``limit`` matching ``where`` whose id is
    below ``before_id`` (keyset paging), and whether there are more after them."""
    q = select(Pipeline, Repository).join(Repository, Pipeline.repository_id == Repository.id)
    if where.repo:
        q = q.where(Repository.full_name == where.repo)
    if where.branch:
        b = where.branch
        q = q.where(Pipeline.ref.in_((b, f"refs/heads/{b}")))
    if where.state:
        q = q.where(Pipeline.state == where.state)
    if where.forge:
        q = q.where(Pipeline.forge == where.forge)
    if where.tenant_id is not None:
        q = q.where(Repository.tenant_id == where.tenant_id)
    if before_id is not None:
        q = q.where(Pipeline.id < before_id)
    with db.session() as s:
        rows = list(s.execute(q.order_by(Pipeline.id.desc()).limit(limit + 1)))
        return [_pipeline(p, repo) for p, repo in rows[:limit]], len(rows) > limit


def job_states(db: Database, pipeline_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """For each pipeline, how many of its jobs are in each state."""
    out: dict[int, dict[str, int]] = {i: {} for i in pipeline_ids}
    if not pipeline_ids:
        return out
    with db.session() as s:
        rows = s.execute(
            select(Job.pipeline_id, Job.state, func.count())
            .where(Job.pipeline_id.in_(pipeline_ids))
            .group_by(Job.pipeline_id, Job.state)
        )
        for pid, state, n in rows:
            out[int(pid)][str(state)] = int(n)
    return out


def filter_choices(db: Database) -> tuple[list[str], list[str]]:
    """The repositories (full names) and forges there are, for the list's filters."""
    with db.session() as s:
        repos = sorted({str(r) for r in s.scalars(select(Repository.full_name))})
        forges = sorted({str(f) for f in s.scalars(select(Pipeline.forge).distinct())})
    return repos, forges


def pipeline_record(
    db: Database, pipeline_id: int, *, tenant_id: int | None = None
) -> PipelineRecord | None:
    """The pipeline with its jobs and their attempts; None when there is no such
    pipeline (or, given ``tenant_id``, when it is another tenant's)."""
    with db.session() as s:
        found = s.execute(
            select(Pipeline, Repository)
            .join(Repository, Pipeline.repository_id == Repository.id)
            .where(Pipeline.id == pipeline_id)
        ).one_or_none()
        if found is None or (tenant_id is not None and found[1].tenant_id != tenant_id):
            return None
        p, repo = found
        jobs = list(s.scalars(select(Job).where(Job.pipeline_id == p.id).order_by(Job.position)))
        attempts = _attempts_of(s, [j.id for j in jobs])
        return _pipeline(p, repo, tuple(_job(j, attempts[j.id]) for j in jobs))


def job_record(db: Database, job_id: int) -> JobRecord | None:
    """The job with its attempts (by number), or None."""
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        return _job(job, _attempts_of(s, [job.id])[job.id])


def attempt_record(db: Database, attempt_id: int) -> AttemptRecord | None:
    with db.session() as s:
        a = s.get(Attempt, attempt_id)
        return _attempt(a) if a is not None else None
