"""The agent as one file, end to end against `ployd serve` on loopback: it runs a job under
a bare interpreter (a venv without pip, ``-I``); an agent of another version is told to
update, downloads the server's file, checks its SHA-256 and re-executes itself into it;
a tampered update is refused and the old version carries on; the server serves the file,
its SHA-256 and install.sh with ETags."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from app.agentbuild import AgentPackage
from tests.agent.test_old_pythons import _interpreter
from tests.e2e.conftest import Harness

JOB = "version: 1\njobs:\n  t:\n    steps: [{run: 'echo from-the-file-$((6*7))'}]\n"


def bare_python(base: str, venv: Path) -> str:
    """A fresh venv without pip: nothing but the standard library to import."""
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    for module in ("aiohttp", "sqlalchemy", "yaml", "boto3", "pip"):
        found = subprocess.run([python, "-I", "-c", f"import {module}"], capture_output=True)
        assert found.returncode != 0, f"{module} is importable in the bare venv"
    return python


@contextlib.asynccontextmanager
async def agent_process(
    python: str, package: Path, server: str, token: str, agent_id: str, work: Path, *extra: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -I package --server ...``, its output in ``work/../agent.log``."""
    log = work.parent / f"{agent_id}.log"
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            python, "-I", str(package), "--server", server, "--token", token,
            "--agent-id", agent_id, "--work-dir", str(work), "--claim-wait", "5", *extra,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            env={k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")},
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")


@pytest.mark.parametrize("base", ["this", "3.9"])
async def test_the_agent_file_runs_a_job_under_a_bare_interpreter(
    base: str, serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
) -> None:
    exe = sys.executable if base == "this" else _interpreter(base)
    if exe is None:
        pytest.skip(f"no Python {base} here (set PLOYD_TEST_PYTHONS to point at one)")
    python = bare_python(exe, tmp_path / "bare")
    async with serve(agents=0) as h:
        h: Harness
        package = h.server.services.agent.write(tmp_path / "opt")
        token = h.engine.new_registration_token()
        repo, _ = make_repo({".ployd.yml": JOB})
        async with agent_process(python, package, h.url, token, "bare-1", tmp_path / "w"):
            pid = await h.start(repo)
            assert (await h.finished(pid)).state == "succeeded"
        assert "from-the-file-42" in h.log(pid, "t")
        assert h.job(pid, "t").attempts[0].agent_id == "bare-1"
    log = (tmp_path / "bare-1.log").read_text()
    assert f"ployd agent {h.server.services.agent.version} on Python" in log
    assert f"({package})" in log


@pytest.mark.parametrize("base", ["this", "3.9"])
async def test_an_agent_of_another_version_updates_itself_then_runs_the_job(
    base: str, serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
) -> None:
    python = sys.executable if base == "this" else _interpreter(base)
    if python is None:
        pytest.skip(f"no Python {base} here (set PLOYD_TEST_PYTHONS to point at one)")
    old = AgentPackage.build(version="0.0.1-old")  # the same sources, another version
    opt = tmp_path / "opt"
    old_path = old.write(opt)
    async with serve(agents=0) as h:
        h: Harness
        agent = h.server.services.agent
        assert old.sha256 != agent.sha256
        token = h.engine.new_registration_token()
        repo, _ = make_repo({".ployd.yml": JOB})
        async with agent_process(python, old_path, h.url, token, "upd-1", tmp_path / "w") as proc:
            pid = await h.start(repo)
            assert (await h.finished(pid)).state == "succeeded"
            new_path = opt / agent.file_name
            # the same process, re-executed into the server's version with its arguments
            assert cmdline(proc.pid)[1:4] == ["-I", str(new_path), "--server"]
            assert proc.returncode is None
        assert h.job(pid, "t").attempts[0].agent_id == "upd-1"
    assert hashlib.sha256(new_path.read_bytes()).hexdigest() == agent.sha256
    assert old_path.read_bytes() == old.data  # the file it ran from is left alone
    assert sorted(p.name for p in opt.iterdir()) == sorted([old.file_name, agent.file_name])
    log = (tmp_path / "upd-1.log").read_text()
    assert f"agent upd-1 0.0.1-old WARNING the server runs agent {agent.version}: updating" in log
    assert f"agent {agent.version} downloaded to {new_path} (SHA-256 verified)" in log
    assert f"ployd agent {agent.version} on Python" in log


class TamperingProxy:
    """Between an agent and PloyD: forwards the agent API, and serves the agent file with
    one byte appended while ``tamper`` holds. Counts the downloads."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tamper = True
        self.downloads = 0
        self.changed = asyncio.Condition()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_get("/agent/ployd-agent.pyz", self._agent)
        app.router.add_route("*", "/api/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _agent(self, _request: web.Request) -> web.Response:
        assert self._http is not None
        async with self._http.get(self.upstream + "/agent/ployd-agent.pyz") as r:
            body = await r.read()
        async with self.changed:
            self.downloads += 1
            tampered = self.tamper
            self.changed.notify_all()
        return web.Response(body=body + b"\0" if tampered else body)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization",)}
        headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
        async with self._http.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=await request.read(),
        ) as r:
            body = await r.read()
            ctype = r.headers.get("Content-Type", "").split(";")[0]
        if not body:
            return web.Response(status=r.status)
        return web.Response(status=r.status, body=body, content_type=ctype or None)

    async def downloaded(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.downloads >= count), 60)


async def test_a_tampered_update_is_refused_and_the_old_version_carries_on(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    old = AgentPackage.build(version="0.0.1-old")
    opt = tmp_path / "opt"
    old_path = old.write(opt)
    async with serve(agents=0) as h:
        h: Harness
        agent = h.server.services.agent
        proxy = TamperingProxy(h.url)
        await proxy.start()
        try:
            token = h.engine.new_registration_token()
            repo, _ = make_repo({".ployd.yml": JOB})
            async with agent_process(
                sys.executable, old_path, proxy.url, token, "tamper-1", tmp_path / "w",
                "--update-retry", "0.2",
            ) as proc:
                pid = await h.start(repo)
                await proxy.downloaded(2)  # refused, and tried again later: no crash loop
                assert proc.returncode is None
                assert cmdline(proc.pid)[2] == str(old_path)  # still the old version
                assert not (opt / agent.file_name).exists()  # nothing refused is kept
                assert h.job(pid, "t").state == "queued"  # no job for the wrong version
                proxy.tamper = False
                assert (await h.finished(pid)).state == "succeeded"
                assert cmdline(proc.pid)[2] == str(opt / agent.file_name)
        finally:
            await proxy.stop()
    assert sorted(p.name for p in opt.iterdir()) == sorted([old.file_name, agent.file_name])
    log = (tmp_path / "tamper-1.log").read_text()
    tampered = hashlib.sha256(agent.data + b"\0").hexdigest()
    assert (
        f"update to agent {agent.version} failed: the agent downloaded from "
        f"{proxy.url}/agent/ployd-agent.pyz ({len(agent.data) + 1} bytes) has SHA-256 "
        f"{tampered}, not {agent.sha256} as the server said: refused"
    ) in log
    assert "still running this version; trying again in" in log


async def test_an_agent_run_from_source_is_never_told_to_update(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    """The local executor's agents (`python -m app.agent`) are the server's version."""
    async with serve(agents=1) as h:
        h: Harness
        repo, _ = make_repo({".ployd.yml": JOB})
        pid = await h.start(repo)
        assert (await h.finished(pid)).state == "succeeded"


async def test_the_server_serves_the_agent_its_sha256_and_install_sh(
    serve: Callable[..., Any],
) -> None:
    async with serve(agents=0, admin_token="admin-only-for-the-api") as h:
        h: Harness
        agent = h.server.services.agent
        async with h.http.get(h.url + "/agent/ployd-agent.pyz") as r:  # no token needed
            assert r.status == 200
            assert await r.read() == agent.data
            assert r.headers["ETag"] == f'"{agent.sha256}"'
            assert r.headers["X-Ployd-Agent-Version"] == agent.version
            assert agent.file_name in r.headers["Content-Disposition"]
        headers = {"If-None-Match": f'"{agent.sha256}"'}
        async with h.http.get(h.url + "/agent/ployd-agent.pyz", headers=headers) as r:
            assert r.status == 304 and await r.read() == b""
        status, text = await h.get("/agent/ployd-agent.pyz.sha256")
        assert status == 200 and text == f"{agent.sha256}  {agent.file_name}\n"
        status, script = await h.get("/agent/install.sh")
        assert status == 200 and script.startswith("#!/bin/sh\n")
        assert f"PLOYD_SERVER_URL={h.url}\n" in script
        assert f"PLOYD_AGENT_SHA256={agent.sha256}\n" in script
        # an agent of another version asking for a job gets the update instruction
        token = h.engine.new_agent_token()
        auth = {"Authorization": f"Bearer {token}"}
        body = {"agent_id": "x", "wait": 0, "version": "0.0.1-old"}
        status, answer = await h.post("/api/v1/agent/claim", body, headers=auth)
        assert status == 426
        assert answer == {
            "version": agent.version, "url": "/agent/ployd-agent.pyz", "sha256": agent.sha256,
        }
        status, _ = await h.post("/api/v1/agent/claim", {**body, "version": agent.version},
                                 headers=auth)
        assert status == 204
        status, _ = await h.post("/api/v1/agent/claim", body)  # no token: 401 first
        assert status == 401
