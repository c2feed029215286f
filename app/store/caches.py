"""Cache entries' rows (``app.caches`` scopes, checks and expires them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, delete, select

from app.store.db import Tx
from app.store.models import Attempt, CacheEntry


def ready_exact(tx: Tx, repository_id: int, key: str) -> CacheEntry | None:
    """The repository's ready entry saved under exactly ``key``."""
    return tx.scalar(_ready(repository_id).where(CacheEntry.key == key))


def newest_ready_with_prefix(tx: Tx, repository_id: int, prefix: str) -> CacheEntry | None:
    """The repository's newest ready entry whose key starts with ``prefix`` (literally:
    ``%`` and ``_`` are not wildcards)."""
    return tx.scalar(
        _ready(repository_id)
        .where(CacheEntry.key.startswith(prefix, autoescape=True))
        .order_by(CacheEntry.created_at.desc(), CacheEntry.id.desc())
        .limit(1)
    )


def _ready(repository_id: int) -> Select[tuple[CacheEntry]]:
    return select(CacheEntry).where(
        CacheEntry.repository_id == repository_id, CacheEntry.state == "ready"
    )


def by_key(tx: Tx, repository_id: int, key: str) -> CacheEntry | None:
    """The repository's entry for ``key``, in any state."""
    return tx.scalar(
        select(CacheEntry).where(CacheEntry.repository_id == repository_id, CacheEntry.key == key)
    )


def get(tx: Tx, entry_id: int) -> CacheEntry | None:
    return tx.get(CacheEntry, entry_id)


def attempt_state(tx: Tx, attempt_id: int) -> str | None:
    """The state of attempt ``attempt_id`` (None if there is no such attempt)."""
    attempt = tx.get(Attempt, attempt_id)
    return None if attempt is None else attempt.state


def save(tx: Tx, entry: CacheEntry) -> None:
    """Write (a new entry: insert, giving it its id) now."""
    tx.add(entry)
    tx.flush()


def expired(tx: Tx, unused_before: datetime, pending_before: datetime) -> list[tuple[int, str]]:
    """(id, storage key) of the entries last used before ``unused_before``, and of the
    reservations still pending that were made before ``pending_before``."""
    rows = tx.execute(
        select(CacheEntry.id, CacheEntry.storage_key).where(
            (CacheEntry.last_used_at <= unused_before)
            | ((CacheEntry.state == "pending") & (CacheEntry.created_at <= pending_before))
        )
    )
    return [(int(i), str(key)) for i, key in rows]


def delete_ids(tx: Tx, ids: Sequence[int]) -> None:
    tx.execute(delete(CacheEntry).where(CacheEntry.id.in_(ids)))
