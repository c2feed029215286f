"""Starting pipelines: read the config at the commit, plan, store.

Which config is trusted is decided here, once: the `.ployd.yml` *at the commit being
tested* (for a pull request, its head). A pull request can therefore change its own
pipeline, as with GitHub Actions' `pull_request` event; what keeps that safe is that a
fork's pull request runs nothing until a maintainer says `/ployd ok-to-test`, and never
receives secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Select, select

from app.adapters import local_git
from app.adapters.errors import ForgeError
from app.core.config.errors import ConfigError, ConfigInvalid
from app.core.config.loader import load_config
from app.core.expand import expand
from app.core.hardware import Catalog
from app.core.planner import JobPlan, plan_jobs
from app.core.slash import Permission
from app.core.states import JobState
from app.core.triggers import Event, EventKind
from app.engine.engine import Engine, RepoRef
from app.store.db import Database
from app.store.models import Pipeline, Repository

CONFIG_FILE = ".ployd.yml"
log = logging.getLogger("ployd.pipelines")


@dataclass(frozen=True)
class Started:
    pipeline_id: int | None  # None: the event starts no pipeline
    sha: str
    ref: str


def plan(text: str | None, event: Event, catalog: Catalog) -> tuple[JobPlan, ...] | None:
    """The jobs ``event`` starts under the config ``text`` (None: no config file, so no
    pipeline). Raises ``ConfigInvalid`` with every error."""
    if text is None:
        return None
    config = load_config(text, CONFIG_FILE, catalog)
    return plan_jobs(config, expand(config, catalog), event)


def start_local(
    engine: Engine, catalog: Catalog, repo_path: str, ref: str = "HEAD", actor: str = "api"
) -> Started:
    """Start a pipeline for a repository on this machine, at ``ref``.

    Raises ``local_git.LocalRepoError`` for a bad path or ref and ``ConfigInvalid`` when
    `.ployd.yml` is missing or invalid at that commit.
    """
    path = Path(repo_path).expanduser().resolve()
    full_ref, sha = local_git.resolve(path, ref)
    text = local_git.read_file(path, sha, CONFIG_FILE)
    if text is None:
        raise ConfigInvalid(
            [ConfigError(CONFIG_FILE, 1, 1, f"no {CONFIG_FILE} at {sha[:12]} in {path}")]
        )
    default = local_git.default_branch(path)
    plans = plan(text, Event(EventKind.API, ref=full_ref, sha=sha, default_branch=default), catalog)
    if plans is None:
        return Started(None, sha, full_ref)
    repo = RepoRef(forge="local", full_name=str(path), clone_url=path.as_uri())
    pid = engine.create_pipeline(repo, plans, ref=full_ref, sha=sha, trigger="api", actor=actor)
    return Started(pid, sha, full_ref)


# -- forge-neutral lookups and moves, shared by the GitHub and GitLab handlers ---------


def _repo_pipelines(forge: str, full_name: str) -> Select[tuple[int]]:
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
        return conn.execute(q.order_by(Pipeline.id.desc()).limit(1)).scalar()


def already_started(db: Database, forge: str, full_name: str, sha: str, ref: str) -> bool:
    """A branch pipeline for this commit and ref exists (two events for one push)."""
    q = _repo_pipelines(forge, full_name).where(
        Pipeline.sha == sha, Pipeline.ref == ref, Pipeline.pr_number.is_(None)
    )
    with db.engine.connect() as conn:
        return conn.execute(q.limit(1)).scalar() is not None


def running_for_request(db: Database, forge: str, full_name: str, pr: int) -> list[tuple[int, str]]:
    """(id, sha) of the request's pipelines that still run."""
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
        return [(r[0], r[1]) for r in conn.execute(q).all()]


def supersede(engine: Engine, forge: str, full_name: str, pr: int, new_sha: str) -> None:
    """New commits on a request: what still runs for older commits is cancelled."""
    for pid, sha in running_for_request(engine.db, forge, full_name, pr):
        if sha != new_sha:
            engine.cancel_pipeline(pid, "ployd (superseded by a newer commit)")


def cancel_request(engine: Engine, forge: str, full_name: str, pr: int, why: str) -> None:
    """The request was closed or merged: what still runs for it is cancelled."""
    for pid, _sha in running_for_request(engine.db, forge, full_name, pr):
        engine.cancel_pipeline(pid, why)


def rerun_finished(engine: Engine, pipeline_id: int, actor: str) -> int:
    """Every finished job of a pipeline again ("re-run all checks")."""
    with engine.db.session() as s:
        pipeline = s.get(Pipeline, pipeline_id)
        assert pipeline is not None
        finished = [j.id for j in pipeline.jobs if JobState(j.state).final]
    for job_id in finished:
        engine.retry_job(job_id, actor)
    return len(finished)


async def start_forge_pipeline(
    engine: Engine,
    catalog: Catalog,
    *,
    read_config: Callable[[], Awaitable[str | None]],
    on_invalid: Callable[[list[ConfigError]], Awaitable[None]],
    event: Event,
    repo: RepoRef,
    trigger: str,
    actor: str,
    inbox_id: int | None = None,
    pr_number: int | None = None,
    fork: bool = False,
    held: bool = False,
    pr_author: str | None = None,
) -> int | None:
    """Read `.ployd.yml` at the event's commit (``read_config``), plan, store. An invalid
    config goes to ``on_invalid`` with every error; no config file: PloyD is not used."""
    try:
        plans = plan(await read_config(), event, catalog)
    except ConfigInvalid as e:
        await on_invalid(e.errors)
        return None
    if plans is None:
        return None
    return engine.create_pipeline(
        repo,
        plans,
        ref=event.ref,
        sha=event.sha,
        trigger=trigger,
        actor=actor,
        pr_number=pr_number,
        fork=fork,
        held=held,
        pr_author=pr_author,
        event_id=inbox_id,
    )


WRITERS = frozenset({Permission.ADMIN, Permission.MAINTAIN, Permission.WRITE})


async def changed_or_none(fetch: Awaitable[list[str]], what: str) -> tuple[str, ...] | None:
    """The changed files, or None (path filters then see every file) when the forge
    could not say."""
    try:
        return tuple(await fetch)
    except ForgeError as e:
        log.warning("%s failed (%s): path filters see every file", what, e)
        return None


async def held_for_approval(fork: bool, permission: Callable[[], Awaitable[Permission]]) -> bool:
    """A fork's request from someone who cannot write to the repository runs nothing until
    a writer says `/ployd ok-to-test`."""
    return fork and await permission() not in WRITERS


@dataclass(frozen=True)
class Request:
    """A pull or merge request's new head, as any forge tells it."""

    number: int
    ref: str  # refs/pull/N/head, refs/merge-requests/N/head
    sha: str
    base_branch: str
    action: str  # opened, synchronize, reopened
    default_branch: str

    def event(self, changed: tuple[str, ...] | None) -> Event:
        return Event(
            EventKind.PULL_REQUEST,
            ref=self.ref,
            sha=self.sha,
            default_branch=self.default_branch,
            base_branch=self.base_branch,
            action=self.action,
            changed_files=changed,
        )
