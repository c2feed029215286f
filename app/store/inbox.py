"""The inbox: every accepted event is stored before it is answered, once per delivery.

These run on the webhook's hot path and once per delivery in the worker, so they use
SQLAlchemy Core on a plain connection (no ORM session): a fraction of the cost.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.store.db import Database
from app.store.models import InboxEvent, utcnow

T = cast(Table, InboxEvent.__table__)


def record(
    db: Database, forge: str, delivery_id: str, event: str, payload: dict[str, Any]
) -> tuple[int, bool]:
    """Store a delivery. Returns (inbox id, True) or, for a delivery already stored,
    (its id, False)."""
    try:
        with db.engine.begin() as conn:
            new_id = conn.execute(
                insert(T)
                .values(
                    forge=forge,
                    delivery_id=delivery_id,
                    event=event,
                    payload=payload,
                    status="received",
                    received_at=utcnow(),
                )
                .returning(T.c.id)
            ).scalar_one()
            return int(new_id), True
    except IntegrityError:
        with db.engine.connect() as conn:
            existing = conn.execute(
                select(T.c.id).where(T.c.forge == forge, T.c.delivery_id == delivery_id)
            ).scalar()
        if existing is None:  # not a duplicate after all: something else went wrong
            raise
        return int(existing), False


def load(db: Database, inbox_id: int) -> InboxEvent | None:
    """The delivery (a detached row: id, forge, delivery_id, event, payload, status)."""
    with db.engine.connect() as conn:
        row = conn.execute(
            select(T.c.id, T.c.forge, T.c.delivery_id, T.c.event, T.c.payload, T.c.status).where(
                T.c.id == inbox_id
            )
        ).one_or_none()
    if row is None:
        return None
    return InboxEvent(
        id=row.id,
        forge=row.forge,
        delivery_id=row.delivery_id,
        event=row.event,
        payload=row.payload,
        status=row.status,
    )


def pending(db: Database, forge: str) -> list[int]:
    """Deliveries received but not processed (say, when the server stopped)."""
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                select(T.c.id).where(T.c.forge == forge, T.c.status == "received").order_by(T.c.id)
            ).scalars()
        )


def mark(db: Database, inbox_id: int, status: str, error: str | None = None) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(T)
            .where(T.c.id == inbox_id)
            .values(status=status, error=error[:4000] if error else None, processed_at=utcnow())
        )
