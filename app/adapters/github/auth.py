"""GitHub App authentication: the app's JWT, and installation tokens cached until near expiry.

The only I/O, fetching a token (``POST /app/installations/{id}/access_tokens``), is a
function passed in, so this module is tested without a network and with a fake clock.
Tokens are secrets: they never appear in ``repr`` or logs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt

Clock = Callable[[], float]
# (installation_id, app_jwt) -> GitHub's JSON answer: {"token": ..., "expires_at": ...}
TokenFetcher = Callable[[int, str], Awaitable[dict[str, Any]]]

JWT_BACKDATE = 60  # GitHub's advice: iat 60 s in the past, against clock drift
JWT_LIFETIME = 540  # 9 minutes after now; GitHub refuses more than 10
REFRESH_MARGIN = 300.0  # renew an installation token 5 minutes before it expires


def make_app_jwt(app_id: int | str, private_key_pem: str, *, now: float) -> str:
    """The RS256 JWT that authenticates as the app itself (``Authorization: Bearer``)."""
    issued = int(now)
    payload = {"iat": issued - JWT_BACKDATE, "exp": issued + JWT_LIFETIME, "iss": str(app_id)}
    return jwt.encode(payload, private_key_pem, algorithm="RS256")


def parse_expires_at(value: str) -> float:
    """GitHub's ``expires_at`` ("2016-07-11T22:14:10Z") as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class InstallationToken:
    token: str = field(repr=False)
    expires_at: float

    def fresh(self, now: float, margin: float = REFRESH_MARGIN) -> bool:
        return now < self.expires_at - margin


class AppAuth:
    """Credentials of one GitHub App: its JWT, and a token cache per installation.

    Concurrent callers asking for the same installation share a single fetch.
    """

    def __init__(
        self,
        app_id: int | str,
        private_key_pem: str,
        fetch: TokenFetcher,
        *,
        clock: Clock = time.time,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.app_id = app_id
        self._key = private_key_pem
        self._fetch = fetch
        self._clock = clock
        self._margin = refresh_margin
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.fetches = 0  # how many tokens were requested from GitHub

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r}, installations={sorted(self._tokens)})"

    def app_jwt(self) -> str:
        """A fresh app JWT (cheap: a signature; made per request, never cached stale)."""
        return make_app_jwt(self.app_id, self._key, now=self._clock())

    async def installation_token(self, installation_id: int) -> str:
        """A token for ``installation_id`` valid for at least ``refresh_margin`` seconds."""
        cached = self._tokens.get(installation_id)
        if cached and cached.fresh(self._clock(), self._margin):
            return cached.token
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)  # another caller may have fetched it
            if cached and cached.fresh(self._clock(), self._margin):
                return cached.token
            answer = await self._fetch(installation_id, self.app_jwt())
            self.fetches += 1
            token = InstallationToken(answer["token"], parse_expires_at(answer["expires_at"]))
            self._tokens[installation_id] = token
            return token.token

    def invalidate(self, installation_id: int) -> None:
        """Forget the cached token (GitHub said 401: revoked, or the clocks disagree)."""
        self._tokens.pop(installation_id, None)
