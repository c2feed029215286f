"""The GitHub App's parts, for the composition root (``app.wiring``): the client (opened
before the engine, whose claims it gives a clone token for their one repository), then
the inbox worker and the reporter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from gidgethub import routing, sansio

from app.adapters.github.client import GitHubClient, Repo
from app.adapters.github.config import GitHubAppConfig
from app.engine.events import PipelinesChanged
from app.engine.hooks import CloneCredentials, Credentials, takes_credentials
from app.handlers.github import events, installations, slash
from app.handlers.github.context import GitHubContext
from app.handlers.inbox_worker import InboxWorker, inbox_options
from app.protocol import CloneAuth, JobPayload
from app.reporters.base import ReportSources
from app.reporters.github import GitHubReporter
from app.services import Services
from app.store.db import Database
from app.store.lookups import repo_installation
from app.store.models import InboxEvent

GITHUB_CLONE_USER = "x-access-token"  # GitHub's user name for an installation token


@dataclass
class GitHubClientParts:
    """The GitHub App's client and its HTTP session (opened before the engine)."""

    session: aiohttp.ClientSession
    client: GitHubClient

    async def close(self) -> None:
        await self.session.close()


def open_github(config: GitHubAppConfig) -> GitHubClientParts:
    """The App's client (call with the event loop running)."""
    session = aiohttp.ClientSession()
    client = GitHubClient(
        session,
        app_id=config.app_id,
        private_key_pem=config.private_key_pem,
        api_url=config.api_url,
    )
    return GitHubClientParts(session, client)


def clone_token_hook(client: GitHubClient, db: Database) -> CloneCredentials:
    """Each claim of a GitHub pipeline gets an installation token for its repository,
    read-only (``x-access-token`` and the token, as GitHub's git over HTTPS takes it);
    for an HTTPS (or loopback HTTP) clone URL only."""

    async def clone_token(job: JobPayload) -> Credentials | None:
        if not takes_credentials(job.clone_url):
            return None
        full_name, installation = repo_installation(db, job.pipeline_id)
        token = await client.clone_token(Repo.parse(full_name, installation))
        return Credentials(CloneAuth(GITHUB_CLONE_USER, token))

    return clone_token


@dataclass
class GitHubParts:
    """The GitHub App's moving parts: client, inbox worker, reporter."""

    opened: GitHubClientParts
    worker: InboxWorker
    reporter: GitHubReporter
    unsubscribe: Callable[[], None]

    @property
    def client(self) -> GitHubClient:
        return self.opened.client

    async def stop(self) -> None:
        self.unsubscribe()
        await self.worker.stop()
        await self.reporter.idle()
        await self.opened.close()


async def start_github(services: Services, opened: GitHubClientParts) -> GitHubParts:
    """Start the GitHub side: the inbox worker and the reporter."""
    client = opened.client
    ctx = GitHubContext(
        forge=client,
        engine=services.engine,
        catalog=services.catalog,
        git_url=services.settings.github_git_url,
    )
    router = routing.Router(installations.router, events.router, slash.router)

    async def dispatch(row: InboxEvent) -> None:
        event = sansio.Event(row.payload, event=row.event, delivery_id=row.delivery_id)
        await router.dispatch(event, ctx=ctx, inbox_id=row.id)

    worker = InboxWorker(services.db, "github", dispatch, **inbox_options(services.settings))
    sources = ReportSources(
        db=services.db, logs=services.logs, catalog=services.catalog, settings=services.settings
    )
    reporter = GitHubReporter(sources, client)
    unsubscribe = services.engine.events.subscribe(
        PipelinesChanged, lambda e: reporter.on_change(set(e.pipeline_ids))
    )
    services.metrics.forge_clients["github"] = lambda: {
        "calls": client.metrics.calls,
        "errors": client.metrics.errors,
        "rate_limit_remaining": client.metrics.rate_limit_remaining,
    }
    await worker.start()
    return GitHubParts(opened=opened, worker=worker, reporter=reporter, unsubscribe=unsubscribe)
