"""Caches on the server: look an entry up by exact key or by restore-key prefix (newest
first), reserve a save, confirm it, and drop entries nobody used for a while.

Scope: an entry belongs to one repository (so to one tenant) and is found only by jobs
of that repository. Pipelines of pull requests from forks neither read nor write caches:
a fork's code must not poison what the base repository's jobs restore, and must not read
what they saved (a cache can hold tokens a build wrote to disk).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from app.artifacts.access import BadRequest, NotFound, live_attempt
from app.artifacts.storage import BlobStore
from app.core.cachekey import CacheKeyError, check_key
from app.core.states import AttemptState
from app.store import caches as cache_rows
from app.store.db import Database
from app.store.models import Attempt, CacheEntry, Pipeline, utcnow

DEFAULT_MAX_BYTES = 5 << 30
DEFAULT_UNUSED_TTL_S = 7 * 24 * 3600
FORK_REASON = "caches are off for pull requests from forks (neither read nor written)"
MAX_RESTORE_KEYS = 10


def blob_path(attempt_id: int, entry_id: int) -> str:
    return f"/api/v1/agent/attempts/{attempt_id}/caches/{entry_id}/blob"


def _key(value: Any, what: str = "key") -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    try:
        check_key(value)
    except CacheKeyError as e:
        raise BadRequest(str(e)) from None
    return value


class Caches:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        unused_ttl_s: int = DEFAULT_UNUSED_TTL_S,
    ) -> None:
        self.db = db
        self.store = store
        self.max_bytes = max_bytes
        self.unused_ttl_s = unused_ttl_s

    @staticmethod
    def _scope(attempt: Attempt) -> Pipeline:
        return attempt.job.pipeline

    def restore(self, attempt_id: int, token: str, key: Any, restore_keys: Any) -> dict[str, Any]:
        """``{"hit": "exact"|"prefix"|null, "key", "size", "sha256", "download"}``."""
        exact = _key(key)
        if not isinstance(restore_keys, list) or len(restore_keys) > MAX_RESTORE_KEYS:
            raise BadRequest(f"restore_keys must be a list of at most {MAX_RESTORE_KEYS}")
        prefixes = [_key(p, "a restore key") for p in restore_keys]
        with self.db.session() as s:
            attempt = live_attempt(s, attempt_id, token)
            pipeline = self._scope(attempt)
            if pipeline.fork:
                return {"hit": None, "disabled": FORK_REASON}
            repo_id = pipeline.repository_id
            hit, entry = "exact", cache_rows.ready_exact(s, repo_id, exact)
            for prefix in prefixes:
                if entry is not None:
                    break
                hit = "prefix"
                entry = cache_rows.newest_ready_with_prefix(s, repo_id, prefix)
            if entry is None:
                return {"hit": None}
            entry.last_used_at = utcnow()
            target = self.store.download_target(entry.storage_key, blob_path(attempt.id, entry.id))
            return {
                "hit": hit,
                "key": entry.key,
                "size": entry.size,
                "sha256": entry.sha256,
                "download": target.to_json(),
            }

    def reserve(
        self, attempt_id: int, token: str, key: Any, size: Any, sha256: Any
    ) -> dict[str, Any]:
        """An upload target for a new entry, or ``{"skip": why}``."""
        exact = _key(key)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest("size must be a whole number >= 0")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise BadRequest("sha256 must be 64 hex digits")
        if size > self.max_bytes:
            return {"skip": "too_large", "max_bytes": self.max_bytes}
        with self.db.session() as s:
            attempt = live_attempt(s, attempt_id, token)
            pipeline = self._scope(attempt)
            if pipeline.fork:
                return {"skip": "fork", "disabled": FORK_REASON}
            repo = pipeline.repository
            entry = cache_rows.by_key(s, repo.id, exact)
            if entry is not None and entry.state == "ready":
                return {"skip": "exists"}
            if entry is not None and entry.attempt_id not in (None, attempt.id):
                other = cache_rows.attempt_state(s, entry.attempt_id)
                if other is not None and not AttemptState(other).final:
                    return {"skip": "saving"}  # another running job saves this key now
            if entry is None:
                digest = hashlib.sha256(exact.encode()).hexdigest()
                entry = CacheEntry(
                    repository_id=repo.id,
                    key=exact,
                    storage_key=f"caches/t{repo.tenant_id}/r{repo.id}/{digest}.tar.gz",
                )
            entry.size, entry.sha256, entry.state = size, sha256, "pending"
            entry.attempt_id = attempt.id
            entry.created_at = entry.last_used_at = utcnow()
            cache_rows.save(s, entry)
            target = self.store.upload_target(entry.storage_key, blob_path(attempt.id, entry.id))
            return {"entry_id": entry.id, "upload": target.to_json()}

    def entry(
        self, attempt_id: int, token: str, entry_id: int, *, writing: bool
    ) -> tuple[str, int, str]:
        """(storage key, size, sha256) of an entry this attempt may read (a ready entry
        of its repository) or write (the entry it reserved)."""
        with self.db.session() as s:
            attempt = live_attempt(s, attempt_id, token)
            pipeline = self._scope(attempt)
            entry = cache_rows.get(s, entry_id)
            if (
                entry is None
                or pipeline.fork
                or entry.repository_id != pipeline.repository_id
                or (writing and (entry.attempt_id != attempt.id or entry.state != "pending"))
                or (not writing and entry.state != "ready")
            ):
                raise NotFound(f"no cache entry {entry_id} for this attempt")
            return entry.storage_key, entry.size, entry.sha256

    def commit(self, attempt_id: int, token: str, entry_id: Any) -> dict[str, Any]:
        """Mark a reserved entry ready once its archive is in the store (blocking)."""
        if not isinstance(entry_id, int):
            raise BadRequest("entry_id must be an integer")
        key, size, _ = self.entry(attempt_id, token, entry_id, writing=True)
        if self.store.stat(key) != size:
            return {"ready": False, "error": "the archive is not in the store"}
        with self.db.session() as s:
            entry = cache_rows.get(s, entry_id)
            if entry is None:
                raise NotFound(f"no cache entry {entry_id}")
            entry.state = "ready"
            entry.created_at = entry.last_used_at = utcnow()
        return {"ready": True}

    def expire(self, now: datetime | None = None) -> int:
        """Drop entries unused for ``unused_ttl_s`` and reservations never completed."""
        now = now or utcnow()
        unused = now - timedelta(seconds=self.unused_ttl_s)
        with self.db.session() as s:
            rows = cache_rows.expired(s, unused, now - timedelta(days=1))
        for _, key in rows:
            self.store.delete(key)
        ids = [i for i, _ in rows]
        if ids:
            with self.db.session() as s:
                cache_rows.delete_ids(s, ids)
        return len(ids)
