"""The agent's HTTP on the standard library (app/agent/httpclient.py) against a real
loopback server: what is retried (connection refused, 5xx, timeouts), what is not (the
claim, the heartbeat, 4xx, answers that are not the protocol's), keep-alive connection
reuse, cancellation, and streaming transfers."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.agent import client as client_module
from app.agent import httpclient
from app.agent.client import AgentClient, AttemptGone, BadAnswer, ServerError, Unavailable
from app.agent.httpclient import Http
from app.agent.transfer import Mover, TransferError
from app.protocol import FinishReport, LogChunk

TOKEN = "job-token"
LOG = "/api/v1/agent/attempts/1/log"


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Loopback:
    """An aiohttp app whose answers the test scripts; it counts the calls and the
    connections they came on."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.calls: dict[str, int] = {}
        self.peers: list[tuple[str, int]] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""

    def script(self, path: str, *answers: Answer) -> None:
        self.answers[path] = list(answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.calls[path] = self.calls.get(path, 0) + 1
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[:2])
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.bodies.append(await request.read())
        queue = self.answers.get(path, [])
        answer = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else None)
        if answer is None:
            return web.json_response({"cancel": False})
        return await answer(request)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def status(code: int, text: str = "") -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=text)

    return answer


def json_answer(body: Any) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    return answer


def hang(seconds: float) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"cancel": False})

    return answer


@pytest.fixture
async def loop_server(aiohttp_server: Any) -> AsyncIterator[Loopback]:
    lb = Loopback()
    server = await aiohttp_server(lb.app())
    lb.url = str(server.make_url("")).rstrip("/")
    yield lb


class _Asyncio:
    """``asyncio`` as app.agent.client sees it, with ``sleep`` replaced."""

    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays the client waited between tries (it still waits them)."""
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)
        await asyncio.sleep(delay)

    monkeypatch.setattr(client_module, "asyncio", _Asyncio(sleep))
    return waited


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    h = Http()
    yield h
    h.close()


def client_for(url: str, http: Http, backoff_s: float = 0.01, **kw: Any) -> AgentClient:
    return AgentClient(url, "agent-token", http=http, backoff_s=backoff_s, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- retries ---------------------------------------------------------------------------


async def test_connection_refused_is_retried_with_backoff_then_unavailable(
    http: Http, sleeps: list[float]
) -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}", http, retries=3)
    with pytest.raises(Unavailable) as e:
        await client.log(1, TOKEN, LogChunk(0, "x"))
    assert sleeps == [0.01, 0.02, 0.04]
    assert isinstance(e.value.__cause__, ConnectionRefusedError)


async def test_a_server_that_comes_back_gets_the_call(
    http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused first; the server is up by the retry: the chunk arrives once."""
    port = free_port()
    lb = Loopback()
    servers: list[TestServer] = []

    async def sleep(delay: float) -> None:
        if not servers:
            servers.append(TestServer(lb.app(), host="127.0.0.1", port=port))
            await servers[0].start_server()
        await asyncio.sleep(delay)

    monkeypatch.setattr(client_module, "asyncio", _Asyncio(sleep))
    try:
        assert await client_for(f"http://127.0.0.1:{port}", http).log(
            1, TOKEN, LogChunk(0, "x")
        ) is False
        assert lb.calls == {LOG: 1}
    finally:
        for s in servers:
            await s.close()


async def test_5xx_is_retried_until_it_goes_through(
    loop_server: Loopback, http: Http, sleeps: list[float]
) -> None:
    loop_server.script(LOG, status(500), status(503), json_answer({"cancel": True}))
    assert await client_for(loop_server.url, http).log(1, TOKEN, LogChunk(0, "x")) is True
    assert loop_server.calls == {LOG: 3}
    assert sleeps == [0.01, 0.02]
    assert loop_server.bodies == [b'{"seq": 0, "data": "x"}'] * 3


async def test_5xx_every_time_is_unavailable_after_the_retries(
    loop_server: Loopback, http: Http, sleeps: list[float]
) -> None:
    finish = "/api/v1/agent/attempts/1/finish"
    loop_server.script(finish, status(502, "bad gateway"))
    with pytest.raises(Unavailable) as e:
        client = client_for(loop_server.url, http, backoff_s=0.001)
        await client.finish(1, TOKEN, FinishReport(result="succeeded"))
    assert loop_server.calls == {finish: 9}  # finish: 8 retries
    assert sleeps == [0.001 * 2**i for i in range(8)]
    cause = e.value.__cause__
    assert isinstance(cause, ServerError) and cause.status == 502


async def test_claim_and_heartbeat_are_not_retried(
    loop_server: Loopback, http: Http, sleeps: list[float]
) -> None:
    client = client_for(loop_server.url, http)
    loop_server.script("/api/v1/agent/claim", status(503))
    with pytest.raises(ServerError) as e:
        await client.claim("a-1", 0)
    assert e.value.status == 503
    beat = "/api/v1/agent/attempts/1/heartbeat"
    loop_server.script(beat, status(500))
    with pytest.raises(ServerError):
        await client.heartbeat(1, TOKEN, 0)
    assert loop_server.calls == {"/api/v1/agent/claim": 1, beat: 1}
    assert sleeps == []


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (status(200, "not json"), BadAnswer, 200),
        (status(200, ""), BadAnswer, 200),  # no body: not an answer
        (json_answer({"cancel": "yes"}), BadAnswer, 200),
        (json_answer([1, 2]), BadAnswer, 200),
        (status(400, "bad seq"), BadAnswer, 400),
        (status(302), BadAnswer, 302),
        (status(401), AttemptGone, 401),
        (status(403), AttemptGone, 403),
        (status(409), AttemptGone, 409),
    ],
)
async def test_answers_outside_the_protocol_are_not_retried(
    loop_server: Loopback,
    http: Http,
    sleeps: list[float],
    answer: Answer,
    error: type[BadAnswer],
    code: int,
) -> None:
    loop_server.script(LOG, answer)
    with pytest.raises(error) as e:
        await client_for(loop_server.url, http).log(1, TOKEN, LogChunk(0, "x"))
    assert type(e.value) is error and e.value.status == code
    assert loop_server.calls == {LOG: 1}
    assert sleeps == []


async def test_a_malformed_claim_answer_is_a_bad_answer(
    loop_server: Loopback, http: Http
) -> None:
    loop_server.script("/api/v1/agent/claim", json_answer({"attempt_id": 1}))
    with pytest.raises(BadAnswer, match="claim answer"):
        await client_for(loop_server.url, http).claim("a-1", 0)
    loop_server.script("/api/v1/agent/claim", status(204))
    assert await client_for(loop_server.url, http).claim("a-1", 0) is None


async def test_a_timeout_is_retried(
    loop_server: Loopback, http: Http, sleeps: list[float]
) -> None:
    loop_server.script(LOG, hang(5), json_answer({"cancel": False}))
    started = time.monotonic()
    client = client_for(loop_server.url, http)
    assert await client._post_retry("/attempts/1/log", TOKEN, {"seq": 0, "data": "x"},
                                    timeout_s=0.3) == (200, {"cancel": False})
    assert time.monotonic() - started < 3
    assert loop_server.calls == {LOG: 2} and sleeps == [0.01]


# ---- connections -----------------------------------------------------------------------


async def test_calls_reuse_one_kept_alive_connection(loop_server: Loopback, http: Http) -> None:
    client = client_for(loop_server.url, http)
    for seq in range(20):
        await client.log(1, TOKEN, LogChunk(seq, "x"))
    assert len(loop_server.peers) == 20 and len(set(loop_server.peers)) == 1


async def test_a_connection_the_server_closed_while_idle_is_not_an_error(
    aiohttp_server: Any, http: Http, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    lb = Loopback()
    server = await aiohttp_server(lb.app(), keepalive_timeout=0.05)
    client = client_for(str(server.make_url("")).rstrip("/"), http)
    await client.log(1, TOKEN, LogChunk(0, "x"))
    await asyncio.sleep(0.3)  # the server closes the idle connection
    await client.log(1, TOKEN, LogChunk(1, "x"))  # seen closed: a new one
    # Not seen (the close races the reuse): the request fails on the old connection
    # and goes once more on a new one, without a backoff.
    await asyncio.sleep(0.3)
    monkeypatch.setattr(httpclient, "_dropped", lambda sock: False)
    await client.log(1, TOKEN, LogChunk(2, "x"))
    assert lb.calls == {LOG: 3} and len(set(lb.peers)) == 3
    assert sleeps == []


async def test_a_cancelled_call_ends_its_exchange_and_connection(
    loop_server: Loopback, http: Http
) -> None:
    beat = "/api/v1/agent/attempts/1/heartbeat"
    loop_server.script(beat, hang(30))
    task = asyncio.create_task(client_for(loop_server.url, http).heartbeat(1, TOKEN, 10))
    while loop_server.calls.get(beat, 0) == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 2
    while http.workers.busy and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert http.workers.busy == 0  # its socket was shut down: the exchange ended at once
    assert not any(http._idle.values())  # and the connection is not reused


async def test_workers_are_reused_and_end_when_idle(loop_server: Loopback) -> None:
    http = Http()
    http.workers.idle_s = 0.2
    http.workers.name = "test-workers"

    def workers() -> int:
        return sum(t.name == "test-workers" for t in threading.enumerate())

    client = client_for(loop_server.url, http)
    for seq in range(10):
        await client.log(1, TOKEN, LogChunk(seq, "x"))
    assert workers() == 1  # one call at a time: one worker
    await asyncio.gather(*(client.log(1, TOKEN, LogChunk(seq, "x")) for seq in range(3)))
    assert 1 <= workers() <= 3
    deadline = time.monotonic() + 3
    while workers() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert workers() == 0
    http.workers.idle_s = 30
    await client.log(1, TOKEN, LogChunk(0, "x"))
    assert workers() == 1
    http.close()  # ends the idle workers now
    deadline = time.monotonic() + 3
    while workers() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert workers() == 0
    assert await client.log(1, TOKEN, LogChunk(0, "x")) is False  # closed still works


# ---- transfers -------------------------------------------------------------------------


async def test_uploads_and_downloads_stream_with_their_length(
    loop_server: Loopback, http: Http, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (12 << 12)  # 12 MiB
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    client = client_for(loop_server.url, http)
    mover = Mover(client, TOKEN)
    await mover.put({"url": "/store/big", "auth": True}, src, len(data))
    assert loop_server.bodies[-1] == data
    sent = loop_server.headers[-1]
    assert sent["content-length"] == str(len(data)) and "transfer-encoding" not in sent
    assert sent["authorization"] == f"Bearer {TOKEN}"
    assert sent["content-type"] == "application/octet-stream"

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data)

    loop_server.script("/store/big", serve)
    digest = await mover.get({"url": "/store/big", "auth": True}, tmp_path / "back.bin")
    assert digest == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "back.bin").read_bytes() == data


async def test_a_download_follows_redirects_and_keeps_the_token_home(
    aiohttp_server: Any, http: Http, tmp_path: Path
) -> None:
    home, away = Loopback(), Loopback()
    home_server = await aiohttp_server(home.app())
    away_server = await aiohttp_server(away.app())

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(str(away_server.make_url("/blob")))

    async def blob(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"blob")

    home.script("/cache/1", redirect)
    away.script("/blob", blob)
    client = client_for(str(home_server.make_url("")).rstrip("/"), http)
    digest = await Mover(client, TOKEN).get({"url": "/cache/1", "auth": True}, tmp_path / "b")
    assert digest == hashlib.sha256(b"blob").hexdigest()
    assert home.headers[0]["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in away.headers[0]


async def test_transfer_retries_5xx_and_refuses_4xx(
    loop_server: Loopback, http: Http, tmp_path: Path
) -> None:
    src = tmp_path / "report.html"
    src.write_bytes(b"abc")
    mover = Mover(client_for(loop_server.url, http), TOKEN)
    loop_server.script("/s/1", status(500), status(200))
    await mover.put({"url": f"{loop_server.url}/s/1"}, src, 3)
    assert loop_server.calls["/s/1"] == 2
    assert "authorization" not in loop_server.headers[-1]  # a presigned URL: no token
    assert loop_server.headers[-1]["content-type"] == "text/html"  # guessed from the name
    loop_server.script("/s/2", status(403, "expired"))
    with pytest.raises(TransferError, match="upload refused: HTTP 403: expired"):
        await mover.put({"url": f"{loop_server.url}/s/2"}, src, 3)
    with pytest.raises(TransferError, match="download refused: HTTP 403: expired"):
        await mover.get({"url": f"{loop_server.url}/s/2"}, tmp_path / "g")
    assert not (tmp_path / "g").exists()
    with pytest.raises(TransferError, match="foreign URL"):
        await mover.get({"url": f"{loop_server.url}/s/2", "auth": True}, tmp_path / "g")
