"""The composition root: every part of a running PloyD is built and connected here, from
``Settings`` alone.

Order matters and is the whole point of this module:

1. the database, the log store, the hardware catalog, the metrics;
2. the engine's decision hooks: the secret store and the policy book (gates, admission,
   secrets), the agent registrars and authenticators (pools' and EC2 machines'
   registration tokens, exchanged once for the agents' credentials), and the
   forges' claim credentials (clone tokens), so that the forge clients open first;
3. the engine, with those hooks and an event bus; then the subscribers to its events:
   the log finisher and the metrics here, the forge reporters and the executors when
   they start (``start_forges``, ``start_executor``).

``app.server`` runs what this builds (HTTP, background loops, shutdown). No other module
reads the environment, builds a client of its own, or registers itself on the engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from app.adapters.gitlab.client import GitLabClient
from app.agentbuild import AgentPackage
from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.engine.events import AttemptClaimed, AttemptEnded, EventBus
from app.engine.hooks import CloneCredentials, SecretsProvider
from app.engine.logfinisher import LogFinisher
from app.executors.base import Executor
from app.executors.ec2_machines import Machines
from app.handlers.github.setup import (
    GitHubClientParts,
    GitHubParts,
    clone_token_hook,
    open_github,
    start_github,
)
from app.handlers.gitlab.clone import GitLabCloneCredentials
from app.handlers.gitlab.setup import GitLabParts, start_gitlab
from app.logs.store import make_log_store
from app.metrics import Metrics
from app.policy.setup import security_from
from app.pools import Pools
from app.progresslog import ProgressLog
from app.results.notify import Notifier
from app.services import Services
from app.settings import Settings, SettingsError
from app.store.coord import Leadership
from app.store.db import Database
from app.store.inbox import InboxWriter
from app.web.common import GITHUB_WORKER, GITLAB_WORKER, INBOX_WRITER

log = logging.getLogger("ployd.wiring")


@dataclass
class ForgeClients:
    """The forges' API clients, opened before the engine (its claims need their tokens)."""

    github: GitHubClientParts | None = None
    gitlab: GitLabClient | None = None
    gitlab_clone: GitLabCloneCredentials | None = None  # what agents fetch GitLab with

    def payload_hooks(self, db: Database) -> dict[str, CloneCredentials]:
        hooks: dict[str, CloneCredentials] = {}
        if self.github is not None:
            hooks["github"] = clone_token_hook(self.github.client, db)
        if self.gitlab_clone is not None:
            hooks["gitlab"] = self.gitlab_clone
        return hooks

    async def check(self) -> None:
        """What can only be checked with the forges (SettingsError): GitLab's clone
        token is read-only."""
        if self.gitlab_clone is not None:
            await self.gitlab_clone.check()

    async def close(self) -> None:
        if self.github is not None:
            await self.github.close()
        if self.gitlab is not None:
            self.gitlab.close()


def open_forges(settings: Settings) -> ForgeClients:
    """The clients of the forges that ``settings`` configure (with the loop running)."""
    forges = ForgeClients()
    if settings.github is not None:
        forges.github = open_github(settings.github)
    if settings.gitlab is not None:
        forges.gitlab = GitLabClient.from_config(settings.gitlab)
        # PLOYD_GITLAB_CLONE_TOKEN (checked: read_repository only) when set, else a
        # read-only deploy token per project, minted with the bot's token.
        forges.gitlab_clone = GitLabCloneCredentials(forges.gitlab, settings.gitlab_clone_token)
    return forges


def build_services(
    settings: Settings,
    *,
    forges: ForgeClients | None = None,
    secrets: SecretsProvider | None = None,
) -> Services:
    """Everything but the HTTP site, the forges' workers and the executor.

    ``secrets`` replaces the secret store as the provider of job secrets (an embedder's
    or a test's)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # the secret key, the database, the logs: the server's
    db = Database.connect(settings.db_url, migrate=True)
    logs = make_log_store(settings, db)
    catalog = Catalog.load(settings.catalog_file or None)
    security = security_from(settings, db, catalog)  # secrets, quotas, budgets
    machines = Machines(db)  # the machines PloyD started: their registration tokens
    pools = Pools(db)  # self-hosted agents: their pools' registration tokens

    events = EventBus()
    engine = Engine(
        db,
        logs,
        hooks=security.hooks(
            secrets=secrets,
            registrars=(pools.register, machines.register),
            authenticators=(pools.identity, machines.identity),
            boot_reports=(machines.fail_boot,),
            payload_hooks=(forges or ForgeClients()).payload_hooks(db),
        ),
        events=events,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        max_jobs_per_pipeline=settings.max_jobs_per_pipeline,
        instance=settings.instance_id(),
    )
    finisher = LogFinisher(engine, logs).attach()
    metrics = Metrics(db)
    events.subscribe(AttemptClaimed, lambda e: metrics.on_claim(e.agent_id, e.attempt_id))
    events.subscribe(
        AttemptEnded, lambda e: metrics.on_end(e.agent_id, e.attempt_id, e.state, e.fork)
    )
    services = Services(
        settings=settings,
        db=db,
        engine=engine,
        logs=logs,
        catalog=catalog,
        metrics=metrics,
        security=security,
        finisher=finisher,
        agent=AgentPackage.build(),  # served at /agent/ployd-agent.pyz
        pools=pools,
        leader=Leadership(db),  # started by app.server
    )
    # serve's line per pipeline start and end and per job end (the URL as served)
    ProgressLog(db, lambda: services.settings.base_url).attach(events)
    return services


def build_notifier(services: Services) -> Notifier:
    """The notifier (``app.results.notify``): told of every pipeline change and of the
    policy's budget warnings; its task starts with ``start``."""
    from app.core.netguard import parse_allow_nets
    from app.core.results.notify import BACKOFF_BASE_S
    from app.engine.events import PipelinesChanged
    from app.results.channels import SmtpConfig

    settings, security = services.settings, services.security
    smtp = (
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
        if settings.smtp_host
        else None
    )
    notifier = Notifier(
        services.db,
        base_url=settings.base_url,
        key=settings.secret_key_bytes(),
        secret_value=security.secrets.value_of,
        tenant_channels=security.policy.notify_channels,
        smtp=smtp,
        backoff_base_s=BACKOFF_BASE_S,
        allow_nets=parse_allow_nets(",".join(settings.notify_allow_nets)),
        logs=services.logs,
    )
    services.engine.events.subscribe(PipelinesChanged, lambda e: notifier.on_change(e.pipeline_ids))
    security.policy.budget_listeners.append(notifier.budget_crossed)
    return notifier


@dataclass
class Forges:
    """The forges' running parts: inbox workers and reporters on top of their clients."""

    clients: ForgeClients
    writer: InboxWriter
    github: GitHubParts | None = None
    gitlab: GitLabParts | None = None

    async def stop(self) -> None:
        for forge in (self.github, self.gitlab):
            if forge is not None:
                await forge.stop()
        await self.writer.aclose()
        await self.clients.close()


async def start_forges(services: Services, clients: ForgeClients, app: web.Application) -> Forges:
    """Start each configured forge's inbox worker and reporter; its webhook route submits
    deliveries to that worker, after recording them through the inbox writer (group
    commit, on its own thread)."""
    forges = Forges(clients, InboxWriter(services.db))
    app[INBOX_WRITER] = forges.writer
    if clients.github is not None:
        forges.github = await start_github(services, clients.github)
        app[GITHUB_WORKER] = forges.github.worker
    if clients.gitlab is not None:
        forges.gitlab = await start_gitlab(services, clients.gitlab)
        app[GITLAB_WORKER] = forges.gitlab.worker
    return forges


def check_executor_settings(services: Services) -> None:
    """What the executor's settings must satisfy against the catalog, checked before
    the server listens (a GPU class without its AMI: ``SettingsError``, ``ployd serve``
    exits 2 and never answers /healthz)."""
    settings = services.settings
    if settings.executor != "ec2":
        return
    from app.adapters.ec2.config import EC2ConfigError
    from app.executors.ec2 import check_settings

    assert settings.ec2 is not None and settings.ec2_policy is not None
    try:
        check_settings(settings.ec2, settings.ec2_policy, services.catalog)
    except EC2ConfigError as e:
        raise SettingsError(str(e)) from None


async def start_executor(services: Services, url: str) -> Executor | None:
    """The executor ``settings`` choose: EC2 machines, or warm local agents."""
    settings = services.settings
    if settings.executor == "ec2":
        return await start_ec2(services)
    if settings.local_agents > 0:
        return await start_local(services, url)
    return None


async def start_local(services: Services, url: str) -> Executor:
    """Warm agent processes on this machine (the embedded default)."""
    from app.agent.sandbox import Confinement, SandboxError
    from app.executors.local import LocalExecutor

    engine, settings = services.engine, services.settings

    async def on_exit(agent_id: str, code: int | None) -> None:
        engine.agent_lost(agent_id, f"the agent process exited (code {code})")

    work_dir, data_dir = settings.workspaces_dir.resolve(), settings.data_dir.resolve()
    # What steps must not see: the data directory, and the server's key files.
    hidden = [data_dir]
    if settings.github is not None and settings.github.private_key_file:
        hidden.append(Path(settings.github.private_key_file).resolve())
    if work_dir == data_dir or data_dir in work_dir.parents:
        raise SettingsError(
            f"PLOYD_WORK_DIR={work_dir} is inside the data directory {data_dir}: steps "
            "would be next to the server's secrets; put it elsewhere"
        )
    try:  # what the agents will do, checked once here: a clear refusal, not a crash loop
        confinement = Confinement.configure(
            settings.step_isolation, work_dir, hide=[str(p) for p in hidden]
        )
    except SandboxError as e:
        raise SettingsError(f"local executor: {e}") from None
    if confinement.bwrap is None:
        log.warning(
            "local executor: bubblewrap is not installed: %s; steps can read what that "
            "user can (install bubblewrap to confine them)",
            confinement.describe(),
        )
    executor = LocalExecutor(
        server_url=url,
        agent_token=engine.new_registration_token,  # one per agent start
        work_dir=work_dir,
        concurrency=settings.local_agents,
        on_agent_exit=on_exit,
        isolation=settings.step_isolation,
        hide=tuple(hidden),
        pass_env=settings.pass_env,
        container_runtime=settings.container_runtime,
        log_format=settings.log_format,
    )
    await executor.start()
    return executor


async def start_ec2(services: Services) -> Executor:
    """Machines on EC2 (PLOYD_EXECUTOR=ec2): the right instance for each job."""
    from app.adapters.ec2.client import EC2Client
    from app.executors.ec2 import EC2Executor

    settings = services.settings
    config, policy = settings.ec2, settings.ec2_policy
    assert config is not None and policy is not None  # Settings reads both for ec2
    from app.adapters.ec2.config import EC2ConfigError
    from app.adapters.ec2.pricing import PricingClient

    # one client per region with subnets; on-demand prices from the Pricing API
    clients = {r: await EC2Client.open(config.in_region(r)) for r in config.regions}
    home = clients.get(config.region) or await EC2Client.open(config)
    pricing = await PricingClient.open(config.pricing_endpoint_url) if config.pricing else None
    executor = EC2Executor(
        services,
        home,
        config,
        policy,
        server_url=policy.agent_url or settings.base_url,
        clients=clients,
        pricing=pricing,
    )
    try:
        await executor.start()
    except EC2ConfigError as e:  # a reservation EC2 contradicts or does not know (at start)
        raise SettingsError(str(e)) from None
    return executor
