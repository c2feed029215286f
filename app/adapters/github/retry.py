"""When to retry a GitHub call, and after how long: pure functions, no I/O.

GitHub's guidance (docs: "Rate limits for the REST API", "Best practices"):

* a ``retry-after`` header on 403/429 means "wait that many seconds";
* ``x-ratelimit-remaining: 0`` on 403/429 means "wait until ``x-ratelimit-reset``" (epoch s);
* a secondary-rate-limit 403 with neither header means "wait at least one minute";
* 5xx and network failures are transient: back off exponentially.

Everything else (400, 401, 404, 422, a plain 403) is the caller's problem: no retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.adapters.backoff import Backoff

SECONDARY_LIMIT_DEFAULT_WAIT = 60.0


@dataclass(frozen=True)
class RetryPolicy(Backoff):
    """GitHub's retries: 1, 2, 4 ... s between tries (rate limits wait as GitHub says)."""

    first: float = 1.0


def rate_limit_wait(
    status: int, headers: Mapping[str, str], body: bytes, now: float
) -> float | None:
    """The seconds GitHub asks us to wait, or None when this is not a rate limit."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return SECONDARY_LIMIT_DEFAULT_WAIT
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(headers.get("x-ratelimit-reset", ""))
        except ValueError:
            return SECONDARY_LIMIT_DEFAULT_WAIT
        return max(0.0, reset - now) + 1.0  # +1: the reset second itself
    if b"secondary rate limit" in body.lower():
        return SECONDARY_LIMIT_DEFAULT_WAIT
    if status == 429:
        return SECONDARY_LIMIT_DEFAULT_WAIT
    return None


def is_transient(status: int) -> bool:
    """5xx: GitHub's side, likely to pass."""
    return status >= 500


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    waited: float,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
) -> float | None:
    """The wait before trying again after ``attempt`` answered ``status``; None: stop.

    ``waited`` is the time already spent waiting for this call. None is returned when the
    answer is final (success, a client error) or when retrying would break the bounds.
    """
    delay = rate_limit_wait(status, headers, body, now)
    if delay is None and is_transient(status):
        delay = policy.pause(attempt)
    if delay is None:
        return None
    if policy.exhausted(attempt, waited, delay):
        return None
    return delay
