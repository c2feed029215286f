"""What EC2 says of the configured reservations (DescribeCapacityReservations), merged
into them: ``discover`` (asked when the executor starts, and again every
``REFRESH_S``).

For each entry with an id (``cr-...``): EC2's instance type and AZ where the entry left
them out, its ``State`` (only ``active`` is used), ``AvailableInstanceCount`` (0: not
used until a later refresh), ``StartDate``/``EndDate`` (its window; EC2's win over the
entry's) and ``ReservationType`` (``capacity-block`` for a block). A type, AZ or kind the
entry gives that EC2 contradicts is ``ReservationMismatch``, naming both. An entry
without an AZ is looked for in each region with subnets, the home region first.
Resource group entries are not asked about (EC2 describes reservations by id).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from app.adapters.ec2.errors import CloudError
from app.adapters.ec2.regions import PlacementError, region_of_az
from app.core.scheduler.model import Reservation, ReservationKind

log = logging.getLogger("ployd.ec2")

NOT_FOUND = "InvalidCapacityReservationId.NotFound"
REFRESH_S = 300  # how often EC2 is asked again (states, free instances)
SKIPPED_STATES = "pending, expired, cancelled, payment-failed, ..."


class ReservationMismatch(PlacementError):
    """PLOYD_EC2_CAPACITY_RESERVATIONS says something of a reservation that EC2 does not."""


class Describer(Protocol):
    async def capacity_reservations(self, ids: Sequence[str]) -> list[dict[str, Any]]: ...


@dataclass
class Discovery:
    """The reservations as EC2 says they are now, and what to warn about."""

    reservations: tuple[Reservation, ...]
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ids no region knows


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def merge(configured: Reservation, said: Mapping[str, Any], where: str = "") -> Reservation:
    """``configured`` with what EC2 ``said`` of it; ``ReservationMismatch`` where the
    operator's type, AZ or kind is not EC2's."""
    name = where or f"PLOYD_EC2_CAPACITY_RESERVATIONS ({configured.target})"
    itype = str(said.get("InstanceType") or "")
    az = str(said.get("AvailabilityZone") or "")
    kind: ReservationKind = (
        "capacity-block" if said.get("ReservationType") == "capacity-block" else "on-demand"
    )
    for key, ours, theirs in (
        ("instance_type", configured.instance_type, itype),
        ("az", configured.az, az),
    ):
        if ours and theirs and ours != theirs:
            raise ReservationMismatch(
                f"{name}: {key}={ours!r}, but EC2 says {configured.target} is {theirs!r} "
                "(DescribeCapacityReservations): fix the entry, or leave it out"
            )
    if not configured.kind_given and "ReservationType" in said:
        configured = replace(configured, kind=kind)
    if "ReservationType" in said and kind != configured.kind:
        what = (
            "a Capacity Block" if kind == "capacity-block" else "an On-Demand Capacity Reservation"
        )
        raise ReservationMismatch(
            f"{name}: kind={configured.kind!r}, but EC2 says {configured.target} is {what} "
            f"(ReservationType {said.get('ReservationType')!r}): set kind={kind!r}"
        )
    az = configured.az or az
    starts = _utc(said.get("StartDate")) or configured.starts
    ends = _utc(said.get("EndDate")) or configured.ends
    for when, given, used in (
        ("starts", configured.starts, starts),
        ("ends", configured.ends, ends),
    ):
        if given is not None and used != given:
            log.warning(
                "%s: %s=%s, but EC2 says %s: EC2's is used",
                name,
                when,
                given.isoformat(),
                used.isoformat() if used else "none",
            )
    available = said.get("AvailableInstanceCount")
    return replace(
        configured,
        instance_type=configured.instance_type or itype,
        az=az,
        region=configured.region or region_of_az(az) or "",
        starts=starts,
        ends=ends,
        state=str(said.get("State") or "unknown"),
        available=available if isinstance(available, int) else None,
    )


async def _ask(client: Describer, ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(id -> what EC2 says, ids it does not know here): one call for all, one per id
    when some id is unknown (EC2 then refuses the whole call)."""
    try:
        found = await client.capacity_reservations(ids)
    except CloudError as e:
        if e.code != NOT_FOUND or len(ids) == 1:
            if e.code == NOT_FOUND:
                return {}, ids
            raise
        out: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for one in ids:
            got, gone = await _ask(client, [one])
            out |= got
            missing += gone
        return out, missing
    by_id = {str(r.get("CapacityReservationId")): r for r in found}
    return by_id, [i for i in ids if i not in by_id]


async def discover(
    configured: Sequence[Reservation],
    clients: Mapping[str, Describer],
    regions: Sequence[str],
    current: Sequence[Reservation] = (),
    *,
    strict: bool = False,
) -> Discovery:
    """``configured`` (the entries, as parsed) with what EC2 says of them now; where EC2
    could not be asked, ``current``'s (the last answer) or the entry as configured.
    ``strict`` (at start): a contradiction raises ``ReservationMismatch``; else it is
    a warning and the last answer is kept."""
    last = {r.target: r for r in current}
    # where to ask about each id: its AZ's region, else where it was found last, else all
    asking: dict[str, list[str]] = {}
    for r in configured:
        if r.by_group:
            continue
        region = r.region or last.get(r.target, r).region
        for reg in [region] if region else list(regions):
            asking.setdefault(r.target, []).append(reg)
    said: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}  # id -> why EC2 could not be asked
    for reg in regions:
        ids = [i for i, where in asking.items() if reg in where and i not in said]
        if not ids:
            continue
        try:
            got, _missing = await _ask(clients[reg], ids)
        except CloudError as e:
            for i in ids:
                failed.setdefault(i, f"DescribeCapacityReservations in {reg} failed: {e}")
            continue
        said |= got
    out: list[Reservation] = []
    found = Discovery(())
    for n, r in enumerate(configured):
        where = f"PLOYD_EC2_CAPACITY_RESERVATIONS[{n}] ({r.target})"
        prior = last.get(r.target, r)
        if r.by_group:
            out.append(r)
            continue
        answer = said.get(r.target)
        if answer is None:
            if r.target in failed:
                found.warnings.append(f"{r.label}: {failed[r.target]}; using what was known")
                out.append(prior)
            else:
                found.missing.append(r.target)
                in_ = ", ".join(asking.get(r.target, []))
                found.warnings.append(f"{r.label}: EC2 does not know it in {in_}: not used")
                out.append(replace(prior, state="not found"))
            continue
        try:
            merged = merge(r, answer, where)
        except ReservationMismatch as e:
            if strict:
                raise
            found.warnings.append(f"{e}; keeping what was known")
            out.append(prior)
            continue
        if merged.state != "active":
            found.warnings.append(
                f"{r.label}: EC2 says it is {merged.state}: not used (only active reservations are)"
            )
        elif merged.available == 0:
            found.warnings.append(f"{r.label}: no instance free in it (AvailableInstanceCount 0)")
        out.append(merged)
    found.reservations = tuple(out)
    return found
