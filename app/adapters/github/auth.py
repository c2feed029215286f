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
from cryptography.hazmat.primitives.serialization import load_pem_private_key

Clock = Callable[[], float]
# (installation_id, app_jwt) -> GitHub's JSON answer: {"token": ..., "expires_at": ...}
TokenFetcher = Callable[[int, str], Awaitable[dict[str, Any]]]

JWT_BACKDATE = 60  # GitHub's advice: iat 60 s in the past, against clock drift
JWT_LIFETIME = 540  # 9 minutes after now; GitHub refuses more than 10
REFRESH_MARGIN = 300.0  # renew an installation token 5 minutes before it expires
JWT_REUSE = 60.0  # one signed JWT serves every call for a minute (8+ minutes left on it)
FAILURE_BACKOFF = (1.0, 2.0, 5.0, 15.0, 60.0)  # after 1, 2, ... failed token fetches


def make_app_jwt(app_id: int | str, private_key: Any, *, now: float) -> str:
    """The RS256 JWT that authenticates as the app itself (``Authorization: Bearer``).
    ``private_key``: the PEM text, or (cheaper) the key already parsed."""
    issued = int(now)
    payload = {"iat": issued - JWT_BACKDATE, "exp": issued + JWT_LIFETIME, "iss": str(app_id)}
    return jwt.encode(payload, private_key, algorithm="RS256")


def parse_expires_at(value: str) -> float:
    """GitHub's ``expires_at`` ("2016-07-11T22:14:10Z") as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class InstallationToken:
    token: str = field(repr=False)
    expires_at: float

    def fresh(self, now: float, margin: float = REFRESH_MARGIN) -> bool:
        return now < self.expires_at - margin


@dataclass
class _Failure:
    error: BaseException
    count: int
    until: float  # no new fetch before this (clock seconds)


class AppAuth:
    """Credentials of one GitHub App: its JWT, and a token cache per installation.

    The App's RSA key is parsed once, and a signed JWT is reused for ``JWT_REUSE``
    seconds. Concurrent callers asking for the same installation share a single fetch.
    A failed fetch (an unknown installation, GitHub down) is remembered: until its
    backoff (``FAILURE_BACKOFF``, growing with each failure in a row) has passed, asking
    for that installation's token raises the same error again without calling GitHub.
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
        self._key: Any = load_pem_private_key(private_key_pem.encode(), password=None)
        self._jwt: tuple[float, str] | None = None  # (signed at, JWT)
        self._failures: dict[int, _Failure] = {}
        self._fetch = fetch
        self._clock = clock
        self._margin = refresh_margin
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.fetches = 0  # how many tokens were requested from GitHub

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r}, installations={sorted(self._tokens)})"

    def app_jwt(self) -> str:
        """An app JWT valid for 8 minutes at least (signed anew once a minute)."""
        now = self._clock()
        if self._jwt is not None and 0 <= now - self._jwt[0] < JWT_REUSE:
            return self._jwt[1]
        token = make_app_jwt(self.app_id, self._key, now=now)
        self._jwt = (now, token)
        return token

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
            self.check_backoff(installation_id)
            self.fetches += 1
            try:
                answer = await self._fetch(installation_id, self.app_jwt())
                token = InstallationToken(answer["token"], parse_expires_at(answer["expires_at"]))
            except Exception as e:
                self.failed(installation_id, e)
                raise
            self.succeeded(installation_id)
            self._tokens[installation_id] = token
            return token.token

    def check_backoff(self, installation_id: int) -> None:
        """Raise the last error of a token fetch for ``installation_id`` while its
        backoff lasts (else nothing)."""
        failed = self._failures.get(installation_id)
        if failed is not None and self._clock() < failed.until:
            raise failed.error.with_traceback(None)

    def failed(self, installation_id: int, error: BaseException) -> None:
        """A token fetch for ``installation_id`` failed: back off before the next."""
        before = self._failures.get(installation_id)
        count = before.count + 1 if before is not None else 1
        wait = FAILURE_BACKOFF[min(count, len(FAILURE_BACKOFF)) - 1]
        self._failures[installation_id] = _Failure(error, count, self._clock() + wait)

    def succeeded(self, installation_id: int) -> None:
        self._failures.pop(installation_id, None)

    def invalidate(self, installation_id: int) -> None:
        """Forget the cached token (GitHub said 401: revoked, or the clocks disagree)."""
        self._tokens.pop(installation_id, None)
