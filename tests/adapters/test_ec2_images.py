"""What an EC2 launch boots, against moto's server: ``resolve:ssm:`` AMIs (a moto SSM
parameter, cached), the root volume's rules (a launch template's mapping kept unless the
job asks for more, never below the AMI's snapshot, a KMS key), GPU classes that need an
image of their own, and boot timeouts per class."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from app.adapters.ec2 import (
    EC2Client,
    EC2Config,
    EC2ConfigError,
    EC2Error,
    RetryPolicy,
    make_boto_client,
)
from app.adapters.ec2.client import SSM_CACHE_S
from app.core.ec2_policy import EC2Policy, PolicyError
from app.core.hardware import Catalog
from tests.adapters.test_ec2 import GOOD_ENV, KEYS, launch_kwargs

REGION = "us-west-1"  # this module's own region on the shared moto server


def raw_client(url: str, service: str = "ec2") -> Any:
    return boto3.session.Session(region_name=REGION, **KEYS).client(service, endpoint_url=url)


@pytest.fixture(scope="module")
def aws(moto_server: str) -> Iterator[dict[str, Any]]:
    """A VPC with a subnet, a security group, an instance profile and an AMI."""
    ec2, iam = raw_client(moto_server), raw_client(moto_server, "iam")
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.43.1.0/24", AvailabilityZone=f"{REGION}a")
    sg = ec2.create_security_group(GroupName="ployd-images", Description="x", VpcId=vpc)
    profile = f"ployd-images-{uuid.uuid4().hex[:6]}"
    iam.create_instance_profile(InstanceProfileName=profile)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]
    yield {
        "url": moto_server,
        "ec2": ec2,
        "subnets": {f"{REGION}a": subnet["Subnet"]["SubnetId"]},
        "sg": sg["GroupId"],
        "profile": profile,
        "ami": image["ImageId"],
        "root_device": image["RootDeviceName"],
    }


@pytest.fixture(scope="module")
def boto(aws: dict[str, Any]) -> Any:
    config = EC2Config(
        region=REGION,
        subnets=tuple(aws["subnets"].values()),
        security_group=aws["sg"],
        instance_profile=aws["profile"],
        amis={"default": aws["ami"]},
        endpoint_url=aws["url"],
    )
    return make_boto_client(config, **KEYS)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


SNAPSHOT_GB: dict[str, int] = {}  # image id -> its root snapshot's size


def snapshot_sizes(parsed: dict[str, Any], **_: Any) -> None:
    """moto answers DescribeImages with 15 GiB for every registered image's root; EC2
    answers its snapshot's size: the answer is set to what EC2 would say."""
    for image in parsed.get("Images", []):
        for m in image.get("BlockDeviceMappings", []):
            if image["ImageId"] in SNAPSHOT_GB and m.get("DeviceName") == image["RootDeviceName"]:
                m["Ebs"]["VolumeSize"] = SNAPSHOT_GB[image["ImageId"]]


@pytest.fixture
def ec2(boto: Any, aws: dict[str, Any], clock: Clock) -> Any:
    """An EC2Client with SSM, and the RunInstances parameters it sends (``sent``)."""

    async def sleep(_s: float) -> None:
        return None

    client = EC2Client(
        boto, sleep=sleep, retry=RetryPolicy(2), clock=clock, ssm=raw_client(aws["url"], "ssm")
    )
    client.sent = []  # type: ignore[attr-defined]
    uid = uuid.uuid4().hex

    def record(params: dict[str, Any], **_: Any) -> None:
        client.sent.append(params)  # type: ignore[attr-defined]

    boto.meta.events.register("before-parameter-build.ec2.RunInstances", record, unique_id=uid)
    boto.meta.events.register(
        "after-call.ec2.DescribeImages", snapshot_sizes, unique_id=uid + "-images"
    )
    yield client
    boto.meta.events.unregister("before-parameter-build.ec2.RunInstances", unique_id=uid)
    boto.meta.events.unregister("after-call.ec2.DescribeImages", unique_id=uid + "-images")


async def launch(ec2: Any, aws: dict[str, Any], **over: Any) -> dict[str, Any]:
    """Launch (then terminate) one instance; the RunInstances parameters sent."""
    kw = launch_kwargs(aws, **over)
    iid = await ec2.launch("g6.xlarge", aws["subnets"][f"{REGION}a"], "on-demand", **kw)
    await ec2.terminate([iid])
    sent: dict[str, Any] = ec2.sent[-1]
    sent["_instance"] = iid
    return sent


def image_with_snapshot(aws: dict[str, Any], gb: int) -> str:
    """A registered AMI whose root snapshot is ``gb`` GiB (as a Deep Learning AMI's is
    larger than PloyD's default root volume)."""
    ec2 = aws["ec2"]
    vol = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=gb)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    image = str(
        ec2.register_image(
            Name=f"dlami-{uuid.uuid4().hex[:8]}",
            RootDeviceName="/dev/sda1",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap, "VolumeSize": gb}}
            ],
        )["ImageId"]
    )
    SNAPSHOT_GB[image] = gb
    return image


def template(aws: dict[str, Any], **data: Any) -> str:
    name = f"ployd-{uuid.uuid4().hex[:8]}"
    aws["ec2"].create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
    return name


# -- resolve:ssm ------------------------------------------------------------------------


async def test_resolve_ssm_ami_is_resolved_once_and_refreshed_after_an_hour(
    ec2: Any, aws: dict[str, Any], clock: Clock
) -> None:
    ssm = raw_client(aws["url"], "ssm")
    name = f"/ployd/test/{uuid.uuid4().hex[:8]}/ami-id"  # /aws/... is AWS's, not settable
    ssm.put_parameter(Name=name, Value=aws["ami"], Type="String", DataType="aws:ec2:image")
    sent = await launch(ec2, aws, ami=f"resolve:ssm:{name}")
    assert sent["ImageId"] == aws["ami"]  # the image the root volume was sized for
    i = aws["ec2"].describe_instances(InstanceIds=[sent["_instance"]])
    assert i["Reservations"][0]["Instances"][0]["ImageId"] == aws["ami"]
    assert ec2.metrics.calls["GetParameter"] == 1
    await launch(ec2, aws, ami=f"resolve:ssm:{name}")
    assert ec2.metrics.calls["GetParameter"] == 1  # cached
    # a new "latest" AMI is published: picked up once the cache is stale
    newer = image_with_snapshot(aws, 8)
    ssm.put_parameter(Name=name, Value=newer, Type="String", Overwrite=True)
    clock.now += timedelta(seconds=SSM_CACHE_S + 1)
    assert (await launch(ec2, aws, ami=f"resolve:ssm:{name}"))["ImageId"] == newer
    assert ec2.metrics.calls["GetParameter"] == 2


async def test_resolve_ssm_errors_name_the_parameter(ec2: Any, aws: dict[str, Any]) -> None:
    missing = f"/ployd/test/{uuid.uuid4().hex[:8]}/nothing"
    with pytest.raises(EC2Error, match=f"resolve:ssm:{missing}: SSM could not resolve it"):
        await launch(ec2, aws, ami=f"resolve:ssm:{missing}")
    ssm = raw_client(aws["url"], "ssm")
    name = f"/ployd/test/{uuid.uuid4().hex[:8]}/not-an-ami"
    ssm.put_parameter(Name=name, Value="ubuntu", Type="String")
    with pytest.raises(EC2Error, match="holds 'ubuntu', not an AMI id"):
        await launch(ec2, aws, ami=f"resolve:ssm:{name}")
    assert not ec2.sent  # nothing launched


async def test_a_launch_templates_resolve_ssm_image_is_sized_from_its_real_ami(
    ec2: Any, aws: dict[str, Any]
) -> None:
    big = image_with_snapshot(aws, 250)
    name = f"/ployd/test/{uuid.uuid4().hex[:8]}/ami-id"
    raw_client(aws["url"], "ssm").put_parameter(Name=name, Value=big, Type="String")
    lt = template(aws, ImageId=f"resolve:ssm:{name}")
    sent = await launch(ec2, aws, ami=None, launch_template=lt)
    (mapping,) = sent["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/sda1" and mapping["Ebs"]["VolumeSize"] == 250


# -- volumes ----------------------------------------------------------------------------


async def test_an_ami_launch_sends_an_encrypted_root_of_the_default_or_the_jobs_size(
    ec2: Any, aws: dict[str, Any]
) -> None:
    (m,) = (await launch(ec2, aws, root_gb=100))["BlockDeviceMappings"]
    assert m["DeviceName"] == aws["root_device"]
    assert m["Ebs"] == {
        "VolumeSize": 100,
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
    }
    assert "KmsKeyId" not in m["Ebs"]  # the account's default EBS key
    (m,) = (await launch(ec2, aws, root_gb=100, disk_gb=400))["BlockDeviceMappings"]
    assert m["Ebs"]["VolumeSize"] == 400  # the job asked for more


async def test_the_kms_key_is_sent(ec2: Any, aws: dict[str, Any]) -> None:
    key = "arn:aws:kms:us-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    (m,) = (await launch(ec2, aws, kms_key_id=key))["BlockDeviceMappings"]
    assert m["Ebs"]["KmsKeyId"] == key and m["Ebs"]["Encrypted"] is True


async def test_a_larger_snapshot_wins(ec2: Any, aws: dict[str, Any]) -> None:
    big = image_with_snapshot(aws, 300)
    (m,) = (await launch(ec2, aws, ami=big, root_gb=100, disk_gb=200))["BlockDeviceMappings"]
    assert m["DeviceName"] == "/dev/sda1" and m["Ebs"]["VolumeSize"] == 300
    calls = ec2.metrics.calls["DescribeImages"]
    await launch(ec2, aws, ami=big)
    assert ec2.metrics.calls["DescribeImages"] == calls  # cached: an AMI never changes


async def test_a_templates_root_mapping_is_kept_unless_the_job_asks_for_more(
    ec2: Any, aws: dict[str, Any]
) -> None:
    root = aws["root_device"]
    lt = template(
        aws,
        ImageId=aws["ami"],
        BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"VolumeSize": 300, "VolumeType": "gp2"}}],
    )
    sent = await launch(ec2, aws, ami=None, launch_template=lt, root_gb=100)
    assert "BlockDeviceMappings" not in sent  # the template's 300 GiB gp2 stays
    assert sent["LaunchTemplate"] == {"LaunchTemplateName": lt}
    sent = await launch(ec2, aws, ami=None, launch_template=lt, disk_gb=200)
    assert "BlockDeviceMappings" not in sent  # 200 fits in 300
    (m,) = (await launch(ec2, aws, ami=None, launch_template=lt, disk_gb=800))[
        "BlockDeviceMappings"
    ]
    # more: the template's volume, only larger (and encrypted)
    assert m == {
        "DeviceName": root,
        "Ebs": {
            "VolumeSize": 800,
            "VolumeType": "gp2",
            "Encrypted": True,
            "DeleteOnTermination": True,
        },
    }


async def test_a_template_smaller_than_its_snapshot_is_grown_to_it(
    ec2: Any, aws: dict[str, Any]
) -> None:
    big = image_with_snapshot(aws, 120)
    lt = template(
        aws,
        ImageId=big,
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 50}}],
    )
    (m,) = (await launch(ec2, aws, ami=None, launch_template=lt))["BlockDeviceMappings"]
    assert m["Ebs"]["VolumeSize"] == 120


async def test_a_template_without_a_root_mapping_gets_ours(ec2: Any, aws: dict[str, Any]) -> None:
    lt = template(aws, ImageId=aws["ami"])
    (m,) = (await launch(ec2, aws, ami=None, launch_template=lt, root_gb=90))["BlockDeviceMappings"]
    assert m["Ebs"]["VolumeSize"] == 90 and m["Ebs"]["Encrypted"] is True


# -- settings -----------------------------------------------------------------------------


def test_amis_accept_resolve_ssm_and_kms_keys() -> None:
    dlami = (
        "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
        "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    )
    env = GOOD_ENV | {
        "PLOYD_EC2_AMIS": f'{{"default": "ami-0123456789abcdef0", "h100": "{dlami}"}}',
        "PLOYD_EC2_KMS_KEY": "alias/ployd-runners",
    }
    c = EC2Config.from_env(env)
    assert c.amis["h100"] == dlami and c.kms_key_id == "alias/ployd-runners"
    assert not c.default_gpu_ready
    for bad in ("resolve:ssm:", "resolve:ssm:/a b", "ssm:/x"):
        with pytest.raises(EC2ConfigError, match="not AMI ids"):
            EC2Config.from_env(env | {"PLOYD_EC2_AMIS": f'{{"default": "{bad}"}}'})
    with pytest.raises(EC2ConfigError, match="PLOYD_EC2_KMS_KEY='my key'"):
        EC2Config.from_env(env | {"PLOYD_EC2_KMS_KEY": "my key"})
    with pytest.raises(EC2ConfigError, match="PLOYD_EC2_DEFAULT_GPU_READY='maybe'"):
        EC2Config.from_env(env | {"PLOYD_EC2_DEFAULT_GPU_READY": "maybe"})
    assert EC2Config.from_env(env | {"PLOYD_EC2_DEFAULT_GPU_READY": "true"}).default_gpu_ready


def test_a_gpu_class_without_its_own_image_is_refused_naming_it() -> None:
    catalog = Catalog.default()
    gpu = [c for c in catalog.classes() if catalog.hardware_class(c).kind == "gpu"]
    env = GOOD_ENV | {
        "PLOYD_EC2_AMIS": '{"default": "ami-0123456789abcdef0", "h100": "ami-0123456789abcdef1"}'
    }
    c = EC2Config.from_env(env)
    assert "h100" not in c.missing_gpu_images(gpu) and "l4" in c.missing_gpu_images(gpu)
    with pytest.raises(
        EC2ConfigError, match=r"GPU class\(es\) a100, .*l4.* would boot \"default\""
    ):
        c.check_gpu_images(gpu)
    c.check_gpu_images(["h100", "cpu"][:1])  # only h100 allowed: fine
    ready = EC2Config.from_env(env | {"PLOYD_EC2_DEFAULT_GPU_READY": "yes"})
    ready.check_gpu_images(gpu)  # the operator says default has the drivers


def test_boot_timeouts_per_class_or_family() -> None:
    p = EC2Policy.from_env({"PLOYD_EC2_BOOT_TIMEOUTS": '{"p5": "25m", "a100": "15m"}'})
    assert p.boot_timeout_for("p5", "h100") == 1500
    assert p.boot_timeout_for("p4d", "a100") == 900
    assert p.boot_timeout_for("g6", "l4") == 600  # the default stays 10 min
    for bad, why in (("[1]", "expected"), ('{"p5": "soon"}', "p5"), ('{"p5": "30s"}', "1m")):
        with pytest.raises(PolicyError, match=why):
            EC2Policy.from_env({"PLOYD_EC2_BOOT_TIMEOUTS": bad})
