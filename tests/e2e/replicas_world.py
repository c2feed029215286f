"""A world for the several-replicas test: `ployd serve` processes (real processes, killed
for real) on one fresh PostgreSQL database, the EC2 executor on moto's server, the fake
GitHub, and simulated machines: each instance the replicas launch is found in moto, its
user data read (as EC2 hands it to the machine), and a simulated agent registers with
its token and runs the jobs it claims (succeeding at once), through whichever replica
answers (as a load balancer would). An agent whose instance is terminated dies without
finishing its job, and says so in ``killed_mid_job``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from app.adapters.ec2.userdata import parse_registration
from app.protocol import Claim, ClaimRequest, FinishReport, Hardware, Registered, Registration

ROOT = Path(__file__).resolve().parents[2]
STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One `ployd serve` process on a fixed port (a restart comes back on it)."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "PLOYD_PORT": str(self.port), "PLOYD_DATA_DIR": str(tmp / name)}
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = asyncio.get_running_loop().time() + 120
        while True:  # poll its health until it answers (or it died)
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name} never answered: {self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


class Machines:
    """Simulated EC2 machines for the instances of one deployment in moto."""

    def __init__(self, boto: Any, deployment: str, replicas: list[Replica]) -> None:
        self.boto = boto
        self.deployment = deployment
        self.replicas = replicas
        self.seen: set[str] = set()
        self.states: dict[str, str] = {}
        self.agents: dict[str, asyncio.Task[None]] = {}
        self.finished: list[int] = []  # attempt ids this world's agents finished
        self.killed_mid_job: list[tuple[str, int]] = []  # (instance, attempt)
        self.errors: list[str] = []
        self.failures: list[str] = []  # calls that failed (a replica down), retried
        self._task: asyncio.Task[None] | None = None
        self.http: aiohttp.ClientSession | None = None

    def start(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self.agents.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _described(self, states: list[str]) -> list[dict[str, Any]]:
        found = self.boto.describe_instances(
            Filters=[
                {"Name": "tag:ployd:deployment", "Values": [self.deployment]},
                {"Name": "instance-state-name", "Values": states},
            ]
        )
        return [i for r in found["Reservations"] for i in r["Instances"]]

    async def _watch(self) -> None:
        while True:  # what EC2 says of each instance; a new one boots: its agent starts
            described = await asyncio.to_thread(self._described, list(STATES))
            for inst in described:
                iid = inst["InstanceId"]
                self.states[iid] = inst["State"]["Name"]
                if iid not in self.seen and self.states[iid] in ("pending", "running"):
                    self.seen.add(iid)
                    self.agents[iid] = asyncio.create_task(self._agent(iid))
            await asyncio.sleep(0.2)  # EC2's own pace: a periodic look, not a wait

    async def _alive(self, iid: str) -> bool:
        return self.states.get(iid) in ("pending", "running")

    async def _post(self, replica: Replica, path: str, token: str, body: Any) -> Any:
        """One call of the agent protocol to ``replica`` (None: 204, no job)."""
        assert self.http is not None
        async with self.http.post(
            replica.url + "/api/v1/agent" + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as r:
            if r.status == 204:
                return None
            if r.status >= 300:
                raise RuntimeError(f"{path}: {r.status} {await r.text()}")
            return await r.json()

    async def _agent(self, iid: str) -> None:
        raw = await asyncio.to_thread(
            self.boto.describe_instance_attribute, InstanceId=iid, Attribute="userData"
        )
        _server, token, agent_id = parse_registration(
            base64.b64decode(raw["UserData"]["Value"]).decode()
        )
        registration = Registration(
            name=agent_id, version="", hardware=Hardware(cpus=4, memory_mb=16384, disk_gb=100)
        )
        turn = 0
        credential: str | None = None
        while await self._alive(iid):
            replica = self.replicas[turn % len(self.replicas)]
            try:
                if credential is None:
                    answer = await self._post(replica, "/register", token, registration.to_json())
                    credential = Registered.from_json(answer).credential
                got = await self._post(
                    replica, "/claim", credential, ClaimRequest(agent_id, wait=1.0).to_json()
                )
                if got is None:
                    continue
                claim = Claim.from_json(got)
                if not await self._alive(iid):  # terminated under its job
                    self.killed_mid_job.append((iid, claim.attempt_id))
                    return
                await self._finish(agent_id, credential, claim.attempt_id, claim.job_token)
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as e:
                # that replica is down (killed), or refused: the other one
                self.failures.append(f"{iid} {replica.name}: {type(e).__name__}: {e}")
                turn += 1

    async def _finish(self, agent_id: str, credential: str, attempt: int, job_token: str) -> None:
        report = FinishReport("succeeded", exit_code=0).to_json()
        for turn in range(20):  # a finish reaches one replica or the other
            replica = self.replicas[turn % len(self.replicas)]
            try:
                await self._post(replica, f"/attempts/{attempt}/finish", job_token, report)
                self.finished.append(attempt)
                return
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as e:
                self.failures.append(f"{agent_id} finish {replica.name}: {e}")
                await asyncio.sleep(0.2)  # then the other replica (a client's pacing)
        self.errors.append(f"{agent_id}: could not finish attempt {attempt}")


def serve_env(
    *,
    db_url: str,
    fake: Any,
    secret: str,
    git_url: str,
    moto_url: str,
    region: str,
    ec2: Any,
) -> dict[str, str]:
    """The environment both replicas share."""
    import json

    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PLOYD_", "AWS_"))}
    return {
        **keep,
        "PLOYD_HOST": "127.0.0.1",
        "PLOYD_DATABASE_URL": db_url,
        "PLOYD_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "PLOYD_LOCAL_AGENTS": "0",
        "PLOYD_EXECUTOR": "ec2",
        "PLOYD_AWS_REGION": region,
        "PLOYD_AWS_ENDPOINT_URL": moto_url,
        "PLOYD_EC2_SUBNETS": ",".join(ec2.subnets),
        "PLOYD_EC2_SECURITY_GROUP": ec2.security_group,
        "PLOYD_EC2_INSTANCE_PROFILE": ec2.instance_profile,
        "PLOYD_EC2_AMIS": json.dumps(dict(ec2.amis)),
        "PLOYD_EC2_DEFAULT_GPU_READY": "true",  # the simulated machines have what they say
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PLOYD_GITHUB_APP_ID": str(fake.app_id),
        "PLOYD_GITHUB_PRIVATE_KEY": fake.private_key_pem,
        "PLOYD_GITHUB_API_URL": fake.url,
        "PLOYD_GITHUB_WEBHOOK_SECRET": secret,
        "PLOYD_GITHUB_GIT_URL": git_url,
        "PLOYD_INBOX_LEASE": "10s",
        "PLOYD_HEARTBEAT_TIMEOUT": "30",
        "PLOYD_LOG_LEVEL": "INFO",
    }
