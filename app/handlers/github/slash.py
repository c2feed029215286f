"""`/ployd ...` in pull request comments, and the check runs' buttons (GitHub side).

What commands do is forge-neutral (``app.handlers.slash``); this module finds the pull
request's latest pipeline and the commenter's permission, and answers on GitHub: a
reaction when it worked, a reply that says why when not.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from gidgethub import routing, sansio

from app.adapters.github.client import Repo
from app.adapters.ports import GitHubPermissions, GitHubReactions, GitHubReplies
from app.core.slash import (
    Command,
    Permission,
    Resolution,
    Verb,
    command_text,
    may_run,
    parse_comment,
    resolve,
)
from app.handlers.github.context import FORGE, GitHubContext
from app.handlers.github.events import permission_of
from app.handlers.slash import execute, job_refs, reaction_for, run_commands
from app.store.handler_queries import CheckRunJob, check_run_job, latest_pipeline

log = logging.getLogger("ployd.github")
router = routing.Router()


class ButtonForge(GitHubPermissions, GitHubReplies, Protocol):
    """The check runs' buttons: who pressed, and a reply when refused."""


class CommentForge(ButtonForge, GitHubReactions, Protocol):
    """Commands in comments: and a reaction to the comment."""


async def _run(
    ctx: GitHubContext[GitHubPermissions], repo: Repo, pr: int, commands: list[Any], user: str
) -> list[str]:
    async def permission() -> Permission:
        return await permission_of(ctx.forge, repo, user)

    return await run_commands(
        ctx.engine,
        ctx.catalog,
        forge=FORGE,
        pipeline_id=latest_pipeline(ctx.db, FORGE, repo.full_name, pr=pr),
        commands=commands,
        user=user,
        permission=permission,
    )


@router.register("issue_comment", action="created")
async def on_comment(event: sansio.Event, ctx: GitHubContext[CommentForge], **_: Any) -> None:
    p = event.data
    if "pull_request" not in p["issue"]:
        return  # a plain issue
    if p["comment"]["user"].get("type") == "Bot" or p["sender"].get("type") == "Bot":
        return  # never act on a bot's words (PloyD's own comments list commands too)
    commands = parse_comment(p["comment"].get("body") or "")
    if not commands:
        return
    repo = ctx.repo(p)
    user = p["comment"]["user"]["login"]
    number = int(p["issue"]["number"])
    replies = await _run(ctx, repo, number, commands, user)
    await ctx.forge.add_reaction(repo, int(p["comment"]["id"]), reaction_for(commands, replies))
    if replies:
        await ctx.forge.create_comment(repo, number, f"@{user}\n\n" + "\n\n".join(replies))


def _job_of_check_run(ctx: GitHubContext[object], external_id: str | None) -> CheckRunJob | None:
    if not external_id or not external_id.isdigit():
        return None
    return check_run_job(ctx.db, int(external_id))


@router.register("check_run", action="rerequested")
@router.register("check_run", action="requested_action")
async def on_check_run(event: sansio.Event, ctx: GitHubContext[ButtonForge], **_: Any) -> None:
    """The buttons: "Re-run" (rerequested), and PloyD's own actions: `retry`,
    `retry-on:HW`, `run`. They obey the same rules as the commands they stand for."""
    p = event.data
    job = _job_of_check_run(ctx, p["check_run"].get("external_id"))
    if job is None:
        return
    identifier = (p.get("requested_action") or {}).get("identifier", "retry")
    verb, _, hw = identifier.partition(":")
    text = command_text(Verb.RUN if verb == "run" else Verb.RETRY, job.name, hw or None)
    commands = parse_comment(text)
    repo = ctx.repo(p)
    user = p["sender"]["login"]
    pr = job.pr_number
    if pr is not None:
        replies = await _run(ctx, repo, pr, commands, user)
        if replies:
            await ctx.forge.create_comment(repo, pr, f"@{user}\n\n" + "\n\n".join(replies))
        return
    # A branch pipeline: no conversation to answer in; only writers may press buttons.
    permission = await permission_of(ctx.forge, repo, user)
    allowed, why = may_run(
        Verb.RETRY, permission, is_pr_author=False, same_hardware=not hw, user=user
    )
    if not allowed:
        log.info("check run button refused: %s", why)
        return
    refs, ids, _author = job_refs(ctx.db, job.pipeline_id)
    for cmd in commands:
        if isinstance(cmd, Command):
            res = resolve(cmd, refs, ctx.catalog)
            if isinstance(res, Resolution):
                execute(ctx.engine, ctx.catalog, res, ids, job.pipeline_id, user)
