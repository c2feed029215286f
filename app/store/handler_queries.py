"""What the forge handlers read and write in the store, as functions that return frozen
views (never ORM rows), so that the handlers hold no SQL and no session.

The moves themselves (create, cancel, retry, approve) are the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select

from app.store.db import Database
from app.store.models import Job, Pipeline, Repository, Tenant


@dataclass(frozen=True, slots=True)
class RunningPipeline:
    """A pull/merge request's pipeline that still runs, and the commit it tests."""

    id: int
    sha: str


@dataclass(frozen=True, slots=True)
class CommandJob:
    """A job as `/ployd` commands see it (``state``: a ``JobState`` value)."""

    id: int
    name: str
    base_name: str
    state: str
    hardware: tuple[str, ...]
    manual: bool


@dataclass(frozen=True, slots=True)
class CommandPipeline:
    """A pipeline's jobs, in order, and the author of its pull/merge request."""

    id: int
    pr_author: str | None
    jobs: tuple[CommandJob, ...]


@dataclass(frozen=True, slots=True)
class CheckRunJob:
    """The job behind one of PloyD's check runs."""

    id: int
    name: str
    pipeline_id: int
    pr_number: int | None


# -- pipelines of a repository ----------------------------------------------------------


def _repo_pipelines(forge: str, full_name: str) -> Select[Any]:
    return (
        select(Pipeline.id)
        .join(Pipeline.repository)
        .where(Repository.forge == forge, Repository.full_name == full_name)
    )


def latest_pipeline(
    db: Database, forge: str, full_name: str, *, pr: int | None = None, sha: str | None = None
) -> int | None:
    """The newest pipeline of a pull/merge request, or of a commit."""
    q = _repo_pipelines(forge, full_name)
    if pr is not None:
        q = q.where(Pipeline.pr_number == pr)
    if sha is not None:
        q = q.where(Pipeline.sha == sha)
    with db.engine.connect() as conn:
        found = conn.execute(q.order_by(Pipeline.id.desc()).limit(1)).scalar()
    return None if found is None else int(found)


def already_started(db: Database, forge: str, full_name: str, sha: str, ref: str) -> bool:
    """A branch pipeline for this commit and ref exists (two events for one push)."""
    q = _repo_pipelines(forge, full_name).where(
        Pipeline.sha == sha, Pipeline.ref == ref, Pipeline.pr_number.is_(None)
    )
    with db.engine.connect() as conn:
        return conn.execute(q.limit(1)).scalar() is not None


def running_for_request(db: Database, forge: str, full_name: str, pr: int) -> list[RunningPipeline]:
    """The request's pipelines that still run."""
    q = (
        select(Pipeline.id, Pipeline.sha)
        .join(Pipeline.repository)
        .where(
            Repository.forge == forge,
            Repository.full_name == full_name,
            Pipeline.pr_number == pr,
            Pipeline.state == "running",
        )
    )
    with db.engine.connect() as conn:
        return [RunningPipeline(int(r[0]), str(r[1])) for r in conn.execute(q).all()]


# -- one pipeline -----------------------------------------------------------------------


def command_pipeline(db: Database, pipeline_id: int) -> CommandPipeline:
    """The pipeline's jobs as commands see them (the pipeline must exist)."""
    with db.session() as s:
        pipeline = s.get(Pipeline, pipeline_id)
        assert pipeline is not None
        return CommandPipeline(
            id=pipeline.id,
            pr_author=pipeline.pr_author,
            jobs=tuple(
                CommandJob(
                    id=j.id,
                    name=j.name,
                    base_name=j.base_name,
                    state=j.state,
                    hardware=tuple(j.hardware),
                    manual=j.when == "manual",
                )
                for j in pipeline.jobs
            ),
        )


def job_states(db: Database, pipeline_id: int) -> list[tuple[int, str]]:
    """(id, state) of the pipeline's jobs, in order (the pipeline must exist)."""
    with db.session() as s:
        pipeline = s.get(Pipeline, pipeline_id)
        assert pipeline is not None
        return [(j.id, j.state) for j in pipeline.jobs]


def check_run_job(db: Database, job_id: int) -> CheckRunJob | None:
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        return CheckRunJob(
            id=job.id, name=job.name, pipeline_id=job.pipeline_id, pr_number=job.pipeline.pr_number
        )


# -- tenants ----------------------------------------------------------------------------


def set_tenant(db: Database, forge: str, external_id: str, name: str, *, active: bool) -> None:
    """Create the tenant, or update its name and whether it is active."""
    with db.session() as s:
        tenant = s.scalar(
            select(Tenant).where(Tenant.forge == forge, Tenant.external_id == external_id)
        )
        if tenant is None:
            s.add(Tenant(forge=forge, external_id=external_id, name=name, active=active))
        else:
            tenant.name, tenant.active = name, active
