"""What DescribeCapacityReservations says, merged into the configured reservations
(``app.adapters.ec2.reservations``): type and AZ filled in, contradictions named,
states and free instances kept, an id looked for in each region, an unknown id among
known ones asked about alone. The EC2 side here is a fake client (the wire is in
tests/e2e/test_ec2_reservations.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from app.adapters.ec2.errors import EC2Error
from app.adapters.ec2.reservations import NOT_FOUND, ReservationMismatch, discover, merge
from app.core.scheduler import Reservation

CR, CR2 = "cr-0123456789abcdef0", "cr-0123456789abcdef1"
START = datetime(2026, 12, 5, 11, 30, tzinfo=UTC)
END = datetime(2026, 12, 6, 11, 30, tzinfo=UTC)


def said(rid: str = CR, **over: Any) -> dict[str, Any]:
    return {"CapacityReservationId": rid, "InstanceType": "p5.48xlarge",
            "AvailabilityZone": "us-west-2b", "State": "active", "AvailableInstanceCount": 2,
            "TotalInstanceCount": 2, "ReservationType": "default", **over}


class FakeEC2:
    """One region's DescribeCapacityReservations: refuses the whole call when one id is
    not its own, as EC2 does."""

    def __init__(self, *known: dict[str, Any], error: EC2Error | None = None) -> None:
        self.known = {k["CapacityReservationId"]: k for k in known}
        self.error = error
        self.calls: list[list[str]] = []

    async def capacity_reservations(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        self.calls.append(list(ids))
        if self.error is not None:
            raise self.error
        unknown = [i for i in ids if i not in self.known]
        if unknown:
            raise EC2Error(NOT_FOUND, f"The capacity reservation ID '{unknown[0]}' does not exist")
        return [self.known[i] for i in ids]


def test_merge_fills_in_what_the_entry_left_out_and_names_contradictions() -> None:
    bare = Reservation(CR, "", "", "", kind_given=False)  # {"id": "cr-..."} only
    got = merge(bare, said(StartDate=START, EndDate=END, ReservationType="capacity-block",
                           State="active"))
    assert (got.instance_type, got.az, got.region) == ("p5.48xlarge", "us-west-2b", "us-west-2")
    assert (got.starts, got.ends, got.state, got.available) == (START, END, "active", 2)
    assert got.kind == "capacity-block"  # EC2's ReservationType
    odcr = Reservation(CR, "", "", "", "on-demand")  # "kind": "on-demand" given
    with pytest.raises(ReservationMismatch, match=r"kind='on-demand', but EC2 says .* Capacity"):
        merge(odcr, said(ReservationType="capacity-block"))
    wrong = Reservation(CR, "p4d.24xlarge", "us-west-2b", "us-west-2")
    with pytest.raises(ReservationMismatch, match=re.escape(
            "instance_type='p4d.24xlarge', but EC2 says cr-0123456789abcdef0 is 'p5.48xlarge'")):
        merge(wrong, said())
    elsewhere = Reservation(CR, "p5.48xlarge", "us-west-2a", "us-west-2")
    with pytest.raises(ReservationMismatch, match=r"az='us-west-2a', but EC2 says .*'us-west-2b'"):
        merge(elsewhere, said())
    # a window the operator gave: EC2's wins
    mine = Reservation(CR, "", "", "", "capacity-block", starts=END)
    assert merge(mine, said(StartDate=START, ReservationType="capacity-block")).starts == START


async def test_an_id_is_looked_for_in_each_region_and_an_unknown_one_asked_alone() -> None:
    east = FakeEC2()
    west = FakeEC2(said(), said(CR2, State="expired", AvailableInstanceCount=0))
    configured = (Reservation(CR, "", "", ""), Reservation(CR2, "", "us-west-2b", "us-west-2"),
                  Reservation("cr-0123456789abcdef9", "", "", ""))
    found = await discover(configured, {"us-east-1": east, "us-west-2": west},
                           ("us-east-1", "us-west-2"))
    first, expired, missing = found.reservations
    assert (first.instance_type, first.region, first.state) == (
        "p5.48xlarge", "us-west-2", "active")
    assert (expired.state, expired.available) == ("expired", 0)
    assert missing.state == "not found" and found.missing == ["cr-0123456789abcdef9"]
    assert any("EC2 says it is expired: not used" in w for w in found.warnings)
    # east: the two without an AZ together, then each alone; west: all three, then alone
    assert east.calls == [[CR, "cr-0123456789abcdef9"], [CR], ["cr-0123456789abcdef9"]]
    assert west.calls[0] == [CR, CR2, "cr-0123456789abcdef9"]
    assert sorted(west.calls[1:]) == sorted([[CR], [CR2], ["cr-0123456789abcdef9"]])


async def test_when_ec2_cannot_be_asked_the_last_answer_is_kept() -> None:
    configured = (Reservation(CR, "", "us-west-2b", "us-west-2"),)
    ok = FakeEC2(said(AvailableInstanceCount=0))
    first = await discover(configured, {"us-west-2": ok}, ("us-west-2",))
    assert first.reservations[0].available == 0
    down = FakeEC2(error=EC2Error("UnauthorizedOperation", "not allowed"))
    again = await discover(configured, {"us-west-2": down}, ("us-west-2",), first.reservations)
    assert again.reservations == first.reservations
    assert "DescribeCapacityReservations in us-west-2 failed" in again.warnings[0]
    # a contradiction on a refresh is a warning (the last answer kept); at start an error
    other = FakeEC2(said(AvailabilityZone="us-west-2c"))
    later = await discover(configured, {"us-west-2": other}, ("us-west-2",), first.reservations)
    assert later.reservations == first.reservations and "but EC2 says" in later.warnings[0]
    with pytest.raises(ReservationMismatch):
        await discover(configured, {"us-west-2": other}, ("us-west-2",), strict=True)
