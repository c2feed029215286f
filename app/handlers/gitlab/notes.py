"""`/ployd ...` in merge request notes: the same commands and rules as on GitHub (shared in
``app.handlers.slash``); acknowledged with an award emoji, refusals answered in a note."""

from __future__ import annotations

from typing import Any, Protocol

from app.adapters.ports import GitLabEmoji, GitLabMembers, GitLabReplies
from app.core.report import MARKER
from app.core.slash import GITLAB_WORDS, Standing, parse_comment
from app.handlers.gitlab.context import FORGE, GitLabContext
from app.handlers.slash import reaction_for, run_commands
from app.store.handler_queries import latest_pipeline

EMOJI = {"+1": "thumbsup", "confused": "confused", "eyes": "eyes"}


class NoteForge(GitLabMembers, GitLabEmoji, GitLabReplies, Protocol):
    """Commands in notes: who wrote it, an award emoji, a note when refused."""


async def on_note(payload: dict[str, Any], ctx: GitLabContext[NoteForge], inbox_id: int) -> None:
    attrs = payload["object_attributes"]
    body = str(attrs.get("note") or "")
    if attrs.get("system") or MARKER in body:
        return  # GitLab's own notes, and PloyD's summary
    commands = parse_comment(body)
    if not commands:
        return
    project, iid = ctx.path(payload), int(payload["merge_request"]["iid"])
    user = payload["user"]
    username = str(user["username"])

    async def permission() -> Standing:
        return await ctx.standing(project, int(user.get("id") or 0) or username)

    replies = await run_commands(
        ctx.engine,
        ctx.catalog,
        forge=FORGE,
        pipeline_id=latest_pipeline(ctx.db, FORGE, project, pr=iid),
        commands=commands,
        user=username,
        permission=permission,
        words=GITLAB_WORDS,
    )
    await ctx.forge.award_emoji(
        project, iid, int(attrs["id"]), EMOJI[reaction_for(commands, replies)]
    )
    if replies:
        await ctx.forge.create_note(project, iid, f"@{username}\n\n" + "\n\n".join(replies))
