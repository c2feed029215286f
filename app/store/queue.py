"""The queue: attempts waiting for a machine, oldest first. The engine picks what an
agent claims from ``claimable()``; executors read ``queued_attempts`` to know what
needs a machine started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select

from app.core.states import AttemptState
from app.store.db import Database
from app.store.models import Attempt, Job, Pipeline, Repository

SPOT_INTERRUPTION = "spot_interruption"


def claimable() -> Select[Attempt]:
    """Queued attempts of pipelines not held for approval, oldest first (the caller sets
    the limit, and locks if it claims)."""
    return (
        select(Attempt)
        .join(Attempt.job)
        .join(Job.pipeline)
        .where(Attempt.state == AttemptState.QUEUED.value, Pipeline.held.is_(False))
        .order_by(Attempt.id)
    )


@dataclass(frozen=True)
class QueuedAttempt:
    """A claimable attempt with what placing it needs: its job's stored spec, hardware
    preferences and candidates, whose it is, and whether a spot machine was lost under
    an earlier attempt of the job."""

    attempt_id: int
    job_id: int
    tenant_id: int
    fork: bool
    spec: dict[str, Any]
    hardware: tuple[str, ...]
    candidates: tuple[str, ...]
    spot_lost: bool


def queued_attempts(db: Database, limit: int = 500) -> list[QueuedAttempt]:
    """The oldest ``limit`` claimable attempts (``claimable()``)."""
    q = (
        claimable()
        .join(Pipeline.repository)
        .add_columns(Job.spec, Job.hardware, Job.candidates, Pipeline.fork, Repository.tenant_id)
        .limit(limit)
    )
    with db.session() as s:
        rows = s.execute(q).all()
        job_ids = {a.job_id for a, *_ in rows}
        lost: set[int] = set()
        if job_ids:
            lost = set(
                s.scalars(
                    select(Attempt.job_id)
                    .where(Attempt.job_id.in_(job_ids), Attempt.end_reason == SPOT_INTERRUPTION)
                    .distinct()
                )
            )
        return [
            QueuedAttempt(
                attempt_id=a.id,
                job_id=a.job_id,
                tenant_id=tenant_id,
                fork=fork,
                spec=dict(spec),
                hardware=tuple(hardware),
                candidates=tuple(candidates or ()),
                spot_lost=a.job_id in lost,
            )
            for a, spec, hardware, candidates, fork, tenant_id in rows
        ]


def still_queued(db: Database, attempt_id: int) -> bool:
    """Whether ``attempt_id`` is still waiting for a machine (queued, not held): asked
    right before a launch for it, since a pass's list of queued attempts goes stale
    while its launches run (an idle machine may have taken the job meanwhile)."""
    with db.session() as s:
        found = s.scalar(claimable().where(Attempt.id == attempt_id).with_only_columns(Attempt.id))
    return found is not None
