"""A small in-test server implementing docs/agent-protocol.md, for the agent's tests.

It keeps everything it is told (log chunks by seq, step reports, finish bodies), can
answer a call with a 500 once (to test retries), and can cancel an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

AGENT_TOKEN = "agent-token-123"


@dataclass
class Attempt:
    attempt_id: int
    job_token: str
    job: dict[str, Any]
    agent_id: str | None = None
    logs: dict[int, str] = field(default_factory=dict)
    log_posts: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    finish: dict[str, Any] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    claimed: asyncio.Event = field(default_factory=asyncio.Event)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_on_log: str | None = None  # set cancel once the log contains this
    log_seen: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.logs[k] for k in sorted(self.logs))

    def wait_log(self, needle: str) -> asyncio.Event:
        ev = self.log_seen.setdefault(needle, asyncio.Event())
        if needle in self.text:
            ev.set()
        return ev


class StubServer:
    agent_token = AGENT_TOKEN

    def __init__(self) -> None:
        self.url = ""
        self.queue: list[Attempt] = []
        self.attempts: dict[int, Attempt] = {}
        self.by_token: dict[str, Attempt] = {}
        self.claims: dict[str, int] = {}  # agent_id -> number of claim calls
        self.claim_tokens: dict[str, str] = {}  # agent_id -> the token of its last claim
        self.registrations: list[dict[str, Any]] = []  # the bodies of /register calls
        self.credentials: set[str] = set()  # what /register gave out
        self.registration_tokens: set[str] = {AGENT_TOKEN}  # what /register takes
        self.registered_with: list[str] = []  # the token of each /register call
        self.registered = asyncio.Condition()
        self.claim_seen: asyncio.Condition = asyncio.Condition()
        self.fail_next: dict[str, int] = {}  # path kind -> how many 500s to answer
        self.answer_at_once = False  # claims answered 204 without waiting (shutting down)
        self._ids = itertools.count(1)
        self._queued = asyncio.Condition()

    # -- test helpers ------------------------------------------------------------------

    def add_job(self, clone_url: str, sha: str, steps: list[dict[str, Any]], **job: Any) -> Attempt:
        aid = next(self._ids)
        full_steps = [
            {"index": i, "title": s.get("title", f"step {i}"), "run": s["run"],
             "env": s.get("env", {}), "timeout_s": s.get("timeout_s"),
             "continue_on_error": s.get("continue_on_error", False)}
            for i, s in enumerate(steps)
        ]
        body = {
            "pipeline_id": 1, "job_id": aid, "attempt_id": aid, "attempt_number": 1,
            "name": job.pop("name", f"job-{aid}"), "forge": "local", "repo": "acme/model",
            "clone_url": clone_url, "sha": sha, "ref": "refs/heads/main",
            "workspace_key": job.pop("workspace_key", "acme-model"),
            "timeout_s": job.pop("timeout_s", 60), "env": job.pop("env", {"PLOYD": "true"}),
            "secrets": job.pop("secrets", {}), "steps": full_steps, **job,
        }
        att = Attempt(aid, f"job-token-{aid}", body)
        self.attempts[aid] = att
        self.by_token[att.job_token] = att
        self.queue.append(att)

        async def notify() -> None:
            async with self._queued:
                self._queued.notify_all()

        asyncio.get_running_loop().create_task(notify())
        return att

    async def wait_claims(self, agent_id: str, count: int) -> None:
        async with self.claim_seen:
            await self.claim_seen.wait_for(lambda: self.claims.get(agent_id, 0) >= count)

    # -- the protocol ------------------------------------------------------------------

    @staticmethod
    def _bearer(request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip()

    def _maybe_fail(self, kind: str) -> None:
        if self.fail_next.get(kind, 0) > 0:
            self.fail_next[kind] -= 1
            raise web.HTTPInternalServerError(text="injected failure")

    async def register(self, request: web.Request) -> web.StreamResponse:
        """A registration token (AGENT_TOKEN, as often as asked) for a credential."""
        token = self._bearer(request)
        if token not in self.registration_tokens:
            raise web.HTTPUnauthorized()
        body = await request.json()
        async with self.registered:
            self.registrations.append(body)
            self.registered_with.append(token)
            self.registered.notify_all()
        credential = f"credential-{len(self.registrations)}"
        self.credentials.add(credential)
        return web.json_response({"agent_id": body["name"], "credential": credential})

    async def claim(self, request: web.Request) -> web.StreamResponse:
        token = self._bearer(request)
        if token != AGENT_TOKEN and token not in self.credentials:
            raise web.HTTPUnauthorized()
        body = await request.json()
        agent_id, wait = str(body["agent_id"]), min(float(body.get("wait", 25)), 30)
        async with self.claim_seen:
            self.claim_tokens[agent_id] = token
            self.claims[agent_id] = self.claims.get(agent_id, 0) + 1
            self.claim_seen.notify_all()
        if self.answer_at_once:
            wait = 0
        with contextlib.suppress(TimeoutError):
            async with self._queued:
                await asyncio.wait_for(self._queued.wait_for(lambda: bool(self.queue)), wait)
        if not self.queue or request.transport is None or request.transport.is_closing():
            return web.Response(status=204)
        att = self.queue.pop(0)
        att.agent_id = agent_id
        att.claimed.set()
        return web.json_response(
            {"attempt_id": att.attempt_id, "job_token": att.job_token, "job": att.job}
        )

    def _attempt(self, request: web.Request) -> Attempt:
        att = self.by_token.get(self._bearer(request))
        if att is None:
            raise web.HTTPUnauthorized()
        if att.attempt_id != int(request.match_info["aid"]):
            raise web.HTTPForbidden()
        if att.finish is not None:
            raise web.HTTPConflict()
        return att

    async def log(self, request: web.Request) -> web.Response:
        att = self._attempt(request)
        body = await request.json()
        att.log_posts += 1
        self._maybe_fail("log")
        att.logs.setdefault(int(body["seq"]), str(body["data"]))
        if att.cancel_on_log and att.cancel_on_log in att.text:
            att.cancel.set()
        for needle, ev in att.log_seen.items():
            if needle in att.text:
                ev.set()
        return web.json_response({"cancel": att.cancel.is_set()})

    async def steps(self, request: web.Request) -> web.Response:
        att = self._attempt(request)
        self._maybe_fail("steps")
        att.steps.append(await request.json())
        return web.json_response({"cancel": att.cancel.is_set()})

    async def heartbeat(self, request: web.Request) -> web.Response:
        att = self._attempt(request)
        att.heartbeats += 1
        wait = float((await request.json()).get("wait", 10))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(att.cancel.wait(), wait)
        return web.json_response({"cancel": att.cancel.is_set()})

    async def finish(self, request: web.Request) -> web.Response:
        att = self._attempt(request)
        att.finish = await request.json()
        att.finished.set()
        return web.json_response({})

    def app(self) -> web.Application:
        app = web.Application()
        p = "/api/v1/agent"
        app.router.add_post(f"{p}/register", self.register)
        app.router.add_post(f"{p}/claim", self.claim)
        app.router.add_post(p + "/attempts/{aid}/log", self.log)
        app.router.add_post(p + "/attempts/{aid}/steps", self.steps)
        app.router.add_post(p + "/attempts/{aid}/heartbeat", self.heartbeat)
        app.router.add_post(p + "/attempts/{aid}/finish", self.finish)
        return app


@pytest.fixture
async def stub(aiohttp_server: Any) -> AsyncIterator[StubServer]:
    s = StubServer()
    server = await aiohttp_server(s.app())
    s.url = str(server.make_url("")).rstrip("/")
    yield s


GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository with one commit: (path, sha)."""
    import os

    env = {**os.environ, **GIT_ENV}
    path = tmp_path / "remote"
    path.mkdir()
    (path / "hello.txt").write_text("hello from the repo\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    return path, git("rev-parse", "HEAD")


