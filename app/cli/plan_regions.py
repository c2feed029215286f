"""What ``ployd plan`` shows of the EC2 placements: the regions (from
``PLOYD_EC2_SUBNETS`` or ``--regions``), the capacity reservations
(``PLOYD_EC2_CAPACITY_RESERVATIONS``), tried first, and on-demand/spot prices per region
(the catalog's list prices, or the AWS Pricing API's with ``--prices aws``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
from app.core.scheduler.select import unplaced_reservations


@dataclass
class PlanFleet:
    fleet: Fleet
    regions: tuple[str, ...]
    subnets: dict[str, int]  # region -> how many subnets (0: from --regions)
    od_prices: OnDemandPrices = field(default_factory=OnDemandPrices)


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
    # AZs are EC2's to say (the server asks): here one placement per region, and one in
    # each reservation's AZ
    placements = [Placement(r, r, "-") for r in counts]
    for res in reservations:
        p = Placement(res.region, res.az, "-")
        if p not in placements:
            placements.append(p)
    fleet = Fleet(tuple(placements), reservations=reservations)
    return PlanFleet(fleet, tuple(counts), counts)


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


def sections(plan: PlanFleet, catalog: Catalog, types: Sequence[str]) -> list[str]:
    """The lines after the jobs' table: regions, prices per region, reservations."""
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
        out += ["", "Reservations (tried before on-demand and spot: already paid for):"]
        for r in res:
            out.append("  " + reservation_text(r, catalog, plan, unusable.get(r)))
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
    line = f"{r.target}  {what}  {r.instance_type}  {r.az} ({r.region})  {price}"
    return line + (f"  cannot be used: {unusable}" if unusable else "")
