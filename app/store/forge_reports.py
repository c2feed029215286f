"""What the forge reporters read and write in the store: a pipeline as its reports show
it, and the memory of what was last sent to a forge (``ForgeReport``), as functions that
return frozen views (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.store.db import Database
from app.store.models import Attempt, ForgeReport, Job, Pipeline, utcnow


@dataclass(frozen=True, slots=True)
class Sent:
    """What was last sent about one thing: the forge's id for it, the payload's digest."""

    remote_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class ReportAttempt:
    """A job's latest attempt, as its report shows it."""

    number: int
    state: str
    reason: str
    error: str | None
    end_reason: str | None
    instance_type: str | None
    spot: bool
    started_at: datetime | None
    cost: float | None
    exit_code: int | None
    failed_step: int | None
    steps: tuple[dict[str, Any], ...]
    log_path: str | None
    log_size: int


@dataclass(frozen=True, slots=True)
class ReportJob:
    id: int
    name: str
    state: str
    allow_failure: bool
    hardware: tuple[str, ...]
    when: str
    created_at: datetime
    queued_at: datetime | None
    finished_at: datetime | None
    waiting_reason: str | None
    waiting_since: datetime | None
    skip_reason: str | None
    last: ReportAttempt | None  # None: no attempt yet


@dataclass(frozen=True, slots=True)
class ReportPipeline:
    id: int
    forge: str
    state: str
    sha: str
    ref: str
    trigger: str
    pr_number: int | None
    held: bool
    repository_id: int
    full_name: str
    tenant_id: int
    tenant_external_id: str
    jobs: tuple[ReportJob, ...]


def _attempt(a: Attempt) -> ReportAttempt:
    return ReportAttempt(
        number=a.number,
        state=a.state,
        reason=a.reason,
        error=a.error,
        end_reason=a.end_reason,
        instance_type=a.instance_type,
        spot=a.spot,
        started_at=a.started_at,
        cost=a.cost,
        exit_code=a.exit_code,
        failed_step=a.failed_step,
        steps=tuple(a.steps or ()),
        log_path=a.log_path,
        log_size=a.log_size,
    )


def _job(j: Job) -> ReportJob:
    return ReportJob(
        id=j.id,
        name=j.name,
        state=j.state,
        allow_failure=j.allow_failure,
        hardware=tuple(j.hardware),
        when=j.when,
        created_at=j.created_at,
        queued_at=j.queued_at,
        finished_at=j.finished_at,
        waiting_reason=j.waiting_reason,
        waiting_since=j.waiting_since,
        skip_reason=j.skip_reason,
        last=_attempt(j.attempts[-1]) if j.attempts else None,
    )


def report_pipeline(db: Database, forge: str, pipeline_id: int) -> ReportPipeline | None:
    """One of ``forge``'s pipelines with its jobs (in order) and their latest attempts;
    None when there is no such pipeline of that forge."""
    with db.session() as s:
        p = s.get(Pipeline, pipeline_id)
        if p is None or p.forge != forge:
            return None
        return ReportPipeline(
            id=p.id,
            forge=p.forge,
            state=p.state,
            sha=p.sha,
            ref=p.ref,
            trigger=p.trigger,
            pr_number=p.pr_number,
            held=p.held,
            repository_id=p.repository_id,
            full_name=p.repository.full_name,
            tenant_id=p.repository.tenant.id,
            tenant_external_id=p.repository.tenant.external_id,
            jobs=tuple(_job(j) for j in p.jobs),
        )


def newer_exists(db: Database, pipeline: ReportPipeline) -> bool:
    """A newer pipeline of the same pull/merge request: it owns the summary comment."""
    with db.engine.connect() as conn:
        newer = conn.execute(
            select(Pipeline.id)
            .where(
                Pipeline.repository_id == pipeline.repository_id,
                Pipeline.pr_number == pipeline.pr_number,
                Pipeline.id > pipeline.id,
            )
            .limit(1)
        ).scalar()
    return newer is not None


# -- what was sent ----------------------------------------------------------------------


def sent(db: Database, forge: str, key: str) -> Sent | None:
    """What was last sent to ``forge`` about ``key`` (None: nothing yet)."""
    with db.engine.connect() as conn:
        row = conn.execute(
            select(ForgeReport.remote_id, ForgeReport.digest).where(
                ForgeReport.forge == forge, ForgeReport.key == key
            )
        ).one_or_none()
    return None if row is None else Sent(str(row[0]), str(row[1]))


def remember(db: Database, forge: str, key: str, remote_id: str, digest: str) -> None:
    """Record what was just sent about ``key``."""
    with db.session() as s:
        row = s.scalar(
            select(ForgeReport).where(ForgeReport.forge == forge, ForgeReport.key == key)
        )
        if row is None:
            s.add(ForgeReport(forge=forge, key=key, remote_id=remote_id, digest=digest))
        else:
            row.remote_id, row.digest, row.updated_at = remote_id, digest, utcnow()
