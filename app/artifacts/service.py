"""Artifacts on the server: register the agent's files, hand out upload targets, confirm,
list them for the log page, serve downloads, and expire them.

An artifact row is written when the agent announces the file (``pending``) and becomes
``ready`` once the bytes are in the store (the local upload endpoint checks size and
SHA-256 as it writes; for S3 the ``done`` call checks the object's size). Only ready
artifacts are listed and downloadable.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.artifacts.access import BadRequest, NotFound, human_size, live_attempt
from app.artifacts.storage import BlobStore
from app.core.cachekey import CacheKeyError, safe_relpath
from app.core.jobspec import StoredJobSpec
from app.store import artifacts as artifact_rows
from app.store.db import Database
from app.store.models import Artifact, utcnow

MAX_FILES = 10_000
MAX_PATH = 1024
DEFAULT_EXPIRE_S = 30 * 24 * 3600
PENDING_GRACE = timedelta(days=1)  # an upload never confirmed is dropped after this
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class ArtifactView:
    """One artifact as the log page shows it."""

    path: str
    size: int
    size_text: str
    sha256: str
    attempt: int
    expires_at: datetime | None
    url: str  # the download link, relative to the server, carrying the page's token


def _check_files(files: Any) -> list[tuple[str, int, str]]:
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise BadRequest(f"files must be a list of at most {MAX_FILES} objects")
    out: dict[str, tuple[str, int, str]] = {}
    for f in files:
        if not isinstance(f, dict):
            raise BadRequest("each file is {path, size, sha256}")
        path, size, sha = f.get("path"), f.get("size"), f.get("sha256")
        if not isinstance(path, str) or len(path) > MAX_PATH:
            raise BadRequest(f"path must be a string of at most {MAX_PATH} characters")
        try:
            norm = safe_relpath(path)
        except CacheKeyError as e:
            raise BadRequest(f"refused: {e}") from None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"{path}: size must be a whole number >= 0")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise BadRequest(f"{path}: sha256 must be 64 lowercase hex digits")
        out[norm] = (norm, size, sha)
    return list(out.values())


def upload_path(attempt_id: int, artifact_id: int) -> str:
    return f"/api/v1/agent/attempts/{attempt_id}/artifacts/{artifact_id}/blob"


def download_path(job_id: int, path: str, token: str) -> str:
    quoted = urllib.parse.quote(path, safe="/")
    return f"/runs/{job_id}/artifacts/{quoted}?t={urllib.parse.quote(token, safe='')}"


class Artifacts:
    def __init__(
        self, db: Database, store: BlobStore, *, default_expire_s: int = DEFAULT_EXPIRE_S
    ) -> None:
        self.db = db
        self.store = store
        self.default_expire_s = default_expire_s

    def register(self, attempt_id: int, token: str, files: Any) -> list[dict[str, Any]]:
        """Record the files announced; one upload target per file."""
        now = utcnow()
        uploads: list[dict[str, Any]] = []
        with self.db.session() as s:
            attempt = live_attempt(s, attempt_id, token)  # the token first, then the body
            checked = _check_files(files)
            job = attempt.job
            spec = StoredJobSpec.from_stored(job.spec).artifacts
            expire_s = (spec.expire_in_s if spec is not None else None) or self.default_expire_s
            expires = now + timedelta(seconds=int(expire_s))
            repo = job.pipeline.repository
            existing = artifact_rows.of_attempt(s, attempt.id)
            for path, size, sha in checked:
                art = existing.get(path)
                if art is None:
                    art = Artifact(attempt_id=attempt.id, job_id=job.id, path=path, storage_key="")
                art.size, art.sha256, art.state = size, sha, "pending"
                art.created_at, art.expires_at = now, expires
                artifact_rows.save(s, art)
                art.storage_key = (
                    f"artifacts/t{repo.tenant_id}/r{repo.id}/j{job.id}/a{attempt.id}/{art.id}"
                )
                target = self.store.upload_target(art.storage_key, upload_path(attempt.id, art.id))
                uploads.append({"id": art.id, "path": path, "size": size, **target.to_json()})
        return uploads

    def pending(self, attempt_id: int, token: str, artifact_id: int) -> tuple[str, int, str]:
        """(storage key, size, sha256) of an artifact this attempt announced."""
        with self.db.session() as s:
            live_attempt(s, attempt_id, token)
            art = artifact_rows.get(s, artifact_id)
            if art is None or art.attempt_id != attempt_id:
                raise NotFound(f"no artifact {artifact_id} in attempt {attempt_id}")
            return art.storage_key, art.size, art.sha256

    def confirm(self, attempt_id: int, token: str, ids: Any) -> dict[str, Any]:
        """Mark the uploaded artifacts ready once their bytes are in the store (blocking:
        asks S3 for the sizes)."""
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise BadRequest("ids must be a list of artifact ids")
        with self.db.session() as s:
            live_attempt(s, attempt_id, token)
            arts = artifact_rows.some_of_attempt(s, attempt_id, ids)
            keys = [(a.id, a.storage_key, a.size) for a in arts]
        ready: list[int] = []
        missing: list[int] = []
        for aid, key, size in keys:
            (ready if self.store.stat(key) == size else missing).append(aid)
        with self.db.session() as s:
            artifact_rows.mark_ready(s, ready)
        return {"ready": ready, "missing": missing}

    def find(self, job_id: int, path: str) -> Artifact | None:
        """The newest ready artifact ``path`` of the job (its latest attempt with it)."""
        with self.db.session() as s:
            return artifact_rows.newest_ready(s, job_id, path)

    def expire(self, now: datetime | None = None) -> int:
        """Delete expired artifacts (blobs, then rows) and uploads never confirmed;
        the number deleted (blocking)."""
        now = now or utcnow()
        with self.db.session() as s:
            rows = artifact_rows.expired(s, now, now - PENDING_GRACE)
        done = []
        for aid, key in rows:
            if key:
                self.store.delete(key)
            done.append(aid)
        if done:
            with self.db.session() as s:
                artifact_rows.delete_ids(s, done)
        return len(done)


def artifacts_for_job(db: Database, job_id: int, token: str = "") -> list[ArtifactView]:
    """The job's ready artifacts, newest attempt first, then by path, each with its size
    and a download link carrying ``token`` (the job's signed link token)."""
    with db.session() as s:
        rows = artifact_rows.ready_of_job(s, job_id)
        if not artifact_rows.job_exists(s, job_id):
            return []
        return [
            ArtifactView(
                path=a.path,
                size=a.size,
                size_text=human_size(a.size),
                sha256=a.sha256,
                attempt=number,
                expires_at=a.expires_at,
                url=download_path(job_id, a.path, token),
            )
            for a, number in rows
        ]
