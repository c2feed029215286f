"""A fake AWS Pricing API (``AWSPriceListService.GetProducts``, JSON 1.1 over HTTP) on
loopback: botocore talks to it as to AWS. ``prices[(instance type, region code)]`` is
answered as a one-product price list; ``error`` = (HTTP status, error type) answers every
call with that error instead, as AWS does."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def product(instance_type: str, region: str, usd: float) -> str:
    """One GetProducts ``PriceList`` item, shaped as AWS's (the parts PloyD reads)."""
    return json.dumps(
        {
            "product": {
                "attributes": {"instanceType": instance_type, "regionCode": region},
                "sku": "SKU",
            },
            "terms": {
                "OnDemand": {
                    "SKU.JRTCKXETXF": {
                        "priceDimensions": {
                            "SKU.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": f"{usd:.10f}"},
                                "description": f"${usd} per On Demand Linux {instance_type}",
                            }
                        },
                        "offerTermCode": "JRTCKXETXF",
                    }
                }
            },
        }
    )


class FakePricing:
    def __init__(self) -> None:
        self.prices: dict[tuple[str, str], float] = {}
        self.error: tuple[int, str] | None = None
        self.calls: list[dict[str, str]] = []  # each call's TERM_MATCH filters
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        body: dict[str, Any] = json.loads(await request.read() or b"{}")
        filters = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
        self.calls.append(filters)
        kind = "application/x-amz-json-1.1"
        if self.error is not None:
            status, code = self.error
            err = {"__type": code, "Message": f"{code}: refused by the fake"}
            return web.Response(status=status, text=json.dumps(err), content_type=kind)
        if target != "AWSPriceListService.GetProducts":
            err = {"__type": "UnknownOperationException", "Message": target}
            return web.Response(status=400, text=json.dumps(err), content_type=kind)
        key = (filters.get("instanceType", ""), filters.get("regionCode", ""))
        found = [product(*key, self.prices[key])] if key in self.prices else []
        out = {"FormatVersion": "aws_v1", "PriceList": found}
        return web.Response(text=json.dumps(out), content_type=kind)
