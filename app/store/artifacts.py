"""Artifacts' rows, and the job token lookup that artifact and cache calls share
(``app.artifacts`` checks the requests and moves the blobs)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select

from app.store.db import Tx
from app.store.models import Artifact, Attempt, Job


def attempt_by_token_hash(tx: Tx, digest: str) -> Attempt | None:
    """The attempt whose job token hashes (SHA-256, hex) to ``digest``."""
    return tx.scalar(select(Attempt).where(Attempt.token_hash == digest))


def of_attempt(tx: Tx, attempt_id: int) -> dict[str, Artifact]:
    """An attempt's artifacts (any state) by path."""
    return {
        a.path: a for a in tx.scalars(select(Artifact).where(Artifact.attempt_id == attempt_id))
    }


def get(tx: Tx, artifact_id: int) -> Artifact | None:
    return tx.get(Artifact, artifact_id)


def some_of_attempt(tx: Tx, attempt_id: int, ids: Sequence[int]) -> list[Artifact]:
    """The artifacts among ``ids`` that belong to the attempt."""
    q = select(Artifact).where(Artifact.attempt_id == attempt_id, Artifact.id.in_(ids))
    return list(tx.scalars(q))


def save(tx: Tx, artifact: Artifact) -> None:
    """Write (a new artifact: insert, giving it its id) now."""
    tx.add(artifact)
    tx.flush()


def mark_ready(tx: Tx, ids: Sequence[int]) -> None:
    for a in tx.scalars(select(Artifact).where(Artifact.id.in_(ids))):
        a.state = "ready"


def newest_ready(tx: Tx, job_id: int, path: str) -> Artifact | None:
    """The ready artifact ``path`` of the job's latest attempt that has it."""
    return tx.scalar(
        select(Artifact)
        .join(Attempt, Attempt.id == Artifact.attempt_id)
        .where(Artifact.job_id == job_id, Artifact.path == path)
        .where(Artifact.state == "ready")
        .order_by(Attempt.number.desc())
        .limit(1)
    )


def ready_of_job(tx: Tx, job_id: int) -> list[tuple[Artifact, int]]:
    """The job's ready artifacts with their attempt's number, newest attempt first, then
    by path."""
    rows = tx.execute(
        select(Artifact, Attempt.number)
        .join(Attempt, Attempt.id == Artifact.attempt_id)
        .where(Artifact.job_id == job_id, Artifact.state == "ready")
        .order_by(Attempt.number.desc(), Artifact.path)
    ).all()
    return [(a, int(number)) for a, number in rows]


def job_exists(tx: Tx, job_id: int) -> bool:
    return tx.get(Job, job_id) is not None


def expired(tx: Tx, now: datetime, pending_before: datetime) -> list[tuple[int, str]]:
    """(id, storage key) of the artifacts expired at ``now``, and of the uploads still
    pending that were announced before ``pending_before``."""
    rows = tx.execute(
        select(Artifact.id, Artifact.storage_key).where(
            (Artifact.expires_at <= now)
            | ((Artifact.state == "pending") & (Artifact.created_at <= pending_before))
        )
    )
    return [(int(i), str(key)) for i, key in rows]


def delete_ids(tx: Tx, ids: Sequence[int]) -> None:
    tx.execute(delete(Artifact).where(Artifact.id.in_(ids)))
