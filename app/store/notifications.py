"""Notification deliveries in the store: recorded once per pipeline, event and channel
(``dedupe``), picked when due, marked sent, retried or given up; and the budget
warnings shown on a pipeline's pull request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.store.db import Database, Tx
from app.store.models import Job, Notification, Pipeline, Repository, utcnow

PR_KIND = "pull_request"  # a budget warning shown in the summary comment, not sent


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    tenant_id: int
    pipeline_id: int | None
    event: str
    channel: dict[str, Any]
    message: dict[str, Any]
    tries: int


@dataclass(frozen=True, slots=True)
class NotificationView:
    id: int
    pipeline_id: int | None
    event: str
    kind: str
    state: str
    tries: int
    error: str | None
    message: dict[str, Any]
    channel_target: str = ""  # a webhook's URL, a Slack secret's name, the addresses


def record(
    tx: Tx,
    *,
    tenant_id: int,
    pipeline_id: int | None,
    event: str,
    channel: dict[str, Any],
    dedupe: str,
    message: dict[str, Any],
    state: str = "pending",
) -> bool:
    """Add a notification unless one with ``dedupe`` exists; True when added."""
    if tx.scalar(select(Notification.id).where(Notification.dedupe == dedupe)) is not None:
        return False
    try:
        with tx.begin_nested():
            tx.add(
                Notification(
                    tenant_id=tenant_id,
                    pipeline_id=pipeline_id,
                    event=event,
                    channel=channel,
                    dedupe=dedupe,
                    message=message,
                    state=state,
                    next_at=utcnow(),
                )
            )
    except IntegrityError:  # another replica recorded it first
        return False
    return True


LEASE_S = 120.0  # a claimed delivery is not picked again (by any replica) before this


def due(db: Database, now: datetime, limit: int = 50) -> list[Delivery]:
    """Claim the pending notifications that are due: each is leased (``next_at`` moved
    ``LEASE_S`` on) in the same transaction, rows locked with SKIP LOCKED on PostgreSQL,
    so two replicas never send one twice; ``finish`` records the try."""
    with db.session() as s:
        rows = s.scalars(
            select(Notification)
            .where(Notification.state == "pending", Notification.next_at <= now)
            .order_by(Notification.next_at, Notification.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        out = []
        for r in rows:
            r.next_at = now + timedelta(seconds=LEASE_S)
            out.append(
                Delivery(
                    r.id,
                    r.tenant_id,
                    r.pipeline_id,
                    r.event,
                    dict(r.channel),
                    dict(r.message),
                    r.tries,
                )
            )
        return out


def next_due(db: Database, busy: set[int] | None = None) -> datetime | None:
    """When the next pending notification (not one of ``busy``, being delivered) is due."""
    with db.session() as s:
        q = select(Notification.next_at).where(Notification.state == "pending")
        if busy:
            q = q.where(Notification.id.not_in(sorted(busy)))
        return s.scalar(q.order_by(Notification.next_at).limit(1))


def finish(
    db: Database, delivery_id: int, *, ok: bool, error: str | None, retry_in_s: float | None
) -> None:
    """One try's result: sent, pending again after ``retry_in_s``, or given up (failed)."""
    with db.session() as s:
        row = s.get(Notification, delivery_id)
        if row is None:
            return
        row.tries += 1
        row.error = error
        if ok:
            row.state, row.sent_at = "sent", utcnow()
        elif retry_in_s is None:
            row.state = "failed"
        else:
            row.next_at = utcnow() + timedelta(seconds=retry_in_s)


def previous_final_state(tx: Tx, pipeline: Pipeline) -> str | None:
    """How the latest earlier finished pipeline of the same repository and ref ended."""
    return tx.scalar(
        select(Pipeline.state)
        .where(
            Pipeline.repository_id == pipeline.repository_id,
            Pipeline.ref == pipeline.ref,
            Pipeline.id < pipeline.id,
            Pipeline.state.in_(("succeeded", "failed")),
        )
        .order_by(Pipeline.id.desc())
        .limit(1)
    )


def budget_warnings(db: Database, pipeline_id: int) -> list[str]:
    """The budget warnings to show on the pipeline's pull request."""
    with db.session() as s:
        rows = s.scalars(
            select(Notification)
            .where(Notification.pipeline_id == pipeline_id, Notification.event == "budget")
            .order_by(Notification.id)
        ).all()
        return [
            str(r.message.get("note") or "")
            for r in rows
            if r.channel.get("kind") == PR_KIND and r.message.get("note")
        ]


def listing(db: Database, pipeline_id: int | None = None) -> list[NotificationView]:
    """Recorded notifications, oldest first (a pipeline's, or all)."""
    with db.session() as s:
        q = select(Notification).order_by(Notification.id)
        if pipeline_id is not None:
            q = q.where(Notification.pipeline_id == pipeline_id)
        return [
            NotificationView(
                r.id,
                r.pipeline_id,
                r.event,
                str(r.channel.get("kind") or ""),
                r.state,
                r.tries,
                r.error,
                dict(r.message),
                str(r.channel.get("target") or ""),
            )
            for r in s.scalars(q).all()
        ]


def kinds(views: Sequence[NotificationView]) -> list[tuple[str, str, str]]:
    return [(v.kind, v.event, v.state) for v in views]


@dataclass(frozen=True, slots=True)
class JobFacts:
    id: int
    name: str
    state: str
    allow_failure: bool
    created_at: datetime
    failed_step: str | None  # the failing step's title
    exit_code: int | None
    error: str | None  # the attempt's error or end reason
    # The last attempt's log, for its cause line (``app.logs.window.locate_error``).
    log_path: str | None = None
    log_size: int = 0
    steps: tuple[dict[str, Any], ...] = ()
    failed_index: int | None = None  # the failing step's index


@dataclass(frozen=True, slots=True)
class PipelineFacts:
    """What a notification about a pipeline says, read in one transaction."""

    id: int
    tenant_id: int
    repository_id: int
    full_name: str
    clone_url: str
    forge: str
    ref: str
    sha: str
    state: str
    pr_number: int | None
    fork: bool
    jobs: tuple[JobFacts, ...]
    spec: dict[str, Any]  # one job's stored spec (its ``notify`` is the pipeline's)
    previous_final: str | None


def facts(tx: Tx, pipeline_id: int) -> PipelineFacts | None:
    p = tx.get(Pipeline, pipeline_id)
    if p is None:
        return None
    jobs: list[JobFacts] = []
    for j in p.jobs:
        last = j.attempts[-1] if j.attempts else None
        step = None
        if last is not None and last.failed_step is not None:
            idx = last.failed_step
            spec_steps = (j.spec or {}).get("steps") or []
            title = spec_steps[idx].get("title") if 0 <= idx < len(spec_steps) else None
            step = str(title) if title else f"step {idx + 1}"
        jobs.append(
            JobFacts(
                id=j.id,
                name=j.name,
                state=j.state,
                allow_failure=j.allow_failure,
                created_at=j.created_at,
                failed_step=step,
                exit_code=last.exit_code if last else None,
                error=(last.error or last.end_reason) if last else None,
                log_path=last.log_path if last else None,
                log_size=last.log_size if last else 0,
                steps=tuple(s for s in (last.steps or ()) if isinstance(s, dict)) if last else (),
                failed_index=last.failed_step if last else None,
            )
        )
    repo = p.repository
    return PipelineFacts(
        id=p.id,
        tenant_id=repo.tenant_id,
        repository_id=repo.id,
        full_name=repo.full_name,
        clone_url=repo.clone_url,
        forge=p.forge,
        ref=p.ref,
        sha=p.sha,
        state=p.state,
        pr_number=p.pr_number,
        fork=p.fork,
        jobs=tuple(jobs),
        spec=dict(p.jobs[0].spec or {}) if p.jobs else {},
        previous_final=previous_final_state(tx, p),
    )


def pipeline(tx: Tx, pipeline_id: int) -> Pipeline | None:
    return tx.get(Pipeline, pipeline_id)


def repository_of(tx: Tx, p: Pipeline) -> Repository:
    repo = tx.get(Repository, p.repository_id)
    assert repo is not None
    return repo


def tenant_of(tx: Tx, p: Pipeline) -> int:
    return repository_of(tx, p).tenant_id


def first_job_spec(tx: Tx, pipeline_id: int) -> dict[str, Any]:
    """One job's stored spec (every job of a pipeline stores its ``notify``)."""
    spec = tx.scalar(
        select(Job.spec).where(Job.pipeline_id == pipeline_id).order_by(Job.position).limit(1)
    )
    return dict(spec or {})


def exists(tx: Tx, dedupe: str) -> bool:
    return tx.scalar(select(Notification.id).where(Notification.dedupe == dedupe)) is not None
