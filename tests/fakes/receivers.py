"""Notification receivers on loopback: a fake Slack incoming webhook and a generic
webhook receiver (one aiohttp app: each path records what it got and answers the status
it is told to), and an SMTP server (aiosmtpd) that keeps the messages it accepts.

Slack's incoming webhooks answer ``200 ok`` (text) to a JSON body with ``text``, and
``400 invalid_payload`` otherwise; the fake does the same."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as Email
from typing import Any

from aiohttp import web

from tests.fakes.serving import start_app


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receivers:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    # path -> statuses to answer in turn (the last one repeats); default 200
    answers: dict[str, list[int]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Paths whose first request is recorded, then left unanswered until ``release``.
    hold: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        self.received.append(Received(path, dict(request.headers), body))
        self.arrived.set()
        if path in self.hold:
            self.hold.discard(path)
            await self.release.wait()
        queue = self.answers.get(path) or [200]
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        if path.startswith("/slack/"):
            try:
                ok = isinstance(json.loads(body).get("text"), str)
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                return web.Response(status=400, text="invalid_payload")
            return web.Response(status=status, text="ok" if status == 200 else "server_error")
        return web.Response(status=status, text="{}", content_type="application/json")

    async def _seen(self, request: web.Request) -> web.Response:
        """``GET /_seen?path=P&text=T``: 200 once a request to P whose body holds T
        arrived (answered or not), else 404 (a job's step polls it)."""
        path, text = request.query.get("path", ""), request.query.get("text", "").encode()
        found = any(r.path == path and text in r.body for r in self.received)
        return web.Response(status=200 if found else 404)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_seen", self._seen)
        app.router.add_post("/{tail:.*}", self._handle)
        return app


@asynccontextmanager
async def serve_receivers() -> AsyncIterator[Receivers]:
    r = Receivers()
    runner, address = await start_app(r.make_app())
    r.base_url = f"http://{address}"
    try:
        yield r
    finally:
        await runner.cleanup()


class _Keep:
    def __init__(self) -> None:
        self.messages: list[Email] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[str, int, _Keep]]:
    """An SMTP server on 127.0.0.1 (a free port), in its own thread: (host, port, what
    it kept)."""
    from aiosmtpd.controller import Controller

    keep = _Keep()
    with socket.socket() as probe:  # aiosmtpd needs a port number, not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(keep, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, keep
    finally:
        controller.stop()
