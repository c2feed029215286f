"""What `ployd serve` announces as pipelines move (``app.progresslog``): a pipeline's
state and the jobs that ended since a watermark, read in one short session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app.core.clock import aware
from app.store.db import Database
from app.store.models import Attempt, Job, Pipeline, Repository


@dataclass(frozen=True)
class EndedJob:
    id: int
    name: str
    state: str
    skip_reason: str | None
    started_at: datetime | None
    finished_at: datetime
    attempt: int  # the number of its last attempt (0: it never ran)
    end_reason: str | None
    exit_code: int | None


@dataclass(frozen=True)
class Progress:
    id: int
    repo: str
    ref: str
    sha: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    jobs: int
    ended: tuple[EndedJob, ...]  # finished at or after the watermark, oldest first
    # the next watermark: the latest finished_at as the database gave it back (naive on
    # SQLite), so that comparing it there again is exact
    mark: datetime | None


def progress(
    db: Database, pipeline_id: int, since: datetime | None, *, count: bool = True
) -> Progress | None:
    """The pipeline and the jobs that finished at or after ``since`` (a ``mark`` this
    returned; every finished job when None); None when there is no such pipeline.
    ``count``: also count its jobs (else ``jobs`` is 0), a scan of them all."""
    with db.session() as s:
        found = s.execute(
            select(Pipeline, Repository.full_name)
            .join(Repository, Pipeline.repository_id == Repository.id)
            .where(Pipeline.id == pipeline_id)
        ).one_or_none()
        if found is None:
            return None
        p, repo = found
        total = 0
        if count:
            total = s.scalar(select(func.count()).where(Job.pipeline_id == pipeline_id)) or 0
        q = select(Job).where(Job.pipeline_id == pipeline_id, Job.finished_at.is_not(None))
        if since is not None:
            q = q.where(Job.finished_at >= since)
        jobs = list(s.scalars(q.order_by(Job.finished_at, Job.id)))
        last: dict[int, Attempt] = {}
        if jobs:
            for a in s.scalars(select(Attempt).where(Attempt.job_id.in_([j.id for j in jobs]))):
                if a.job_id not in last or a.number > last[a.job_id].number:
                    last[a.job_id] = a
        ended = []
        for j in jobs:
            la = last.get(j.id)
            finished = aware(j.finished_at)
            assert finished is not None
            ended.append(
                EndedJob(
                    id=j.id,
                    name=j.name,
                    state=j.state,
                    skip_reason=j.skip_reason,
                    started_at=aware(j.started_at),
                    finished_at=finished,
                    attempt=la.number if la is not None else 0,
                    end_reason=la.end_reason if la is not None else None,
                    exit_code=la.exit_code if la is not None else None,
                )
            )
        created = aware(p.created_at)
        assert created is not None
        return Progress(
            id=p.id,
            repo=repo,
            ref=p.ref,
            sha=p.sha,
            state=p.state,
            created_at=created,
            finished_at=aware(p.finished_at),
            jobs=int(total),
            ended=tuple(ended),
            mark=jobs[-1].finished_at if jobs else since,
        )
