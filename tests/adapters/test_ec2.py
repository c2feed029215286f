"""The EC2 adapter against moto's server mode (``moto_server``): real boto3 over HTTP on
loopback, faults injected at botocore's ``before-call`` event, and one simulated boot that
runs the user data moto recorded, for real, in a throwaway root."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from app.adapters.ec2 import (
    CapacityError,
    EC2Client,
    EC2Config,
    EC2ConfigError,
    EC2Error,
    RetryPolicy,
    make_boto_client,
    parse_registration,
    user_data,
)
from app.adapters.ec2.userdata import AGENT_PATH, ENV_FILE, RUNNER, UNIT_FILE
from app.agentbuild import AgentPackage
from app.core.scheduler.prices import SpotPrices
from tests.agent.conftest import AGENT_TOKEN, StubServer
from tests.e2e.machine import Machine

REGION = "us-west-2"  # this module's own region on the shared moto server
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REPO_ROOT = Path(__file__).resolve().parents[2]
SHA = "ab" * 32
AGENT_URL = "https://ployd.example.com/agent/ployd-agent.pyz"


def script_for(server: str, token: str, agent_id: str, **kw: Any) -> str:
    kw.setdefault("agent_url", AGENT_URL)
    kw.setdefault("agent_sha256", SHA)
    return user_data(server, token, agent_id, **kw)


# -- fixtures ---------------------------------------------------------------------------


def raw_client(url: str, service: str = "ec2") -> Any:
    return boto3.session.Session(region_name=REGION, **KEYS).client(service, endpoint_url=url)


@pytest.fixture(scope="module")
def aws(moto_server: str) -> Iterator[dict[str, Any]]:
    """A VPC with two subnets (two AZs), a security group, an instance profile, an AMI.
    At the end of the module, moto must list no live instance tagged ployd:managed."""
    ec2, iam = raw_client(moto_server), raw_client(moto_server, "iam")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        az: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        for az, cidr in ((f"{REGION}a", "10.42.1.0/24"), (f"{REGION}b", "10.42.2.0/24"))
    }
    sg = ec2.create_security_group(GroupName="ployd-agents", Description="x", VpcId=vpc)
    profile = iam.create_instance_profile(InstanceProfileName="ployd-agent")["InstanceProfile"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]
    yield {
        "url": moto_server, "ec2": ec2, "subnets": subnets, "sg": sg["GroupId"],
        "profile": "ployd-agent", "profile_arn": profile["Arn"], "ami": image["ImageId"],
        "root_device": image["RootDeviceName"],
    }
    leftovers = ec2.describe_instances(Filters=[
        {"Name": "tag:ployd:managed", "Values": ["true"]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ])["Reservations"]
    assert leftovers == [], "a test left managed instances running"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture(scope="module")
def boto(aws: dict[str, Any]) -> Any:
    """One botocore client for the module (building one takes ~0.5 s); ``hook`` removes
    every handler a test adds to it."""
    config = EC2Config(
        region=REGION, subnets=tuple(aws["subnets"].values()), security_group=aws["sg"],
        instance_profile=aws["profile"], amis={"default": aws["ami"]}, endpoint_url=aws["url"],
    )
    return make_boto_client(config, **KEYS)


_hooks: list[tuple[str, str]] = []


def hook(client: EC2Client, event: str, handler: Callable[..., Any]) -> None:
    """Register ``handler`` for botocore's ``event`` until the end of the test."""
    uid = uuid.uuid4().hex
    client.boto.meta.events.register(event, handler, unique_id=uid)
    _hooks.append((event, uid))


@pytest.fixture
def client(boto: Any, sleeps: list[float]) -> Iterator[EC2Client]:
    async def sleep(s: float) -> None:
        sleeps.append(s)

    yield EC2Client(boto, sleep=sleep, retry=RetryPolicy(4))
    while _hooks:
        event, uid = _hooks.pop()
        boto.meta.events.unregister(event, unique_id=uid)


def launch_kwargs(aws: dict[str, Any], **over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "user_data": script_for("http://127.0.0.1:9", "one-time-token-1", "agent-1"),
        "tags": {"ployd:job": "42", "ployd:tenant": "acme", "ployd:pool": "gpu"},
        "root_gb": 150, "ami": aws["ami"], "instance_profile": aws["profile"],
        "security_group": aws["sg"], "client_token": uuid.uuid4().hex,
    }
    kw.update(over)
    return kw


def described(aws: dict[str, Any], instance_id: str) -> dict[str, Any]:
    res = aws["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance: dict[str, Any] = res[0]["Instances"][0]
    return instance


def recorded_user_data(aws: dict[str, Any], instance_id: str) -> str:
    attr = aws["ec2"].describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(attr["UserData"]["Value"]).decode()


def inject(client: EC2Client, operation: str, codes: list[str], status: int = 400) -> list[str]:
    """The next ``len(codes)`` calls of ``operation`` fail with these codes, before any
    request is sent; returns the list, which empties as the faults are served."""
    pending = list(codes)

    def handler(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not pending:
            return None
        code = pending.pop(0)
        body = {"Error": {"Code": code, "Message": f"injected {code}"},
                "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("http://injected", status, {}, None), body

    hook(client, f"before-call.ec2.{operation}", handler)
    return pending


# -- config -----------------------------------------------------------------------------

GOOD_ENV = {
    "PLOYD_AWS_REGION": "eu-central-1",
    "PLOYD_EC2_SUBNETS": "subnet-0123456789abcdef0, subnet-0123456789abcdef1",
    "PLOYD_EC2_SECURITY_GROUP": "sg-0123456789abcdef0",
    "PLOYD_EC2_INSTANCE_PROFILE": "ployd-agent",
    "PLOYD_EC2_AMIS": '{"default": "ami-0123456789abcdef0", "gpu": "ami-0123456789abcdef1"}',
}


def test_config_from_env() -> None:
    c = EC2Config.from_env({**GOOD_ENV, "PLOYD_EC2_ROOT_GB": "200"})
    assert c.region == "eu-central-1" and c.endpoint_url is None and c.root_gb == 200
    assert c.subnets == ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")
    assert c.image_for("gpu").value == "ami-0123456789abcdef1"
    assert c.image_for("cpu-large").value == "ami-0123456789abcdef0"
    assert EC2Config.from_env(GOOD_ENV).root_gb == 100
    lt = EC2Config.from_env({**GOOD_ENV, "PLOYD_EC2_AMIS": "",
                             "PLOYD_EC2_LAUNCH_TEMPLATES": '{"default": "lt-0123456789abcdef0"}'})
    assert (lt.image_for("gpu").kind, lt.image_for("gpu").value) == (
        "launch_template", "lt-0123456789abcdef0")


@pytest.mark.parametrize(("change", "message"), [
    ({"PLOYD_AWS_REGION": ""}, "PLOYD_AWS_REGION"),
    ({"PLOYD_AWS_ENDPOINT_URL": "localhost:5000"}, "expected a URL"),
    ({"PLOYD_EC2_SUBNETS": ""}, "at least one subnet"),
    ({"PLOYD_EC2_SUBNETS": "subnet-0123456789abcdef0,vpc-1"}, "not subnet ids: vpc-1"),
    ({"PLOYD_EC2_SECURITY_GROUP": "default"}, "security group id"),
    ({"PLOYD_EC2_INSTANCE_PROFILE": ""}, "instance profile"),
    ({"PLOYD_EC2_AMIS": "{default: ami-1}"}, "not JSON"),
    ({"PLOYD_EC2_AMIS": '{"gpu": "ami-0123456789abcdef0"}'}, '"default" key'),
    ({"PLOYD_EC2_AMIS": '{"default": "ubuntu"}'}, "not AMI ids: default=ubuntu"),
    ({"PLOYD_EC2_AMIS": ""}, "or PLOYD_EC2_LAUNCH_TEMPLATES"),
    ({"PLOYD_EC2_LAUNCH_TEMPLATES": '{"default": "lt-0123456789abcdef0"}'}, "not both"),
    ({"PLOYD_EC2_ROOT_GB": "big"}, "PLOYD_EC2_ROOT_GB"),
    ({"PLOYD_EC2_ROOT_GB": "4"}, "between 8 and"),
])
def test_config_errors(change: dict[str, str], message: str) -> None:
    with pytest.raises(EC2ConfigError, match=re.escape(message)):
        EC2Config.from_env({**GOOD_ENV, **change})


# -- user data (pure) -------------------------------------------------------------------


def test_user_data_round_trip_and_bash_syntax(tmp_path: Path) -> None:
    """The values land in the script's head; the script itself is executed for real
    below and in tests/e2e/test_bootstrap.py."""
    script = script_for("https://ployd.example.com", "tok.EN-123_abc", "ec2-7", work_dir="/w")
    assert script.startswith("#!/bin/bash\n")
    assert parse_registration(script) == ("https://ployd.example.com", "tok.EN-123_abc", "ec2-7")
    (tmp_path / "ud.sh").write_text(script)
    subprocess.run(["bash", "-n", str(tmp_path / "ud.sh")], check=True)
    head = script.split("\nset -Eeuo pipefail\n", 1)[0]
    assert f"\nPLOYD_AGENT_URL={AGENT_URL}\nPLOYD_AGENT_SHA256={SHA}\n" in head
    assert "\nPLOYD_WORK_DIR=/w\n" in head and f"\nPLOYD_AGENT_PATH={AGENT_PATH}\n" in head
    # the token reaches the agent through systemd's EnvironmentFile, never its command line
    assert script.count("tok.EN-123_abc") == 1 and "--token" not in script
    assert 'ENV_FILE="$ROOT/etc/ployd/agent.env"' in script and "set -x" not in script
    assert "EnvironmentFile=$ENV_FILE" in script
    # no package index, ever: no pip, and no python from the distribution's repositories
    assert not re.search(r"\bpip3?\b", script) and "install -yq python" not in script


@pytest.mark.parametrize(("args", "kw"), [
    (("ftp://x", "token-123456", "a"), {}),
    (("https://x", "tok en 123456", "a"), {}),
    (("https://x", "short", "a"), {}),
    (("https://x", "token-123456", "a;reboot"), {}),
    (("https://x'$(id)", "token-123456", "a"), {}),
    (("https://x", "token-123456", "a"), {"agent_url": "https://x/$(reboot)"}),
    (("https://x", "token-123456", "a"), {"agent_sha256": "abc"}),
    (("https://x", "token-123456", "a"), {"agent_sha256": "AB" * 32}),
])
def test_user_data_rejects_unsafe_values(args: tuple[str, str, str], kw: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not usable in user data"):
        script_for(*args, **kw)


def test_parse_registration_rejects_other_scripts() -> None:
    with pytest.raises(ValueError, match="not PloyD user data"):
        parse_registration("#!/bin/bash\necho hi\n")


# -- launch, as moto recorded it ---------------------------------------------------------


async def test_launch_on_demand_records_every_parameter(
    client: EC2Client, aws: dict[str, Any]
) -> None:
    subnet = aws["subnets"][f"{REGION}a"]
    iid = await client.launch("m5.large", subnet, "on-demand", **launch_kwargs(aws))
    try:
        i = described(aws, iid)
        assert i["InstanceType"] == "m5.large" and i["SubnetId"] == subnet
        assert i["Placement"]["AvailabilityZone"] == f"{REGION}a"
        assert "InstanceLifecycle" not in i
        assert i["MetadataOptions"]["HttpTokens"] == "required"
        assert i["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert i["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        assert [g["GroupId"] for g in i["SecurityGroups"]] == [aws["sg"]]
        assert i["IamInstanceProfile"]["Arn"] == aws["profile_arn"]
        assert i["ClientToken"]
        tags = {t["Key"]: t["Value"] for t in i["Tags"]}
        assert tags == {"ployd:job": "42", "ployd:tenant": "acme", "ployd:pool": "gpu",
                        "ployd:managed": "true"}
        shutdown = aws["ec2"].describe_instance_attribute(
            InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
        assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        (vol,) = aws["ec2"].describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
        assert (vol["Size"], vol["Encrypted"], vol["VolumeType"]) == (150, True, "gp3")
        assert vol["Attachments"][0]["Device"] == aws["root_device"]  # resized, not added
        (bdm,) = i["BlockDeviceMappings"]
        assert bdm["DeviceName"] == aws["root_device"] and bdm["Ebs"]["DeleteOnTermination"]
        assert {t["Key"]: t["Value"] for t in vol["Tags"]} == tags
        assert parse_registration(recorded_user_data(aws, iid)) == (
            "http://127.0.0.1:9", "one-time-token-1", "agent-1")
        assert client.metrics.launches == {"on-demand": 1}
    finally:
        await client.terminate([iid])


async def test_launch_spot_with_instance_profile_arn(
    client: EC2Client, aws: dict[str, Any]
) -> None:
    subnet = aws["subnets"][f"{REGION}b"]
    kw = launch_kwargs(aws, instance_profile=aws["profile_arn"], tags={"ployd:job": "1"})
    iid = await client.launch("g5.xlarge", subnet, "spot", spot_max_price=1.25, **kw)
    try:
        i = described(aws, iid)
        assert i["InstanceLifecycle"] == "spot" and i["InstanceType"] == "g5.xlarge"
        assert i["IamInstanceProfile"]["Arn"] == aws["profile_arn"]
        # ployd:managed is always added: an untagged instance would escape the reaper
        assert {"Key": "ployd:managed", "Value": "true"} in i["Tags"]
        (info,) = [m for m in await client.describe_managed() if m.instance_id == iid]
        assert (info.market, info.az, info.state) == ("spot", f"{REGION}b", "running")
        assert client.metrics.launches == {"spot": 1}
    finally:
        await client.terminate([iid])


async def test_launch_from_launch_template(client: EC2Client, aws: dict[str, Any]) -> None:
    name = f"ployd-{uuid.uuid4().hex[:8]}"
    aws["ec2"].create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": aws["ami"]})
    kw = launch_kwargs(aws, ami=None, launch_template=name)
    iid = await client.launch("c6i.large", aws["subnets"][f"{REGION}a"], "on-demand", **kw)
    try:
        i = described(aws, iid)
        assert i["ImageId"] == aws["ami"] and i["MetadataOptions"]["HttpTokens"] == "required"
    finally:
        await client.terminate([iid])


async def test_launch_argument_errors(client: EC2Client, aws: dict[str, Any]) -> None:
    subnet = aws["subnets"][f"{REGION}a"]
    with pytest.raises(ValueError, match="exactly one"):
        await client.launch("m5.large", subnet, "spot", **launch_kwargs(aws, launch_template="x"))
    with pytest.raises(ValueError, match="market"):
        await client.launch("m5.large", subnet, "reserved", **launch_kwargs(aws))  # type: ignore[arg-type]
    assert client.metrics.calls["RunInstances"] == 0


async def test_boto_runs_off_the_event_loop(client: EC2Client) -> None:
    threads: list[threading.Thread] = []
    hook(client, "before-call.ec2.DescribeInstances",
         lambda **_: threads.append(threading.current_thread()))
    await client.describe_managed()
    assert threads and threading.main_thread() not in threads


# -- errors: capacity, throttling, the rest ---------------------------------------------


@pytest.mark.parametrize(("code", "kind"), [
    ("InsufficientInstanceCapacity", "no_capacity"),
    ("InsufficientFreeAddressesInSubnet", "no_capacity"),
    ("SpotMaxPriceTooLow", "price"),
    ("Unsupported", "unsupported"),
])
async def test_capacity_errors_are_classified_and_not_retried(
    client: EC2Client, aws: dict[str, Any], sleeps: list[float], code: str, kind: str
) -> None:
    inject(client, "RunInstances", [code])
    with pytest.raises(CapacityError) as caught:
        await client.launch("p4d.24xlarge", aws["subnets"][f"{REGION}a"], "spot",
                            **launch_kwargs(aws))
    assert (caught.value.kind, caught.value.code) == (kind, code)
    assert sleeps == [] and client.metrics.calls["RunInstances"] == 1
    assert client.metrics.fallbacks == {kind: 1}


@pytest.mark.parametrize(("code", "message", "cls", "setting"), [
    ("VcpuLimitExceeded", "over your vCPU limit", "QuotaError", None),
    ("InstanceLimitExceeded", "over your limit", "QuotaError", None),
    ("MaxSpotInstanceCountExceeded", "too many spot", "QuotaError", None),
    ("AuthFailure.ServiceLinkedRoleCreationNotPermitted", "no role", "SpotUnavailableError", None),
    ("Unsupported", "spot is not supported for t1.micro", "SpotUnavailableError", None),
    ("InvalidAMIID.NotFound", "no such image", "BadRequestError", "PLOYD_EC2_AMIS"),
    ("InvalidAMIID.Malformed", "bad id", "BadRequestError", "PLOYD_EC2_AMIS"),
    ("InvalidSubnetID.NotFound", "no subnet", "BadRequestError", "PLOYD_EC2_SUBNETS"),
    ("InvalidBlockDeviceMapping", "too small", "BadRequestError", "PLOYD_EC2_ROOT_GB"),
    ("UnauthorizedOperation", "not allowed", "BadRequestError", "IAM policy"),
    ("InvalidParameterValue", "Value (x) for parameter iamInstanceProfile.name is invalid",
     "BadRequestError", "PLOYD_EC2_INSTANCE_PROFILE"),
])
def test_launch_refusals_that_are_not_capacity_are_classified(
    code: str, message: str, cls: str, setting: str | None
) -> None:
    from app.adapters.ec2 import errors

    err = errors.classify(code, message, "RunInstances")
    assert type(err).__name__ == cls and not err.transient
    if setting is not None:
        assert isinstance(err, errors.BadRequestError) and setting in err.setting
    # elsewhere than RunInstances these are plain EC2 errors
    assert type(errors.classify(code, message, "DescribeImages")) is errors.EC2Error


@pytest.mark.parametrize(("itype", "market", "code"), [
    ("g6.xlarge", "on-demand", "L-DB2E81BA"),
    ("g4dn.12xlarge", "spot", "L-3819A6DF"),
    ("p5.48xlarge", "on-demand", "L-417A185B"),
    ("p4d.24xlarge", "spot", "L-7212CCBC"),
    ("c7i.2xlarge", "on-demand", "L-1216C47A"),
    ("inf2.xlarge", "on-demand", "L-1945791B"),
    ("trn1.32xlarge", "spot", "L-6B0D517C"),
    ("hpc7g.4xlarge", "on-demand", ""),
])
def test_the_quota_a_launch_counts_against(itype: str, market: str, code: str) -> None:
    from app.adapters.ec2.errors import quota_for

    q = quota_for(itype, market)
    assert q.code == code and q.name
    assert ("Spot" in q.name) == (market == "spot")


async def test_no_capacity_then_next_candidate_launches(
    client: EC2Client, aws: dict[str, Any]
) -> None:
    """What the dispatcher does: on CapacityError, at once the next candidate."""
    inject(client, "RunInstances", ["InsufficientInstanceCapacity"] * 2)
    candidates = [("p5.48xlarge", "spot"), ("p5.48xlarge", "on-demand"), ("g6.xlarge", "spot")]
    launched, refused = None, []
    for itype, market in candidates:
        try:
            launched = await client.launch(itype, aws["subnets"][f"{REGION}a"], market,  # type: ignore[arg-type]
                                           **launch_kwargs(aws))
            break
        except CapacityError as exc:
            refused.append((itype, market, exc.kind))
    assert launched is not None
    try:
        assert refused == [("p5.48xlarge", "spot", "no_capacity"),
                           ("p5.48xlarge", "on-demand", "no_capacity")]
        assert described(aws, launched)["InstanceType"] == "g6.xlarge"
    finally:
        await client.terminate([launched])


async def test_throttling_is_retried_with_backoff(
    client: EC2Client, aws: dict[str, Any], sleeps: list[float]
) -> None:
    left = inject(client, "RunInstances", ["RequestLimitExceeded", "Throttling"], status=503)
    iid = await client.launch("m5.large", aws["subnets"][f"{REGION}a"], "on-demand",
                              **launch_kwargs(aws))
    try:
        assert left == [] and sleeps == [0.5, 1.0]
        assert client.metrics.retries == 2 and client.metrics.calls["RunInstances"] == 3
        assert client.metrics.errors == {"RequestLimitExceeded": 1, "Throttling": 1}
    finally:
        await client.terminate([iid])


async def test_throttling_gives_up_after_the_budget(
    client: EC2Client, sleeps: list[float]
) -> None:
    inject(client, "DescribeInstances", ["RequestLimitExceeded"] * 10, status=503)
    with pytest.raises(EC2Error) as caught:
        await client.describe_managed()
    assert caught.value.code == "RequestLimitExceeded" and caught.value.transient
    assert sleeps == [0.5, 1.0, 2.0]  # RetryPolicy(4): four attempts


async def test_other_errors_raise_at_once(
    client: EC2Client, aws: dict[str, Any], sleeps: list[float]
) -> None:
    with pytest.raises(EC2Error) as caught:
        await client.launch("m5.large", "subnet-0000000000000000a", "on-demand",
                            **launch_kwargs(aws))
    assert not isinstance(caught.value, CapacityError)
    assert caught.value.code == "InvalidSubnetID.NotFound" and not caught.value.transient
    assert caught.value.operation == "RunInstances" and sleeps == []


async def test_unreachable_endpoint_is_retried_then_raised(sleeps: list[float]) -> None:
    async def sleep(s: float) -> None:
        sleeps.append(s)

    config = EC2Config(region=REGION, subnets=("subnet-0123456789abcdef0",),
                       security_group="sg-0123456789abcdef0", instance_profile="p",
                       amis={"default": "ami-0123456789abcdef0"},
                       endpoint_url="http://127.0.0.1:9")  # discard port: refused
    client = EC2Client(make_boto_client(config, **KEYS), sleep=sleep, retry=RetryPolicy(3))
    with pytest.raises(EC2Error) as caught:
        await client.state("i-0123456789abcdef0")
    assert caught.value.code == "" and caught.value.transient and sleeps == [0.5, 1.0]
    assert client.metrics.errors == {"unreachable": 3}


# -- terminate, describe_managed, state, prices, subnets ----------------------------------


async def test_terminate_is_idempotent_and_state_follows(
    client: EC2Client, aws: dict[str, Any]
) -> None:
    a = await client.launch("m5.large", aws["subnets"][f"{REGION}a"], "on-demand",
                            **launch_kwargs(aws))
    b = await client.launch("m5.large", aws["subnets"][f"{REGION}b"], "spot",
                            **launch_kwargs(aws))
    assert await client.state(a) == "running"
    unknown = "i-0123456789abcdef0"
    await client.terminate([a, unknown, b, a])  # an unknown id does not stop the others
    assert (await client.state(a), await client.state(b)) == ("terminated", "terminated")
    await client.terminate([a, b])  # again: no error
    await client.terminate([unknown])
    await client.terminate([])
    assert await client.state(unknown) == "unknown"


async def test_describe_managed_lists_only_managed_live_instances(
    client: EC2Client, aws: dict[str, Any]
) -> None:
    ours = await client.launch("m5.large", aws["subnets"][f"{REGION}a"], "on-demand",
                               **launch_kwargs(aws))
    other = aws["ec2"].run_instances(ImageId=aws["ami"], MinCount=1, MaxCount=1,
                                     SubnetId=aws["subnets"][f"{REGION}a"],
                                     TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                         {"Key": "ployd:managed", "Value": "false"}]}])
    other_id = other["Instances"][0]["InstanceId"]
    try:
        managed = {m.instance_id: m for m in await client.describe_managed()}
        assert ours in managed and other_id not in managed
        info = managed[ours]
        assert (info.state, info.instance_type, info.market) == ("running", "m5.large",
                                                                 "on-demand")
        assert info.tags["ployd:tenant"] == "acme" and info.launch_time.tzinfo is not None
    finally:
        await client.terminate([ours])
        aws["ec2"].terminate_instances(InstanceIds=[other_id])
    assert ours not in {m.instance_id for m in await client.describe_managed()}
    assert ours in {m.instance_id for m in await client.describe_managed(include_terminated=True)}


async def test_spot_price_history_feeds_the_scheduler_cache(client: EC2Client) -> None:
    azs = [f"{REGION}a", f"{REGION}b"]
    records = await client.spot_price_history(["m5.large", "g5.xlarge"], azs)
    pairs = {(r["InstanceType"], r["AvailabilityZone"]) for r in records}
    assert pairs == {(t, az) for t in ("m5.large", "g5.xlarge") for az in azs}
    assert len(records) == len(pairs)  # one, the newest, per pair
    for r in records:
        assert set(r) == {"InstanceType", "AvailabilityZone", "SpotPrice", "Timestamp",
                          "ProductDescription"}
        assert float(r["SpotPrice"]) >= 0
    cache = SpotPrices()
    assert cache.update(records) == len(pairs)
    assert cache.get("m5.large", f"{REGION}a") is not None
    assert await client.spot_price_history([], azs) == []


async def test_subnet_azs(client: EC2Client, aws: dict[str, Any]) -> None:
    assert await client.subnet_azs(list(aws["subnets"].values())) == {
        sid: az for az, sid in aws["subnets"].items()}
    with pytest.raises(EC2Error, match=r"InvalidSubnetID\.NotFound"):
        await client.subnet_azs(["subnet-0000000000000000a"])


# -- a simulated boot: the real agent, with the token moto recorded ------------------------


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def test_booted_instance_runs_the_agent_and_retires(
    client: EC2Client, aws: dict[str, Any], aiohttp_server: Any,
    make_repo: Callable[..., tuple[Path, str]], tmp_path: Path,
) -> None:
    """Launch with user data for a stub PloyD server; read the user data back from moto;
    run it in a throwaway root (the agent file baked into the "image", ``systemctl`` and
    ``shutdown`` stubbed); the agent it starts claims and runs a job; when the agent
    exits, the runner shuts the machine down."""
    stub = StubServer()
    stub.url = str((await aiohttp_server(stub.app())).make_url("")).rstrip("/")
    agent = AgentPackage.build()
    script = user_data(stub.url, AGENT_TOKEN, "ec2-agent-1",
                       agent_url=f"{stub.url}/agent/ployd-agent.pyz", agent_sha256=agent.sha256)
    iid = await client.launch("m5.large", aws["subnets"][f"{REGION}a"], "on-demand",
                              **launch_kwargs(aws, user_data=script))
    try:
        booted = await asyncio.to_thread(recorded_user_data, aws, iid)
    finally:
        await client.terminate([iid])
    server_url, token, agent_id = parse_registration(booted)
    assert (server_url, token, agent_id) == (stub.url, AGENT_TOKEN, "ec2-agent-1")

    machine = Machine(tmp_path / "machine")
    machine.path(AGENT_PATH).parent.mkdir(parents=True)
    machine.path(AGENT_PATH).write_bytes(agent.data)  # baked: the stub serves no agent
    assert RUNNER.startswith("/usr/local/lib/ployd/")
    try:
        assert await machine.run(booted) == 0, machine.output
        assert "using the agent baked into the image" in machine.output
        assert oct(machine.path(ENV_FILE).stat().st_mode & 0o777) == "0o600"
        assert machine.path(UNIT_FILE).exists()
        repo, sha = make_repo({"hello.txt": "hi\n"})
        attempt = stub.add_job(str(repo), sha, [{"run": "cat hello.txt"}])
        await asyncio.wait_for(attempt.finished.wait(), 60)
        assert attempt.agent_id == agent_id
        assert attempt.finish is not None and "hi" in attempt.text
        assert machine.calls("shutdown") == []
        runner = machine.agent_pid  # the unit's process: the runner, the agent its child
        assert runner is not None
        agents = _children(runner)  # the agent decides to stop (here: told to)
        assert len(agents) == 1
        os.kill(agents[0], signal.SIGTERM)
        await machine.exited()  # the runner exits after the agent
        assert machine.calls("shutdown") == ["-h now"]
    finally:
        machine.kill()
