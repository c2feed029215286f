"""One attempt with what it belongs to (its job, pipeline and repository), read in one
query: what the executors and the metrics need when an attempt is claimed or ends.

Timestamps are as the database gives them back (naive UTC on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.store.db import Database
from app.store.models import Attempt, Job, Pipeline, Repository


@dataclass(frozen=True)
class AttemptContext:
    id: int
    job_id: int
    number: int
    state: str
    hardware: tuple[str, ...]  # what this attempt asked for (empty until it is claimed)
    job_hardware: tuple[str, ...]  # the job's preferences
    job_spec: dict[str, Any]
    end_reason: str | None
    cost: float | None
    created_at: datetime | None
    claimed_at: datetime | None
    finished_at: datetime | None
    pipeline_id: int
    pipeline_created_at: datetime | None
    fork: bool
    tenant_id: int
    repo: str  # the repository's full name


def attempt_context(db: Database, attempt_id: int) -> AttemptContext | None:
    """The attempt and what it belongs to, or None when there is no such attempt."""
    q = (
        select(
            Attempt, Job.hardware, Job.spec, Pipeline, Repository.tenant_id, Repository.full_name
        )
        .join(Job, Attempt.job_id == Job.id)
        .join(Pipeline, Job.pipeline_id == Pipeline.id)
        .join(Repository, Pipeline.repository_id == Repository.id)
        .where(Attempt.id == attempt_id)
    )
    with db.session() as s:
        found = s.execute(q).one_or_none()
        if found is None:
            return None
        a, job_hardware, spec, p, tenant_id, repo = found
        return AttemptContext(
            id=a.id,
            job_id=a.job_id,
            number=a.number,
            state=a.state,
            hardware=tuple(a.hardware or ()),
            job_hardware=tuple(job_hardware or ()),
            job_spec=dict(spec or {}),
            end_reason=a.end_reason,
            cost=a.cost,
            created_at=a.created_at,
            claimed_at=a.claimed_at,
            finished_at=a.finished_at,
            pipeline_id=p.id,
            pipeline_created_at=p.created_at,
            fork=p.fork,
            tenant_id=tenant_id,
            repo=repo,
        )
