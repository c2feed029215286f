"""A running PloyD for log tests: real HTTP on loopback, the engine driven through the
agent's calls (no agent process), logs on disk or in S3 (moto), and signed links."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from app.core.links import sign_job
from app.core.triggers import Event, EventKind
from app.engine.engine import AgentIdentity, RepoRef
from app.handlers.pipelines import plan
from app.protocol import FinishReport, LogChunk, StepReport
from app.server import Server, start_server
from app.settings import Settings
from app.store.models import Job, Pipeline

SECRET = "log-test-secret-0123456789"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class Claimed:
    attempt_id: int
    token: str
    job_id: int
    seq: int = 0


def one_job(name: str = "test", steps: tuple[str, ...] = ("Build", "Test")) -> str:
    body = "".join(f"      - name: {s}\n        run: echo {s.lower()}\n" for s in steps)
    return f"version: 1\njobs:\n  {name}:\n    retry: {{max: 0}}\n    steps:\n{body}"


class LogWorld:
    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.services = server.services
        self.engine = server.services.engine
        self.store = server.services.logs

    @property
    def url(self) -> str:
        return self.server.url

    def pipeline(
        self,
        config: str | None = None,
        *,
        tenant: str = "local",
        forge: str = "local",
        repo: str = "acme/app",
    ) -> int:
        plans = plan(
            config or one_job(),
            Event(EventKind.API, ref="refs/heads/main", sha="a" * 40),
            self.services.catalog,
        )
        assert plans is not None
        ref = RepoRef(
            forge=forge,
            full_name=repo,
            clone_url=f"https://example.invalid/{repo}.git",
            tenant_external_id=tenant,
            tenant_name=tenant,
        )
        return self.engine.create_pipeline(
            ref, plans, ref="refs/heads/main", sha="a" * 40, trigger="api"
        )

    def job_id(self, pid: int, name: str = "test") -> int:
        with self.engine.db.session() as s:
            p = s.get(Pipeline, pid)
            assert p is not None
            return next(j.id for j in p.jobs if j.name == name)

    async def claim(self, **identity: Any) -> Claimed:
        who = AgentIdentity(
            agent_id=identity.pop("agent_id", f"agent-{uuid.uuid4().hex[:6]}"),
            instance_type=identity.pop("instance_type", "g6.xlarge"),
            spot=identity.pop("spot", True),
            price_hourly=identity.pop("price_hourly", 0.8),
        )
        found = await self.engine.claim(who, wait=0)
        assert found is not None, "nothing to claim"
        with self.engine.db.session() as s:
            from app.store.models import Attempt

            a = s.get(Attempt, found.attempt_id)
            assert a is not None
            job_id = a.job_id
        return Claimed(found.attempt_id, found.job_token, job_id)

    def log(self, c: Claimed, text: str) -> None:
        self.engine.record_log(c.attempt_id, c.token, LogChunk(c.seq, text))
        c.seq += 1

    def step(self, c: Claimed, index: int, state: str, code: int | None = None) -> None:
        self.engine.record_step(c.attempt_id, c.token, StepReport(index, state, code))

    def finish(
        self,
        c: Claimed,
        result: str,
        failed_step: int | None = None,
        code: int | None = None,
        ran_s: float | None = None,
    ) -> None:
        """End ``c``'s attempt; ``ran_s``: as if claimed that long ago (its cost, charged
        per second, is then known; a claim finished at once costs about nothing)."""
        if ran_s is not None:
            from datetime import timedelta

            from sqlalchemy import update

            from app.store.models import Attempt, utcnow

            with self.engine.db.session() as s:
                s.execute(
                    update(Attempt)
                    .where(Attempt.id == c.attempt_id)
                    .values(claimed_at=utcnow() - timedelta(seconds=ran_s))
                )
        report = FinishReport(result, failed_step=failed_step, exit_code=code)
        self.engine.finish(c.attempt_id, c.token, report)

    async def settled(self) -> None:
        """The logs of ended attempts are finished (compacted, for S3)."""
        await self.services.finisher.drain()

    def tenant_of(self, job_id: int) -> int:
        with self.engine.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            return job.pipeline.repository.tenant_id

    def token(self, job_id: int) -> str:
        return sign_job(SECRET.encode(), job_id, self.tenant_of(job_id))

    def link(self, job_id: int, suffix: str = "", **query: Any) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"t": self.token(job_id), **query}.items())
        return f"{self.url}/runs/{job_id}{suffix}?{params}"

    async def get(self, url: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.http.get(url, **kw) as r:
            return r.status, await r.text(), r.headers


def s3_settings(moto_url: str) -> dict[str, str]:
    """A fresh bucket on moto, and the settings that use it."""
    import boto3

    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url, **KEYS)
    client.create_bucket(Bucket=bucket)
    return {
        "s3_bucket": bucket,
        "s3_prefix": "ployd/logs",
        "aws_region": "us-east-1",
        "aws_endpoint_url": moto_url,
    }


def s3_client(moto_url: str) -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url, **KEYS)


@asynccontextmanager
async def running(
    data_dir: Path, db_url: str, *, agents: int = 0, **extra: Any
) -> AsyncIterator[LogWorld]:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=data_dir,
        database_url=db_url,
        local_agents=agents,
        secret_key=SECRET,
        **extra,
    )
    server = await start_server(settings)
    async with aiohttp.ClientSession() as http:
        try:
            yield LogWorld(server, http)
        finally:
            await server.stop()
