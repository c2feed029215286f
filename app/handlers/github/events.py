"""Pipelines from GitHub events: push, pull_request, check_suite, merge_group."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from gidgethub import routing, sansio

from app.adapters.github.client import Repo
from app.adapters.github.errors import GitHubError
from app.adapters.ports import (
    GitHubChangedFiles,
    GitHubCheckRunCreator,
    GitHubFiles,
    GitHubPermissions,
)
from app.core.config.errors import ConfigError
from app.core.slash import Permission
from app.core.triggers import PR_TYPES, Event, EventKind
from app.handlers.github.context import FORGE, GitHubContext
from app.handlers.pipelines import (
    CONFIG_FILE,
    Request,
    cancel_request,
    changed_or_none,
    held_for_approval,
    rerun_finished,
    start_forge_pipeline,
    supersede,
)
from app.reporters.github import report_config_errors
from app.store.handler_queries import already_started, latest_pipeline

log = logging.getLogger("ployd.github")
router = routing.Router()

ZERO_SHA = "0" * 40


class StartForge(GitHubFiles, GitHubCheckRunCreator, Protocol):
    """Starting a pipeline: read `.ployd.yml`; an invalid one is a failed check run."""


class PushForge(StartForge, GitHubChangedFiles, Protocol):
    """push, check_suite, merge_group: the changed files for path filters, too."""


class PullRequestForge(PushForge, GitHubPermissions, Protocol):
    """pull_request: and whether a fork's author may run code here."""


async def start_pipeline(
    ctx: GitHubContext[StartForge],
    payload: dict[str, Any],
    event: Event,
    *,
    trigger: str,
    actor: str,
    inbox_id: int | None,
    pr_number: int | None = None,
    fork: bool = False,
    held: bool = False,
    pr_author: str | None = None,
) -> int | None:
    """Read `.ployd.yml` at the event's sha, plan, store. An invalid config becomes one
    failed `ployd / config` check run; no config file means PloyD is not used here."""
    repo = ctx.repo(payload)

    async def read_config() -> str | None:
        return await ctx.forge.get_file(repo, CONFIG_FILE, event.sha)

    async def on_invalid(errors: list[ConfigError]) -> None:
        await report_config_errors(ctx.forge, repo, event.sha, errors)

    return await start_forge_pipeline(
        ctx.engine,
        ctx.catalog,
        read_config=read_config,
        on_invalid=on_invalid,
        event=event,
        repo=ctx.repo_ref(payload),
        trigger=trigger,
        actor=actor,
        inbox_id=inbox_id,
        pr_number=pr_number,
        fork=fork,
        held=held,
        pr_author=pr_author,
    )


async def _changed(
    forge: GitHubChangedFiles, repo: Repo, before: str | None, after: str
) -> tuple[str, ...] | None:
    """Files changed by a push, or None when unknown (a new branch): filters then pass."""
    if not before or before == ZERO_SHA:
        return None
    fetch = forge.changed_files_compare(repo, before, after)
    return await changed_or_none(fetch, f"compare {before}...{after}")


@router.register("push")
async def on_push(
    event: sansio.Event, ctx: GitHubContext[PushForge], inbox_id: int, **_: Any
) -> None:
    p = event.data
    if p.get("deleted") or not p.get("after") or p["after"] == ZERO_SHA:
        return
    if already_started(ctx.db, FORGE, p["repository"]["full_name"], p["after"], p["ref"]):
        return  # its check_suite came first and started it
    repo = ctx.repo(p)
    ev = Event(
        EventKind.PUSH,
        ref=p["ref"],
        sha=p["after"],
        default_branch=p["repository"].get("default_branch") or "main",
        changed_files=await _changed(ctx.forge, repo, p.get("before"), p["after"]),
    )
    actor = (p.get("pusher") or {}).get("name") or (p.get("sender") or {}).get("login", "")
    await start_pipeline(ctx, p, ev, trigger="push", actor=actor, inbox_id=inbox_id)


def _is_fork(pr: dict[str, Any]) -> bool:
    head_repo = (pr.get("head") or {}).get("repo")
    base_repo = (pr.get("base") or {}).get("repo") or {}
    return head_repo is None or head_repo.get("full_name") != base_repo.get("full_name")


async def permission_of(forge: GitHubPermissions, repo: Repo, user: str) -> Permission:
    try:
        return Permission(await forge.permission(repo, user))
    except (GitHubError, ValueError):
        return Permission.NONE


async def on_pull_request(
    event: sansio.Event, ctx: GitHubContext[PullRequestForge], inbox_id: int, **_: Any
) -> None:
    """Any action `on.pull_request.types` names: a pipeline of the head commit when the
    config's types (and `drafts`) say so; `closed` first cancels what still runs."""
    p = event.data
    pr = p["pull_request"]
    repo = ctx.repo(p)
    number, author = int(pr["number"]), pr["user"]["login"]
    if p["action"] == "closed":
        who = p.get("sender", {}).get("login", "github")
        why = f"{who} (pull request {'merged' if pr.get('merged') else 'closed'})"
        await cancel_request(ctx.engine, FORGE, p["repository"]["full_name"], number, why)
    fork = _is_fork(pr)
    req = Request(
        number=number,
        ref=f"refs/pull/{number}/head",
        sha=pr["head"]["sha"],
        base_branch=pr["base"]["ref"],
        actions=(p["action"],),
        default_branch=p["repository"].get("default_branch") or "main",
        draft=bool(pr.get("draft")),
    )
    held = await held_for_approval(fork, lambda: permission_of(ctx.forge, repo, author))
    changed = await changed_or_none(
        ctx.forge.changed_files_pr(repo, number), f"files of PR #{number}"
    )
    ev, sha = req.event(changed), req.sha
    await supersede(ctx.engine, FORGE, p["repository"]["full_name"], number, sha)
    await start_pipeline(
        ctx,
        p,
        ev,
        trigger="pull_request",
        actor=p.get("sender", {}).get("login", author),
        inbox_id=inbox_id,
        pr_number=number,
        fork=fork,
        held=held,
        pr_author=author,
    )


for _action in PR_TYPES:
    router.add(on_pull_request, "pull_request", action=_action)


@router.register("check_suite", action="requested")
async def on_suite_requested(
    event: sansio.Event, ctx: GitHubContext[PushForge], inbox_id: int, **_: Any
) -> None:
    """GitHub asks for checks on a commit; a push for it usually came too: run once."""
    p = event.data
    suite = p["check_suite"]
    sha, branch = suite["head_sha"], suite.get("head_branch")
    if branch is None or already_started(
        ctx.db, FORGE, p["repository"]["full_name"], sha, f"refs/heads/{branch}"
    ):
        return
    repo = ctx.repo(p)
    ev = Event(
        EventKind.PUSH,
        ref=f"refs/heads/{branch}",
        sha=sha,
        default_branch=p["repository"].get("default_branch") or "main",
        changed_files=await _changed(ctx.forge, repo, suite.get("before"), sha),
    )
    actor = p.get("sender", {}).get("login", "github")
    await start_pipeline(ctx, p, ev, trigger="check_suite", actor=actor, inbox_id=inbox_id)


@router.register("check_suite", action="rerequested")
async def on_suite_rerequested(event: sansio.Event, ctx: GitHubContext[object], **_: Any) -> None:
    """ "Re-run all checks": every finished job of the commit's latest pipeline again."""
    p = event.data
    pid = latest_pipeline(
        ctx.db, FORGE, p["repository"]["full_name"], sha=p["check_suite"]["head_sha"]
    )
    if pid is not None:
        rerun_finished(ctx.engine, pid, p.get("sender", {}).get("login", "github"))


@router.register("merge_group", action="checks_requested")
async def on_merge_group(
    event: sansio.Event, ctx: GitHubContext[StartForge], inbox_id: int, **_: Any
) -> None:
    """A merge queue entry: tested like a pull request into its base branch."""
    p = event.data
    group = p["merge_group"]
    ev = Event(
        EventKind.PULL_REQUEST,
        ref=group["head_ref"],
        sha=group["head_sha"],
        default_branch=p["repository"].get("default_branch") or "main",
        base_branch=group["base_ref"].removeprefix("refs/heads/"),
        action=None,
        changed_files=None,
    )
    actor = p.get("sender", {}).get("login", "github")
    await start_pipeline(ctx, p, ev, trigger="merge_group", actor=actor, inbox_id=inbox_id)
