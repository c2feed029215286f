"""What policy enforcement reads and writes (``app.policy.enforce`` decides): tenants'
stored policies, the month's spend, and the attempts a concurrency quota counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, func, select, text

from app.core.states import AttemptState
from app.store.db import Tx
from app.store.models import Attempt, Job, Pipeline, Repository, Tenant, TenantPolicy, utcnow

LIVE = (AttemptState.DISPATCHING.value, AttemptState.RUNNING.value)
QUOTA_LOCK = 0x504C4F59  # "PLOY": pg_advisory_xact_lock(QUOTA_LOCK, tenant id), int4 each


class Usage(NamedTuple):
    """An attempt a quota counts: live, or queued ahead of the one being admitted."""

    id: int
    state: str
    hardware: list[Any] | None


def tenant(tx: Tx, tenant_id: int) -> Tenant | None:
    return tx.get(Tenant, tenant_id)


def tenant_policy(tx: Tx, tenant_id: int) -> TenantPolicy | None:
    """The policy the admin API stored for a tenant, if any."""
    return tx.get(TenantPolicy, tenant_id)


def put_tenant_policy(tx: Tx, tenant_id: int, policy: dict[str, Any], actor: str) -> dict[str, Any]:
    """Store a tenant's policy (replacing any); returns the one before ({} if none)."""
    row = tx.get(TenantPolicy, tenant_id)
    if row is None:
        row = TenantPolicy(tenant_id=tenant_id)
        tx.add(row)
    before = dict(row.policy or {})
    row.policy = policy
    row.updated_by = actor
    row.updated_at = utcnow()
    tx.flush()
    return before


def _of_tenant_since(q: Select[Any], tenant_id: int, start: datetime) -> Select[Any]:
    return (
        q.join(Attempt.job)
        .join(Job.pipeline)
        .join(Pipeline.repository)
        .where(Repository.tenant_id == tenant_id, Attempt.claimed_at >= start)
    )


def spent_since(tx: Tx, tenant_id: int, start: datetime) -> float:
    """The costs of the tenant's attempts claimed at or after ``start``."""
    q = select(func.coalesce(func.sum(Attempt.cost), 0.0))
    return float(tx.scalar(_of_tenant_since(q, tenant_id, start)) or 0.0)


def live_since(tx: Tx, tenant_id: int, start: datetime) -> list[Attempt]:
    """The tenant's attempts claimed at or after ``start`` that still run."""
    q = _of_tenant_since(select(Attempt), tenant_id, start).where(Attempt.state.in_(LIVE))
    return list(tx.scalars(q))


def lock_quota(tx: Tx, tenant_id: int) -> None:
    """One admission per tenant at a time until ``tx`` ends (PostgreSQL; SQLite has a
    single writer anyway)."""
    if tx.get_bind().dialect.name == "postgresql":
        tx.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:a AS integer), CAST(:b AS integer))"),
            {"a": QUOTA_LOCK, "b": tenant_id},
        )


def quota_usage(tx: Tx, tenant_id: int, attempt_id: int) -> list[Usage]:
    """The tenant's attempts that come before attempt ``attempt_id`` for a quota: those
    running or dispatching, and those queued before it; pipelines on hold don't count."""
    rows = tx.execute(
        select(Attempt.id, Attempt.state, Job.hardware)
        .join(Attempt.job)
        .join(Job.pipeline)
        .join(Pipeline.repository)
        .where(
            Repository.tenant_id == tenant_id,
            Pipeline.held.is_(False),
            (Attempt.state.in_(LIVE))
            | ((Attempt.state == AttemptState.QUEUED.value) & (Attempt.id < attempt_id)),
        )
    ).all()
    return [Usage(r.id, r.state, r.hardware) for r in rows]
