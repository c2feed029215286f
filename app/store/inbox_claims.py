"""The inbox's processing side: any replica claims the next delivery with a lease.

A claim is one statement: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
LIMIT 1) RETURNING ...``. On PostgreSQL, replicas claiming at the same moment skip each
other's locked rows instead of waiting or taking the same one; SQLite (one process,
writes serialized) runs the same statement without the lock clause. The claim writes a
fresh ``claim_token`` and a ``lease_until``: a replica that dies mid-delivery stops
renewing, its lease expires, and the next claim by anyone takes the delivery over.
Every later write (renew, done, failed) is conditioned on the token, so a replica whose
lease was taken over can no longer settle the delivery.

A handler that fails is retried at ``next_try_at`` (the worker's backoff), then, after
its last attempt, dead-lettered: ``failed`` with the error (``ployd inbox list
--failed``, ``ployd inbox replay ID``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, or_, select, update

from app.core.clock import aware
from app.store.db import Database
from app.store.models import InboxEvent, utcnow

T = cast(Table, InboxEvent.__table__)

RECEIVED, PROCESSED, FAILED = "received", "processed", "failed"


@dataclass(frozen=True)
class Claimed:
    """A delivery this replica holds until ``lease_until`` (renew to keep it)."""

    id: int
    forge: str
    delivery_id: str
    event: str
    payload: dict[str, Any]
    attempts: int  # this one included
    token: str


@dataclass(frozen=True)
class Delivery:
    """A delivery as ``ployd inbox list`` shows it."""

    id: int
    forge: str
    delivery_id: str
    event: str
    status: str
    attempts: int
    error: str | None
    received_at: datetime
    processed_at: datetime | None
    next_try_at: datetime | None
    leased: bool


def _claimable(forge: str, now: datetime) -> Any:
    return (
        select(T.c.id)
        .where(
            T.c.forge == forge,
            T.c.status == RECEIVED,
            or_(T.c.lease_until.is_(None), T.c.lease_until < now),
            or_(T.c.next_try_at.is_(None), T.c.next_try_at <= now),
        )
        .order_by(T.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def claim(db: Database, forge: str, lease_s: float) -> Claimed | None:
    """The oldest delivery of ``forge`` nobody holds (received, its lease expired or
    never taken, its retry due), now held by the caller for ``lease_s``; None if none."""
    now = utcnow()
    token = secrets.token_hex(16)
    with db.engine.begin() as conn:
        row = conn.execute(
            update(T)
            .where(T.c.id.in_(_claimable(forge, now).scalar_subquery()))
            .values(
                claim_token=token,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=T.c.attempts + 1,
            )
            .returning(T.c.id, T.c.forge, T.c.delivery_id, T.c.event, T.c.payload, T.c.attempts)
        ).one_or_none()
    if row is None:
        return None
    return Claimed(row.id, row.forge, row.delivery_id, row.event, row.payload, row.attempts, token)


def _held(c: Claimed) -> Any:
    return (T.c.id == c.id) & (T.c.claim_token == c.token) & (T.c.status == RECEIVED)


def renew(db: Database, c: Claimed, lease_s: float) -> bool:
    """Extend the lease; False when it was lost (expired and taken over)."""
    with db.engine.begin() as conn:
        n = conn.execute(
            update(T).where(_held(c)).values(lease_until=utcnow() + timedelta(seconds=lease_s))
        ).rowcount
    return bool(n)


def done(db: Database, c: Claimed) -> bool:
    """The delivery was handled: ``processed``. False when the lease was lost."""
    with db.engine.begin() as conn:
        n = conn.execute(
            update(T)
            .where(_held(c))
            .values(
                status=PROCESSED,
                error=None,
                processed_at=utcnow(),
                claim_token=None,
                lease_until=None,
                next_try_at=None,
            )
        ).rowcount
    return bool(n)


def failed(db: Database, c: Claimed, error: str, retry_at: datetime | None) -> bool:
    """The handler failed: tried again at ``retry_at``, or dead-lettered (``failed``)
    when None. False when the lease was lost."""
    values: dict[str, Any] = {"error": error[:4000], "claim_token": None, "lease_until": None}
    if retry_at is None:
        values |= {"status": FAILED, "processed_at": utcnow(), "next_try_at": None}
    else:
        values["next_try_at"] = retry_at
    with db.engine.begin() as conn:
        n = conn.execute(update(T).where(_held(c)).values(**values)).rowcount
    return bool(n)


def release(db: Database, c: Claimed) -> None:
    """Hand the delivery back unhandled (a clean stop): claimable at once, this attempt
    not counted."""
    with db.engine.begin() as conn:
        conn.execute(
            update(T)
            .where(_held(c))
            .values(claim_token=None, lease_until=None, attempts=T.c.attempts - 1)
        )


def settled(db: Database, ids: set[int]) -> set[int]:
    """Those of ``ids`` that are no longer waiting to be handled (processed, failed,
    or gone)."""
    if not ids:
        return set()
    with db.engine.connect() as conn:
        waiting = set(
            conn.execute(select(T.c.id).where(T.c.id.in_(ids), T.c.status == RECEIVED)).scalars()
        )
    return ids - waiting


def deliveries(db: Database, *, failed_only: bool = False, limit: int = 100) -> list[Delivery]:
    """The newest deliveries (dead-lettered ones only with ``failed_only``)."""
    now = utcnow()
    q = select(
        T.c.id,
        T.c.forge,
        T.c.delivery_id,
        T.c.event,
        T.c.status,
        T.c.attempts,
        T.c.error,
        T.c.received_at,
        T.c.processed_at,
        T.c.next_try_at,
        T.c.lease_until,
    )
    if failed_only:
        q = q.where(T.c.status == FAILED)
    with db.engine.connect() as conn:
        rows = conn.execute(q.order_by(T.c.id.desc()).limit(limit)).all()
    return [
        Delivery(
            id=r.id,
            forge=r.forge,
            delivery_id=r.delivery_id,
            event=r.event,
            status=r.status,
            attempts=r.attempts,
            error=r.error,
            received_at=r.received_at,
            processed_at=r.processed_at,
            next_try_at=r.next_try_at,
            leased=r.lease_until is not None and aware(r.lease_until) > now,
        )
        for r in rows
    ]


def replay(db: Database, inbox_id: int) -> str | None:
    """Put a dead-lettered delivery back to be handled (its attempts start again); the
    status it had, or None when there is no such delivery. Only ``failed`` ones move."""
    with db.engine.begin() as conn:
        status = conn.execute(select(T.c.status).where(T.c.id == inbox_id)).scalar()
        if status is None:
            return None
        if status == FAILED:
            conn.execute(
                update(T)
                .where(T.c.id == inbox_id, T.c.status == FAILED)
                .values(
                    status=RECEIVED,
                    attempts=0,
                    next_try_at=None,
                    claim_token=None,
                    lease_until=None,
                    processed_at=None,
                )
            )
    return str(status)


def counts(db: Database) -> dict[str, int]:
    """How many deliveries in each status."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(T.c.status, func.count()).group_by(T.c.status)).all()
    return {str(s): int(n) for s, n in rows}
