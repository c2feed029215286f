"""`/ployd ...` in pull request comments, and the check runs' buttons.

Parsing, resolving and permission rules are the core's (``app.core.commands``); this
module looks up the pull request's latest pipeline and the commenter's permission,
executes, and answers: a reaction when it worked, a reply that says why when not.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from app.adapters.github.client import Repo
from app.core.commands import (
    Command,
    CommandError,
    JobRef,
    Permission,
    Resolution,
    Verb,
    command_text,
    help_text,
    may_run,
    parse_comment,
    resolve,
)
from app.core.states import JobState
from app.engine.engine import NotAllowed
from app.handlers.github.context import GitHubContext
from app.handlers.github.events import permission_of
from app.store.models import Job, Pipeline

log = logging.getLogger("ployd.github")
router = routing.Router()


def job_refs(ctx: GitHubContext, pipeline_id: int) -> tuple[list[JobRef], dict[str, int]]:
    with ctx.services.db.session() as s:
        pipeline = s.get(Pipeline, pipeline_id)
        assert pipeline is not None
        refs = [
            JobRef(
                name=j.name,
                base=j.base_name,
                state=JobState(j.state),
                hardware=tuple(j.hardware),
                manual=j.when == "manual",
            )
            for j in pipeline.jobs
        ]
        return refs, {j.name: j.id for j in pipeline.jobs}


def execute(
    ctx: GitHubContext, res: Resolution, ids: dict[str, int], pipeline_id: int, actor: str
) -> list[str]:
    """Carry out a resolved command; returns notes on jobs it could not act on."""
    engine = ctx.services.engine
    notes: list[str] = []
    hardware = str(res.hardware) if res.hardware is not None else None
    candidates = (
        [t.name for t in ctx.services.catalog.for_spec(res.hardware)] if res.hardware else None
    )
    if res.verb is Verb.CANCEL:
        for name in res.jobs:
            engine.cancel_job(ids[name], actor)
    elif res.verb in (Verb.RETRY, Verb.RUN):
        for name in res.jobs:
            try:
                engine.retry_job(ids[name], actor, hardware=hardware, candidates=candidates)
            except NotAllowed as e:
                notes.append(str(e))
    elif res.verb is Verb.OK_TO_TEST and not engine.approve(pipeline_id, actor):
        notes.append("nothing was waiting for `/ployd ok-to-test`")
    return notes


async def run_commands(
    ctx: GitHubContext,
    repo: Repo,
    pr_number: int,
    commands: list[Command | CommandError],
    user: str,
) -> list[str]:
    """Run the comment's commands; returns the replies to post (empty: all went well)."""
    replies: list[str] = []
    pipeline_id = ctx.latest_pipeline(repo.full_name, pr=pr_number)
    permission: Permission | None = None
    author = None
    for cmd in commands:
        if isinstance(cmd, CommandError):
            replies.append(f"`{cmd.text}`: {cmd.message}")
            continue
        if pipeline_id is None:
            if cmd.verb is Verb.HELP:
                replies.append(help_text())
            else:
                replies.append(f"`{cmd.text}`: PloyD has not run on this pull request yet")
            continue
        refs, ids = job_refs(ctx, pipeline_id)
        if cmd.verb is Verb.HELP:
            replies.append(help_text(refs))
            continue
        res = resolve(cmd, refs, ctx.services.catalog)
        if isinstance(res, CommandError):
            replies.append(f"`{res.text}`: {res.message}")
            continue
        if permission is None:
            permission = await permission_of(ctx, repo, user)
            with ctx.services.db.session() as s:
                p = s.get(Pipeline, pipeline_id)
                author = p.pr_author if p is not None else None
        allowed, why = may_run(
            cmd.verb,
            permission,
            is_pr_author=user == author,
            same_hardware=res.same_hardware,
            user=user,
        )
        if not allowed:
            replies.append(f"`{cmd.text}`: {why}")
            continue
        with ctx.services.db.session() as s:
            ctx.services.engine.audit(
                s,
                user,
                f"command.{cmd.verb.value}",
                f"pipeline:{pipeline_id}",
                forge="github",
                text=cmd.text,
                jobs=list(res.jobs),
            )
        replies.extend(f"`{cmd.text}`: {n}" for n in execute(ctx, res, ids, pipeline_id, user))
    return replies


@router.register("issue_comment", action="created")
async def on_comment(event: sansio.Event, ctx: GitHubContext, **_: Any) -> None:
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
    replies = await run_commands(ctx, repo, int(p["issue"]["number"]), commands, user)
    only_help = all(isinstance(c, Command) and c.verb is Verb.HELP for c in commands)
    reaction = "eyes" if only_help else ("confused" if replies else "+1")
    await ctx.client.add_reaction(repo, int(p["comment"]["id"]), reaction)
    if replies:
        await ctx.client.create_comment(
            repo, int(p["issue"]["number"]), f"@{user}\n\n" + "\n\n".join(replies)
        )


def _job_of_check_run(ctx: GitHubContext, external_id: str | None) -> Job | None:
    if not external_id or not external_id.isdigit():
        return None
    with ctx.services.db.session() as s:
        job = s.get(Job, int(external_id))
        if job is not None:
            _ = job.pipeline.pr_number
        return job


@router.register("check_run", action="rerequested")
@router.register("check_run", action="requested_action")
async def on_check_run(event: sansio.Event, ctx: GitHubContext, **_: Any) -> None:
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
    pr = job.pipeline.pr_number
    if pr is None:  # a push pipeline: only writers may press buttons
        permission = await permission_of(ctx, repo, user)
        allowed, why = may_run(
            Verb.RETRY, permission, is_pr_author=False, same_hardware=not hw, user=user
        )
        if not allowed:
            log.info("check run button refused: %s", why)
            return
        refs, ids = job_refs(ctx, job.pipeline_id)
        for cmd in commands:
            if isinstance(cmd, Command):
                res = resolve(cmd, refs, ctx.services.catalog)
                if isinstance(res, Resolution):
                    execute(ctx, res, ids, job.pipeline_id, user)
        return
    replies = await run_commands(ctx, repo, pr, commands, user)
    if replies:
        await ctx.client.create_comment(repo, pr, f"@{user}\n\n" + "\n\n".join(replies))
