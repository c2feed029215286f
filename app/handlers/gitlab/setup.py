"""Wiring the GitLab bot into a running PloyD: client, inbox worker, reporter, and the
hook that lets agents fetch the code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.adapters.gitlab.client import GitLabClient
from app.engine.engine import Credentials
from app.handlers.gitlab import events, notes
from app.handlers.gitlab.context import GitLabContext
from app.handlers.inbox_worker import InboxWorker
from app.protocol import JobPayload
from app.reporters.gitlab import GitLabReporter
from app.services import Services
from app.store.models import InboxEvent
from app.web.common import GITLAB_WORKER

Handler = Callable[[dict[str, Any], GitLabContext, int], Awaitable[None]]
HANDLERS: dict[str, Handler] = {
    "Push Hook": events.on_push,
    "Tag Push Hook": events.on_push,
    "Merge Request Hook": events.on_merge_request,
    "Note Hook": notes.on_note,
}


@dataclass
class GitLabParts:
    client: GitLabClient
    worker: InboxWorker
    reporter: GitLabReporter

    async def stop(self) -> None:
        await self.worker.stop()
        await self.reporter.idle()
        self.client.close()


async def start_gitlab(services: Services, app: web.Application) -> GitLabParts | None:
    """Start the GitLab side when PLOYD_GITLAB_TOKEN is configured."""
    config = services.settings.gitlab
    if config is None:
        return None
    client = GitLabClient.from_config(config)
    ctx = GitLabContext(services=services, client=client)

    async def dispatch(row: InboxEvent) -> None:
        handler = HANDLERS.get(row.event)
        if handler is not None:
            await handler(row.payload, ctx, row.id)

    worker = InboxWorker(services.db, "gitlab", dispatch)
    reporter = GitLabReporter(services, client)
    services.engine.listeners.append(reporter.on_change)
    # Agents fetch over HTTPS with a token: PLOYD_GITLAB_CLONE_TOKEN (read_repository
    # only) when set, else the bot's token. It is masked in the job's log.
    clone_token = services.settings.gitlab_clone_token or config.token

    async def with_token(job: JobPayload) -> Credentials | None:
        url = job.clone_url
        if not url.startswith("https://"):
            return None
        return Credentials(
            clone_url=url.replace("https://", f"https://oauth2:{clone_token}@", 1),
            mask=(clone_token,),
        )

    services.engine.payload_hooks["gitlab"] = with_token
    services.metrics.forge_clients["gitlab"] = lambda: {
        "calls": sum(client.stats.calls.values()),
        "errors": sum(client.stats.errors.values()),
        "rate_limit_remaining": None,
    }
    app[GITLAB_WORKER] = worker
    await worker.start()
    return GitLabParts(client=client, worker=worker, reporter=reporter)
