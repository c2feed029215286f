"""Wiring the GitHub App into a running PloyD: client, inbox worker, reporter, and the
hook that gives each agent a clone token for its one repository."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web
from gidgethub import routing, sansio

from app.adapters.github.client import GitHubClient, Repo
from app.engine.engine import Credentials
from app.handlers.github import events, installations, slash
from app.handlers.github.context import GitHubContext
from app.handlers.inbox_worker import InboxWorker
from app.protocol import JobPayload
from app.reporters.github import GitHubReporter
from app.services import Services
from app.store.models import InboxEvent
from app.web.common import GITHUB_WORKER


@dataclass
class GitHubParts:
    """The GitHub App's moving parts: client, inbox worker, reporter."""

    session: aiohttp.ClientSession
    client: GitHubClient
    worker: InboxWorker
    reporter: GitHubReporter

    async def stop(self) -> None:
        await self.worker.stop()
        await self.reporter.idle()
        await self.session.close()


async def start_github(services: Services, app: web.Application) -> GitHubParts | None:
    """Start the GitHub side when PLOYD_GITHUB_APP_ID is configured."""
    config = services.settings.github
    if config is None:
        return None
    session = aiohttp.ClientSession()
    client = GitHubClient(
        session,
        app_id=config.app_id,
        private_key_pem=config.private_key_pem,
        api_url=config.api_url,
    )
    ctx = GitHubContext(services=services, client=client)
    router = routing.Router(installations.router, events.router, slash.router)

    async def dispatch(row: InboxEvent) -> None:
        event = sansio.Event(row.payload, event=row.event, delivery_id=row.delivery_id)
        await router.dispatch(event, ctx=ctx, inbox_id=row.id)

    worker = InboxWorker(services.db, "github", dispatch)
    reporter = GitHubReporter(services, client)
    services.engine.listeners.append(reporter.on_change)

    async def clone_token(job: JobPayload) -> Credentials | None:
        url = job.clone_url
        if not url.startswith("https://"):
            return None
        full_name, installation = ctx.installation_of(job.pipeline_id)
        token = await client.clone_token(Repo.parse(full_name, installation))
        return Credentials(
            clone_url=url.replace("https://", f"https://x-access-token:{token}@", 1),
            mask=(token,),
        )

    services.engine.payload_hooks["github"] = clone_token
    services.metrics.forge_clients["github"] = lambda: {
        "calls": client.metrics.calls,
        "errors": client.metrics.errors,
        "rate_limit_remaining": client.metrics.rate_limit_remaining,
    }
    app[GITHUB_WORKER] = worker
    await worker.start()
    return GitHubParts(session=session, client=client, worker=worker, reporter=reporter)
