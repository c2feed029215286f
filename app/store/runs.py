"""A job and its attempts as the log page (``/runs/{job_id}``) shows them: read once from
the database into frozen values (tz-aware timestamps, every step with its title), and
the tenant a ``/runs/{job_id}/...`` link must be signed for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.core.clock import aware
from app.core.jobspec import StoredJobSpec
from app.store.db import Database
from app.store.models import Attempt, Job, Pipeline, Repository

FAILED_STATES = ("failed", "timed_out", "interrupted")


def _iso(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return aware(datetime.fromisoformat(raw))
    except ValueError:
        return None


@dataclass(frozen=True)
class StepInfo:
    index: int
    title: str
    state: str
    log_offset: int | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None


@dataclass(frozen=True)
class AttemptInfo:
    id: int
    number: int
    state: str
    reason: str
    end_reason: str | None
    error: str | None
    instance_type: str | None
    machine: str | None
    spot: bool
    price_hourly: float | None
    cost: float | None
    hardware: tuple[str, ...]
    created_at: datetime | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    log_path: str | None
    log_size: int
    failed_step: int | None
    exit_code: int | None
    steps: tuple[StepInfo, ...]

    @property
    def final(self) -> bool:
        return self.state in ("succeeded", "cancelled", "skipped", *FAILED_STATES)

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES


@dataclass(frozen=True)
class JobInfo:
    id: int
    name: str
    state: str
    repo: str
    tenant_id: int
    pipeline_id: int
    ref: str
    sha: str
    hardware: tuple[str, ...]
    created_at: datetime | None
    queued_at: datetime | None
    finished_at: datetime | None
    attempts: tuple[AttemptInfo, ...]
    forge: str = "local"
    clone_url: str = ""
    pr_number: int | None = None

    def attempt(self, number: int | None) -> AttemptInfo | None:
        """Attempt ``number`` (1-based), or the latest one."""
        if not self.attempts:
            return None
        if number is None:
            return self.attempts[-1]
        return next((a for a in self.attempts if a.number == number), None)


def attempt_info(a: Attempt, titles: list[str]) -> AttemptInfo:
    steps: list[StepInfo] = []
    recorded = {int(s.get("index", -1)): s for s in (a.steps or []) if isinstance(s, dict)}
    for i in range(max(len(titles), len(recorded))):
        s = recorded.get(i, {})
        off = s.get("log_offset")
        code = s.get("exit_code")
        steps.append(
            StepInfo(
                index=i,
                title=(titles[i] if i < len(titles) else "") or f"step {i + 1}",
                state=str(s.get("state", "pending")),
                log_offset=int(off) if isinstance(off, int) else None,
                started_at=_iso(s.get("started_at")),
                finished_at=_iso(s.get("finished_at")),
                exit_code=code if isinstance(code, int) else None,
            )
        )
    return AttemptInfo(
        id=a.id,
        number=a.number,
        state=a.state,
        reason=a.reason or "",
        end_reason=a.end_reason,
        error=a.error,
        instance_type=a.instance_type,
        machine=a.machine,
        spot=bool(a.spot),
        price_hourly=a.price_hourly,
        cost=a.cost,
        hardware=tuple(str(h) for h in (a.hardware or [])),
        created_at=aware(a.created_at),
        claimed_at=aware(a.claimed_at),
        started_at=aware(a.started_at),
        finished_at=aware(a.finished_at),
        log_path=a.log_path,
        log_size=int(a.log_size or 0),
        failed_step=a.failed_step,
        exit_code=a.exit_code,
        steps=tuple(steps),
    )


def step_titles(job: Job) -> list[str]:
    return [s.title for s in StoredJobSpec.from_stored(job.spec).steps]


def load_job(db: Database, job_id: int) -> JobInfo | None:
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        titles = step_titles(job)
        p = job.pipeline
        return JobInfo(
            id=job.id,
            name=job.name,
            state=job.state,
            repo=p.repository.full_name,
            tenant_id=p.repository.tenant_id,
            pipeline_id=p.id,
            ref=p.ref,
            sha=p.sha,
            hardware=tuple(str(h) for h in (job.hardware or [])),
            created_at=aware(job.created_at),
            queued_at=aware(job.queued_at),
            finished_at=aware(job.finished_at),
            attempts=tuple(attempt_info(a, titles) for a in job.attempts),
            forge=p.forge,
            clone_url=p.repository.clone_url,
            pr_number=p.pr_number,
        )


def load_attempt(db: Database, attempt_id: int) -> AttemptInfo | None:
    with db.session() as s:
        a = s.get(Attempt, attempt_id)
        return attempt_info(a, step_titles(a.job)) if a is not None else None


def job_tenant(db: Database, job_id: int) -> int | None:
    """The tenant whose repository the job is of; None when there is no such job."""
    with db.session() as s:
        found = s.scalar(
            select(Repository.tenant_id)
            .join(Pipeline, Pipeline.repository_id == Repository.id)
            .join(Job, Job.pipeline_id == Pipeline.id)
            .where(Job.id == job_id)
        )
        return int(found) if found is not None else None
