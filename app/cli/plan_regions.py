"""What ``ployd plan`` shows of the EC2 placements: the regions (from
``PLOYD_EC2_SUBNETS`` or ``--regions``), the capacity reservations
(``PLOYD_EC2_CAPACITY_RESERVATIONS``; what EC2 says of them with ``--reservations aws``),
tried first when usable at the plan's time (``--at``, default now) by its tenant
(``--tenant``), and on-demand/spot prices per region (the catalog's list prices, or the
AWS Pricing API's with ``--prices aws``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from app.adapters.ec2.regions import (
    REGION,
    PlacementError,
    parse_reservations,
    parse_subnets,
)
from app.core.hardware import Catalog
from app.core.scheduler import (
    SPOT_ESTIMATE,
    Candidate,
    Fleet,
    OnDemandPrices,
    Placement,
    Reservation,
)
from app.core.scheduler.reserved import TenantNames, span, why_not
from app.core.scheduler.select import unplaced_reservations


@dataclass
class PlanFleet:
    fleet: Fleet
    regions: tuple[str, ...]
    subnets: dict[str, int]  # region -> how many subnets (0: from --regions)
    od_prices: OnDemandPrices = field(default_factory=OnDemandPrices)
    described: bool = False  # EC2 was asked about the reservations (--reservations aws)


def plan_fleet(env: Mapping[str, str], regions_arg: str | None) -> PlanFleet:
    """The fleet ``ployd plan`` orders candidates in. Raises ``PlacementError``."""
    home = env.get("PLOYD_AWS_REGION", "").strip() or "us-east-1"
    if not REGION.match(home):
        raise PlacementError(f"PLOYD_AWS_REGION={home!r}: expected a region such as 'us-east-1'")
    counts: dict[str, int] = {}
    if regions_arg:
        for r in (r.strip() for r in regions_arg.split(",") if r.strip()):
            if not REGION.match(r):
                raise PlacementError(f"--regions: {r!r} is not a region such as 'us-west-2'")
            counts.setdefault(r, 0)
    elif env.get("PLOYD_EC2_SUBNETS", "").strip():
        for region in parse_subnets(env["PLOYD_EC2_SUBNETS"], home).values():
            counts[region] = counts.get(region, 0) + 1
    else:
        counts[home] = 0
    reservations = parse_reservations(
        env.get("PLOYD_EC2_CAPACITY_RESERVATIONS", ""), set(counts)
    )
    fleet = Fleet(_placements(tuple(counts), reservations), reservations=reservations)
    return PlanFleet(fleet, tuple(counts), counts)


def _placements(
    regions: Sequence[str], reservations: Sequence[Reservation]
) -> tuple[Placement, ...]:
    """AZs are EC2's to say (the server asks): here one placement per region, and one in
    each (known) reservation's AZ."""
    placements = [Placement(r, r, "-") for r in regions]
    for res in reservations:
        p = Placement(res.region, res.az, "-")
        if res.known and p not in placements:
            placements.append(p)
    return tuple(placements)


def fetch_reservations(plan: PlanFleet, endpoint_url: str | None = None) -> list[str]:
    """What DescribeCapacityReservations says of the reservations (default credentials;
    ``PLOYD_AWS_ENDPOINT_URL``), as the server asks at start; the warnings to show.
    Raises ``PlacementError`` where EC2 contradicts an entry."""
    from app.adapters.ec2.client import EC2Client
    from app.adapters.ec2.config import EC2Config
    from app.adapters.ec2.reservations import discover

    async def run() -> list[str]:
        clients: dict[str, EC2Client] = {}
        for r in plan.regions:
            where = EC2Config(r, (), "", "", endpoint_url=endpoint_url)
            try:
                clients[r] = await EC2Client.open(where, ssm=None)
            except Exception as exc:  # no boto3 configuration at all
                return [f"EC2 could not be asked about the reservations: {exc}"]
        found = await discover(plan.fleet.reservations, clients, plan.regions, strict=True)
        res = found.reservations
        plan.fleet = replace(
            plan.fleet, placements=_placements(plan.regions, res), reservations=res
        )
        plan.described = True
        return found.warnings

    return asyncio.run(run())


def fetch_prices(plan: PlanFleet, catalog: Catalog, endpoint_url: str | None = None) -> None:
    """On-demand prices per region from the AWS Pricing API (default credentials;
    ``PLOYD_AWS_PRICING_ENDPOINT_URL``); a region whose call fails keeps the catalog's,
    and says why."""
    from app.adapters.ec2.errors import CloudError
    from app.adapters.ec2.pricing import PricingClient

    async def run() -> None:
        try:
            client = await PricingClient.open(endpoint_url)
        except Exception as exc:  # no boto3 configuration at all
            for r in plan.regions:
                plan.od_prices.failed(r, str(exc)[:200])
            return
        names = [t.name for t in catalog.types()]
        for r in plan.regions:
            try:
                plan.od_prices.update(r, await client.prices(names, r))
            except CloudError as exc:
                plan.od_prices.failed(r, str(exc)[:200])

    asyncio.run(run())


def distinct(tries: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per (type, market, region, reservation): the plan's placements are
    per region, not per AZ."""
    seen: set[tuple[str, str, str, Reservation | None]] = set()
    out: list[Candidate] = []
    for c in tries:
        key = (c.instance_type, c.launch_market, c.placement.region, c.reservation)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def candidate_text(c: Candidate, several_regions: bool) -> str:
    est = "*" if c.estimated else ""
    if c.reservation is not None:
        r = c.reservation
        what = "capacity-block" if r.kind == "capacity-block" else "reserved"
        return f"{c.instance_type} {what} {r.target} ({r.az}) ${c.price_usd_hour:.2f}"
    where = f" {c.placement.region}" if several_regions else ""
    return f"{c.instance_type} {c.market}{where} ${c.price_usd_hour:.2f}{est}"


def sections(
    plan: PlanFleet,
    catalog: Catalog,
    types: Sequence[str],
    now: datetime | None = None,
    tenant: TenantNames | None = None,
) -> list[str]:
    """The lines after the jobs' table: regions, prices per region, reservations (and
    why one is not usable at ``now`` by ``tenant``)."""
    out = ["", "Regions:"]
    for r in plan.regions:
        n = plan.subnets[r]
        subnets = f"{n} subnet{'s' if n != 1 else ''}" if n else "(--regions)"
        out.append(f"  {r}  {subnets}  on-demand prices: {plan.od_prices.source(r)}")
    if types:
        out += ["", "Prices per region ($/hour: on-demand / spot*; * estimated: the server "
                "reads each region's spot prices from EC2):"]
        rows = [("TYPE", *plan.regions)]
        for name in dict.fromkeys(types):
            t = catalog.get(name)
            cells = []
            for r in plan.regions:
                od = plan.od_prices.get(name, r)
                od = t.price_usd_hour if od is None else od
                cells.append(f"{od:.4f} / {od * SPOT_ESTIMATE:.4f}*")
            rows.append((name, *cells))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            out.append(f"  {cells}".rstrip())
    res = plan.fleet.reservations
    if res:
        unusable = dict(unplaced_reservations(catalog, plan.fleet))
        at = f" at {now:%Y-%m-%d %H:%M} UTC" if now is not None else ""
        out += ["", f"Reservations (tried before on-demand and spot: already paid for){at}:"]
        for r in res:
            why = unusable.get(r)
            if not plan.described and not r.known:
                why = "its instance type and AZ are EC2's to say (--reservations aws)"
            if why is None and now is not None:
                why = why_not(r, now, tenant=tenant, workload=None)
                if why is not None and why.startswith("reserved for"):
                    why = None  # said by "for ...": per job, not "now"
                why = f"not usable now: {why}" if why else None
            elif why is not None:
                why = f"cannot be used: {why}"
            out.append("  " + reservation_text(r, catalog, plan, why))
    return out


def reservation_text(
    r: Reservation, catalog: Catalog, plan: PlanFleet, unusable: str | None
) -> str:
    if r.price_usd_hour is not None:
        price = f"${r.price_usd_hour:.2f}/hour"
    else:
        od = plan.od_prices.get(r.instance_type, r.region)
        try:
            od = catalog.get(r.instance_type).price_usd_hour if od is None else od
            price = f"${od:.2f}/hour (on-demand rate)"
        except KeyError:
            price = "-"
    what = "Capacity Block" if r.kind == "capacity-block" else "capacity reservation"
    where = f"{r.az} ({r.region})" if r.az else "-"
    parts = [r.target, what, r.instance_type or "-", where, price]
    if r.starts is not None or r.ends is not None:
        starts = f"{r.starts:%Y-%m-%d %H:%M}" if r.starts else "now"
        ends = f"{r.ends:%Y-%m-%d %H:%M}" if r.ends else "no end"
        parts.append(f"{starts} to {ends} UTC")
        if r.starts is not None and r.ends is not None:
            parts[-1] += f" ({span(r.ends - r.starts)})"
    if plan.described:
        free = "" if r.available is None else f", {r.available} free"
        parts.append(f"EC2: {r.state}{free}")
    who = []
    if r.tenants:
        who.append(f"tenants {', '.join(r.tenants)}")
    if r.workloads:
        who.append(f"workloads {', '.join(w.value for w in r.workloads)}")
    if who:
        parts.append(f"for {'; '.join(who)}")
    if unusable:
        parts.append(unusable)
    return "  ".join(parts)
