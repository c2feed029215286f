"""What a job's machines failed on, avoided by its later launches until an expiry: a
machine that vanished, never registered or failed its bootstrap on ``g6.xlarge spot
us-east-1a`` makes every later attempt of that job try elsewhere first. Stored per job
(not per executor pass), so a restart, another replica or a successful launch in between
does not forget it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.clock import aware
from app.store.db import Database
from app.store.models import JobAvoid


def add(db: Database, job_id: int, key: str, reason: str, until: datetime) -> None:
    """Avoid ``key`` for ``job_id`` until ``until`` (a later expiry replaces an earlier)."""
    for _ in range(2):  # a replica may insert the same pair at the same moment
        try:
            with db.session() as s:
                row = s.scalar(
                    select(JobAvoid).where(JobAvoid.job_id == job_id, JobAvoid.key == key)
                )
                if row is None:
                    s.add(JobAvoid(job_id=job_id, key=key, reason=reason[:2000], until=until))
                elif aware(row.until) <= until:
                    row.until, row.reason = until, reason[:2000]
            return
        except IntegrityError:
            continue


def active(db: Database, job_id: int, now: datetime) -> dict[str, tuple[str, datetime]]:
    """key -> (why, until) of what ``job_id`` avoids at ``now``."""
    with db.session() as s:
        rows = s.scalars(select(JobAvoid).where(JobAvoid.job_id == job_id))
        out: dict[str, tuple[str, datetime]] = {}
        for r in rows:
            until = aware(r.until)
            if until > now:
                out[r.key] = (r.reason, until)
        return out
