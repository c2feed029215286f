"""A small HTTP proxy on loopback between botocore and moto that answers as EC2 does.

It forwards every request to moto, except those that match a ``Fault``: an EC2 action
(``RunInstances``) with matching query parameters (as botocore sends them, flattened:
``InstanceType``, ``SubnetId``, ``InstanceMarketOptions.MarketType``), answered with the
HTTP status and the XML body EC2 sends for an error::

    <Response><Errors><Error><Code>..</Code><Message>..</Message></Error></Errors>
    <RequestID>..</RequestID></Response>

(or a canned success body). Every request is counted per action, and its parameters kept
(``requests``), so tests assert what reached "EC2", call by call.

    async with EC2Proxy(moto_url) as proxy:
        proxy.fail("RunInstances", 500, "InsufficientInstanceCapacity", "...",
                   where={"SubnetId": subnet})
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

Match = Mapping[str, str] | Callable[[dict[str, str]], bool]


def error_body(code: str, message: str, request_id: str | None = None) -> str:
    """EC2's error document, as its Query API sends it."""
    rid = request_id or str(uuid.uuid4())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{rid}</RequestID></Response>"
    )


@dataclass
class Fault:
    action: str
    status: int
    body: str
    where: Match = field(default_factory=dict)
    times: int | None = None  # None: every matching request
    hits: int = 0

    def matches(self, action: str, params: dict[str, str]) -> bool:
        if action != self.action or (self.times is not None and self.hits >= self.times):
            return False
        if callable(self.where):
            return bool(self.where(params))
        return all(params.get(k) == v for k, v in self.where.items())


class EC2Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()  # every request that reached the proxy
        self.requests: list[tuple[str, dict[str, str], int]] = []  # action, params, status
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- faults ----------------------------------------------------------------------

    def fail(
        self,
        action: str,
        status: int,
        code: str,
        message: str,
        *,
        where: Match | None = None,
        times: int | None = None,
    ) -> Fault:
        """Answer ``action`` requests matching ``where`` with EC2's error ``code``."""
        fault = Fault(action, status, error_body(code, message), where or {}, times)
        self.faults.append(fault)
        return fault

    def answer(self, action: str, body: str, *, where: Match | None = None) -> Fault:
        """Answer ``action`` with a canned 200 body (an EC2 XML response)."""
        fault = Fault(action, 200, body, where or {})
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def of(self, action: str) -> list[dict[str, str]]:
        """The parameters of every ``action`` request so far, in order."""
        return [p for a, p, _ in self.requests if a == action]

    # -- serving ---------------------------------------------------------------------

    async def __aenter__(self) -> EC2Proxy:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        params = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        params.update(request.query)
        action = params.get("Action", "")
        self.calls[action] += 1
        for fault in self.faults:
            if fault.matches(action, params):
                fault.hits += 1
                self.requests.append((action, params, fault.status))
                return web.Response(status=fault.status, text=fault.body, content_type="text/xml")
        assert self._http is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with self._http.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as up:
            data = await up.read()
            self.requests.append((action, params, up.status))
            out_headers: dict[str, Any] = {
                k: v
                for k, v in up.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=up.status, body=data, headers=out_headers)
