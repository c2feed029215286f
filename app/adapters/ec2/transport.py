"""One EC2 API call, off the event loop, retried within bounds: PloyD's only retry layer.

botocore's own retries are turned off (``total_max_attempts=1``) so that waits go through
an injected ``sleep`` (tests never really wait) and are counted. Retried: throttling
(``RequestLimitExceeded``, ``Throttling``), EC2's 5xx codes and network errors. Never
retried: capacity refusals and every other client error (``errors.classify``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# botocore and boto3 ship no type information: the boundary is typed ``Any``.
import botocore
import botocore.exceptions
from botocore.config import Config as BotoConfig

from app.adapters.ec2.config import EC2Config
from app.adapters.ec2.errors import EC2Error, classify

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
_NETWORK_ERRORS = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` tries of a throttled or unreachable call."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based): 0.5, 1, 2, 4 ... s."""
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class EC2Metrics:
    """A tiny tally per client (exported as metrics later)."""

    calls: Counter[str] = field(default_factory=Counter)  # attempts per operation
    errors: Counter[str] = field(default_factory=Counter)  # failed attempts per code
    retries: int = 0
    launches: Counter[str] = field(default_factory=Counter)  # per market
    fallbacks: Counter[str] = field(default_factory=Counter)  # CapacityError per kind


def make_boto_client(config: EC2Config, service: str = "ec2", **session_kwargs: Any) -> Any:
    """A boto3 client of ``service`` (``ec2``; ``ssm`` for ``resolve:ssm:`` AMIs) for
    ``config`` (blocking: loads botocore's models).

    ``session_kwargs`` go to ``boto3.session.Session`` (e.g. explicit keys for tests).
    """
    import boto3

    session = boto3.session.Session(region_name=config.region, **session_kwargs)
    return session.client(
        service,
        endpoint_url=config.endpoint_url,
        config=BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="ployd",
        ),
    )


async def call(
    boto: Any,
    operation: str,
    params: Mapping[str, Any],
    retry: RetryPolicy,
    sleep: Sleep,
    metrics: EC2Metrics,
) -> dict[str, Any]:
    """``operation`` (as AWS names it: ``RunInstances``) on the botocore client ``boto``,
    in a worker thread; raises ``EC2Error``/``CapacityError``."""
    method = getattr(boto, botocore.xform_name(operation))
    attempt = 0
    while True:
        attempt += 1
        metrics.calls[operation] += 1
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **params)
            return result
        except botocore.exceptions.ClientError as exc:
            info = exc.response.get("Error", {})
            err = classify(str(info.get("Code", "")), str(info.get("Message", "")), operation)
        except _NETWORK_ERRORS as exc:
            err = EC2Error("", str(exc), operation=operation, transient=True)
        except botocore.exceptions.BotoCoreError as exc:  # credentials, parameters
            err = EC2Error(type(exc).__name__, str(exc), operation=operation)
        metrics.errors[err.code or "unreachable"] += 1
        if not err.transient or attempt >= retry.max_attempts:
            raise err
        delay = retry.backoff(attempt)
        metrics.retries += 1
        log.info("EC2 %s: %s; retry %d in %.1fs", operation, err, attempt, delay)
        await sleep(delay)
