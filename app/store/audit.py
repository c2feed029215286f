"""The audit chain's rows (``app.audit.chain`` computes and checks the hashes).

Appends are serialized so the chain never forks: ``lock_chain`` takes, on PostgreSQL, a
transaction-level advisory lock, and on SQLite the database's write lock (a no-op
write), before the last hash is read; so the read sees every committed record and no
other writer can commit in between.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select, text

from app.store.db import Tx
from app.store.models import AuditRecord

# pg_advisory_xact_lock key: "ployd-audit" folded into a signed 64-bit integer.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"ployd-audit").digest()[:8], "big", signed=True)


def lock_chain(tx: Tx) -> None:
    """Hold the chain until ``tx`` ends. The caller's pending writes go first (on SQLite
    they take the write lock anyway)."""
    tx.flush()
    if tx.get_bind().dialect.name == "postgresql":
        tx.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
    else:
        # Take SQLite's write lock now (a write that changes nothing), so that the last
        # hash read next cannot be overtaken by another writer before this commits.
        tx.execute(text("UPDATE audit_log SET id = id WHERE id < 0"))


def last_hash(tx: Tx) -> str | None:
    """The newest record's hash (None for an empty chain)."""
    return tx.scalar(select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1))


def add(tx: Tx, record: AuditRecord) -> None:
    tx.add(record)
    tx.flush()


def records(tx: Tx, since: datetime | None = None) -> Iterator[AuditRecord]:
    """The records in chain order (those at or after ``since``), loaded 500 at a time."""
    q = select(AuditRecord).order_by(AuditRecord.id)
    if since is not None:
        q = q.where(AuditRecord.at >= since)
    yield from tx.scalars(q.execution_options(yield_per=500))
