"""A hostile step hunts for its agent's credential: its environment, ``/proc/$PPID``'s
environ and command line, and every ancestor's up the process tree; it tries each
token-like string it found against the agent API (claim and register). Everything it
tries answers 401: the local executor's agents never had their token in reach (it came
on a pipe), a self-hosted agent's registration token (in its environment, as systemd's
EnvironmentFile puts it) was used up at start, and the credentials live in memory only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.engine.events import AgentRegistered
from app.store.models import AuditRecord, RegisteredAgent

from .conftest import Harness

ADMIN = "hostile-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

# In a hunt script: try a token against the agent API; the HTTP status it got.
TRY_TOKEN = r'''
def post(path, token, body):
    req = urllib.request.Request(
        server + "/api/v1/agent" + path, data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
'''

HUNT = r'''
import json, os, re, sys, urllib.error, urllib.request

server = os.environ["SERVER"]
tokenish = re.compile(r"[A-Za-z0-9_-]{32,}")
found, read, unreadable = {}, [], []

def scan(where, text):
    for m in tokenish.finditer(text):
        found.setdefault(m.group(), where)

scan("env", "\n".join(f"{k}={v}" for k, v in os.environ.items()))
pid = os.getppid()
while pid >= 1:  # up to and including pid 1 (in a sandbox: its init)
    for name in ("environ", "cmdline"):
        path = f"/proc/{pid}/{name}"
        try:
            with open(path, "rb") as f:
                scan(path, f.read().replace(b"\0", b"\n").decode(errors="replace"))
            read.append(path)
        except OSError as e:
            unreadable.append(f"{path}: {e.strerror}")
    with open(f"/proc/{pid}/status") as f:
        pid = int(re.search(r"PPid:\s+(\d+)", f.read()).group(1)) if pid > 1 else 0

''' + TRY_TOKEN + r'''
tried = {}
for token in found:
    tried[token] = [
        post("/claim", token, {"agent_id": "thief", "wait": 0}),
        post("/register", token, {"name": "thief", "version": "x", "hardware": {"cpus": 1}}),
    ]
print("REPORT " + json.dumps({"env_names": sorted(os.environ), "read": read,
                              "unreadable": unreadable, "found": found, "tried": tried}))
print("hunted", len(found), "strings")
'''


def _config(server: str) -> str:
    return (
        "version: 1\njobs:\n  hunt:\n    retry: {max: 0}\n"
        f"    env: {{SERVER: '{server}'}}\n"
        "    steps:\n      - run: python3 hunt.py\n"
    )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check(report: dict[str, Any], credential_hashes: set[str]) -> None:
    assert "PLOYD_AGENT_TOKEN" not in report["env_names"]
    assert not [n for n in report["env_names"] if n.startswith("PLOYD_") and "TOKEN" in n]
    assert report["read"] or report["unreadable"]  # it did walk up the tree
    assert report["found"], "the hunt found nothing at all to try: not a real hunt"
    for token, statuses in report["tried"].items():
        assert statuses == [401, 401], (token[:12], report["found"][token], statuses)
        assert _sha(token) not in credential_hashes


async def _hunt(h: Harness, repo: Path) -> dict[str, Any]:
    status, body = await h.post("/api/v1/pipelines", {"repo": str(repo)}, headers=AUTH)
    assert status == 201
    pid = int(body["id"])
    p = await h.finished(pid)
    assert p.state == "succeeded", h.log(pid, "hunt")
    assert "hunted" in h.log(pid, "hunt")
    line = next(ln for ln in h.log(pid, "hunt").splitlines() if ln.startswith("REPORT "))
    return dict(json.loads(line.removeprefix("REPORT ")))


async def test_a_step_on_a_local_agent_finds_no_usable_credential(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    async with serve(agents=1, admin_token=ADMIN) as h:
        h: Harness
        repo, _ = make_repo({".ployd.yml": _config(h.url), "hunt.py": HUNT})
        found = await _hunt(h, repo)
        # The local agents' credentials, as the engine keeps them (hashes, in memory).
        _check(found, set(h.engine._local_agents))
        assert any("/environ" in p for p in found["read"] + found["unreadable"])


async def test_a_step_on_a_self_hosted_agent_finds_only_a_used_up_token(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    async with serve(agents=0, admin_token=ADMIN) as h:
        h: Harness
        status, made = await h.post(
            "/api/v1/agents/tokens", {"pool": "lab", "tenants": ["local:local"]}, headers=AUTH)
        assert status == 201
        token = made["token"]
        registered = asyncio.Event()
        h.engine.events.subscribe(AgentRegistered, lambda _e: registered.set())
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.agent", "--server", h.url, "--agent-id", "lab-1",
            "--work-dir", str(tmp_path / "lab-1"), "--claim-wait", "2",
            env={**os.environ, "PLOYD_AGENT_TOKEN": token},  # as an EnvironmentFile would
        )
        try:
            await asyncio.wait_for(registered.wait(), 30)
            repo, _ = make_repo({".ployd.yml": _config(h.url), "hunt.py": HUNT})
            found = await _hunt(h, repo)
        finally:
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 30) == 0
        with h.engine.db.session() as s:
            credentials = set(s.scalars(select(RegisteredAgent.credential_hash)))
            refused = list(s.scalars(select(AuditRecord).where(
                AuditRecord.action == "agent.register.refused")))
        _check(found, credentials)
        if token in found["found"]:  # readable here (root, or ptrace allowed): used up
            assert found["found"][token] == f"/proc/{agent.pid}/environ"
            assert [(r.actor, r.details["reason"]) for r in refused] == [("agent:thief", "used")]
        else:  # not in the step's pid namespace (the sandbox), or not dumpable
            assert f"/proc/{agent.pid}/environ" not in found["read"]
            assert refused == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_the_local_executor_keeps_the_token_out_of_the_agents_environ_and_argv(
    serve: Callable[..., Any],
) -> None:
    async with serve(agents=1) as h:
        h: Harness
        executor = h.server.executor
        assert executor is not None
        registered = asyncio.Event()
        h.engine.events.subscribe(AgentRegistered, lambda _e: registered.set())
        if not h.engine._local_agents:
            await asyncio.wait_for(registered.wait(), 30)
        (pid,) = executor.agents.values()  # type: ignore[attr-defined]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert not [e for e in environ if e.startswith(b"PLOYD_")]
        assert b"--token-fd" in argv and b"--token" not in argv
        assert Path(f"/proc/{pid}/fd/0").resolve() == Path(os.devnull)  # the pipe is gone
