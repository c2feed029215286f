"""HTTP/1.1 for the agent on the standard library alone.

``http.client`` connections are kept alive in a small pool per origin (a job's log
chunks and step reports reuse one connection to the server instead of connecting for
each), and each exchange runs in a worker thread, so the event loop never blocks on the
network. Cancelling a call, or its ``timeout`` passing, shuts the connection's socket
down, which ends the blocked exchange at once; such a connection is never reused. The
workers are daemon threads, reused from call to call (starting a thread per call costs
more than the call on a loaded machine): one stuck connecting somewhere cannot hold up
the agent's exit.

Request bodies may be files (streamed, never read whole into memory); a ``read``
callback given to ``Http.call`` consumes the answer in the thread, so downloads stream
to disk the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from app.agent.compat import ASYNC_TIMEOUT

T = TypeVar("T")

CHUNK = 1 << 20  # the block size files are sent in
USER_AGENT = "ployd-agent"

# What a call raises when the other end cannot be reached, hangs up, answers something
# that is not HTTP (or the URL is not one), or does not answer within the timeout.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    http.client.HTTPException,
    *ASYNC_TIMEOUT,
)

# How a kept-alive connection that the other end closed while it sat idle fails on reuse.
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

class HTTPStatusError(Exception):
    """An answer whose HTTP status the caller does not take; ``status`` says which."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:500]}")
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Response:
    """A whole answer: status, headers (names in lower case) and body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def raise_for_status(self) -> None:
        """``HTTPStatusError`` for a status of 400 or more."""
        if self.status >= 400:
            raise HTTPStatusError(self.status, self.text())


def read_all(resp: http.client.HTTPResponse) -> Response:
    """The default ``read``: the answer, body and all."""
    body = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    return Response(resp.status, resp.reason, headers, body)


def split_url(url: str) -> tuple[tuple[str, str, int], str]:
    """(origin as (scheme, host, port), request target: path and query) of a URL;
    ``http.client.InvalidURL`` when it is not an http(s) one."""
    u = urlsplit(url)
    scheme = u.scheme.lower()
    if scheme not in ("http", "https") or not u.hostname:
        raise http.client.InvalidURL(f"not an http(s) URL: {url!r}")
    try:
        port = u.port
    except ValueError as e:
        raise http.client.InvalidURL(f"bad port in {url!r}") from e
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    return (scheme, u.hostname, port or (443 if scheme == "https" else 80)), target


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket was closed by the other end: it reads as ready
    (an end of file, or bytes nobody asked for)."""
    try:
        if hasattr(select, "poll"):
            p = select.poll()
            p.register(sock, select.POLLIN)
            return bool(p.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class Workers:
    """Daemon threads that run blocking calls for an event loop. A call finds an idle
    worker or starts one; a worker idle for ``idle_s`` ends."""

    def __init__(self, idle_s: float = 60.0, name: str = "ployd-agent-http") -> None:
        self.idle_s = idle_s
        self.name = name
        self._jobs: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job that no queued job is promised to
        self._closed = False
        self.busy = 0  # calls running now

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` in a worker; its outcome settles the future on this loop (unless
        the future was cancelled first: then it is dropped)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
            self.busy += 1
        self._jobs.put((loop, fut, fn))
        if start:
            threading.Thread(target=self._work, name=self.name, daemon=True).start()
        return fut

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no job is on its way to this worker: end
                        self._idle -= 1
                        return
                continue
            if job is None:  # closed
                return
            loop, fut, fn = job
            value: Any = None
            error: BaseException | None = None
            try:
                value = fn()
            except BaseException as e:
                error = e
            with self._lock:
                self.busy -= 1
                closed = self._closed
                if not closed:
                    self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, fut, value, error)
            if closed:
                return
            del job, fut, fn, value, error

    def close(self) -> None:
        """End the idle workers, and the busy ones after their call (a call made after
        this still runs, in a worker of its own)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


class _Exchange:
    """One request on one connection; the event loop may abort it from its own thread."""

    def __init__(self, conn: http.client.HTTPConnection, reused: bool) -> None:
        self.conn = conn
        self.reused = reused
        self.aborted = False
        self.settled = False  # the connection went back to the pool, or was closed
        self.lock = threading.Lock()

    def abort(self) -> None:
        """Wake the thread blocked on this connection: shut its socket down."""
        with self.lock:
            if self.settled:
                return
            self.aborted = True
            sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        with self.lock:
            if self.aborted:
                raise ConnectionAbortedError("the call was cancelled")

    def settle(self) -> bool:
        """Mark the exchange over; whether the connection may be kept."""
        with self.lock:
            self.settled = True
            return not self.aborted


class Http:
    """A pool of kept-alive connections and the calls made over them."""

    def __init__(
        self,
        *,
        max_idle: int = 4,
        blocksize: int = CHUNK,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_idle = max_idle  # idle connections kept per origin
        self.blocksize = blocksize
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.workers = Workers()

    def _connection(self, origin: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to ``origin`` that is still open, or a new one; whether
        it was reused."""
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                kept = idle.pop()
                if kept.sock is not None and not _dropped(kept.sock):
                    return kept, True
                kept.close()
        scheme, host, port = origin
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, context=self._ssl, blocksize=self.blocksize
            )
        else:
            conn = http.client.HTTPConnection(host, port, blocksize=self.blocksize)
        return conn, False

    def _release(self, origin: tuple[str, str, int], ex: _Exchange) -> None:
        conn = ex.conn
        if ex.settle() and conn.sock is not None:
            with self._lock:
                idle = self._idle.setdefault(origin, [])
                if not self._closed and len(idle) < self.max_idle:
                    idle.append(conn)
                    return
        conn.close()

    def _exchange(
        self,
        origin: tuple[str, str, int],
        ex: _Exchange,
        method: str,
        target: str,
        body: bytes | BinaryIO | None,
        headers: Mapping[str, str],
        timeout: float | None,
        read: Callable[[http.client.HTTPResponse], T],
    ) -> T:
        """In the worker thread: send the request, hand the answer to ``read``."""
        conn = ex.conn
        conn.timeout = timeout
        stream = None if body is None or isinstance(body, bytes) else body
        rewind = stream.tell() if stream is not None else 0
        try:
            while True:
                ex.check()
                try:
                    if conn.sock is None:
                        conn.connect()
                        ex.check()
                    else:
                        conn.sock.settimeout(timeout)
                    conn.request(method, target, body=body, headers=dict(headers))
                    resp = conn.getresponse()
                    break
                except _STALE:  # http.client.RemoteDisconnected is a ConnectionResetError
                    if not ex.reused or ex.aborted:
                        raise
                    # Kept alive, but closed by the server meanwhile: once more, anew.
                    conn.close()
                    ex.reused = False
                    if stream is not None:
                        stream.seek(rewind)
            result = read(resp)
            if not resp.isclosed():  # ``read`` left part of the body: not reusable
                conn.close()
        except BaseException:
            ex.settle()
            conn.close()
            raise
        self._release(origin, ex)
        return result

    async def call(
        self,
        method: str,
        url: str,
        read: Callable[[http.client.HTTPResponse], T],
        *,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> T:
        """One request; ``read`` (run in the worker thread) makes the result from the
        answer. ``timeout`` bounds the whole exchange (None: no bound). Raises one of
        ``TRANSPORT_ERRORS`` when there is no answer."""
        origin, target = split_url(url)
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        conn, reused = self._connection(origin)
        ex = _Exchange(conn, reused)
        fut = self.workers.run(
            lambda: self._exchange(origin, ex, method, target, body, all_headers, timeout, read)
        )
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except BaseException:  # cancelled, timed out, or the exchange failed
            ex.abort()
            raise

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request; the whole answer, whatever its status."""
        return await self.call(method, url, read_all, body=body, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the idle connections and end the idle workers; those in use end when
        their call does."""
        with self._lock:
            self._closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()
        self.workers.close()
