"""gidgethub's aiohttp adapter with PloyD's retries and counters, at its one I/O point.

gidgethub keeps every HTTP call in ``_request`` and every wait in ``sleep``; this subclass
wraps ``_request`` with the retry policy of ``retry.py`` (5xx, network errors, rate
limits) and routes ``sleep`` to an injected function, so tests never really wait.
Request headers carry tokens: they are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import gidgethub.aiohttp

from app.adapters.github.errors import GitHubRateLimited, GitHubUnavailable
from app.adapters.github.retry import RetryPolicy, rate_limit_wait, retry_delay

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class ClientMetrics:
    """A tiny tally per client (exported as metrics later)."""

    calls: int = 0  # HTTP attempts, retries included
    errors: int = 0  # attempts answered >= 400 or failed on the network
    retries: int = 0
    rate_limited: int = 0  # attempts answered with a rate limit
    rate_limit_remaining: int | None = None  # from the last x-ratelimit-remaining


def _message(body: bytes) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else ""


class RetryingGitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """``gidgethub.aiohttp.GitHubAPI`` that retries transient failures within bounds."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        requester: str,
        *,
        base_url: str,
        policy: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        metrics: ClientMetrics | None = None,
    ) -> None:
        super().__init__(session, requester, base_url=base_url)
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self.metrics = metrics or ClientMetrics()

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        where = urlsplit(url).path  # no query string, no headers: nothing secret
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            self.metrics.calls += 1
            try:
                status, resp_headers, data = await super()._request(method, url, headers, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.metrics.errors += 1
                delay = self.policy.pause(attempt)
                if self.policy.exhausted(attempt, waited, delay):
                    raise GitHubUnavailable(
                        0, f"{type(exc).__name__}: {exc}", method=method, url=where
                    ) from exc
                log.warning("github %s %s: %s; retry in %.1fs", method, where, exc, delay)
            else:
                self._count(status, resp_headers, data)
                wait = retry_delay(
                    self.policy, attempt, waited, status, resp_headers, data, self._clock()
                )
                if wait is None:
                    self._give_up_if_throttled(method, where, status, resp_headers, data)
                    return status, resp_headers, data
                delay = wait
                log.warning("github %s %s: %d; retry in %.1fs", method, where, status, delay)
            self.metrics.retries += 1
            waited += delay
            await self.sleep(delay)

    def _count(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        if status >= 400:
            self.metrics.errors += 1
            if rate_limit_wait(status, headers, data, self._clock()) is not None:
                self.metrics.rate_limited += 1
        remaining = headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.isdigit():
            self.metrics.rate_limit_remaining = int(remaining)

    def _give_up_if_throttled(
        self, method: str, where: str, status: int, headers: Mapping[str, str], data: bytes
    ) -> None:
        """Out of budget: raise a typed error for rate limits and 5xx (gidgethub's are vaguer)."""
        wait = rate_limit_wait(status, headers, data, self._clock())
        if wait is not None:
            raise GitHubRateLimited(
                status, _message(data), method=method, url=where, retry_after=wait
            )
        if status >= 500:
            raise GitHubUnavailable(status, _message(data), method=method, url=where)
