"""The GitLab bot's parts, for the composition root (``app.wiring``): the inbox worker and
the reporter (the hook that lets agents fetch the code is ``app.handlers.gitlab.clone``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.adapters.gitlab.client import GitLabClient
from app.engine.events import PipelinesChanged
from app.handlers.gitlab import events, notes
from app.handlers.gitlab.context import GitLabContext
from app.handlers.inbox_worker import InboxWorker, inbox_options
from app.reporters.base import ReportSources
from app.reporters.gitlab import GitLabReporter
from app.services import Services
from app.store.models import InboxEvent

Handler = Callable[[dict[str, Any], GitLabContext[Any], int], Awaitable[None]]
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
    unsubscribe: Callable[[], None]

    async def stop(self) -> None:
        self.unsubscribe()
        await self.worker.stop()
        await self.reporter.idle()
        self.client.close()


async def start_gitlab(services: Services, client: GitLabClient) -> GitLabParts:
    """Start the GitLab side: the inbox worker and the reporter."""
    ctx = GitLabContext(
        forge=client,
        engine=services.engine,
        catalog=services.catalog,
        git_url=services.settings.gitlab_git_url,
    )

    async def dispatch(row: InboxEvent) -> None:
        handler = HANDLERS.get(row.event)
        if handler is not None:
            await handler(row.payload, ctx, row.id)

    worker = InboxWorker(services.db, "gitlab", dispatch, **inbox_options(services.settings))
    sources = ReportSources(
        db=services.db, logs=services.logs, catalog=services.catalog, settings=services.settings
    )
    reporter = GitLabReporter(sources, client)
    unsubscribe = services.engine.events.subscribe(
        PipelinesChanged, lambda e: reporter.on_change(set(e.pipeline_ids))
    )
    services.metrics.forge_clients["gitlab"] = lambda: {
        "calls": sum(client.stats.calls.values()),
        "errors": sum(client.stats.errors.values()),
        "rate_limit_remaining": None,
    }
    await worker.start()
    return GitLabParts(client=client, worker=worker, reporter=reporter, unsubscribe=unsubscribe)
