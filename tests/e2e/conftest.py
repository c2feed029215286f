"""`ployd serve` for real: HTTP on loopback, the local executor's agent processes, real
git repositories and real bash steps. Waits are event-driven with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.engine.events import PipelinesChanged
from app.server import Server, start_server
from app.settings import Settings
from app.store.models import Job, Pipeline

DEADLINE = 60.0


class Harness:
    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.engine = server.services.engine
        self._changed = asyncio.Event()
        self.engine.events.subscribe(PipelinesChanged, lambda _e: self._changed.set())

    @property
    def url(self) -> str:
        return self.server.url

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body, **kw) as r:
            ctype = r.headers.get("Content-Type", "")
            return r.status, (await r.json()) if "json" in ctype else await r.text()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.get(self.url + path, **kw) as r:
            ctype = r.headers.get("Content-Type", "")
            return r.status, (await r.json()) if "json" in ctype else await r.text()

    async def start(self, repo: Path, ref: str = "HEAD") -> int:
        status, body = await self.post("/api/v1/pipelines", {"repo": str(repo), "ref": ref})
        assert status == 201, body
        return int(body["id"])

    def pipeline(self, pid: int) -> Pipeline:
        with self.engine.db.session() as s:
            p = s.get(Pipeline, pid)
            assert p is not None
            for j in p.jobs:
                _ = [a.state for a in j.attempts]
            return p

    async def until(self, check: Callable[[], bool], what: str) -> None:
        """Wait until ``check()`` holds, re-checking whenever the engine reports news."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while not check():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._changed.clear()
            if check():
                return
            news = asyncio.ensure_future(self._changed.wait())
            logs = asyncio.ensure_future(self.engine.log_appended.wait(left))
            await asyncio.wait({news, logs}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            news.cancel()
            logs.cancel()

    async def finished(self, pid: int) -> Pipeline:
        await self.until(lambda: self.pipeline(pid).state != "running", f"pipeline {pid}")
        return self.pipeline(pid)

    def job(self, pid: int, name: str) -> Job:
        return next(j for j in self.pipeline(pid).jobs if j.name == name)

    def log(self, pid: int, name: str, attempt: int = -1) -> str:
        a = self.job(pid, name).attempts[attempt]
        return self.engine.logs.read(a.log_path).decode() if a.log_path else ""

    async def log_contains(self, pid: int, name: str, text: str) -> None:
        """Wait for ``text`` in the job's log. Steps print their script as a header, so
        a marker should be something only running the script prints (`$((6*7))`)."""

        def check() -> bool:
            job = self.job(pid, name)
            return bool(job.attempts) and text in self.log(pid, name)

        await self.until(check, f"{text!r} in the log of {name}")


@pytest.fixture
def serve(tmp_path: Path, db_url: str) -> Callable[..., Any]:
    """``async with serve(agents=2, **settings) as h``: a running PloyD."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def run(agents: int = 2, secrets: Any = None, **extra: Any) -> AsyncIterator[Harness]:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / "data",
            database_url=db_url,
            local_agents=agents,
            **extra,
        )
        server = await start_server(settings, secrets=secrets)
        async with aiohttp.ClientSession() as http:
            try:
                yield Harness(server, http)
            finally:
                await server.stop()

    return run


@pytest.fixture
def l4_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has an L4, as far as the local executor's agents can tell: a fake
    ``nvidia-smi`` first on the PATH they inherit (agents report their hardware and get
    only the jobs it satisfies; the worlds' configs have an ``l4`` job)."""
    from tests.fakes import nvidia_smi

    bin_dir = nvidia_smi.install(tmp_path / "fake-gpu-bin", nvidia_smi.fixture("l4"))
    monkeypatch.setenv("PATH", nvidia_smi.path_with(bin_dir))


@pytest.fixture
def github_world(
    tmp_path: Path, db_url: str, make_repo: Callable[..., tuple[Path, str]], l4_machine: None
) -> Callable[..., Any]:
    """``async with github_world(agents=1, git_http=False) as w``: the fake GitHub, mirrored
    git repos (fetched over HTTP from the fake with ``git_http``), and PloyD serving as the
    GitHub App (w.h is the Harness); its agents see an L4."""
    from contextlib import asynccontextmanager

    from tests.e2e.github_world import GitHubWorld
    from tests.fakes.github import serve_fake_github

    @asynccontextmanager
    async def run(agents: int = 1, git_http: bool = False) -> AsyncIterator[Any]:
        async with serve_fake_github() as fake:
            world = GitHubWorld(fake, tmp_path / "git", make_repo, git_http=git_http)
            settings = world.settings(tmp_path / "data", db_url, agents)
            server = await start_server(settings)
            async with aiohttp.ClientSession() as http:
                try:
                    world.h = Harness(server, http)
                    yield world
                finally:
                    await server.stop()

    return run


@pytest.fixture
def gitlab_world(
    tmp_path: Path, db_url: str, make_repo: Callable[..., tuple[Path, str]]
) -> Callable[..., Any]:
    """``async with gitlab_world(git_http=False, clone_token="") as w``: the fake GitLab,
    mirrored git repos (fetched over HTTP from the fake with ``git_http``), and PloyD
    serving as the GitLab bot (w.h is the Harness). ``before_start(w)`` runs before PloyD
    starts; ``clean=False`` lets requests GitLab would refuse pass."""
    from contextlib import asynccontextmanager

    from tests.e2e.gitlab_world import GitLabWorld
    from tests.fakes.gitlab import serve_fake_gitlab

    @asynccontextmanager
    async def run(
        agents: int = 1,
        git_http: bool = False,
        clone_token: str = "",
        before_start: Callable[[Any], Awaitable[None]] | None = None,
        clean: bool = True,
    ) -> AsyncIterator[Any]:
        async with serve_fake_gitlab(assert_clean=clean) as fake:
            world = GitLabWorld(
                fake, tmp_path / "git", make_repo, git_http=git_http, clone_token=clone_token
            )
            if before_start is not None:
                await before_start(world)
            server = await start_server(world.settings(tmp_path / "data", db_url, agents))
            async with aiohttp.ClientSession() as http:
                try:
                    world.h = Harness(server, http)
                    yield world
                finally:
                    await server.stop()

    return run


@pytest.fixture(scope="session", autouse=True)
def machine_step_user() -> None:
    """The user a root agent runs steps as (``ployd-job``), on this host: a simulated
    machine's ``useradd`` is a stub that creates nobody, where the real one on an
    instance would, so the host provides the user (once, as a root agent would)."""
    if os.geteuid() == 0:
        from app.agent.sandbox import ensure_step_user

        ensure_step_user("ployd-job")


@pytest.fixture
def ec2_world(
    tmp_path: Path,
    db_url: str,
    moto_server: str,
    request: pytest.FixtureRequest,
) -> Callable[..., Any]:
    """``async with ec2_world(policy) as w``: PloyD serving with the EC2 executor on
    moto (its own region per test, or ``region=``), machines simulated by local agents.
    ``proxy=True``: the executor reaches moto through ``tests.fakes.ec2_proxy`` (``w.proxy``:
    faults injected as EC2 answers them); ``timer=False``: the test drives its passes."""
    from contextlib import asynccontextmanager

    from app.core.ec2_policy import EC2Policy
    from tests.e2e.ec2_world import EC2World

    regions = [
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-central-1",
        "eu-north-1",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "sa-east-1",
    ]
    region = regions[zlib.crc32(request.node.nodeid.encode()) % len(regions)]

    @asynccontextmanager
    async def run(
        policy: EC2Policy | None = None,
        *,
        region: str = region,
        proxy: bool = False,
        timer: bool = True,
        network: Callable[[EC2World], Any] | None = None,
        pricing: Any = None,
    ) -> AsyncIterator[Any]:
        """``network(world)``: the EC2Config to use (default: two subnets of the
        world's region); ``pricing``: a ``PricingClient`` (default: catalog prices);
        ``proxy``: EC2 reached through the fault-injecting proxy (``world.proxy``);
        ``timer=False``: the executor runs no passes of its own."""
        from dataclasses import replace

        from tests.fakes.ec2_proxy import EC2Proxy

        world = EC2World(moto_server, region, tmp_path)
        async with contextlib.AsyncExitStack() as stack:
            if proxy:  # before ``network``, which may tell it what EC2 knows (reservations)
                world.proxy = await stack.enter_async_context(EC2Proxy(moto_server))
            config = network(world) if network is not None else world.network()
            if world.proxy is not None:
                config = replace(config, endpoint_url=world.proxy.url)
            async with _ec2_serving(world, config, policy, timer, pricing) as w:
                yield w

    @asynccontextmanager
    async def _ec2_serving(
        world: Any, config: Any, policy: EC2Policy | None, timer: bool, pricing: Any
    ) -> AsyncIterator[Any]:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / "data",
            database_url=db_url,
            local_agents=0,
            secret_key="test-secret-key-0123456789abcdef",
        )
        server = await start_server(settings)
        async with aiohttp.ClientSession() as http:
            world.h = Harness(server, http)
            try:
                await world.start_executor(
                    policy or EC2Policy(), config, pricing, timer=timer
                )
                yield world
            finally:
                await world.stop()
                await server.stop()
                leftover = [i["InstanceId"] for i in world.running_managed()]
                if leftover:  # clean up for the next test, then fail this one
                    world.boto.terminate_instances(InstanceIds=leftover)
                assert leftover == [], f"instances left running: {leftover}"

    return run
