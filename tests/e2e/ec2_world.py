"""A world for EC2 end-to-end tests: moto's server on loopback reached through its
endpoint URL like real EC2, PloyD's EC2 executor, and "instances" booted by running the
user data moto recorded for them, for real, each in a throwaway root (``Machine``:
``systemctl`` and ``shutdown`` stubbed): it downloads the agent from the server, checks
its SHA-256 and starts it, with its own fake instance metadata service (to deliver spot
interruption notices). Each machine's PATH starts with a fake ``nvidia-smi`` printing
the GPUs its instance type has (``gpus``: tests give a machine fewer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web

from app.adapters.ec2.client import EC2Client
from app.adapters.ec2.config import EC2Config
from app.adapters.ec2.pricing import PricingClient
from app.adapters.ec2.userdata import parse_registration
from app.core.ec2_policy import EC2Policy
from app.executors.ec2 import EC2Executor
from app.store.instances import InstanceView
from tests.e2e.conftest import Harness
from tests.e2e.machine import Machine
from tests.fakes import nvidia_smi
from tests.fakes.ec2_proxy import EC2Proxy

KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class FakeIMDS:
    """IMDSv2 for every simulated instance: /AGENT/latest/... ."""

    def __init__(self) -> None:
        self.notices: dict[str, str] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/{agent}/latest/api/token", self._token)
        app.router.add_get("/{agent}/latest/meta-data/{path:.*}", self._meta)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        if "X-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return web.Response(status=400)
        return web.Response(text="imds-token")

    async def _meta(self, request: web.Request) -> web.Response:
        if request.headers.get("X-aws-ec2-metadata-token") != "imds-token":
            return web.Response(status=401)
        agent, path = request.match_info["agent"], request.match_info["path"]
        if path == "spot/instance-action" and agent in self.notices:
            return web.Response(text=self.notices[agent])
        return web.Response(status=404)


class EC2World:
    def __init__(self, moto_url: str, region: str, tmp: Path) -> None:
        self.moto_url = moto_url
        self.region = region
        self.tmp = tmp
        self.boto: Any = boto3.client("ec2", region_name=region, endpoint_url=moto_url, **KEYS)
        self.imds = FakeIMDS()
        self.proxy: EC2Proxy | None = None  # between the executor and moto, when asked for
        self.h: Harness | None = None
        self.executor: EC2Executor | None = None
        self.machines: dict[str, Machine] = {}  # by agent id
        self.boot = True  # simulated instances boot (set False to test boot timeouts)
        self.launched: list[InstanceView] = []
        self.booted: dict[str, int] = {}  # agent id -> the bootstrap's exit code
        self.machine_path: list[Path] = []  # folders first on the machines' PATH
        # what each machine's nvidia-smi prints (None: no nvidia-smi); default: its type's
        self.gpus: Callable[[InstanceView], str | None] = self.gpus_of_type
        self._boots: set[asyncio.Task[None]] = set()
        self._booted = asyncio.Condition()

    def network(self) -> EC2Config:
        vpc = self.boto.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        # /20s: moto keeps a terminated instance's address, and a burst of 300 pipelines
        # launches more machines than a /24 holds (RunInstances then fails with a 500)
        subnets = [
            self.boto.create_subnet(
                VpcId=vpc, CidrBlock=f"10.9.{16 * i}.0/20", AvailabilityZone=f"{self.region}{az}"
            )["Subnet"]["SubnetId"]
            for i, az in enumerate("ab")
        ]
        sg = self.boto.create_security_group(GroupName="ployd-runners", Description="r", VpcId=vpc)[
            "GroupId"
        ]
        ami = self.boto.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        iam = boto3.client("iam", region_name=self.region, endpoint_url=self.moto_url, **KEYS)
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_instance_profile(InstanceProfileName="ployd-runner")
        return EC2Config(
            region=self.region,
            subnets=tuple(subnets),
            security_group=sg,
            instance_profile="ployd-runner",
            amis={"default": ami},
            endpoint_url=self.moto_url,
            default_gpu_ready=True,  # the machines' nvidia-smi is a fake (``gpus``)
        )

    def boto_in(self, region: str) -> Any:
        """moto's EC2 in ``region`` ("": this world's)."""
        if not region or region == self.region:
            return self.boto
        return boto3.client("ec2", region_name=region, endpoint_url=self.moto_url, **KEYS)

    async def start_executor(
        self,
        policy: EC2Policy,
        config: EC2Config,
        pricing: PricingClient | None = None,
        *,
        timer: bool = True,
    ) -> EC2Executor:
        """The executor, reaching EC2 at ``config.endpoint_url`` (moto, or a proxy before
        it); ``timer=False``: no passes of its own, the test calls ``reconcile``/``reap``."""
        assert self.h is not None
        await self.imds.start()
        client = await EC2Client.open(config, session=dict(KEYS))
        clients = {
            r: await EC2Client.open(config.in_region(r), session=dict(KEYS))
            for r in config.regions
            if r != config.region
        }
        executor = EC2Executor(
            self.h.server.services,
            client,
            config,
            policy,
            server_url=self.h.url,
            tick_s=0.2,
            clients=clients,
            pricing=pricing,
        )
        executor.on_launched.append(self._boot)
        await executor.start(timer=timer)
        self.executor = executor
        return executor

    async def _boot(self, row: InstanceView, _script: str) -> None:
        """Boot the "instance" (in the background, as EC2 does): run the user data that
        EC2 (moto) recorded for it in a machine of its own."""
        self.launched.append(row)
        if not self.boot:
            return
        task = asyncio.get_running_loop().create_task(self._run_user_data(row))
        self._boots.add(task)
        task.add_done_callback(self._boots.discard)

    async def _run_user_data(self, row: InstanceView) -> None:
        raw = await asyncio.to_thread(
            self.boto_in(row.region).describe_instance_attribute,
            InstanceId=row.instance_id,
            Attribute="userData",
        )
        script = base64.b64decode(raw["UserData"]["Value"]).decode()
        _server, _token, agent_id = parse_registration(script)
        machine = self.machines[agent_id] = Machine(self.tmp / "machines" / agent_id)
        path = list(self.machine_path)
        output = self.gpus(row)
        if output is not None:
            path.append(nvidia_smi.install(self.tmp / "machines" / f"{agent_id}-gpus", output))
        code = await machine.run(
            script, path_first=path, PLOYD_IMDS_URL=f"{self.imds.url}/{agent_id}"
        )
        async with self._booted:
            self.booted[agent_id] = code
            self._booted.notify_all()

    def gpus_of_type(self, row: InstanceView, count: int | None = None) -> str | None:
        """nvidia-smi's lines for the GPUs of ``row``'s instance type (``count`` of them
        when given); None when it has none."""
        assert self.h is not None
        catalog = self.h.server.services.catalog
        t = catalog.get(row.instance_type)
        cls = catalog.hardware_class(t.cls)
        if cls.kind != "gpu":
            return None
        line = f"{cls.accelerator}, {int(t.accelerator_memory_gb * 1024)}\n"
        return line * (t.accelerators if count is None else count)

    async def bootstrapped(self, agent_id: str) -> int:
        """Wait for the bootstrap of ``agent_id``'s machine to end; its exit code."""
        async with self._booted:
            await asyncio.wait_for(self._booted.wait_for(lambda: agent_id in self.booted), 60)
        return self.booted[agent_id]

    def interrupt(self, agent_id: str) -> None:
        self.imds.notices[agent_id] = '{"action": "terminate", "time": "2026-11-26T23:59:59Z"}'

    def running_managed(self) -> list[dict[str, Any]]:
        found = self.boto.describe_instances(
            Filters=[
                {"Name": "tag:ployd:managed", "Values": ["true"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        return [i for r in found["Reservations"] for i in r["Instances"]]

    async def stop(self) -> None:
        if self.executor is not None:
            await self.executor.retire_all("the test is over")
        for task in list(self._boots):
            with contextlib.suppress(Exception):
                await task
        await asyncio.gather(*(m.stopped() for m in self.machines.values()))
        if self.executor is not None:
            await self.executor.stop()
        await self.imds.stop()
