"""Watching EC2's instance metadata (IMDSv2) for the end of a spot instance.

Two signals: the *interruption notice* (`spot/instance-action`: EC2 will stop or
terminate the machine in about two minutes) and the *rebalance recommendation*
(`events/recommendations/rebalance`: the machine is at elevated risk). The notice ends
the running attempt as `interrupted` (reason `spot_interruption`), so the retry policy,
not a test failure, decides what follows; a rebalance recommendation is reported in the
log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.agent.httpclient import TRANSPORT_ERRORS, Http, HTTPStatusError

log = logging.getLogger("ployd.agent.imds")

DEFAULT_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600
TIMEOUT_S = 300.0  # per request (what the aiohttp client it replaces allowed by default)

# A look that did not work: logged, and tried again after the interval.
_UNREACHABLE: tuple[type[BaseException], ...] = (HTTPStatusError, *TRANSPORT_ERRORS)


class SpotWatcher:
    """Polls IMDSv2 every ``interval`` seconds; ``on_notice`` is called once when the
    interruption notice appears, ``on_rebalance`` once for a rebalance recommendation."""

    def __init__(
        self,
        http: Http,
        base_url: str = DEFAULT_URL,
        *,
        interval: float = 2.0,
        on_notice: Callable[[str], Awaitable[None]],
        on_rebalance: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.interval = interval
        self.on_notice = on_notice
        self.on_rebalance = on_rebalance
        self._token: str | None = None
        self.noticed = False
        self.rebalance = False

    async def _get(self, path: str) -> str | None:
        """The metadata at ``path`` (None: 404, not there)."""
        for _ in range(2):
            if self._token is None:
                r = await self.http.request(
                    "PUT",
                    f"{self.base_url}/latest/api/token",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
                    timeout=TIMEOUT_S,
                )
                r.raise_for_status()
                self._token = r.text()
            r = await self.http.request(
                "GET",
                f"{self.base_url}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": self._token},
                timeout=TIMEOUT_S,
            )
            if r.status == 401:  # the token expired: get a new one
                self._token = None
                continue
            if r.status == 404:
                return None
            r.raise_for_status()
            return r.text()
        return None

    async def check(self) -> None:
        """One look at the metadata."""
        if not self.noticed:
            notice = await self._get("spot/instance-action")
            if notice is not None:
                self.noticed = True
                await self.on_notice(notice)
        if not self.rebalance and self.on_rebalance is not None:
            advice = await self._get("events/recommendations/rebalance")
            if advice is not None:
                self.rebalance = True
                await self.on_rebalance(advice)

    async def run(self) -> None:
        while not self.noticed:
            try:
                await self.check()
            except _UNREACHABLE as e:
                log.warning("instance metadata not reachable: %s", e)
            await asyncio.sleep(self.interval)  # the polling period, not a wait on an event
