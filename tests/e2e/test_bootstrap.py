"""The EC2 bootstrap executed for real: the user data moto recorded runs in a throwaway root
(``tests.e2e.machine``: ``systemctl`` and ``shutdown`` stubbed), downloads the agent from
`ployd serve` on loopback, checks its SHA-256 and starts it; the agent registers and runs
the job. A tampered download, a baked agent, a too old python3, no package index."""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from app.adapters.ec2.userdata import AGENT_PATH, ENV_FILE, RUNNER, UNIT_FILE, user_data
from app.store.models import Instance
from tests.e2e.conftest import Harness
from tests.e2e.ec2_world import EC2World
from tests.e2e.machine import Machine

JOB = "version: 1\njobs:\n  t:\n    hardware: t4\n    steps: [{run: 'echo booted-$((6*7))'}]\n"


def machine_rows(w: EC2World) -> dict[str, Instance]:
    with w.h.engine.db.session() as s:  # type: ignore[union-attr]
        return {m.agent_id: m for m in s.query(Instance).order_by(Instance.id)}


class AgentFiles:
    """A loopback server that serves the agent file, tampered with (one byte appended)
    for the first ``tampered`` downloads: the network between a machine and PloyD."""

    def __init__(self, data: bytes, tampered: int = 1) -> None:
        self.data = data
        self.tampered = tampered
        self.downloads = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/agent/ployd-agent.pyz", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/agent/ployd-agent.pyz"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _get(self, _request: web.Request) -> web.Response:
        self.downloads += 1
        body = self.data + b"\n" if self.downloads <= self.tampered else self.data
        return web.Response(body=body, content_type="application/octet-stream")


async def test_the_user_data_downloads_verifies_and_starts_the_agent(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world() as w:
        w: EC2World
        repo, _ = make_repo({".ployd.yml": JOB})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        assert "booted-42" in w.h.log(pid, "t")
        (row,) = w.launched
        assert await w.bootstrapped(row.agent_id) == 0
        m = w.machines[row.agent_id]
        agent = w.h.server.services.agent
        assert f"downloaded the agent from {w.h.url}/agent/ployd-agent.pyz" in m.output
        installed = m.path(AGENT_PATH).read_bytes()
        assert hashlib.sha256(installed).hexdigest() == agent.sha256
        env_file = m.path(ENV_FILE)
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert env_file.read_text().startswith("PLOYD_AGENT_TOKEN=")
        unit = m.path(UNIT_FILE).read_text()
        assert f"ExecStart={m.path(RUNNER)}" in unit and f"EnvironmentFile={env_file}" in unit
        runner = m.path(RUNNER).read_text()
        assert f" -I {m.path(AGENT_PATH)} --server {w.h.url}" in runner
        assert "--token" not in runner and "PLOYD_AGENT_TOKEN" not in runner
        assert m.calls("systemctl") == [
            "daemon-reload",
            "enable ployd-agent.service",
            "start --no-block ployd-agent.service",
        ]
        assert m.calls("shutdown") == []
        # the agent the machine runs is the packaged one, reporting the server's version
        assert f"ployd agent {agent.version} on Python" in m.agent_log()
        assert f"({m.path(AGENT_PATH)}), for {w.h.url}" in m.agent_log()
        assert machine_rows(w)[row.agent_id].registered_at is not None
        # nothing but the server was asked for anything: no pip, no package index
        assert not re.search(r"\bpip3?\b", m.output) and "apt-get" not in m.output


async def test_a_tampered_download_is_refused_reported_and_retried_elsewhere(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world() as w:
        w: EC2World
        assert w.executor is not None
        files = AgentFiles(w.h.server.services.agent.data, tampered=1)
        w.executor.agent_url = await files.start()
        try:
            repo, _ = make_repo({".ployd.yml": JOB})
            pid = await w.h.start(repo)
            assert (await w.h.finished(pid)).state == "succeeded"
        finally:
            await files.stop()
        a1, a2 = w.h.job(pid, "t").attempts
        first, second = w.launched
        assert await w.bootstrapped(first.agent_id) == 1
        bad = w.machines[first.agent_id]
        assert bad.calls("shutdown") == ["-h now"]
        assert bad.calls("systemctl") == []  # no agent was ever started
        assert not bad.path(AGENT_PATH).exists()
        assert not bad.path(AGENT_PATH + ".part").exists()
        agent = w.h.server.services.agent
        tampered = hashlib.sha256(agent.data + b"\n").hexdigest()
        reason = (
            f"the agent downloaded from {files.url} has SHA-256 {tampered}, "
            f"not {agent.sha256}: refused"
        )
        assert reason in bad.output
        assert a1.state == "interrupted" and a1.end_reason == "infrastructure"
        assert a1.error == f"machine {first.instance_id} failed to start: {reason}"
        assert a2.state == "succeeded" and a2.machine == second.agent_id
        assert "the machine or agent failed" in a2.reason
        # elsewhere: not the candidate that failed
        assert (second.instance_type, second.market, second.az) != (
            first.instance_type,
            first.market,
            first.az,
        )
        await w.executor.retired()
        rows = machine_rows(w)
        assert rows[first.agent_id].state == "terminated"
        assert "failed to start: the agent downloaded" in (rows[first.agent_id].error or "")
        assert files.downloads == 2


async def test_a_python3_older_than_3_9_is_a_clear_error_on_the_check_run(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    old = tmp_path / "old-python"
    old.mkdir()
    (old / "python3").write_text(  # Python 3.8 as far as the bootstrap can tell
        '#!/bin/sh\ncase "$*" in *version_info\\[:3\\]*) echo 3.8.18 ;; *) exit 1 ;; esac\n'
    )
    (old / "python3").chmod(0o755)
    config = JOB.replace("    steps:", "    retry: {max: 0}\n    steps:")
    async with ec2_world() as w:
        w: EC2World
        w.machine_path = [old]
        repo, _ = make_repo({".ployd.yml": config})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "failed"
        job = w.h.job(pid, "t")
        (a1,) = job.attempts
        assert job.state == "interrupted"
        (row,) = w.launched
        assert await w.bootstrapped(row.agent_id) == 1
        assert a1.error == (
            f"machine {row.instance_id} failed to start: {old}/python3 is Python 3.8.18: "
            "the PloyD agent needs 3.9 or newer"
        )
        assert w.machines[row.agent_id].calls("shutdown") == ["-h now"]


async def test_an_agent_baked_into_the_image_is_used_without_a_download(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    """The user data run by hand against `ployd serve` (no EC2): an agent file baked at
    AGENT_PATH whose SHA-256 is the server's is started as it is; its agent URL points
    at a closed port, so a download would fail the bootstrap."""
    async with serve(agents=0) as h:
        h: Harness
        agent = h.server.services.agent
        m = Machine(tmp_path / "baked")
        m.path(AGENT_PATH).parent.mkdir(parents=True)
        m.path(AGENT_PATH).write_bytes(agent.data)
        script = user_data(
            h.url,
            h.engine.new_registration_token(),
            "baked-1",
            agent_url="http://127.0.0.1:9/agent/ployd-agent.pyz",
            agent_sha256=agent.sha256,
        )
        try:
            assert await m.run(script) == 0, m.output
            assert f"using the agent baked into the image at {m.path(AGENT_PATH)}" in m.output
            repo, _ = make_repo({".ployd.yml": JOB.replace("hardware: t4", "hardware: cpu")})
            pid = await h.start(repo)
            assert (await h.finished(pid)).state == "succeeded", m.agent_log()
            assert h.job(pid, "t").attempts[0].agent_id == "baked-1"
        finally:
            await m.stopped()


async def test_a_baked_agent_of_another_version_is_replaced_by_the_servers(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    async with serve(agents=0) as h:
        h: Harness
        agent = h.server.services.agent
        m = Machine(tmp_path / "stale")
        m.path(AGENT_PATH).parent.mkdir(parents=True)
        m.path(AGENT_PATH).write_bytes(b"an older agent")
        script = user_data(
            h.url,
            h.engine.new_registration_token(),
            "stale-1",
            agent_url=f"{h.url}/agent/ployd-agent.pyz",
            agent_sha256=agent.sha256,
        )
        try:
            assert await m.run(script) == 0, m.output
        finally:
            await m.stopped()
        assert "is not this server's" in m.output
        assert m.path(AGENT_PATH).read_bytes() == agent.data


async def test_the_bootstrap_failure_report_takes_only_a_starting_machines_token(
    serve: Callable[..., Any],
) -> None:
    from app.executors.ec2_machines import token_hash
    from app.store import instances
    from app.store.instances import NewInstance

    async with serve(agents=0) as h:
        h: Harness
        db = h.engine.db
        row = instances.add(db, NewInstance(
            pool="t4:1", instance_type="g4dn.xlarge", hardware="t4:1", market="spot",
            az="x-1a", subnet_id="subnet-1", price_hourly=0.2, agent_id="ec2-starting",
            token_hash=token_hash("machine-token-1"),
        ))
        url = "/api/v1/agent/bootstrap-failed"
        status, body = await h.post(url, {"reason": "no git"}, headers=bearer("wrong-token"))
        assert status == 401
        status, body = await h.post(url, {"reason": ""}, headers=bearer("machine-token-1"))
        assert status == 400 and "reason must be a non-empty string" in body["error"]
        status, body = await h.post(url, {"reason": "no git"}, headers=bearer("machine-token-1"))
        assert status == 200 and body == {"machine": "ec2-starting", "attempt_id": None}
        after = instances.get(db, row.id)
        assert after is not None and after.state == "terminating"
        assert after.error == "failed to start: no git"
        status, _ = await h.post(url, {"reason": "again"}, headers=bearer("machine-token-1"))
        assert status == 401  # not a starting machine any more
        # a machine whose agent registered cannot be reported failed either
        instances.add(db, NewInstance(
            pool="t4:1", instance_type="g4dn.xlarge", hardware="t4:1", market="spot",
            az="x-1a", subnet_id="subnet-1", price_hourly=0.2, agent_id="ec2-running",
            token_hash=token_hash("machine-token-2"),
        ))
        registered = instances.register(db, token_hash("machine-token-2"), token_hash("cred-2"))
        assert registered is not None and registered.outcome == "ok"
        status, _ = await h.post(url, {"reason": "late"}, headers=bearer("machine-token-2"))
        assert status == 401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
