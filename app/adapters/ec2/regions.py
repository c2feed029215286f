"""Where machines may start, across regions, and the capacity already paid for: the
parsing of ``PLOYD_EC2_SUBNETS`` and ``PLOYD_EC2_CAPACITY_RESERVATIONS`` (pure; used by
``EC2Config.from_env`` and ``ployd plan``).

``PLOYD_EC2_SUBNETS``: comma-separated; each entry is a subnet id of ``PLOYD_AWS_REGION``
(``subnet-0a1b2c3d``) or ``REGION:SUBNET`` (``us-west-2:subnet-0a1b2c3d``) for a subnet of
another region. Candidates are ordered by price across all of them.

``PLOYD_EC2_CAPACITY_RESERVATIONS``: a JSON list, each item::

    {"id": "cr-0123456789abcdef0",          # or "resource_group": "arn:aws:resource-groups:..."
     "instance_type": "p5.48xlarge",         # optional with an id: EC2 says
     "az": "us-east-1a",                     # optional with an id; its region follows from it
     "kind": "on-demand" | "capacity-block", # default: EC2's ReservationType, else on-demand
     "price_usd_hour": 31.46,                # optional: what its hours cost
     "starts": "2026-12-05T11:30:00Z",       # optional (ISO-8601, UTC): its window; a block's
     "ends": "2026-12-07T11:30:00Z",         #   from EC2 when it says
     "tenants": ["github:acme"],             # optional: only these tenants' jobs (forge:id,
                                             #   forge:name, or "*")
     "workloads": ["train"]}                 # optional: only jobs of these workloads

Unknown keys, bad values and ``ends`` not after ``starts`` are refused, naming the entry.
They are tried before every other candidate of a job whose hardware the instance type
fits, when the job may use them (``app.core.scheduler.reserved``): inside the window
(a Capacity Block's instances end 30 minutes before its end, and a block that would end
before the job's timeout is not used), and for the tenants and workloads named. A
warm pool (no tenant, no workload) gets only reservations open to everyone.

When the server starts, every few minutes after, and as a window opens,
DescribeCapacityReservations is asked about the entries with an id
(``reservations.discover``): it fills in the type and AZ an entry leaves out, the window
of a block, its state (only ``active`` ones are used; ``pending``, ``expired``,
``cancelled``, ``payment-failed`` ... are skipped, with a warning) and its free
instances (none: skipped until a later refresh). A type, AZ or
kind given here that EC2 contradicts stops the server, naming both. A resource group's
entry needs ``instance_type`` and ``az`` (EC2 is asked by id only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.core.config.model import Workload
from app.core.pools import PoolError, parse_tenants
from app.core.scheduler.model import Reservation

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_AZ = re.compile(r"^([a-z]{2}(?:-[a-z]+)+-\d)[a-z]$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_CR = re.compile(r"^cr-[0-9a-f]{8,17}$")
_GROUP = re.compile(r"^arn:aws[a-z-]*:resource-groups:[a-z0-9-]+:\d{12}:group/[\w.+=,@-]{1,128}$")
_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
_KINDS = ("on-demand", "capacity-block")
_KEYS = {
    "id", "resource_group", "instance_type", "az", "kind", "price_usd_hour",
    "starts", "ends", "tenants", "workloads",
}


class PlacementError(ValueError):
    """A PLOYD_EC2_SUBNETS / PLOYD_EC2_CAPACITY_RESERVATIONS value that cannot be used."""


def parse_subnets(raw: str, home_region: str) -> dict[str, str]:
    """Subnet id -> its region, in the order given. Raises ``PlacementError``."""
    out: dict[str, str] = {}
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if not entries:
        raise PlacementError(
            "PLOYD_EC2_SUBNETS: set at least one subnet id (comma-separated; "
            "REGION:subnet-... for another region than PLOYD_AWS_REGION)"
        )
    bad: list[str] = []
    for e in entries:
        region, _, subnet = e.rpartition(":")
        region = region or home_region
        if not _SUBNET.match(subnet) or not REGION.match(region):
            bad.append(e)
            continue
        if subnet in out:
            raise PlacementError(f"PLOYD_EC2_SUBNETS: {subnet} is listed twice")
        out[subnet] = region
    if bad:
        raise PlacementError(
            f"PLOYD_EC2_SUBNETS: not subnet ids: {', '.join(bad)} (expected subnet-... "
            "or REGION:subnet-..., e.g. us-west-2:subnet-0123456789abcdef0)"
        )
    return out


_SG = re.compile(r"^sg-[0-9a-f]{8,17}$")


def parse_security_groups(raw: str, home_region: str, regions: set[str]) -> dict[str, str]:
    """Region -> security group id, from ``sg-...`` (``home_region``'s) and
    ``REGION:sg-...`` entries (security groups are regional): one for every region in
    ``regions``. Raises ``PlacementError``."""
    name = "PLOYD_EC2_SECURITY_GROUP"
    out: dict[str, str] = {}
    for e in (e.strip() for e in raw.split(",")):
        region, _, sg = e.rpartition(":")
        region = region or home_region
        if not _SG.match(sg) or not REGION.match(region):
            raise PlacementError(
                f"{name}={raw.strip()!r}: expected a security group id (sg-...), or one "
                "per region: sg-...,REGION:sg-..."
            )
        if region in out:
            raise PlacementError(f"{name}: two security groups for {region}")
        out[region] = sg
    missing = sorted(regions - set(out))
    if missing:
        raise PlacementError(
            f"{name}: no security group for {', '.join(missing)} (which has subnets); "
            f"add {missing[0]}:sg-... (security groups are regional)"
        )
    return out


def regional_images(name: str, images: Mapping[str, str], home: str, regions: set[str]) -> None:
    """AMI ids and launch template ids are regional: a class's ``ami-``/``lt-`` value
    serves ``home`` only; another region needs ``REGION:default`` (and ``REGION:CLASS``
    for its classes). Names and ``resolve:ssm:`` parameters are the same everywhere."""
    regional = [k for k, v in images.items() if ":" not in k and v.startswith(("ami-", "lt-"))]
    if not regional:
        return
    for region in sorted(regions - {home}):
        if f"{region}:default" not in images:
            raise PlacementError(
                f'{name}: {images[regional[0]]} is an id of {home}; add "{region}:default" '
                f"(and {region}:CLASS keys) for the subnets in {region}"
            )


def region_of_az(az: str) -> str | None:
    m = _AZ.match(az)
    return m.group(1) if m else None


def parse_reservations(raw: str, regions: set[str]) -> tuple[Reservation, ...]:
    """The reservations named in ``PLOYD_EC2_CAPACITY_RESERVATIONS``; each must be in a
    region that has subnets (``regions``). Raises ``PlacementError``."""
    name = "PLOYD_EC2_CAPACITY_RESERVATIONS"
    raw = raw.strip()
    if not raw:
        return ()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PlacementError(f"{name}: not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, list):
        raise PlacementError(
            f'{name}: expected a JSON list of objects, e.g. [{{"id": "cr-...", '
            '"instance_type": "p5.48xlarge", "az": "us-east-1a"}]'
        )
    out: list[Reservation] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise PlacementError(f"{where}: expected an object")
        out.append(_reservation(where, item, regions))
        if out[-1].target in seen:
            raise PlacementError(f"{where}: {out[-1].target} is listed twice")
        seen.add(out[-1].target)
    return tuple(out)


def _reservation(where: str, item: Mapping[str, Any], regions: set[str]) -> Reservation:
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise PlacementError(f"{where}: unknown keys {unknown} (known: {sorted(_KEYS)})")
    kind = item.get("kind", "on-demand")
    if kind not in _KINDS:
        raise PlacementError(f"{where}: kind={kind!r}: expected 'on-demand' or 'capacity-block'")
    rid, group = item.get("id"), item.get("resource_group")
    if (rid is None) == (group is None):
        raise PlacementError(f"{where}: set exactly one of id (cr-...) and resource_group (ARN)")
    if rid is not None and not (isinstance(rid, str) and _CR.match(rid)):
        raise PlacementError(f"{where}: id={rid!r}: expected a reservation id (cr-...)")
    if group is not None:
        if kind == "capacity-block":
            raise PlacementError(f"{where}: a Capacity Block is named by its id (cr-...)")
        if not (isinstance(group, str) and _GROUP.match(group)):
            raise PlacementError(
                f"{where}: resource_group={group!r}: expected "
                "arn:aws:resource-groups:REGION:ACCOUNT:group/NAME"
            )
        missing = [k for k in ("instance_type", "az") if k not in item]
        if missing:  # EC2 describes reservations by id, not by group
            raise PlacementError(
                f"{where}: a resource group needs {' and '.join(missing)} (EC2 is asked "
                "about reservations by id only)"
            )
    itype = item.get("instance_type")
    if itype is not None and not (isinstance(itype, str) and _TYPE.match(itype)):
        raise PlacementError(f"{where}: instance_type={itype!r}: expected e.g. 'p5.48xlarge'")
    az = item.get("az")
    region = ""
    if az is not None:
        found = region_of_az(az) if isinstance(az, str) else None
        if found is None:
            raise PlacementError(
                f"{where}: az={az!r}: expected an availability zone, e.g. us-east-1a"
            )
        region = found
        if region not in regions:
            raise PlacementError(
                f"{where}: {az} is in {region}, which has no subnet in PLOYD_EC2_SUBNETS "
                f"(regions: {', '.join(sorted(regions))})"
            )
    price = item.get("price_usd_hour")
    if price is not None and (
        isinstance(price, bool) or not isinstance(price, int | float) or not price >= 0
    ):
        raise PlacementError(f"{where}: price_usd_hour={price!r}: expected a number >= 0")
    starts = _when(where, "starts", item.get("starts"))
    ends = _when(where, "ends", item.get("ends"))
    if starts is not None and ends is not None and ends <= starts:
        raise PlacementError(
            f"{where}: ends={item['ends']!r} is not after starts={item['starts']!r}"
        )
    return Reservation(
        target=str(rid or group),
        instance_type=itype or "",
        az=az or "",
        region=region,
        kind=kind,
        price_usd_hour=None if price is None else float(price),
        starts=starts,
        ends=ends,
        tenants=_tenants(where, item.get("tenants")),
        workloads=_workloads(where, item.get("workloads")),
        state="active",
        available=None,
        kind_given="kind" in item,
    )


def _when(where: str, key: str, value: Any) -> datetime | None:
    """An ISO-8601 time with its UTC offset (``2026-12-05T10:00:00Z``), as UTC."""
    if value is None:
        return None
    example = "e.g. '2026-12-05T11:30:00Z'"
    if not isinstance(value, str):
        raise PlacementError(f"{where}: {key}={value!r}: expected an ISO-8601 UTC time, {example}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise PlacementError(
            f"{where}: {key}={value!r}: not an ISO-8601 time ({example})"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PlacementError(
            f"{where}: {key}={value!r}: no time zone; give it in UTC ({example})"
        )
    return parsed.astimezone(UTC)


def _tenants(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise PlacementError(
            f"{where}: tenants={value!r}: expected a non-empty list of tenants, "
            'e.g. ["github:acme"] (forge:id or forge:name)'
        )
    try:
        return parse_tenants(value)
    except PoolError as exc:
        raise PlacementError(f"{where}: tenants: {exc}") from None


def _workloads(where: str, value: Any) -> tuple[Workload, ...]:
    if value is None:
        return ()
    known = [w.value for w in Workload]
    if not isinstance(value, list) or not value:
        raise PlacementError(
            f"{where}: workloads={value!r}: expected a non-empty list of {', '.join(known)}"
        )
    bad = [v for v in value if v not in known]
    if bad:
        raise PlacementError(
            f"{where}: workloads: {', '.join(map(repr, bad))} not a workload "
            f"(one of {', '.join(known)})"
        )
    return tuple(dict.fromkeys(Workload(v) for v in value))
