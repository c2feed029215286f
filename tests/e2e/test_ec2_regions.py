"""Regions and reserved capacity end to end, on moto's server (two regions of it):
the cheaper region's subnet is launched in (on-demand prices from a fake Pricing API
at the HTTP level), its machine row records that region, and terminating and reaping
use that region's client; a capacity reservation (or Capacity Block) is the first
candidate, and the RunInstances request on the wire carries it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from app.adapters.ec2.config import EC2Config
from app.adapters.ec2.pricing import PricingClient
from app.core.scheduler import Reservation
from app.store.models import Instance
from tests.e2e.ec2_world import KEYS, EC2World
from tests.fakes.pricing import FakePricing

OTHER = "ca-central-1"  # the second region (no other EC2 test uses it)
CONFIG = (
    "version: 1\njobs:\n  gpu:\n    hardware: l4\n    spot: {spot}\n"
    "    steps: [{{run: 'echo on-gpu'}}]\n"
)


def rows(w: EC2World) -> list[Instance]:
    with w.h.engine.db.session() as s:  # type: ignore[union-attr]
        return [m for m in s.query(Instance).order_by(Instance.id) if m.instance_id]


def two_regions(w: EC2World) -> EC2Config:
    """The world's two subnets, and one in ``OTHER``."""
    home = w.network()
    other = w.boto_in(OTHER)
    vpc = other.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = other.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24",
                                 AvailabilityZone=f"{OTHER}a")["Subnet"]["SubnetId"]
    sg = other.create_security_group(GroupName="ployd-runners", Description="r",
                                     VpcId=vpc)["GroupId"]
    ami = other.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return replace(home, subnets=(*home.subnets, subnet), subnet_regions={subnet: OTHER},
                   security_groups={OTHER: sg},
                   amis={**home.amis, f"{OTHER}:default": ami})


def wire(w: EC2World, region: str = "") -> list[dict[str, list[str]]]:
    """Every RunInstances request the executor's client of ``region`` sends, as the
    form fields on the wire."""
    sent: list[dict[str, list[str]]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(parse_qs(request.body.decode() if isinstance(request.body, bytes)
                             else str(request.body)))

    assert w.executor is not None
    w.executor.client(region).boto.meta.events.register("before-send.ec2.RunInstances", record)
    return sent


@pytest.fixture
async def fake_pricing() -> AsyncIterator[FakePricing]:
    fake = FakePricing()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_the_cheaper_regions_subnet_is_launched_in_and_its_client_ends_it(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]],
    fake_pricing: FakePricing,
) -> None:
    pricing = await PricingClient.open(fake_pricing.url, session=dict(KEYS))
    async with ec2_world(network=two_regions, pricing=pricing) as w:
        w: EC2World
        other = w.boto_in(OTHER)
        fake_pricing.prices = {("g6.xlarge", OTHER): 0.52, ("g6.xlarge", w.region): 0.8048}
        sent = wire(w, OTHER)
        repo, _ = make_repo({".ployd.yml": CONFIG.format(spot="never")})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        (machine,) = rows(w)
        assert (machine.region, machine.instance_type, machine.price_hourly) == (
            OTHER, "g6.xlarge", 0.52)
        assert w.executor is not None
        assert machine.subnet_id == w.executor.config.subnets[-1]
        assert len(sent) == 1  # the first candidate: no other region was asked
        found = other.describe_instances(InstanceIds=[machine.instance_id])
        (inst,) = found["Reservations"][0]["Instances"]
        assert inst["Placement"]["AvailabilityZone"] == f"{OTHER}a"
        assert w.h.job(pid, "gpu").attempts[0].price_hourly == 0.52
        # both regions were priced, each by its region code, and asked for spot prices
        # by their own client
        assert {c["regionCode"] for c in fake_pricing.calls} == {w.region, OTHER}
        for region in (w.region, OTHER):
            assert w.executor.client(region).metrics.calls["DescribeSpotPriceHistory"] >= 1
        assert w.executor.client(OTHER) is not w.executor.client(w.region)

        # an orphan in the other region: the reaper finds and ends it there
        orphan = other.run_instances(
            ImageId=other.describe_images(Owners=["amazon"])["Images"][0]["ImageId"],
            MinCount=1, MaxCount=1, InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "ployd:managed", "Value": "true"},
                {"Key": "ployd:deployment", "Value": w.executor.deployment}]}],
        )["Instances"][0]["InstanceId"]
        assert await w.executor.reap() == 1
        state = other.describe_instances(InstanceIds=[orphan])
        assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"

        # retiring the machine terminates it with its region's client
        assert await w.executor.retire_all("done") == 1
        state = other.describe_instances(InstanceIds=[machine.instance_id])
        assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"


@pytest.mark.parametrize("kind", ["on-demand", "capacity-block"])
async def test_a_reservation_is_the_first_candidate_and_runinstances_carries_it(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], kind: str
) -> None:
    rid = "cr-0123456789abcdef0"

    def reserved(w: EC2World) -> EC2Config:
        r = Reservation(rid, "g6.2xlarge", f"{w.region}b", w.region, kind)  # type: ignore[arg-type]
        assert w.proxy is not None  # EC2 (the proxy: moto has none) knows it
        w.proxy.reserve(rid, "g6.2xlarge", f"{w.region}b",
                        kind="capacity-block" if kind == "capacity-block" else "default")
        return replace(w.network(), reservations=(r,))

    async with ec2_world(network=reserved, proxy=True) as w:
        w: EC2World
        sent = wire(w)
        repo, _ = make_repo({".ployd.yml": CONFIG.format(spot="auto")})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        first = sent[0]
        assert first["InstanceType"] == ["g6.2xlarge"]  # not the cheaper g6.xlarge spot
        assert first["CapacityReservationSpecification.CapacityReservationTarget"
                     ".CapacityReservationId"] == [rid]
        market = first.get("InstanceMarketOptions.MarketType")
        assert market == (["capacity-block"] if kind == "capacity-block" else None)
        assert w.executor is not None
        assert first["SubnetId"] == [w.executor.config.subnets[1]]  # the reservation's AZ
        (machine,) = rows(w)
        assert (machine.reservation, machine.region, machine.market) == (rid, w.region, kind)
