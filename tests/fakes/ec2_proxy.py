"""A small HTTP proxy on loopback between botocore and moto that answers as EC2 does.

It forwards every request to moto, except those that match a ``Fault``: an EC2 action
(``RunInstances``) with matching query parameters (as botocore sends them, flattened:
``InstanceType``, ``SubnetId``, ``InstanceMarketOptions.MarketType``), answered with the
HTTP status and the XML body EC2 sends for an error::

    <Response><Errors><Error><Code>..</Code><Message>..</Message></Error></Errors>
    <RequestID>..</RequestID></Response>

(or a canned success body). Every request is counted per action, and its parameters kept
(``requests``), so tests assert what reached "EC2", call by call.

moto has no capacity reservations: the proxy keeps them (``reserve``) and answers
DescribeCapacityReservations itself, in EC2's XML (``DescribeCapacityReservationsResult``
of botocore's service model), per region (the request's SigV4 scope), refusing a call
that names an id the region does not know (``InvalidCapacityReservationId.NotFound``,
as EC2 does). A RunInstances into a reservation with no free instance is refused
``ReservationCapacityExceeded``; one that succeeds uses up one of its instances.

    async with EC2Proxy(moto_url) as proxy:
        proxy.fail("RunInstances", 500, "InsufficientInstanceCapacity", "...",
                   where={"SubnetId": subnet})
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

Match = Mapping[str, str] | Callable[[dict[str, str]], bool]


def error_body(code: str, message: str, request_id: str | None = None) -> str:
    """EC2's error document, as its Query API sends it."""
    rid = request_id or str(uuid.uuid4())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{rid}</RequestID></Response>"
    )


@dataclass
class Fault:
    action: str
    status: int
    body: str
    where: Match = field(default_factory=dict)
    times: int | None = None  # None: every matching request
    hits: int = 0

    def matches(self, action: str, params: dict[str, str]) -> bool:
        if action != self.action or (self.times is not None and self.hits >= self.times):
            return False
        if callable(self.where):
            return bool(self.where(params))
        return all(params.get(k) == v for k, v in self.where.items())


@dataclass
class CapacityReservation:
    """One capacity reservation or Capacity Block, as DescribeCapacityReservations says."""

    id: str
    instance_type: str
    az: str
    state: str = "active"
    total: int = 1
    available: int = 1
    starts: datetime | None = None
    ends: datetime | None = None
    kind: str = "default"  # ReservationType: default (an ODCR) or capacity-block

    @property
    def region(self) -> str:
        return self.az[:-1]

    def xml(self) -> str:
        def when(d: datetime | None) -> str:
            return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") if d else ""

        start = when(self.starts or datetime(2026, 1, 1, tzinfo=UTC))
        end = f"<endDate>{when(self.ends)}</endDate>" if self.ends else ""
        return (
            "<item>"
            f"<capacityReservationId>{self.id}</capacityReservationId>"
            "<ownerId>123456789012</ownerId>"
            f"<capacityReservationArn>arn:aws:ec2:{self.region}:123456789012:"
            f"capacity-reservation/{self.id}</capacityReservationArn>"
            f"<availabilityZoneId>{self.region[:2]}-az1</availabilityZoneId>"
            f"<instanceType>{escape(self.instance_type)}</instanceType>"
            "<instancePlatform>Linux/UNIX</instancePlatform>"
            f"<availabilityZone>{self.az}</availabilityZone>"
            "<tenancy>default</tenancy>"
            f"<totalInstanceCount>{self.total}</totalInstanceCount>"
            f"<availableInstanceCount>{self.available}</availableInstanceCount>"
            "<ebsOptimized>true</ebsOptimized><ephemeralStorage>false</ephemeralStorage>"
            f"<state>{self.state}</state>"
            f"<startDate>{start}</startDate>{end}"
            f"<endDateType>{'limited' if self.ends else 'unlimited'}</endDateType>"
            "<instanceMatchCriteria>targeted</instanceMatchCriteria>"
            f"<createDate>{start}</createDate><tagSet/>"
            f"<reservationType>{self.kind}</reservationType>"
            "</item>"
        )


_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/ec2/")


class EC2Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.reservations: dict[str, CapacityReservation] = {}
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()  # every request that reached the proxy
        self.requests: list[tuple[str, dict[str, str], int]] = []  # action, params, status
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- faults ----------------------------------------------------------------------

    def fail(
        self,
        action: str,
        status: int,
        code: str,
        message: str,
        *,
        where: Match | None = None,
        times: int | None = None,
    ) -> Fault:
        """Answer ``action`` requests matching ``where`` with EC2's error ``code``."""
        fault = Fault(action, status, error_body(code, message), where or {}, times)
        self.faults.append(fault)
        return fault

    def answer(self, action: str, body: str, *, where: Match | None = None) -> Fault:
        """Answer ``action`` with a canned 200 body (an EC2 XML response)."""
        fault = Fault(action, 200, body, where or {})
        self.faults.append(fault)
        return fault

    def reserve(self, rid: str, instance_type: str, az: str, **fields: Any) -> CapacityReservation:
        """A capacity reservation (``kind="capacity-block"``: a block) EC2 knows of."""
        r = CapacityReservation(rid, instance_type, az, **fields)
        self.reservations[rid] = r
        return r

    def _describe_reservations(self, region: str, params: dict[str, str]) -> web.Response:
        ids = [v for k, v in sorted(params.items()) if k.startswith("CapacityReservationId.")]
        here = {i: r for i, r in self.reservations.items() if r.region == region}
        unknown = [i for i in ids if i not in here]
        if unknown:
            body = error_body(
                "InvalidCapacityReservationId.NotFound",
                f"The capacity reservation ID '{unknown[0]}' does not exist",
            )
            self.requests.append(("DescribeCapacityReservations", params, 400))
            return web.Response(status=400, text=body, content_type="text/xml")
        items = "".join(here[i].xml() for i in (ids or list(here)))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<DescribeCapacityReservationsResponse xmlns="http://ec2.amazonaws.com/doc/'
            f'2016-11-15/"><requestId>{uuid.uuid4()}</requestId>'
            f"<capacityReservationSet>{items}</capacityReservationSet>"
            "</DescribeCapacityReservationsResponse>"
        )
        self.requests.append(("DescribeCapacityReservations", params, 200))
        return web.Response(status=200, text=body, content_type="text/xml")

    def clear(self) -> None:
        self.faults.clear()

    def of(self, action: str) -> list[dict[str, str]]:
        """The parameters of every ``action`` request so far, in order."""
        return [p for a, p, _ in self.requests if a == action]

    # -- serving ---------------------------------------------------------------------

    async def __aenter__(self) -> EC2Proxy:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        params = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        params.update(request.query)
        action = params.get("Action", "")
        self.calls[action] += 1
        for fault in self.faults:
            if fault.matches(action, params):
                fault.hits += 1
                self.requests.append((action, params, fault.status))
                return web.Response(status=fault.status, text=fault.body, content_type="text/xml")
        scope = _SCOPE.search(request.headers.get("Authorization", ""))
        region = scope.group(1) if scope else ""
        if action == "DescribeCapacityReservations":
            return self._describe_reservations(region, params)
        target = self.reservations.get(
            params.get("CapacityReservationSpecification.CapacityReservationTarget"
                       ".CapacityReservationId", "")
        )
        if action == "RunInstances" and target is not None and target.available < 1:
            self.requests.append((action, params, 400))
            body = error_body(
                "ReservationCapacityExceeded",
                "The requested reservation does not have sufficient compatible and "
                "available capacity for this request.",
            )
            return web.Response(status=400, text=body, content_type="text/xml")
        assert self._http is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with self._http.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as up:
            data = await up.read()
            self.requests.append((action, params, up.status))
            if action == "RunInstances" and target is not None and up.status == 200:
                target.available -= 1
            out_headers: dict[str, Any] = {
                k: v
                for k, v in up.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=up.status, body=data, headers=out_headers)
