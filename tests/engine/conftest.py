"""An engine on a fresh database, and a fake agent that drives it through its API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.engine.hooks import EngineHooks
from app.handlers.pipelines import start_local
from app.logs.disk import DiskLogStore
from app.protocol import FinishReport
from app.store.db import Database
from app.store.models import Job, Pipeline


@pytest.fixture
def engine_db(db_url: str) -> Iterator[Database]:
    db = Database.connect(db_url)
    yield db
    db.dispose()


@pytest.fixture
def engine_hooks() -> EngineHooks:
    """The engine's decision hooks (a conftest overrides this to add secrets, policy)."""
    return EngineHooks()


@pytest.fixture
def engine(engine_db: Database, engine_hooks: EngineHooks, tmp_path: Path) -> Engine:
    return Engine(engine_db, DiskLogStore(tmp_path / "logs"), hooks=engine_hooks)


@dataclass
class Claimed:
    attempt_id: int
    token: str
    job: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.job["name"])


class Driver:
    """Plays the agent's part against an engine, without HTTP."""

    def __init__(self, engine: Engine, make_repo: Callable[..., tuple[Path, str]]) -> None:
        self.engine = engine
        self.make_repo = make_repo

    def start(self, config: str, **files: str) -> int:
        repo, _ = self.make_repo({".ployd.yml": config, **files})
        started = start_local(self.engine, Catalog.default(), str(repo), "HEAD")
        assert started.pipeline_id is not None
        return started.pipeline_id

    async def claim(self, agent: str = "agent-1") -> Claimed | None:
        got = await self.engine.claim(agent, 0)
        if got is None:
            return None
        return Claimed(got.attempt_id, got.job_token, got.job.to_json())

    async def claim_all(self) -> list[Claimed]:
        out = []
        while (c := await self.claim()) is not None:
            out.append(c)
        return out

    def finish(self, c: Claimed, result: str = "succeeded", **kw: Any) -> None:
        self.engine.finish(c.attempt_id, c.token, FinishReport(result, **kw))

    def jobs(self, pipeline_id: int) -> dict[str, str]:
        with self.engine.db.session() as s:
            p = s.get(Pipeline, pipeline_id)
            assert p is not None
            return {j.name: j.state for j in p.jobs}

    def pipeline_state(self, pipeline_id: int) -> str:
        with self.engine.db.session() as s:
            p = s.get(Pipeline, pipeline_id)
            assert p is not None
            return p.state

    def job(self, pipeline_id: int, name: str) -> Job:
        with self.engine.db.session() as s:
            p = s.get(Pipeline, pipeline_id)
            assert p is not None
            job = next(j for j in p.jobs if j.name == name)
            _ = [a.state for a in job.attempts]  # load them before the session closes
            return job


@pytest.fixture
def driver(engine: Engine, make_repo: Callable[..., tuple[Path, str]]) -> Driver:
    return Driver(engine, make_repo)
