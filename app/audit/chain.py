"""The audit chain: each record carries the hash of the one before it.

``hash = sha256(canonical JSON of (at, actor, forge, action, target, details) + prev_hash)``.
Changing a record's field breaks its own hash; deleting a record breaks the next one's
``prev_hash``. Appends are serialized so the chain never forks: on PostgreSQL with a
transaction-level advisory lock taken before the last hash is read; on SQLite by taking
the database's write lock first (a no-op write), so the read sees every committed record
and no other writer can commit in between.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.store.models import AuditRecord, utcnow

# pg_advisory_xact_lock key: "ployd-audit" folded into a signed 64-bit integer.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"ployd-audit").digest()[:8], "big", signed=True)


def canonical_time(at: datetime) -> str:
    """UTC, microseconds, no offset: what SQLite (naive) and PostgreSQL (aware) both give back."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def canonical(record: AuditRecord) -> bytes:
    """The bytes hashed for a record (its id is not part of it: order is the chain's)."""
    fields: dict[str, Any] = {
        "at": canonical_time(record.at),
        "actor": record.actor,
        "forge": record.forge,
        "action": record.action,
        "target": record.target or "",
        "details": record.details or {},
        "prev_hash": record.prev_hash or "",
    }
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def record_hash(record: AuditRecord) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def _lock(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
    else:
        # Take SQLite's write lock now (a write that changes nothing), so that the last
        # hash read below cannot be overtaken by another writer before this commits.
        s.execute(text("UPDATE audit_log SET id = id WHERE id < 0"))


def append(s: Session, record: AuditRecord) -> AuditRecord:
    """Add ``record`` to the chain, in the caller's transaction."""
    s.flush()  # the caller's pending writes first (SQLite: they take the write lock)
    _lock(s)
    last = s.scalar(select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1))
    record.at = record.at or utcnow()
    record.details = json.loads(json.dumps(record.details or {}, default=str))
    record.target = record.target or ""
    record.prev_hash = last or ""
    record.hash = record_hash(record)
    s.add(record)
    s.flush()
    return record


@dataclass(frozen=True)
class Break:
    """Where the chain breaks: the first record that does not verify, and why."""

    record_id: int
    reason: str

    def __str__(self) -> str:
        return f"audit record {self.record_id}: {self.reason}"


def _records(s: Session, since: datetime | None = None) -> Iterator[AuditRecord]:
    q = select(AuditRecord).order_by(AuditRecord.id)
    if since is not None:
        q = q.where(AuditRecord.at >= since)
    yield from s.scalars(q.execution_options(yield_per=500))


def verify(s: Session) -> tuple[int, Break | None]:
    """Walk the whole chain: (records checked, the first break or None)."""
    prev = ""
    prev_id: int | None = None
    n = 0
    for r in _records(s):
        n += 1
        if r.prev_hash != prev:
            before = f"record {prev_id}" if prev_id is not None else "the start of the chain"
            return n, Break(
                r.id,
                f"its prev_hash does not match the hash of {before}: a record between "
                "them was deleted, or one was changed",
            )
        if record_hash(r) != r.hash:
            return n, Break(r.id, "its contents do not match its hash: the record was changed")
        prev, prev_id = r.hash, r.id
    return n, None


def as_json(r: AuditRecord) -> dict[str, Any]:
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    return {
        "id": r.id,
        "at": at.astimezone(UTC).isoformat(),
        "actor": r.actor,
        "forge": r.forge,
        "action": r.action,
        "target": r.target,
        "details": r.details,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


def export(s: Session, since: datetime | None = None) -> Iterator[str]:
    """JSON lines, oldest first, of the records at or after ``since``."""
    for r in _records(s, since):
        yield json.dumps(as_json(r), sort_keys=True, ensure_ascii=False)
