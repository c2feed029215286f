"""Running python-gitlab calls: off the event loop, with bounded retries, counted.

python-gitlab is synchronous (requests). Each call runs in a small dedicated thread pool,
never on the event loop. python-gitlab's own retries are switched off
(``NoRetryGitlab``): they sleep with ``time.sleep`` inside the worker thread, cannot be
bounded in total, and a test cannot replace the sleep. Instead ``CallRunner`` retries here,
between attempts, with an injectable async ``sleep``:

* no answer (connection error, timeout) and 5xx: exponential backoff;
* 429: the ``Retry-After`` GitLab sent (seconds or an HTTP date; else ``RateLimit-Reset``);
* any other 4xx: raised at once as ``GitLabError``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import gitlab
import requests

from app.adapters.backoff import Backoff
from app.adapters.gitlab.errors import GitLabError

log = logging.getLogger(__name__)
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
NO_ANSWER = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)




@dataclass
class CallStats:
    """Counters for metrics: calls made (per operation), errors (per status), retries."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    waited: float = 0.0


class NoRetryGitlab(gitlab.Gitlab):
    """python-gitlab with its in-thread retries (429 and transient errors) turned off."""

    def http_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["obey_rate_limit"] = False
        kwargs["retry_transient_errors"] = False
        kwargs["max_retries"] = 0
        return super().http_request(*args, **kwargs)


class _LastAnswer(threading.local):
    headers: Mapping[str, str] | None = None


_last = _LastAnswer()


def remember_headers(response: Any, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: keep the worker thread's last response headers (python-
    gitlab's exceptions do not carry them, and ``Retry-After`` is needed)."""
    _last.headers = response.headers


def retry_after(headers: Mapping[str, str] | None, now: float) -> float | None:
    """The wait GitLab asked for: ``Retry-After`` (seconds or HTTP date), ``RateLimit-Reset``."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value:
        if value.strip().isdigit():
            return float(value.strip())
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None
    reset = headers.get("RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(0.0, float(reset) - now)
    return None


def _attempt(operation: str, fn: Callable[[], T], clock: Callable[[], float]) -> T:
    """One try, in the worker thread; python-gitlab's failures become ``GitLabError``."""
    _last.headers = None
    try:
        return fn()
    except gitlab.exceptions.GitlabError as exc:
        status = int(exc.response_code or 0)
        message = exc.error_message
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        wait = retry_after(_last.headers, clock()) if status == 429 else None
        raise GitLabError(status, text.strip(), operation=operation, retry_after=wait) from None
    except NO_ANSWER as exc:
        raise GitLabError(0, type(exc).__name__, operation=operation) from None


class CallRunner:
    """Runs blocking python-gitlab calls in its own threads, retrying what is transient."""

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        workers: int = 4,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.stats = CallStats()
        self._sleep = sleep
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ployd-gitlab")

    async def run(self, operation: str, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread; retried on no answer, 5xx and 429, within bounds."""
        loop = asyncio.get_running_loop()
        waited = 0.0
        failures = 0
        while True:
            self.stats.calls[operation] += 1
            try:
                return await loop.run_in_executor(self._pool, _attempt, operation, fn, self._clock)
            except GitLabError as err:
                self.stats.errors[err.status] += 1
                failures += 1
                if not err.transient:
                    raise
                pause = err.retry_after
                if pause is None:
                    pause = self.backoff.pause(failures)
                if self.backoff.exhausted(failures, waited, pause):
                    raise
                log.warning(
                    "GitLab %s: %s; try %d again in %.1fs", operation, err, failures + 1, pause
                )
                self.stats.retries += 1
                self.stats.waited += pause
                waited += pause
                await self._sleep(pause)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
