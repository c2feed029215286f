"""The inbox: every accepted event is stored before it is answered, once per delivery."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.store.db import Database
from app.store.models import InboxEvent, utcnow


def record(
    db: Database, forge: str, delivery_id: str, event: str, payload: dict[str, Any]
) -> tuple[int, bool]:
    """Store a delivery. Returns (inbox id, True) or, for a delivery already stored,
    (its id, False)."""
    try:
        with db.session() as s:
            row = InboxEvent(forge=forge, delivery_id=delivery_id, event=event, payload=payload)
            s.add(row)
            s.flush()
            return row.id, True
    except IntegrityError:
        with db.session() as s:
            existing = s.scalar(
                select(InboxEvent.id).where(
                    InboxEvent.forge == forge, InboxEvent.delivery_id == delivery_id
                )
            )
        if existing is None:  # not a duplicate after all: something else went wrong
            raise
        return existing, False


def load(db: Database, inbox_id: int) -> InboxEvent | None:
    with db.session() as s:
        return s.get(InboxEvent, inbox_id)


def pending(db: Database, forge: str) -> list[int]:
    """Deliveries received but not processed (say, when the server stopped)."""
    with db.session() as s:
        return list(
            s.scalars(
                select(InboxEvent.id)
                .where(InboxEvent.forge == forge, InboxEvent.status == "received")
                .order_by(InboxEvent.id)
            )
        )


def mark(db: Database, inbox_id: int, status: str, error: str | None = None) -> None:
    with db.session() as s:
        row = s.get(InboxEvent, inbox_id)
        if row is not None:
            row.status = status
            row.error = error[:4000] if error else None
            row.processed_at = utcnow()
