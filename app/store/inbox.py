"""The inbox: every accepted event is stored before it is answered, once per delivery.

These run on the webhook's hot path and once per delivery in the worker, so they use
SQLAlchemy Core on a plain connection (no ORM session): a fraction of the cost.

The webhooks record through an ``InboxWriter``: one thread that owns the inserts and
commits many deliveries per transaction (group commit). A delivery's future is resolved
only after the transaction holding it has committed, so a webhook answered 2xx is on
disk (SQLite's WAL, PostgreSQL's commit) whatever happens to the process next; the event
loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.store.db import Database, RawJSON
from app.store.models import InboxEvent, utcnow

T = cast(Table, InboxEvent.__table__)
log = logging.getLogger("ployd.inbox")


@dataclass(frozen=True)
class Delivery:
    """A delivery to record: ``body`` is its JSON object's text, stored as it came."""

    forge: str
    delivery_id: str
    event: str
    body: str


def record_many(db: Database, deliveries: list[Delivery]) -> list[tuple[int, bool]]:
    """Store deliveries in one transaction. For each: (inbox id, True) when stored now,
    (the stored one's id, False) for a delivery already there (or repeated in the list).
    Committed when this returns."""
    for _ in range(5):
        try:
            return _record_many(db, deliveries)
        except IntegrityError:
            # Another writer (a second replica) stored one of these meanwhile: look again.
            continue
    return _record_many(db, deliveries)


def _record_many(db: Database, deliveries: list[Delivery]) -> list[tuple[int, bool]]:
    now = utcnow()
    with db.engine.begin() as conn:
        ids = {d.delivery_id for d in deliveries}
        known: dict[tuple[str, str], int] = {
            (r.forge, r.delivery_id): int(r.id)
            for r in conn.execute(
                select(T.c.id, T.c.forge, T.c.delivery_id).where(T.c.delivery_id.in_(ids))
            )
        }
        fresh: list[Delivery] = []
        pending_keys: set[tuple[str, str]] = set()
        for d in deliveries:
            key = (d.forge, d.delivery_id)
            if key not in known and key not in pending_keys:
                pending_keys.add(key)
                fresh.append(d)
        created: set[tuple[str, str]] = set()
        if fresh:
            rows = conn.execute(
                insert(T).returning(T.c.id, sort_by_parameter_order=True),
                [
                    {
                        "forge": d.forge,
                        "delivery_id": d.delivery_id,
                        "event": d.event,
                        "payload": RawJSON(d.body),
                        "status": "received",
                        "received_at": now,
                    }
                    for d in fresh
                ],
            ).all()
            for d, row in zip(fresh, rows, strict=True):
                known[(d.forge, d.delivery_id)] = int(row.id)
                created.add((d.forge, d.delivery_id))
    out: list[tuple[int, bool]] = []
    for d in deliveries:
        key = (d.forge, d.delivery_id)
        new = key in created
        created.discard(key)  # a repeat later in the same batch is a duplicate
        out.append((known[key], new))
    return out


Job = tuple[Delivery, "Future[tuple[int, bool]]"]


class InboxWriter:
    """Records deliveries on its own thread, many per transaction (group commit).

    ``record`` (async) returns once the delivery's transaction has committed. While one
    transaction commits, the deliveries that arrive queue up and go together into the
    next one, so the rate of commits stays bounded whatever the rate of deliveries."""

    def __init__(self, db: Database, max_batch: int = 500) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.transactions = 0  # committed batches (for tests and benches)

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()

    def submit(self, delivery: Delivery) -> Future[tuple[int, bool]]:
        """Queue ``delivery``; the future gives (inbox id, new) after the commit."""
        fut: Future[tuple[int, bool]] = Future()
        if self._closed:
            fut.set_exception(RuntimeError("the inbox writer is closed"))
            return fut
        self.start()
        self._queue.put((delivery, fut))
        return fut

    async def record(self, delivery: Delivery) -> tuple[int, bool]:
        return await asyncio.wrap_future(self.submit(delivery))

    def close(self) -> None:
        """Write what is queued, then stop the thread (blocking)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._write(batch)

    def _write(self, batch: list[Job]) -> None:
        try:
            results = record_many(self.db, [d for d, _ in batch])
        except Exception as e:
            log.error("recording %d deliveries failed: %s: %s", len(batch), type(e).__name__, e)
            for _, fut in batch:
                fut.set_exception(e)
            return
        self.transactions += 1
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)


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
