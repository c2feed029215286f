"""`ployd serve`: build the services from settings, serve HTTP, run the executor and
the sweeper, and shut everything down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web

from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.executors.base import Executor
from app.handlers.github.setup import GitHubParts, start_github
from app.handlers.gitlab.setup import GitLabParts, start_gitlab
from app.logs.lifecycle import attach_logs, drain_logs
from app.logs.store import make_log_store
from app.metrics import Metrics
from app.policy.setup import security_of
from app.policy.setup import wire as wire_security
from app.services import Services
from app.settings import Settings
from app.store.db import Database
from app.web.app import make_app
from app.web.artifacts_api import TRANSFERS, expire_forever

log = logging.getLogger("ployd")

SWEEP_EVERY_S = 5.0


def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(settings.db_url, migrate=True)
    logs = make_log_store(settings, db)
    engine = Engine(db, logs, heartbeat_timeout_s=settings.heartbeat_timeout_s)
    attach_logs(engine, logs)
    catalog = Catalog.load(settings.catalog_file or None)
    wire_security(settings, db, engine, catalog)  # secrets, quotas, budgets
    metrics = Metrics(db)
    engine.claim_listeners.append(metrics.on_claim)
    engine.end_listeners.append(metrics.on_end)
    return Services(
        settings=settings, db=db, engine=engine, logs=logs, catalog=catalog, metrics=metrics
    )


@dataclass
class Server:
    """A running PloyD: HTTP site, executor, sweeper. ``url`` is where agents reach it."""

    services: Services
    runner: web.AppRunner
    url: str
    executor: Executor | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    github: GitHubParts | None = None
    gitlab: GitLabParts | None = None

    async def stop(self) -> None:
        self.services.engine.close()
        for forge in (self.github, self.gitlab):
            if forge is not None:
                await forge.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.executor is not None:
            await self.executor.stop()
        await self.runner.cleanup()
        await drain_logs(self.services.engine)
        self.services.db.dispose()


async def _sweeper(services: Services) -> None:
    """Every few seconds: end attempts whose agents went silent, and checkpoint SQLite's
    write-ahead log off the event loop."""
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        try:
            services.engine.sweep()
            await asyncio.to_thread(services.db.checkpoint)
        except Exception:  # keep sweeping; report it
            log.exception("sweep failed")


async def start_server(settings: Settings, services: Services | None = None) -> Server:
    """Start serving on settings.host:port (port 0 picks a free one)."""
    services = services or build_services(settings)
    if services.db.engine.dialect.name == "sqlite":
        recovered = services.engine.recover()
        if recovered:
            log.warning("%d attempt(s) were running when PloyD stopped: interrupted", recovered)
    attach_logs(services.engine, services.logs).recover()  # logs a stopped replica left
    app = make_app(services)
    github = await start_github(services, app)
    gitlab = await start_gitlab(services, app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    port = sockets[0].getsockname()[1] if sockets else settings.port
    url = f"http://{settings.host}:{port}"
    server = Server(services=services, runner=runner, url=url, github=github, gitlab=gitlab)
    server.tasks.append(asyncio.create_task(_sweeper(services)))
    server.tasks.append(asyncio.create_task(expire_forever(app[TRANSFERS])))
    if settings.executor == "ec2":
        server.executor = await start_ec2(services)
    elif settings.local_agents > 0:
        server.executor = await start_local(services, url)
    return server


async def start_local(services: Services, url: str) -> Executor:
    """Warm agent processes on this machine (the embedded default)."""
    from app.executors.local import LocalExecutor

    engine, settings = services.engine, services.settings

    async def on_exit(agent_id: str, code: int | None) -> None:
        engine.agent_lost(agent_id, f"the agent process exited (code {code})")

    executor = LocalExecutor(
        server_url=url,
        agent_token=engine.new_agent_token(),
        work_dir=settings.workspaces_dir,
        concurrency=settings.local_agents,
        on_agent_exit=on_exit,
    )
    await executor.start()
    return executor


async def start_ec2(services: Services) -> Executor:
    """Machines on EC2 (PLOYD_EXECUTOR=ec2): the right instance for each job."""
    from app.adapters.ec2.client import EC2Client
    from app.adapters.ec2.config import EC2Config, EC2ConfigError
    from app.executors.ec2 import EC2Executor
    from app.executors.ec2_policy import EC2Policy, PolicyError
    from app.settings import SettingsError

    try:
        policy = EC2Policy.from_env()
        config = EC2Config.from_env()
    except (EC2ConfigError, PolicyError) as e:
        raise SettingsError(str(e)) from None
    executor = EC2Executor(
        services,
        await EC2Client.open(config),
        config,
        policy,
        server_url=policy.agent_url or services.settings.base_url,
    )
    await executor.start()
    return executor


async def serve_forever(settings: Settings) -> None:
    server = await start_server(settings)
    log.info("PloyD %s listening on %s (data in %s)", "serve", server.url, settings.data_dir)
    print(
        f"PloyD is listening on {server.url}  (data: {settings.data_dir}, database: "
        f"{settings.db_url.split('@')[-1]})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    security = security_of(server.services.engine)
    if security is not None:  # SIGHUP: read PLOYD_POLICY_FILE again
        loop.add_signal_handler(signal.SIGHUP, security.policy.reload)
    try:
        await stop.wait()
    finally:
        await server.stop()
