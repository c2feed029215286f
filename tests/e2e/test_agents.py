"""Self-hosted agents through `ployd serve`: a token from the admin API, a real agent
process that registers with it and runs its pool's tenant's job, the agents' list and
the dashboard, draining, and the admin API's answers to bad input (400, never 5xx)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.engine.events import AgentRegistered

from .conftest import Harness

ADMIN = "agents-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def start_agent(
    url: str, token: str, name: str, work: Path, *extra: str
) -> asyncio.subprocess.Process:
    """``python -m app.agent`` on this machine, given the token as systemd's
    EnvironmentFile would (``PLOYD_AGENT_TOKEN``)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.agent", "--server", url, "--agent-id", name,
        "--work-dir", str(work), "--claim-wait", "2", "--kill-grace", "1", *extra,
        env={**os.environ, "PLOYD_AGENT_TOKEN": token},
    )


async def stop_agent(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_a_self_hosted_agent_joins_runs_its_pools_job_and_drains(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    # The step holds on a FIFO in its workspace (all of the machine it can write to).
    config = (
        "version: 1\njobs:\n  hold:\n    steps:\n"
        "      - run: mkfifo go; echo held $((6*7)); read line < go; echo \"got $line\"\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        status, made = await h.post(
            "/api/v1/agents/tokens",
            {"pool": "lab", "tenants": ["local:local"], "labels": {"site": "paris"}},
            headers=AUTH,
        )
        assert status == 201, made
        assert made["pool"] == "lab" and made["used_at"] is None
        assert made["token"].startswith("ployd_reg_")
        status, started = await h.post("/api/v1/pipelines", {"repo": str(repo)}, headers=AUTH)
        assert status == 201
        pid = int(started["id"])  # queued before any agent: it waits for one
        agent = await start_agent(h.url, made["token"], "lab-1", tmp_path / "lab-1",
                                  "--labels", "rack=b2")
        try:
            await h.log_contains(pid, "hold", "held 42")
            status, listed = await h.get("/api/v1/agents", headers=AUTH)
            assert status == 200
            (row,) = listed["agents"]
            assert (row["name"], row["pool"], row["state"], row["version"]) == (
                "lab-1", "lab", "active", "0.1.0")
            assert row["labels"] == {"rack": "b2", "site": "paris"}
            assert row["hardware"].startswith("cpu:") and row["last_seen"]
            assert row["job"]["name"] == "hold"
            job = h.job(pid, "hold")
            assert job.attempts[-1].agent_id == "lab-1"
            assert job.attempts[-1].instance_type == "pool:lab"

            status, drained = await h.post("/api/v1/agents/lab-1/disable", headers=AUTH)
            assert status == 200 and drained["state"] == "draining"
            async with h.http.get(h.url + "/", headers=AUTH) as r:
                page = await r.text()
            assert "<h2>Agents</h2>" in page and "lab-1" in page and "draining" in page
            assert "site=paris" in page and "hold (attempt" in page

            (fifo,) = (tmp_path / "lab-1").glob("*/go")
            await asyncio.to_thread(fifo.write_text, "released\n")  # its job goes on
            p = await h.finished(pid)
            assert p.state == "succeeded" and "got released" in h.log(pid, "hold")
            status, listed = await h.get("/api/v1/agents", headers=AUTH)
            assert listed["agents"][0]["state"] == "disabled"
            assert listed["agents"][0]["job"] is None
        finally:
            assert await stop_agent(agent) == 0  # SIGTERM while idle: exits at once


async def test_a_used_token_does_not_start_a_second_agent(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        status, made = await h.post(
            "/api/v1/agents/tokens", {"pool": "lab", "tenants": "*"}, headers=AUTH)
        assert status == 201 and made["tenants"] == ["*"]
        registered = asyncio.Event()
        h.engine.events.subscribe(AgentRegistered, lambda _e: registered.set())
        first = await start_agent(h.url, made["token"], "lab-1", tmp_path / "a")
        try:
            await asyncio.wait_for(registered.wait(), 30)
            second = await start_agent(h.url, made["token"], "lab-2", tmp_path / "b")
            assert await asyncio.wait_for(second.wait(), 30) == 2  # refused: it exits
        finally:
            assert await stop_agent(first) == 0
        assert [a.name for a in h.server.services.pools.agents()] == ["lab-1"]
        status, body = await h.post(
            "/api/v1/agent/register",
            {"name": "x", "version": "1", "hardware": {"cpus": 1}},
            headers={"Authorization": f"Bearer {made['token']}"},
        )
        assert status == 401 and "used already (by agent lab-1)" in body["error"]
        status, body = await h.post(  # a bad body with a credential: 400 naming the field
            "/api/v1/agent/register", {"name": "x"},
            headers={"Authorization": f"Bearer {made['token']}"})
        assert status == 400 and body["error"] == "hardware is missing"
        status, _ = await h.post("/api/v1/agent/register", {"name": "x"})
        assert status == 401  # no credential at all: refused before the body is read


async def test_a_restarted_agent_comes_back_with_its_saved_credential_and_no_token(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    """A self-hosted agent with ``--state-dir`` killed mid-job (a crash, a reboot) and
    started again without any token: it renews the credential it saved, its job is
    retried at once, and its steps never see the saved file."""
    state = tmp_path / "lab-1-state"
    config = (
        "version: 1\njobs:\n  hold:\n    steps:\n"
        f"      - run: cat {state}/credential 2>&1 || echo unreadable $((6*7))\n"
        "      - run: rm -f go; mkfifo go; echo held $((6*7)); read line < go; echo \"got $line\"\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    work = tmp_path / "lab-1"
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        status, made = await h.post(
            "/api/v1/agents/tokens", {"pool": "lab", "tenants": ["local:local"]}, headers=AUTH)
        assert status == 201
        status, started = await h.post("/api/v1/pipelines", {"repo": str(repo)}, headers=AUTH)
        assert status == 201
        pid = int(started["id"])
        agent = await start_agent(h.url, made["token"], "lab-1", work, "--state-dir", str(state))
        try:
            await h.log_contains(pid, "hold", "held 42")
            saved = json.loads((state / "credential").read_text())
            assert saved["agent_id"] == "lab-1" and saved["server"] == h.url
            assert saved["credential"].startswith("ployd_agent_")
            assert oct((state / "credential").stat().st_mode & 0o777) == "0o600"
            assert "unreadable 42" in h.log(pid, "hold")  # the step could not read it
            assert saved["credential"] not in h.log(pid, "hold")

            agent.kill()  # no goodbye: the machine went down
            await agent.wait()
            agent = await start_agent(h.url, "", "lab-1", work, "--state-dir", str(state))
            await h.until(lambda: len(h.job(pid, "hold").attempts) == 2, "the retry")
            first, second = h.job(pid, "hold").attempts
            assert second.number == 2
            assert first.state == "interrupted" and "agent lab-1 restarted" in (first.error or "")
            await h.log_contains(pid, "hold", "held 42")
            renewed = json.loads((state / "credential").read_text())["credential"]
            assert renewed != saved["credential"]  # rotated: the old copy is worth nothing
            status, refused = await h.post(
                "/api/v1/agent/claim", {"agent_id": "lab-1", "wait": 0},
                headers={"Authorization": f"Bearer {saved['credential']}"})
            assert status == 401, refused

            (fifo,) = work.glob("*/go")
            await asyncio.to_thread(fifo.write_text, "again\n")
            p = await h.finished(pid)
            assert p.state == "succeeded" and "got again" in h.log(pid, "hold")
            assert h.job(pid, "hold").attempts[-1].agent_id == "lab-1"
            (row,) = (await h.get("/api/v1/agents", headers=AUTH))[1]["agents"]
            assert (row["name"], row["state"]) == ("lab-1", "active")
        finally:
            assert await stop_agent(agent) == 0


async def test_a_refused_saved_credential_without_a_token_stops_the_agent_saying_why(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "credential").write_text(json.dumps(
        {"server": "", "agent_id": "lab-1", "credential": "ployd_agent_forged"}))
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        text = (state / "credential").read_text().replace('"server": ""', f'"server": "{h.url}"')
        (state / "credential").write_text(text)
        (state / "credential").chmod(0o600)
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.agent", "--server", h.url, "--work-dir",
            str(tmp_path / "w"), "--state-dir", str(state),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(agent.communicate(), 30)
        assert agent.returncode == 2
        assert b"the server refused the credential saved in" in err
        assert b"ployd agents token create --pool POOL" in err
        assert not (state / "credential").exists()  # forgotten: it is worth nothing


BAD_TOKEN_REQUESTS = [
    ({"tenants": ["*"]}, "pool must be a non-empty string"),
    ({"pool": 7, "tenants": ["*"]}, "pool must be a non-empty string"),
    ({"pool": "lab"}, "say which tenants this pool serves"),
    ({"pool": "lab", "tenants": {"a": 1}}, "tenants must be a list"),
    ({"pool": "lab", "tenants": ["*", "github:a"]}, "'*' already means every tenant"),
    ({"pool": "lab", "tenants": [None]}, "tenants must be strings"),
    ({"pool": "lab", "tenants": ["acme"]}, "name a tenant as forge:id"),
    ({"pool": "Lab", "tenants": ["*"]}, "use lower-case letters"),
    ({"pool": "lab", "tenants": ["*"], "expires": "soon"}, "'soon' is not a duration"),
    ({"pool": "lab", "tenants": ["*"], "expires": 3600}, "expires must be a duration"),
    ({"pool": "lab", "tenants": ["*"], "expires": "0s"}, "from 1s to 365d"),
    ({"pool": "lab", "tenants": ["*"], "labels": "gpu"}, "write it as key=value"),
    ({"pool": "lab", "tenants": ["*"], "labels": {"gpu": 8}}, "a value is letters"),
    ({"pool": "lab", "tenants": ["*"], "labels": ["gpu=h100"]}, "labels must be k=v"),
    ({"pool": "lab", "tenants": ["*"], "tenant": "x"}, "unknown field 'tenant'; known: pool"),
]


async def test_bad_token_requests_answer_400_naming_the_problem(
    serve: Callable[..., Any],
) -> None:
    async with serve(agents=0, admin_token=ADMIN) as h:
        for body, message in BAD_TOKEN_REQUESTS:
            status, answer = await h.post("/api/v1/agents/tokens", body, headers=AUTH)
            assert status == 400 and message in answer["error"], (body, answer)
        assert h.server.services.pools.agents() == []


async def test_the_agents_admin_api_needs_the_admin_token_and_names_what_is_missing(
    serve: Callable[..., Any],
) -> None:
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        for method, path in (("POST", "/api/v1/agents/tokens"), ("GET", "/api/v1/agents"),
                             ("POST", "/api/v1/agents/lab-1/disable")):
            async with h.http.request(method, h.url + path, json={}) as r:
                assert r.status == 401
        async with h.http.post(h.url + "/api/v1/agents/tokens", data=b"{nope",
                               headers=AUTH) as r:
            assert r.status == 400 and "not JSON" in (await r.json())["error"]
        status, body = await h.post("/api/v1/agents/nobody/disable", headers=AUTH)
        assert status == 404 and "no agent named 'nobody'" in body["error"]
        status, body = await h.post("/api/v1/agents/nobody/enable", headers=AUTH)
        assert status == 404
        status, _ = await h.post("/api/v1/agents/nobody/explode", headers=AUTH)
        assert status == 404
        status, body = await h.get("/api/v1/agents", headers=AUTH)
        assert (status, body) == (200, {"agents": []})


async def test_tokens_are_listed_and_revoked_through_the_admin_api(
    serve: Callable[..., Any],
) -> None:
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        status, made = await h.post("/api/v1/agents/tokens", {"pool": "lab", "tenants": "*"},
                                    headers=AUTH)
        assert status == 201
        status, listed = await h.get("/api/v1/agents/tokens", headers=AUTH)
        assert status == 200
        (row,) = listed["tokens"]
        assert (row["id"], row["pool"], row["state"]) == (made["id"], "lab", "usable")
        assert "token" not in row and made["token"] not in json.dumps(listed)
        async with h.http.delete(f"{h.url}/api/v1/agents/tokens/{made['id']}",
                                 headers=AUTH) as r:
            assert r.status == 200 and (await r.json())["state"] == "revoked"
        body = {"name": "lab-1", "version": "0.1.0", "hardware": {"cpus": 1}}
        async with h.http.post(f"{h.url}/api/v1/agent/register", json=body,
                               headers={"Authorization": f"Bearer {made['token']}"}) as r:
            assert r.status == 401 and "revoked" in await r.text()
        for bad, code in (("x", 400), ("999", 404)):
            async with h.http.delete(f"{h.url}/api/v1/agents/tokens/{bad}", headers=AUTH) as r:
                assert r.status == code, await r.text()
        async with h.http.get(f"{h.url}/api/v1/agents/tokens") as r:
            assert r.status == 401
