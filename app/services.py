"""The running service's shared parts, as one typed bundle.

Built in one place only, the composition root (``app.wiring``); lower layers receive it
(or, better, only the parts they use) and never build or look up their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.agentbuild import AgentPackage
from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.engine.logfinisher import LogFinisher
from app.logs.store import LogStore
from app.metrics import Metrics
from app.policy.setup import Security
from app.pools import Pools
from app.settings import Settings
from app.store.coord import Leadership
from app.store.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    engine: Engine
    logs: LogStore
    catalog: Catalog
    metrics: Metrics
    security: Security  # the secret store and the policy book behind the engine's hooks
    finisher: LogFinisher  # finishes logs as attempts end
    agent: AgentPackage  # the agent file this server serves (app.agentbuild)
    pools: Pools  # self-hosted agents: registration tokens, registered agents
    # Which replica runs the loops that need one runner (app.store.coord): on SQLite,
    # the one process; on PostgreSQL, the holder of an advisory lock.
    leader: Leadership
