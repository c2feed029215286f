"""Starting pipelines: read the config at the commit, plan, store.

Which config is trusted is decided here, once: the `.ployd.yml` *at the commit being
tested* (for a pull request, its head). A pull request can therefore change its own
pipeline, as with GitHub Actions' `pull_request` event; what keeps that safe is that a
fork's pull request runs nothing until a maintainer says `/ployd ok-to-test`, and never
receives secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from app.engine.creation import collector_paused
from app.engine.engine import Engine, RepoRef
from app.store import handler_queries

CONFIG_FILE = ".ployd.yml"
log = logging.getLogger("ployd.pipelines")


@dataclass(frozen=True)
class Started:
    pipeline_id: int | None  # None: the event starts no pipeline
    sha: str
    ref: str


def plan(
    text: str | None, event: Event, catalog: Catalog, *, max_jobs: int | None = None
) -> tuple[JobPlan, ...] | None:
    """The jobs ``event`` starts under the config ``text`` (None: no config file, so no
    pipeline). Raises ``ConfigInvalid`` with every error, among them a file of more than
    ``max_jobs`` jobs (PLOYD_MAX_JOBS_PER_PIPELINE), naming the matrix that passes it."""
    if text is None:
        return None
    with collector_paused():  # thousands of planned jobs: see ``collector_paused``
        config = load_config(text, CONFIG_FILE, catalog, max_jobs=max_jobs)
        return plan_jobs(config, expand(config, catalog), event)


@dataclass(frozen=True)
class LocalPlan:
    """A local repository's pipeline, planned, not yet stored (``plans`` None: no
    trigger matched)."""

    repo: RepoRef
    plans: tuple[JobPlan, ...] | None
    sha: str
    ref: str


def start_local(
    engine: Engine, catalog: Catalog, repo_path: str, ref: str = "HEAD", actor: str = "api"
) -> Started:
    """Start a pipeline for a repository on this machine, at ``ref``, blocking (on the
    event loop: ``start_local_async``).

    Raises ``local_git.LocalRepoError`` for a bad path or ref and ``ConfigInvalid`` when
    `.ployd.yml` is missing or invalid at that commit.
    """
    local = plan_local(catalog, repo_path, ref, max_jobs=engine.max_jobs_per_pipeline)
    if local.plans is None:
        return Started(None, local.sha, local.ref)
    pid = engine.create_pipeline(
        local.repo, local.plans, ref=local.ref, sha=local.sha, trigger="api", actor=actor
    )
    return Started(pid, local.sha, local.ref)


async def start_local_async(
    engine: Engine, catalog: Catalog, repo_path: str, ref: str = "HEAD", actor: str = "api"
) -> Started:
    """``start_local`` off the event loop: git, parsing and planning in a worker thread,
    then ``Engine.create_pipeline_async`` (a 10,000-job pipeline never stalls the loop)."""
    local = await asyncio.to_thread(
        plan_local, catalog, repo_path, ref, max_jobs=engine.max_jobs_per_pipeline
    )
    if local.plans is None:
        return Started(None, local.sha, local.ref)
    pid = await engine.create_pipeline_async(
        local.repo, local.plans, ref=local.ref, sha=local.sha, trigger="api", actor=actor
    )
    return Started(pid, local.sha, local.ref)


def plan_local(
    catalog: Catalog, repo_path: str, ref: str = "HEAD", *, max_jobs: int | None = None
) -> LocalPlan:
    """Read `.ployd.yml` of a repository on this machine at ``ref`` and plan it (blocking:
    git runs). Raises ``local_git.LocalRepoError`` and ``ConfigInvalid``."""
    path = Path(repo_path).expanduser().resolve()
    full_ref, sha = local_git.resolve(path, ref)
    text = local_git.read_file(path, sha, CONFIG_FILE)
    if text is None:
        raise ConfigInvalid(
            [ConfigError(CONFIG_FILE, 1, 1, f"no {CONFIG_FILE} at {sha[:12]} in {path}")]
        )
    default = local_git.default_branch(path)
    event = Event(EventKind.API, ref=full_ref, sha=sha, default_branch=default)
    plans = plan(text, event, catalog, max_jobs=max_jobs)
    repo = RepoRef(forge="local", full_name=str(path), clone_url=path.as_uri())
    return LocalPlan(repo, plans, sha, full_ref)


# -- forge-neutral moves, shared by the GitHub and GitLab handlers -----------------------


async def supersede(engine: Engine, forge: str, full_name: str, pr: int, new_sha: str) -> None:
    """New commits on a request: what still runs for older commits is cancelled (the
    lookup off the event loop: it runs for every pull request delivery)."""
    running_now = await asyncio.to_thread(
        handler_queries.running_for_request, engine.db, forge, full_name, pr
    )
    for running in running_now:
        if running.sha != new_sha:
            engine.cancel_pipeline(running.id, "ployd (superseded by a newer commit)")


async def cancel_request(engine: Engine, forge: str, full_name: str, pr: int, why: str) -> None:
    """The request was closed or merged: what still runs for it is cancelled."""
    running_now = await asyncio.to_thread(
        handler_queries.running_for_request, engine.db, forge, full_name, pr
    )
    for running in running_now:
        engine.cancel_pipeline(running.id, why)


def rerun_finished(engine: Engine, pipeline_id: int, actor: str) -> int:
    """Every finished job of a pipeline again ("re-run all checks")."""
    jobs = handler_queries.job_states(engine.db, pipeline_id)
    finished = [job_id for job_id, state in jobs if JobState(state).final]
    for job_id in finished:
        engine.retry_job(job_id, actor)
    return len(finished)


def audit(engine: Engine, actor: str, action: str, target: str, forge: str, **details: Any) -> None:
    """Record what someone did on a forge in the audit log, in a transaction of its own."""
    engine.record(actor, action, target, forge, **details)


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
    config goes to ``on_invalid`` with every error; no config file: PloyD is not used.
    Parsing, planning and the insert run in worker threads (a 10,000-job file)."""
    if (
        inbox_id is not None
        and (done := await asyncio.to_thread(engine.pipeline_of_event, inbox_id)) is not None
    ):
        return done  # this delivery was handled before (a replica died, or a retry)
    text = await read_config()
    try:
        plans = await asyncio.to_thread(
            plan, text, event, catalog, max_jobs=engine.max_jobs_per_pipeline
        )
    except ConfigInvalid as e:
        await on_invalid(e.errors)
        return None
    if plans is None:
        return None
    fields: dict[str, Any] = dict(
        ref=event.ref,
        sha=event.sha,
        trigger=trigger,
        actor=actor,
        pr_number=pr_number,
        fork=fork,
        held=held,
        pr_author=pr_author,
    )
    if inbox_id is not None:  # at most one pipeline per delivery
        return await engine.create_pipeline_once_async(repo, plans, event_id=inbox_id, **fields)
    return await engine.create_pipeline_async(repo, plans, **fields)


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
    actions: tuple[str, ...]  # on.pull_request.types words: opened, synchronize, labeled...
    default_branch: str
    draft: bool = False

    def event(self, changed: tuple[str, ...] | None) -> Event:
        return Event(
            EventKind.PULL_REQUEST,
            ref=self.ref,
            sha=self.sha,
            default_branch=self.default_branch,
            base_branch=self.base_branch,
            action=self.actions[0] if self.actions else None,
            more_actions=self.actions[1:],
            changed_files=changed,
            draft=self.draft,
        )
