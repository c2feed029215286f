"""The audit chain: each record carries the hash of the one before it.

``hash = sha256(canonical JSON of (at, actor, forge, action, target, details) + prev_hash)``.
Changing a record's field breaks its own hash; deleting a record breaks the next one's
``prev_hash``. Appends are serialized so the chain never forks (``app.store.audit``
locks the chain before the last hash is read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.core.clock import aware
from app.store import audit as audit_rows
from app.store.db import Tx
from app.store.models import AuditRecord, utcnow


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


def append(s: Tx, record: AuditRecord) -> AuditRecord:
    """Add ``record`` to the chain, in the caller's transaction."""
    audit_rows.lock_chain(s)  # after the caller's pending writes
    last = audit_rows.last_hash(s)
    record.at = record.at or utcnow()
    record.details = json.loads(json.dumps(record.details or {}, default=str))
    record.target = record.target or ""
    record.prev_hash = last or ""
    record.hash = record_hash(record)
    audit_rows.add(s, record)
    return record


@dataclass(frozen=True)
class Break:
    """Where the chain breaks: the first record that does not verify, and why."""

    record_id: int
    reason: str

    def __str__(self) -> str:
        return f"audit record {self.record_id}: {self.reason}"


def verify(s: Tx) -> tuple[int, Break | None]:
    """Walk the whole chain: (records checked, the first break or None)."""
    prev = ""
    prev_id: int | None = None
    n = 0
    for r in audit_rows.records(s):
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
    at = aware(r.at)
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


def export(s: Tx, since: datetime | None = None) -> Iterator[str]:
    """JSON lines, oldest first, of the records at or after ``since``."""
    for r in audit_rows.records(s, since):
        yield json.dumps(as_json(r), sort_keys=True, ensure_ascii=False)
