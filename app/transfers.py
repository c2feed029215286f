"""The artifact and cache services together, built once from the settings (above both
packages: ``app.caches`` uses the artifacts' blob store and token check)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.artifacts.service import DEFAULT_EXPIRE_S, Artifacts
from app.artifacts.storage import BlobStore, open_store
from app.caches.service import DEFAULT_MAX_BYTES, DEFAULT_UNUSED_TTL_S, Caches
from app.settings import Settings
from app.store.db import Database


@dataclass
class Transfers:
    store: BlobStore
    artifacts: Artifacts
    caches: Caches

    @classmethod
    def build(cls, db: Database, settings: Settings) -> Transfers:
        store = open_store(settings)
        return cls(
            store=store,
            artifacts=Artifacts(
                db,
                store,
                default_expire_s=settings.artifact_expire_s or DEFAULT_EXPIRE_S,
            ),
            caches=Caches(
                db,
                store,
                max_bytes=settings.cache_max_bytes or DEFAULT_MAX_BYTES,
                unused_ttl_s=settings.cache_unused_ttl_s or DEFAULT_UNUSED_TTL_S,
            ),
        )

    def expire(self, now: datetime | None = None) -> tuple[int, int]:
        """One expiry pass (blocking): (artifacts deleted, cache entries deleted)."""
        return self.artifacts.expire(now), self.caches.expire(now)
