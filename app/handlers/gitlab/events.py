"""Pipelines from GitLab: Push Hook, Tag Push Hook, Merge Request Hook."""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

from app.adapters.gitlab.client import status_ref
from app.adapters.gitlab.errors import GitLabError
from app.adapters.ports import (
    GitLabChangedFiles,
    GitLabFiles,
    GitLabMembers,
    GitLabMergeRequests,
    GitLabReplies,
    GitLabStatuses,
)
from app.core.config.errors import ConfigError
from app.core.report import config_error_note
from app.core.triggers import Event, EventKind
from app.handlers.gitlab.context import FORGE, GitLabContext
from app.handlers.pipelines import (
    CONFIG_FILE,
    Request,
    cancel_request,
    changed_or_none,
    held_for_approval,
    start_forge_pipeline,
    supersede,
)
from app.store.handler_queries import already_started

log = logging.getLogger("ployd.gitlab")

ZERO_SHA = "0" * 40
SIMPLE_ACTIONS = {"open": "opened", "reopen": "reopened", "close": "closed", "merge": "closed"}
# A title's draft marker (GitLab: "Draft:", "[Draft]", "(Draft)"; older: "WIP:", "[WIP]")
_DRAFT_PREFIX = re.compile(r"^\s*(?:\[draft\]|\(draft\)|draft:|\[wip\]|wip:)\s*", re.I)


def mr_actions(payload: dict[str, Any]) -> tuple[str, ...]:
    """A Merge Request Hook as `on.pull_request.types` words (GitHub's): ``open`` opened,
    ``reopen`` reopened, ``close`` and ``merge`` closed; an ``update`` with ``oldrev`` (new
    commits) synchronize, and from its ``changes``: draft on converted_to_draft, draft
    off ready_for_review, a label added labeled, one removed unlabeled, the title
    (beyond its draft marker) or description edited. Empty: nothing PloyD acts on
    (approvals, assignees, ...)."""
    attrs = payload.get("object_attributes") or {}
    action = str(attrs.get("action") or "")
    if action in SIMPLE_ACTIONS:
        return (SIMPLE_ACTIONS[action],)
    if action != "update":
        return ()
    out = ["synchronize"] if attrs.get("oldrev") else []
    changes = payload.get("changes") or {}
    draft = changes.get("draft") or changes.get("work_in_progress")
    if isinstance(draft, dict) and bool(draft.get("previous")) != bool(draft.get("current")):
        out.append("converted_to_draft" if draft.get("current") else "ready_for_review")
    labels = changes.get("labels")
    if isinstance(labels, dict):
        before, after = _titles(labels.get("previous")), _titles(labels.get("current"))
        if after - before:
            out.append("labeled")
        if before - after:
            out.append("unlabeled")
    title = changes.get("title")
    retitled = isinstance(title, dict) and _unmarked(title.get("previous")) != _unmarked(
        title.get("current")
    )
    if retitled or "description" in changes:
        out.append("edited")
    return tuple(out)


def _titles(labels: Any) -> set[str]:
    return {str(x.get("title")) for x in labels or [] if isinstance(x, dict)}


def _unmarked(title: Any) -> str:
    return _DRAFT_PREFIX.sub("", str(title or ""))


def is_draft(attrs: dict[str, Any]) -> bool:
    return bool(attrs.get("draft") or attrs.get("work_in_progress"))


class StartForge(GitLabFiles, GitLabStatuses, GitLabReplies, Protocol):
    """Starting a pipeline: read `.ployd.yml`; an invalid one is a failed status and, on
    a merge request, a note."""


class PushForge(StartForge, GitLabChangedFiles, Protocol):
    """Push Hook, Tag Push Hook: the changed files for path filters, too."""


class MergeRequestForge(PushForge, GitLabMergeRequests, GitLabMembers, Protocol):
    """Merge Request Hook: the request's facts, and whether a fork's author may run code."""


async def start_pipeline(
    ctx: GitLabContext[StartForge],
    payload: dict[str, Any],
    event: Event,
    *,
    trigger: str,
    actor: str,
    inbox_id: int,
    mr: int | None = None,
    **meta: Any,
) -> int | None:
    """Read `.ployd.yml` at the commit, plan, store. An invalid config is a failed
    `ployd/config` status, and on a merge request a note with every error and its line."""
    project = ctx.path(payload)

    async def read_config() -> str | None:
        return await ctx.forge.get_file(project, CONFIG_FILE, event.sha)

    async def on_invalid(errors: list[ConfigError]) -> None:
        n = len(errors)
        try:  # refused, it keeps the note (with every error) from the merge request
            await ctx.forge.set_status(
                project,
                event.sha,
                "failed",
                "ployd/config",
                description=f"{n} error{'s' if n != 1 else ''} in {CONFIG_FILE}",
                ref=status_ref(event.ref),
            )
        except GitLabError as e:
            log.warning(
                "status ployd/config=failed on %s@%s refused: %s %s",
                project,
                event.sha[:12],
                e.status or "no answer",
                e.message,
            )
        if mr is not None:
            await ctx.forge.create_note(project, mr, config_error_note(errors, event.sha))

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
        pr_number=mr,
        **meta,
    )


async def on_push(payload: dict[str, Any], ctx: GitLabContext[PushForge], inbox_id: int) -> None:
    after, ref = payload.get("after") or ZERO_SHA, payload["ref"]
    if after == ZERO_SHA:
        return  # a deleted branch or tag
    project = ctx.path(payload)
    if already_started(ctx.db, FORGE, project, after, ref):
        return
    before = payload.get("before") or ZERO_SHA
    changed = None
    if before != ZERO_SHA:
        fetch = ctx.forge.compare_files(project, before, after)
        changed = await changed_or_none(fetch, f"compare {before}...{after}")
    ev = Event(
        EventKind.PUSH,
        ref=ref,
        sha=after,
        default_branch=payload["project"].get("default_branch") or "main",
        changed_files=changed,
    )
    actor = str(payload.get("user_username") or payload.get("user_name") or "")
    trigger = "tag_push" if ref.startswith("refs/tags/") else "push"
    await start_pipeline(ctx, payload, ev, trigger=trigger, actor=actor, inbox_id=inbox_id)


async def on_merge_request(
    payload: dict[str, Any], ctx: GitLabContext[MergeRequestForge], inbox_id: int
) -> None:
    attrs = payload["object_attributes"]
    action, iid, project = attrs.get("action"), int(attrs["iid"]), ctx.path(payload)
    who = (payload.get("user") or {}).get("username", "gitlab")
    actions = mr_actions(payload)
    if not actions:
        return  # approvals, assignees, ...: nothing `on.pull_request.types` names
    if "closed" in actions:
        await cancel_request(ctx.engine, FORGE, project, iid, f"{who} ({action}d)")
    mr = await ctx.forge.get_mr(project, iid)
    author = str(mr["author"])
    req = Request(
        number=iid,
        ref=f"refs/merge-requests/{iid}/head",
        sha=(attrs.get("last_commit") or {}).get("id") or mr["sha"],
        base_branch=attrs["target_branch"],
        actions=actions,
        default_branch=payload["project"].get("default_branch") or "main",
        draft=is_draft(attrs),
    )
    fork = bool(mr["is_fork"])
    held = await held_for_approval(fork, lambda: ctx.permission(project, author))
    changed = await changed_or_none(ctx.forge.mr_changed_files(project, iid), f"changes of !{iid}")
    ev, sha = req.event(changed), req.sha
    await supersede(ctx.engine, FORGE, project, iid, sha)
    await start_pipeline(
        ctx,
        payload,
        ev,
        trigger="merge_request",
        actor=who,
        inbox_id=inbox_id,
        mr=iid,
        fork=fork,
        held=held,
        pr_author=author,
    )
