"""Forge-neutral command handling: the same for GitHub comments and GitLab notes.

Parsing, resolving and the permission rules are the core's (``app.core.slash``); this
module runs resolved commands against the engine, in the pull/merge request's latest
pipeline, and says what to answer. The forge handlers only look things up and reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.core.hardware import Catalog
from app.core.slash import (
    GITHUB_WORDS,
    Command,
    CommandError,
    ForgeWords,
    JobRef,
    Permission,
    Resolution,
    Standing,
    Verb,
    help_text,
    may_run,
    resolve,
)
from app.core.states import JobState
from app.engine.engine import Engine, NotAllowed
from app.handlers.pipelines import audit
from app.store import handler_queries
from app.store.db import Database


def job_refs(db: Database, pipeline_id: int) -> tuple[list[JobRef], dict[str, int], str | None]:
    """The pipeline's jobs as commands see them, their ids by name, and the author of its
    pull/merge request."""
    pipeline = handler_queries.command_pipeline(db, pipeline_id)
    refs = [
        JobRef(
            name=j.name,
            base=j.base_name,
            state=JobState(j.state),
            hardware=j.hardware,
            manual=j.manual,
        )
        for j in pipeline.jobs
    ]
    return refs, {j.name: j.id for j in pipeline.jobs}, pipeline.pr_author


def execute(
    engine: Engine,
    catalog: Catalog,
    res: Resolution,
    ids: dict[str, int],
    pipeline_id: int,
    actor: str,
) -> list[str]:
    """Carry out a resolved command; returns notes on jobs it could not act on."""
    notes: list[str] = []
    hardware = str(res.hardware) if res.hardware is not None else None
    candidates = [t.name for t in catalog.for_spec(res.hardware)] if res.hardware else None
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
    engine: Engine,
    catalog: Catalog,
    *,
    forge: str,
    pipeline_id: int | None,
    commands: list[Command | CommandError],
    user: str,
    permission: Callable[[], Awaitable[Permission | Standing]],
    words: ForgeWords = GITHUB_WORDS,
) -> list[str]:
    """Run a comment's commands in order; returns the replies to post (none: all went
    well), in the forge's ``words``. ``permission`` is asked at most once, and only when
    a command needs it."""
    replies: list[str] = []
    perm: Permission | Standing | None = None
    for cmd in commands:
        if isinstance(cmd, CommandError):
            replies.append(f"`{cmd.text}`: {cmd.message}")
            continue
        if pipeline_id is None:
            replies.append(
                help_text(words=words)
                if cmd.verb is Verb.HELP
                else f"`{cmd.text}`: PloyD has not run on this request yet"
            )
            continue
        refs, ids, author = job_refs(engine.db, pipeline_id)
        if cmd.verb is Verb.HELP:
            replies.append(help_text(refs, words))
            continue
        res = resolve(cmd, refs, catalog)
        if isinstance(res, CommandError):
            replies.append(f"`{res.text}`: {res.message}")
            continue
        if perm is None:
            perm = await permission()
        allowed, why = may_run(
            cmd.verb,
            perm,
            is_pr_author=user == author,
            same_hardware=res.same_hardware,
            user=user,
            words=words,
        )
        if not allowed:
            replies.append(f"`{cmd.text}`: {why}")
            continue
        audit(
            engine,
            user,
            f"command.{cmd.verb.value}",
            f"pipeline:{pipeline_id}",
            forge,
            text=cmd.text,
            jobs=list(res.jobs),
        )
        notes = execute(engine, catalog, res, ids, pipeline_id, user)
        replies.extend(f"`{cmd.text}`: {n}" for n in notes)
    return replies


def reaction_for(commands: list[Command | CommandError], replies: list[str]) -> str:
    """What to react with: seen (help), done, or a problem (see the reply)."""
    only_help = all(isinstance(c, Command) and c.verb is Verb.HELP for c in commands)
    return "eyes" if only_help else ("confused" if replies else "+1")
