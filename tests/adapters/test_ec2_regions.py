"""Regions, capacity reservations and on-demand prices per region: the settings
(``PLOYD_EC2_SUBNETS`` with ``REGION:subnet-...``, ``PLOYD_EC2_CAPACITY_RESERVATIONS``,
``PLOYD_EC2_PRICING``) and the Pricing API client against a fake Pricing endpoint at the
HTTP level (an answer, and errors as AWS sends them: the catalog stays the fallback)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from app.adapters.ec2.config import EC2Config, EC2ConfigError
from app.adapters.ec2.errors import CloudError
from app.adapters.ec2.pricing import PricingClient
from app.adapters.ec2.transport import RetryPolicy
from app.core.config.model import SpotPolicy, Workload
from app.core.hardware import Catalog, parse_spec
from app.core.scheduler import Fleet, OnDemandPrices, Placement, Requirements, Scheduler
from tests.fakes.pricing import FakePricing

KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
A, B = "subnet-0123456789abcdef0", "subnet-0123456789abcdef1"
ENV = {
    "PLOYD_AWS_REGION": "us-east-1",
    "PLOYD_EC2_SUBNETS": f"{A}, us-west-2:{B}",
    "PLOYD_EC2_SECURITY_GROUP": "sg-0123456789abcdef0,us-west-2:sg-0123456789abcdef1",
    "PLOYD_EC2_INSTANCE_PROFILE": "ployd-agent",
    "PLOYD_EC2_AMIS": json.dumps(
        {"default": "ami-0123456789abcdef0", "us-west-2:default": "ami-0123456789abcdef1"}
    ),
}
ODCR = {"id": "cr-0123456789abcdef0", "instance_type": "g6.xlarge", "az": "us-west-2a"}


def test_subnets_name_their_region_and_bare_ones_are_the_home_region() -> None:
    c = EC2Config.from_env(ENV)
    assert c.subnets == (A, B)
    assert (c.region_of(A), c.region_of(B)) == ("us-east-1", "us-west-2")
    assert c.regions == ("us-east-1", "us-west-2")
    west = c.in_region("us-west-2")
    assert (west.region, west.subnets) == ("us-west-2", (B,))
    assert c.pricing and c.reservations == ()
    only_west = EC2Config.from_env({**ENV, "PLOYD_EC2_SUBNETS": f"us-west-2:{B}"})
    assert only_west.regions == ("us-west-2",)
    assert EC2Config.from_env({**ENV, "PLOYD_EC2_SUBNETS": A}).regions == ("us-east-1",)


def test_security_groups_and_image_ids_are_per_region() -> None:
    env = {**ENV, "PLOYD_EC2_AMIS": json.dumps({"default": "ami-0123456789abcdef0",
                                         "us-west-2:default": "ami-0123456789abcdef1",
                                         "us-west-2:l4": "ami-0123456789abcdef2"})}
    c = EC2Config.from_env(env)
    assert c.security_group_in("us-east-1") == "sg-0123456789abcdef0"
    assert c.security_group_in("us-west-2") == "sg-0123456789abcdef1"
    west_amis, _ = c.images_in("us-west-2")
    assert dict(west_amis) == {"default": "ami-0123456789abcdef1", "l4": "ami-0123456789abcdef2"}
    assert c.images_in("us-east-1")[0]["default"] == "ami-0123456789abcdef0"
    # launch template names are the same in every region: no per-region key needed
    named = EC2Config.from_env({**env, "PLOYD_EC2_AMIS": "",
                                "PLOYD_EC2_LAUNCH_TEMPLATES": '{"default": "ployd-runner"}'})
    assert named.images_in("us-west-2")[1] == {"default": "ployd-runner"}


def test_reservations_are_read_with_their_region_and_kind() -> None:
    block = {"id": "cr-0123456789abcdef1", "instance_type": "p5.48xlarge",
             "az": "us-east-1a", "kind": "capacity-block", "price_usd_hour": 31.5}
    group = {"resource_group": "arn:aws:resource-groups:us-west-2:123456789012:group/ml",
             "instance_type": "g6.xlarge", "az": "us-west-2b"}
    c = EC2Config.from_env(
        {**ENV, "PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([ODCR, block, group])}
    )
    odcr, blk, grp = c.reservations
    assert (odcr.target, odcr.kind, odcr.region, odcr.price_usd_hour) == (
        "cr-0123456789abcdef0", "on-demand", "us-west-2", None)
    assert (blk.kind, blk.region, blk.price_usd_hour) == ("capacity-block", "us-east-1", 31.5)
    assert grp.by_group and grp.region == "us-west-2"


def test_reservations_take_a_window_tenants_workloads_or_only_an_id() -> None:
    team = {**ODCR, "kind": "capacity-block", "starts": "2026-12-05T11:30:00Z",
            "ends": "2026-12-07T12:30:00+01:00", "tenants": ["github:acme", "gitlab:42"],
            "workloads": ["train", "batch", "train"]}
    bare = {"id": "cr-0123456789abcdef2"}
    c = EC2Config.from_env({**ENV, "PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([team, bare])})
    r, b = c.reservations
    assert (r.starts, r.ends) == (datetime(2026, 12, 5, 11, 30, tzinfo=UTC),
                                  datetime(2026, 12, 7, 11, 30, tzinfo=UTC))
    assert r.tenants == ("github:acme", "gitlab:42")
    assert r.workloads == (Workload.TRAIN, Workload.BATCH)
    # only an id: EC2 says the rest when the server starts (``reservations.discover``)
    assert (b.target, b.instance_type, b.az, b.region, b.known) == (
        "cr-0123456789abcdef2", "", "", "", False)
    assert (r.kind_given, b.kind_given) == (True, False)  # b's kind: EC2's ReservationType


@pytest.mark.parametrize(("change", "message"), [
    ({"PLOYD_EC2_SECURITY_GROUP": "sg-0123456789abcdef0"},
     "no security group for us-west-2 (which has subnets)"),
    ({"PLOYD_EC2_SECURITY_GROUP": "sg-0123456789abcdef0,us-west-2:default"},
     "one per region: sg-...,REGION:sg-..."),
    ({"PLOYD_EC2_SECURITY_GROUP": "sg-0123456789abcdef0,us-east-1:sg-0123456789abcdef1"},
     "two security groups for us-east-1"),
    ({"PLOYD_EC2_AMIS": '{"default": "ami-0123456789abcdef0"}'},
     'ami-0123456789abcdef0 is an id of us-east-1; add "us-west-2:default"'),
    ({"PLOYD_EC2_SUBNETS": f"us-west:{A}"}, f"not subnet ids: us-west:{A}"),
    ({"PLOYD_EC2_SUBNETS": f"{A},us-west-2:{A}"}, f"{A} is listed twice"),
    ({"PLOYD_EC2_SUBNETS": "us-west-2:"}, "not subnet ids: us-west-2:"),
    ({"PLOYD_EC2_PRICING": "live"}, "PLOYD_EC2_PRICING='live'"),
    ({"PLOYD_AWS_PRICING_ENDPOINT_URL": "pricing"}, "expected a URL"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": "{}"}, "expected a JSON list"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": "[cr-1]"}, "not JSON"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "size": 2}])}, "unknown keys"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "id": "r-1"}])}, "cr-..."),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "kind": "spot"}])},
     "expected 'on-demand' or 'capacity-block'"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "az": "eu-west-1a"}])},
     "eu-west-1a is in eu-west-1, which has no subnet"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "az": "us-west-2"}])},
     "expected an availability zone"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "instance_type": 5}])},
     "instance_type=5"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([ODCR, ODCR])}, "listed twice"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps(
        [{**ODCR, "resource_group": "arn:aws:resource-groups:x"}])}, "exactly one of id"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps(
        [{k: v for k, v in ODCR.items() if k != "id"} | {
            "resource_group": "arn:aws:resource-groups:us-west-2:123456789012:group/ml",
            "kind": "capacity-block"}])}, "Capacity Block is named by its id"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "price_usd_hour": -1}])},
     "price_usd_hour=-1"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([ODCR, {**ODCR, "starts": "tomorrow",
                                                            "id": "cr-0123456789abcdef9"}])},
     "PLOYD_EC2_CAPACITY_RESERVATIONS[1]: starts='tomorrow': not an ISO-8601 time"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "ends": "2026-12-05T10:00:00"}])},
     "[0]: ends='2026-12-05T10:00:00': no time zone; give it in UTC"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "ends": 1733392800}])},
     "[0]: ends=1733392800: expected an ISO-8601 UTC time"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{
        **ODCR, "starts": "2026-12-05T10:00:00Z", "ends": "2026-12-05T11:00:00+01:00"}])},
     "[0]: ends='2026-12-05T11:00:00+01:00' is not after starts='2026-12-05T10:00:00Z'"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "tenants": "github:acme"}])},
     "[0]: tenants='github:acme': expected a non-empty list"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "tenants": ["acme"]}])},
     "[0]: tenants: tenant 'acme': name a tenant as forge:id or forge:name"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "workloads": []}])},
     "[0]: workloads=[]: expected a non-empty list of preprocess"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{**ODCR, "workloads": ["training"]}])},
     "[0]: workloads: 'training' not a workload"),
    ({"PLOYD_EC2_CAPACITY_RESERVATIONS": json.dumps([{
        "resource_group": "arn:aws:resource-groups:us-west-2:123456789012:group/ml"}])},
     "[0]: a resource group needs instance_type and az"),
])
def test_bad_region_and_reservation_settings_are_refused_clearly(
    change: dict[str, str], message: str
) -> None:
    with pytest.raises(EC2ConfigError, match=re.escape(message)):
        EC2Config.from_env({**ENV, **change})


@pytest.fixture
async def fake_pricing() -> AsyncIterator[FakePricing]:
    fake = FakePricing()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_pricing_api_prices_per_region_order_candidates_across_regions(
    fake_pricing: FakePricing,
) -> None:
    fake_pricing.prices = {("g6.xlarge", "us-east-1"): 0.8048, ("g6.xlarge", "us-west-2"): 0.61}
    pricing = await PricingClient.open(fake_pricing.url, session=dict(KEYS))
    found = await pricing.prices(["g6.xlarge", "g6.2xlarge"], "us-west-2")
    assert found == {"g6.xlarge": 0.61}  # g6.2xlarge unknown there: the catalog's
    call = next(c for c in fake_pricing.calls if c["instanceType"] == "g6.xlarge")
    assert call["regionCode"] == "us-west-2" and call["operatingSystem"] == "Linux"
    assert call["tenancy"] == "Shared" and call["capacitystatus"] == "Used"

    prices = OnDemandPrices()
    prices.update("us-west-2", found)
    east, west = Placement("us-east-1", "us-east-1a", A), Placement("us-west-2", "us-west-2a", B)
    sched = Scheduler(Catalog.load(None), Fleet((east, west)), None, prices)
    req = Requirements((parse_spec("l4"),), None, Workload.TEST, SpotPolicy.NEVER)
    first, second = sched.candidates(req)[:2]
    assert (first.instance_type, first.placement, first.price_usd_hour) == (
        "g6.xlarge", west, 0.61)
    assert (second.instance_type, second.placement, second.price_usd_hour) == (
        "g6.xlarge", east, 0.8048)  # the catalog's list price: east had no API price
    assert prices.source("us-west-2") == "AWS Pricing API"
    assert prices.source("us-east-1") == "catalog list prices"


@pytest.mark.parametrize(("status", "code"), [
    (400, "AccessDeniedException"),  # no pricing:GetProducts on the role
    (400, "ThrottlingException"),
    (500, "InternalErrorException"),
])
async def test_pricing_errors_fall_back_to_the_catalog(
    fake_pricing: FakePricing, status: int, code: str
) -> None:
    fake_pricing.error = (status, code)

    async def no_wait(_s: float) -> None:
        return None

    pricing = await PricingClient.open(
        fake_pricing.url, session=dict(KEYS), sleep=no_wait, retry=RetryPolicy(2)
    )
    with pytest.raises(CloudError, match=code):
        await pricing.prices(["g6.xlarge"], "us-west-2")
    clock = [0.0]
    prices = OnDemandPrices(retry_s=60, clock=lambda: clock[0])
    prices.failed("us-west-2", code)
    assert not prices.stale("us-west-2")
    clock[0] = 61.0
    assert prices.stale("us-west-2")  # asked again after retry_s, not every pass
    west = Placement("us-west-2", "us-west-2a", B)
    sched = Scheduler(Catalog.load(None), Fleet((west,)), None, prices)
    l4 = Requirements((parse_spec("l4"),), None, Workload.TEST, SpotPolicy.NEVER)
    c = sched.candidates(l4)[0]
    assert (c.instance_type, c.price_usd_hour) == ("g6.xlarge", 0.8048)  # the catalog's
    assert code in prices.source("us-west-2")
