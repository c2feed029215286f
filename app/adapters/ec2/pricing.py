"""On-demand prices per region from the AWS Pricing API (``pricing:GetProducts``), for
``core.scheduler.OnDemandPrices``; the catalog's list prices stay the fallback when the
API is unreachable, refuses (no ``pricing:GetProducts`` permission, throttled) or does
not know a type.

The Pricing API has endpoints in a few regions only; PloyD asks ``us-east-1`` (or
``PLOYD_AWS_PRICING_ENDPOINT_URL``) about every region, by region code. One call per
instance type and region (the filters below pick one product: Linux, shared tenancy, no
pre-installed software, the capacity status "Used"), a few at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from app.adapters.ec2.errors import CloudError
from app.adapters.ec2.transport import EC2Metrics, RetryPolicy, Sleep, call

log = logging.getLogger(__name__)

PRICING_REGION = "us-east-1"
CONCURRENCY = 8


def make_pricing_client(endpoint_url: str | None = None, **session_kwargs: Any) -> Any:
    """A boto3 Pricing client (blocking: loads botocore's models)."""
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(region_name=PRICING_REGION, **session_kwargs)
    return session.client(
        "pricing",
        endpoint_url=endpoint_url,
        config=BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="ployd",
        ),
    )


def _filters(instance_type: str, region: str) -> list[dict[str, str]]:
    pairs = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in pairs.items()]


def hourly_usd(price_list: Sequence[Any]) -> float | None:
    """The on-demand USD/hour in a GetProducts ``PriceList`` (JSON texts), or None."""
    for raw in price_list:
        try:
            product = json.loads(raw) if isinstance(raw, str) else raw
            terms = product["terms"]["OnDemand"]
        except (ValueError, KeyError, TypeError):
            continue
        for term in terms.values() if isinstance(terms, dict) else ():
            for dim in term.get("priceDimensions", {}).values():
                if dim.get("unit") != "Hrs":
                    continue
                try:
                    usd = float(dim["pricePerUnit"]["USD"])
                except (KeyError, TypeError, ValueError):
                    continue
                if usd > 0:
                    return usd
    return None


class PricingClient:
    """``prices(types, region)``: instance type -> on-demand USD/hour in ``region``."""

    def __init__(
        self,
        boto: Any,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        metrics: EC2Metrics | None = None,
    ) -> None:
        self.boto = boto
        self.retry = retry or RetryPolicy(max_attempts=2)
        self._sleep = sleep
        self.metrics = metrics or EC2Metrics()

    @classmethod
    async def open(cls, endpoint_url: str | None = None, **kwargs: Any) -> PricingClient:
        session_kwargs: dict[str, Any] = kwargs.pop("session", {})
        boto = await asyncio.to_thread(make_pricing_client, endpoint_url, **session_kwargs)
        return cls(boto, **kwargs)

    async def _one(self, instance_type: str, region: str) -> float | None:
        out = await call(
            self.boto,
            "GetProducts",
            {
                "ServiceCode": "AmazonEC2",
                "Filters": _filters(instance_type, region),
                "FormatVersion": "aws_v1",
                "MaxResults": 10,
            },
            self.retry,
            self._sleep,
            self.metrics,
        )
        return hourly_usd(out.get("PriceList", []))

    async def prices(self, instance_types: Sequence[str], region: str) -> dict[str, float]:
        """Raises ``CloudError`` when the API refuses or is unreachable (the first error:
        one refusal is everyone's, a permission or an endpoint)."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(t: str) -> tuple[str, float | None]:
            async with gate:
                return t, await self._one(t, region)

        answers = await asyncio.gather(
            *(one(t) for t in dict.fromkeys(instance_types)), return_exceptions=True
        )
        found: list[tuple[str, float | None]] = []
        for a in answers:
            if isinstance(a, BaseException):
                raise a
            found.append(a)
        out = {t: p for t, p in found if p is not None}
        missing = [t for t, p in found if p is None]
        if missing:
            log.info("no Pricing API price in %s for %s: catalog prices", region, missing)
        return out


__all__ = ["CloudError", "PricingClient", "hourly_usd", "make_pricing_client"]
