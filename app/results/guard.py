"""The notifier's HTTP connections go only where ``app.core.netguard`` lets them: the
address checked is the address connected to.

- An IP-literal host is checked from the URL (``check_url``, before any connection);
  one an HTTP client could read another way (``127.1``, ``2130706433``) is refused.
- A name is resolved by ``GuardedResolver``: if any of its addresses is refused, the name
  is (a name that resolves to 10.0.0.5 today and to a public address tomorrow is no
  safer), and aiohttp connects only to the addresses it returned: no second lookup, so
  no DNS-rebinding gap.
- Where aiohttp takes a socket factory (3.12+), every socket's destination is checked
  once more just before it is connected, whatever path led there.

Redirects are not followed (``allow_redirects=False`` in ``app.results.channels``), and
the session reads no proxy settings from the environment."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from app.core.netguard import Network, first_refusal, host_refusal, refusal


class RefusedDestination(OSError):
    """A connection PloyD will not make (its text says why, naming the setting)."""


class GuardedResolver(AbstractResolver):
    def __init__(self, allow: Sequence[Network], inner: AbstractResolver | None = None) -> None:
        self.allow = tuple(allow)
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        why = first_refusal((str(r["host"]) for r in found), self.allow, host)
        if why is not None:
            raise RefusedDestination(why)
        return found

    async def close(self) -> None:
        await self.inner.close()


def _socket_factory(allow: Sequence[Network]) -> Callable[[Any], socket.socket]:
    def make(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        why = refusal(str(sockaddr[0]), allow)
        if why is not None:
            raise RefusedDestination(why)
        return socket.socket(family=family, type=type_, proto=proto)

    return make


SOCKET_FACTORY = "socket_factory" in inspect.signature(aiohttp.TCPConnector).parameters


def connector(allow: Sequence[Network]) -> aiohttp.TCPConnector:
    """A connector that connects only where ``allow`` (and the public internet) lets it."""
    extra: dict[str, Any] = {}
    if SOCKET_FACTORY:
        extra["socket_factory"] = _socket_factory(allow)
    return aiohttp.TCPConnector(resolver=GuardedResolver(allow), **extra)


def session(allow: Sequence[Network]) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=connector(allow), trust_env=False)


def check_url(url: str, allow: Sequence[Network]) -> str | None:
    """Why ``url``'s IP-literal host is refused (None: a name, or an allowed address)."""
    try:
        host = URL(url).raw_host
    except ValueError:
        return None  # aiohttp refuses it too, as an invalid URL
    return host_refusal(host, allow) if host else None


def refusal_in(exc: BaseException) -> str | None:
    """The reason, when ``exc`` (or what caused it) is a refused destination."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, RefusedDestination):
            return str(seen)
        nxt = getattr(seen, "os_error", None)
        seen = nxt if isinstance(nxt, BaseException) else (seen.__cause__ or seen.__context__)
    return None
