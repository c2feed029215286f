"""``EC2Client``: the EC2 calls PloyD makes, async, with boto3 kept off the event loop.

Each call goes through ``transport.call``: a worker thread, retries of throttling and
outages. Retrying RunInstances is safe: it carries a ``ClientToken``, so EC2 answers a
repeat with the instance it already started. Capacity refusals are never retried:
``CapacityError`` goes straight back to the caller, who tries its next candidate.

Leaks, as the reaper sees them: ``launch`` tags every instance and its root volume
``ployd:managed=true`` (always, whatever the caller's tags); ``terminate`` is idempotent;
anything ``describe_managed`` lists that no job owns is a leak to terminate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from app.adapters.ec2.config import SSM_PREFIX, EC2Config
from app.adapters.ec2.errors import NOT_FOUND_CODES, CapacityError, EC2Error
from app.adapters.ec2.transport import EC2Metrics, RetryPolicy, Sleep, call, make_boto_client
from app.adapters.ec2.userdata import MAX_USER_DATA_BYTES
from app.core.scheduler.model import Reservation

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Market = Literal["spot", "on-demand"]

MANAGED_TAG = "ployd:managed"
DEPLOYMENT_TAG = "ployd:deployment"  # whose instance: PLOYD_DEPLOYMENT (the reaper's scope)
AGENT_TAG = "ployd:agent"  # its machine row's agent id, also the launch's ClientToken
LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
TERMINATE_BATCH = 100
SSM_CACHE_S = 3600  # how long a resolve:ssm: answer is used before asking SSM again


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InstanceInfo:
    """One instance, as the reaper needs it."""

    instance_id: str
    state: str
    instance_type: str
    tags: Mapping[str, str]
    launch_time: datetime
    market: Market
    az: str
    subnet_id: str | None = None


@dataclass(frozen=True)
class ImageFacts:
    """What DescribeImages says about an AMI that a launch needs."""

    root_device: str  # /dev/xvda, /dev/sda1
    snapshot_gb: int  # its root snapshot's size (0: unknown)


@dataclass(frozen=True)
class _Boot:
    ami: str  # resolved: ami-...
    facts: ImageFacts
    template_ebs: dict[str, Any] | None  # the launch template's root volume, if it has one
    from_template: bool


def root_mapping(
    boot: _Boot, root_gb: int, disk_gb: int | None, kms_key_id: str | None
) -> dict[str, Any] | None:
    """The root volume's block device mapping to send (None: the launch template's own is
    kept). A template's mapping stays unless the job asks for more disk than it gives, or
    it is smaller than the AMI's snapshot (EC2 would refuse it); ours is ``root_gb`` or
    the job's ``disk_gb``, whichever is larger. Never below the snapshot; always
    encrypted (with ``kms_key_id`` when given)."""
    snapshot = boot.facts.snapshot_gb
    want = int(disk_gb or 0)
    ebs: dict[str, Any]
    if boot.template_ebs is not None:
        have = int(boot.template_ebs.get("VolumeSize") or snapshot)
        if want <= have and have >= snapshot:
            return None
        ebs = {k: v for k, v in boot.template_ebs.items() if k != "Encrypted"}
        ebs["VolumeSize"] = max(want, have, snapshot)
        ebs["Encrypted"] = bool(boot.template_ebs.get("Encrypted", True)) or bool(kms_key_id)
        ebs.setdefault("DeleteOnTermination", True)
    else:
        ebs = {
            "VolumeSize": max(int(root_gb), want, snapshot),
            "VolumeType": "gp3",
            "Encrypted": True,
            "DeleteOnTermination": True,
        }
    if kms_key_id:
        ebs["KmsKeyId"] = kms_key_id
    return {"DeviceName": boot.facts.root_device, "Ebs": ebs}


def _instance_info(raw: Mapping[str, Any]) -> InstanceInfo:
    tags = {t["Key"]: t.get("Value", "") for t in raw.get("Tags", [])}
    launch_time = raw.get("LaunchTime")
    if not isinstance(launch_time, datetime):
        launch_time = datetime.fromtimestamp(0, UTC)
    return InstanceInfo(
        instance_id=raw["InstanceId"],
        state=raw.get("State", {}).get("Name", "unknown"),
        instance_type=raw.get("InstanceType", ""),
        tags=tags,
        launch_time=launch_time,
        market="spot" if raw.get("InstanceLifecycle") == "spot" else "on-demand",
        az=raw.get("Placement", {}).get("AvailabilityZone", ""),
        subnet_id=raw.get("SubnetId"),
    )


class EC2Client:
    """PloyD's EC2: one per process and region. ``boto`` is the botocore client (tests
    hook its ``meta.events`` to inject faults); ``ssm`` SSM's, for ``resolve:ssm:``."""

    def __init__(
        self,
        boto: Any,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _utcnow,
        metrics: EC2Metrics | None = None,
        ssm: Any = None,
    ) -> None:
        self.boto = boto
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self.metrics = metrics or EC2Metrics()
        self.ssm = ssm
        self._images: dict[str, ImageFacts] = {}
        self._ssm_cache: dict[str, tuple[str, datetime]] = {}

    @classmethod
    async def open(cls, config: EC2Config, **kwargs: Any) -> EC2Client:
        """Build the boto3 client in a worker thread; ``kwargs`` go to ``EC2Client``,
        except ``session`` (a dict for ``boto3.session.Session``)."""
        session_kwargs: dict[str, Any] = kwargs.pop("session", {})
        boto = await asyncio.to_thread(make_boto_client, config, **session_kwargs)
        if "ssm" not in kwargs:  # for resolve:ssm: AMIs (in the settings or a template)
            kwargs["ssm"] = await asyncio.to_thread(
                make_boto_client, config, "ssm", **session_kwargs
            )
        return cls(boto, **kwargs)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await call(self.boto, operation, params, self.retry, self._sleep, self.metrics)

    async def resolve_image(self, image: str) -> str:
        """The AMI id of ``image``: itself (``ami-...``), or the value of the SSM parameter
        a ``resolve:ssm:NAME[:VERSION]`` names (SSM GetParameter, as EC2 does for
        ImageId), cached for ``SSM_CACHE_S`` so a new ``latest`` AMI is picked up."""
        if not image.startswith(SSM_PREFIX):
            return image
        now = self._clock()
        cached = self._ssm_cache.get(image)
        if cached is not None and now < cached[1]:
            return cached[0]
        if self.ssm is None:
            raise EC2Error(
                "SSMUnavailable", f"{image}: no SSM client to resolve it", operation="launch"
            )
        name = image[len(SSM_PREFIX) :]
        try:
            out = await call(
                self.ssm, "GetParameter", {"Name": name}, self.retry, self._sleep, self.metrics
            )
        except EC2Error as exc:
            raise EC2Error(
                exc.code or "ParameterNotFound",
                f"{image}: SSM could not resolve it ({exc.message}); check the parameter "
                "name in PLOYD_EC2_AMIS or the launch template, and that the region has it",
                operation="launch",
            ) from None
        value = str(out.get("Parameter", {}).get("Value", "")).strip()
        if not value.startswith("ami-"):
            raise EC2Error(
                "InvalidAMIID.Malformed",
                f"{image}: the SSM parameter holds {value[:80]!r}, not an AMI id",
                operation="launch",
            )
        self._ssm_cache[image] = (value, now + timedelta(seconds=SSM_CACHE_S))
        return value

    async def image_facts(self, ami: str) -> ImageFacts:
        """The root device name of ``ami`` (resizing the root volume needs it; another
        name would add a second volume instead) and its root snapshot's size (DescribeImages,
        cached: an AMI never changes)."""
        if ami in self._images:
            return self._images[ami]
        images = (await self._call("DescribeImages", ImageIds=[ami])).get("Images", [])
        if not images or not images[0].get("RootDeviceName"):
            raise EC2Error("InvalidAMIID.NotFound", f"{ami}: no such image", operation="launch")
        root = images[0]["RootDeviceName"]
        snapshot_gb = 0
        for m in images[0].get("BlockDeviceMappings", []):
            if m.get("DeviceName") == root:
                snapshot_gb = int(m.get("Ebs", {}).get("VolumeSize") or 0)
        self._images[ami] = ImageFacts(root, snapshot_gb)
        return self._images[ami]

    async def _boot_image(self, ami: str | None, launch_template: str | None) -> _Boot:
        """What a launch boots: the AMI (resolved), its facts, and the launch template's
        own mapping for the root device (None: it has none, or no template)."""
        template_ebs: dict[str, Any] | None = None
        if ami is None:  # the template's default version may change: read it each time
            assert launch_template is not None
            out = await self._call(
                "DescribeLaunchTemplateVersions",
                **_template_ref(launch_template),
                Versions=["$Default"],
            )
            versions = out.get("LaunchTemplateVersions", [])
            data = versions[0].get("LaunchTemplateData", {}) if versions else {}
            ami = data.get("ImageId")
            if not ami or not (ami.startswith("ami-") or ami.startswith(SSM_PREFIX)):
                raise EC2Error(
                    "RootDeviceUnknown",
                    f"launch template {launch_template}: its "
                    f"default version names no AMI id ({ami!r})",
                    operation="launch",
                )
            resolved = await self.resolve_image(ami)
            facts = await self.image_facts(resolved)
            for m in data.get("BlockDeviceMappings", []):
                if m.get("DeviceName") == facts.root_device and "Ebs" in m:
                    template_ebs = dict(m["Ebs"])
            return _Boot(resolved, facts, template_ebs, from_template=True)
        resolved = await self.resolve_image(ami)
        return _Boot(resolved, await self.image_facts(resolved), None, from_template=False)

    async def launch(
        self,
        instance_type: str,
        subnet_id: str,
        market: Market,
        *,
        user_data: str,
        tags: Mapping[str, str],
        root_gb: int,
        client_token: str,
        disk_gb: int | None = None,
        kms_key_id: str | None = None,
        ami: str | None = None,
        launch_template: str | None = None,
        spot_max_price: str | float | None = None,
        instance_profile: str | None = None,
        security_group: str | None = None,
        key_name: str | None = None,
        reservation: Reservation | None = None,
    ) -> str:
        """Start one instance; its id. Raises ``CapacityError`` (try the next candidate),
        ``EC2Error``, or ValueError for arguments EC2 would refuse anyway.

        ``ami``: an AMI id or ``resolve:ssm:NAME``. The root volume (``root_mapping``): a
        launch template's own mapping is kept unless ``disk_gb`` (the job's
        ``resources.disk``) asks for more; otherwise ``root_gb`` or ``disk_gb``,
        whichever is larger; never smaller than the AMI's snapshot; encrypted, with
        ``kms_key_id`` when given.

        ``reservation``: start it in that On-Demand Capacity Reservation (by id or
        resource group) or Capacity Block (``InstanceMarketOptions`` ``capacity-block``);
        ``market`` must be ``on-demand`` then."""
        if (ami is None) == (launch_template is None):
            raise ValueError("pass exactly one of ami= and launch_template=")
        if market not in ("spot", "on-demand"):
            raise ValueError(f"market={market!r}: expected 'spot' or 'on-demand'")
        if not 1 <= len(client_token) <= 64 or not client_token.isascii():
            raise ValueError("client_token: 1 to 64 ASCII characters")
        if len(user_data.encode()) > MAX_USER_DATA_BYTES:
            raise ValueError("user_data exceeds EC2's 16 KiB")
        tag_list = [{"Key": k, "Value": v} for k, v in {**tags, MANAGED_TAG: "true"}.items()]
        params: dict[str, Any] = {
            "InstanceType": instance_type,
            "SubnetId": subnet_id,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": client_token,
            "UserData": user_data,  # botocore base64-encodes it
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
            },
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        boot = await self._boot_image(ami, launch_template)
        mapping = root_mapping(boot, root_gb, disk_gb, kms_key_id)
        if mapping is not None:
            params["BlockDeviceMappings"] = [mapping]
        if ami is not None:
            params["ImageId"] = boot.ami  # resolved: the image the mapping was sized for
        else:
            assert launch_template is not None
            params["LaunchTemplate"] = _template_ref(launch_template)
        if market == "spot":
            spot: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if spot_max_price is not None:
                spot["MaxPrice"] = str(spot_max_price)
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        if reservation is not None:
            if market != "on-demand":
                raise ValueError("a capacity reservation is on-demand capacity")
            if reservation.instance_type != instance_type:
                raise ValueError(f"{reservation.label} holds {reservation.instance_type}s")
            target = (
                {"CapacityReservationResourceGroupArn": reservation.target}
                if reservation.by_group
                else {"CapacityReservationId": reservation.target}
            )
            params["CapacityReservationSpecification"] = {"CapacityReservationTarget": target}
            if reservation.kind == "capacity-block":
                params["InstanceMarketOptions"] = {"MarketType": "capacity-block"}
        if instance_profile:
            arn = instance_profile.startswith("arn:")
            params["IamInstanceProfile"] = {"Arn" if arn else "Name": instance_profile}
        if security_group:
            params["SecurityGroupIds"] = [security_group]
        if key_name:
            params["KeyName"] = key_name
        try:
            out = await self._call("RunInstances", **params)
        except CapacityError as exc:
            self.metrics.fallbacks[exc.kind] += 1
            raise
        instance_id: str = out["Instances"][0]["InstanceId"]
        self.metrics.launches["reserved" if reservation is not None else market] += 1
        log.info("launched %s (%s, %s) in %s", instance_id, instance_type, market, subnet_id)
        return instance_id

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        """Terminate; an id EC2 does not know (already gone, or never was) is skipped.

        A just-launched instance can be briefly unknown (eventual consistency): the
        reaper's ``describe_managed`` catches any such survivor.
        """
        ids = list(dict.fromkeys(instance_ids))
        for start in range(0, len(ids), TERMINATE_BATCH):
            batch = ids[start : start + TERMINATE_BATCH]
            try:
                await self._call("TerminateInstances", InstanceIds=batch)
                continue
            except EC2Error as exc:
                if exc.code not in NOT_FOUND_CODES:
                    raise
            for one in batch:  # someone is unknown: one by one, skipping the unknown
                try:
                    await self._call("TerminateInstances", InstanceIds=[one])
                except EC2Error as exc:
                    if exc.code not in NOT_FOUND_CODES:
                        raise
                    log.warning("terminate %s: EC2 does not know it (%s)", one, exc.message)

    async def describe_managed(
        self, *, include_terminated: bool = False, deployment: str | None = None
    ) -> list[InstanceInfo]:
        """Every instance tagged ``ployd:managed=true`` (not yet terminated, by default),
        of one deployment only (``ployd:deployment``) when ``deployment`` is given."""
        filters: list[dict[str, Any]] = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]
        if deployment is not None:
            filters.append({"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [deployment]})
        if not include_terminated:
            filters.append({"Name": "instance-state-name", "Values": list(LIVE_STATES)})
        found: list[InstanceInfo] = []
        token: str | None = None
        while True:
            page = await self._call(
                "DescribeInstances",
                Filters=filters,
                MaxResults=500,
                **({"NextToken": token} if token else {}),
            )
            for reservation in page.get("Reservations", []):
                found.extend(_instance_info(i) for i in reservation.get("Instances", []))
            token = page.get("NextToken")
            if not token:
                return found

    async def state(self, instance_id: str) -> str:
        """EC2's state name (``pending``, ``running``, ... ``terminated``), or ``unknown``
        when EC2 does not know the id (long gone, or launched a moment ago)."""
        try:
            page = await self._call("DescribeInstances", InstanceIds=[instance_id])
        except EC2Error as exc:
            if exc.code in NOT_FOUND_CODES:
                return "unknown"
            raise
        for reservation in page.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                return _instance_info(raw).state
        return "unknown"

    async def spot_price_history(
        self, instance_types: Sequence[str], azs: Sequence[str], *, product: str = "Linux/UNIX"
    ) -> list[dict[str, Any]]:
        """The current spot price per (type, AZ): records ``{"InstanceType",
        "AvailabilityZone", "SpotPrice" (text), "Timestamp" (datetime),
        "ProductDescription"}``, newest per pair, for ``core.scheduler.prices``."""
        if not instance_types:
            return []
        params: dict[str, Any] = {
            "InstanceTypes": list(instance_types),
            "ProductDescriptions": [product],
            "StartTime": self._clock(),  # now: EC2 answers with the price in effect
        }
        if azs:
            params["Filters"] = [{"Name": "availability-zone", "Values": list(azs)}]
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        while True:
            page = await self._call("DescribeSpotPriceHistory", **params)
            for r in page.get("SpotPriceHistory", []):
                key = (r.get("InstanceType", ""), r.get("AvailabilityZone", ""))
                if not all(key) or (azs and key[1] not in azs):
                    continue
                old = newest.get(key)
                if old is None or r.get("Timestamp", _EPOCH) > old["Timestamp"]:
                    newest[key] = {
                        "InstanceType": key[0],
                        "AvailabilityZone": key[1],
                        "SpotPrice": str(r.get("SpotPrice", "")),
                        "Timestamp": r.get("Timestamp", _EPOCH),
                        "ProductDescription": r.get("ProductDescription", product),
                    }
            params["NextToken"] = page.get("NextToken")
            if not params["NextToken"]:
                return list(newest.values())

    async def subnet_azs(self, subnet_ids: Sequence[str]) -> dict[str, str]:
        """Subnet id -> availability zone name; an unknown subnet raises ``EC2Error``."""
        if not subnet_ids:
            return {}
        out = await self._call("DescribeSubnets", SubnetIds=list(subnet_ids))
        return {s["SubnetId"]: s["AvailabilityZone"] for s in out.get("Subnets", [])}

    async def why_gone(self, instance_ids: Sequence[str]) -> dict[str, str]:
        """What EC2 says about instances that ended: id -> its state and reason
        (``terminated: Client.UserInitiatedShutdown: User initiated shutdown``; a spot
        instance's ``Server.SpotInstanceTermination`` says it was reclaimed). An id EC2
        no longer knows is left out."""
        out: dict[str, str] = {}
        for one in dict.fromkeys(instance_ids):  # one by one: an unknown id fails a batch
            try:
                page = await self._call("DescribeInstances", InstanceIds=[one])
            except EC2Error as exc:
                if exc.code in NOT_FOUND_CODES:
                    continue
                raise
            for reservation in page.get("Reservations", []):
                for raw in reservation.get("Instances", []):
                    out[one] = _gone_reason(raw)
        return out

    async def capacity_reservations(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """What EC2 says of these capacity reservations / Capacity Blocks
        (DescribeCapacityReservations, every page): EC2's dicts (``InstanceType``,
        ``AvailabilityZone``, ``State``, ``AvailableInstanceCount``, ``StartDate``,
        ``EndDate``, ``ReservationType``). An id this region does not know raises
        ``EC2Error`` ``InvalidCapacityReservationId.NotFound``."""
        if not ids:
            return []
        params: dict[str, Any] = {"CapacityReservationIds": list(ids)}
        found: list[dict[str, Any]] = []
        while True:
            page = await self._call("DescribeCapacityReservations", **params)
            found.extend(page.get("CapacityReservations", []))
            params["NextToken"] = page.get("NextToken")
            if not params["NextToken"]:
                return found

    async def offered(self, azs: Sequence[str]) -> set[tuple[str, str]]:
        """The (instance type, AZ) pairs EC2 offers in ``azs``
        (DescribeInstanceTypeOfferings by availability zone)."""
        params: dict[str, Any] = {
            "LocationType": "availability-zone",
            "Filters": [{"Name": "location", "Values": list(azs)}],
        }
        pairs: set[tuple[str, str]] = set()
        while True:
            page = await self._call("DescribeInstanceTypeOfferings", **params)
            for o in page.get("InstanceTypeOfferings", []):
                pairs.add((str(o.get("InstanceType", "")), str(o.get("Location", ""))))
            params["NextToken"] = page.get("NextToken")
            if not params["NextToken"]:
                return pairs


def _gone_reason(raw: Mapping[str, Any]) -> str:
    state = raw.get("State", {}).get("Name", "unknown")
    reason = raw.get("StateReason") or {}
    code, message = str(reason.get("Code", "")), str(reason.get("Message", ""))
    said = (
        message if code and message.startswith(code) else ": ".join(x for x in (code, message) if x)
    )
    said = said or str(raw.get("StateTransitionReason", ""))
    spot = raw.get("InstanceLifecycle") == "spot"
    if spot and "Spot" in code:
        said = f"spot interruption ({said})"
    return f"{state}: {said}" if said else state


_EPOCH = datetime.fromtimestamp(0, UTC)


def _template_ref(template: str) -> dict[str, str]:
    """``lt-...`` is a launch template id; anything else its name."""
    return {"LaunchTemplateId" if template.startswith("lt-") else "LaunchTemplateName": template}
