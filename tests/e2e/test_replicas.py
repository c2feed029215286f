"""Two `ployd serve` replicas on one fresh PostgreSQL database and one moto server, a
burst of signed GitHub deliveries spread over both, EC2 jobs run by simulated machines,
one replica SIGKILLed mid-burst and restarted: every delivery that got a 2xx is handled
exactly once, one pipeline per delivery, one RunInstances per attempt (moto's records),
no live attempt's instance terminated, every job finished; another deployment's
instances in the same account are never touched."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from app.store.models import Attempt, AuditRecord, Deployment, InboxEvent, Instance, Job, Pipeline
from tests.e2e.ec2_world import EC2World
from tests.e2e.github_world import SECRET, GitHubWorld
from tests.e2e.replicas_world import Machines, Replica, serve_env
from tests.fakes.github import delivery_headers, serve_fake_github

pytestmark = pytest.mark.postgres

DELIVERIES = int(os.environ.get("PLOYD_TEST_REPLICA_DELIVERIES", "300"))
CONFIG = (
    "version: 1\non:\n  push:\n    branches: ['burst-*']\n"
    "jobs:\n  gpu:\n    hardware: t4\n    steps: [{run: 'echo on-gpu'}]\n"
)
REPO = "octo/burst"


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database (not a schema: advisory locks are per database)."""
    base = os.environ.get("PLOYD_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PLOYD_TEST_POSTGRES_URL is not set")
    name = "ployd_replicas_" + uuid.uuid4().hex[:10]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.timeout(1200)
async def test_two_replicas_one_killed_mid_burst(
    fresh_database: str,
    moto_server: str,
    tmp_path: Path,
    make_repo: Callable[..., tuple[Path, str]],
) -> None:
    region = "ca-central-1"
    cloud = EC2World(moto_server, region, tmp_path)
    ec2 = cloud.network()
    async with serve_fake_github() as fake, aiohttp.ClientSession() as http:
        world = GitHubWorld(fake, tmp_path / "git", make_repo)
        sha = world.repo(REPO, {".ployd.yml": CONFIG})
        env = serve_env(
            db_url=fresh_database,
            fake=fake,
            secret=SECRET,
            git_url=world.git_root.as_uri(),
            moto_url=moto_server,
            region=region,
            ec2=ec2,
        )
        replicas = [Replica(n, env, tmp_path) for n in ("one", "two")]
        # Another deployment's runner in the same account (staging beside production).
        theirs = cloud.boto.run_instances(
            ImageId=ec2.amis["default"],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "ployd:managed", "Value": "true"},
                        {"Key": "ployd:pool", "Value": "t4:1"},
                        {"Key": "ployd:deployment", "Value": "staging"},
                        {"Key": "ployd:agent", "Value": "ec2-staging0001"},
                    ],
                }
            ],
        )["Instances"][0]["InstanceId"]
        db = create_engine(fresh_database)
        machines: Machines | None = None
        try:
            await asyncio.gather(*(r.start(http) for r in replicas))
            with db.connect() as c:
                deployment = c.execute(select(Deployment.deployment_id)).scalar_one()
            machines = Machines(cloud.boto, deployment, replicas)
            machines.start(http)

            accepted: dict[str, int] = {}  # delivery id -> the 2xx status

            async def deliver(i: int) -> None:
                body = json.dumps(
                    world.push(REPO, "0" * 40, sha, ref=f"refs/heads/burst-{i}")
                ).encode()
                delivery = f"burst-{i}-{uuid.uuid4().hex[:8]}"
                headers = delivery_headers("push", body, SECRET, delivery_id=delivery)
                # GitHub redelivers what was not answered: the other replica, then again.
                answers: list[str] = []
                for turn in range(6):
                    replica = replicas[(i + turn) % 2]
                    try:
                        async with http.post(
                            replica.url + "/webhooks/github", data=body, headers=headers
                        ) as r:
                            if r.status < 300:
                                accepted[delivery] = r.status
                                return
                            answers.append(f"{r.status} {(await r.text())[:200]}")
                    except (aiohttp.ClientError, OSError) as e:
                        answers.append(type(e).__name__)
                raise AssertionError(f"delivery {delivery} was never accepted: {answers}")

            half = DELIVERIES // 2
            batch = max(1, min(20, DELIVERIES // 10))
            killed_at: int | None = None
            for start in range(0, DELIVERIES, batch):
                if killed_at is None and start >= half:  # mid-burst, launches in flight
                    replicas[0].kill()
                    killed_at = start
                await asyncio.gather(
                    *(deliver(i) for i in range(start, min(start + batch, DELIVERIES)))
                )
                if killed_at is not None and start == killed_at + batch:
                    await replicas[0].start(http)  # back, while the burst goes on
            assert killed_at is not None and replicas[0].starts == 2
            assert len(accepted) == DELIVERIES

            def settled() -> bool:
                with db.connect() as c:
                    waiting = c.execute(
                        select(func.count())
                        .select_from(InboxEvent)
                        .where(InboxEvent.status != "processed")
                    ).scalar_one()
                    running = c.execute(
                        select(func.count())
                        .select_from(Pipeline)
                        .where(Pipeline.state == "running")
                    ).scalar_one()
                    total = c.execute(select(func.count()).select_from(Pipeline)).scalar_one()
                return waiting == 0 and running == 0 and total == DELIVERIES

            deadline = asyncio.get_running_loop().time() + float(
                os.environ.get("PLOYD_TEST_REPLICA_DEADLINE", "600")
            )
            while not settled():  # poll the shared database, with a deadline
                assert asyncio.get_running_loop().time() < deadline, machines.failures[-20:]
                await asyncio.sleep(0.5)

            with db.connect() as c:
                inbox = c.execute(
                    select(InboxEvent.id, InboxEvent.delivery_id, InboxEvent.status)
                ).all()
                pipelines = c.execute(select(Pipeline.id, Pipeline.event_id, Pipeline.state)).all()
                triggers = list(
                    c.execute(
                        select(AuditRecord.details).where(AuditRecord.action == "pipeline.trigger")
                    ).scalars()
                )
                jobs = c.execute(select(Job.id, Job.state)).all()
                attempts = c.execute(
                    select(Attempt.id, Attempt.job_id, Attempt.state, Attempt.error)
                ).all()
            # Every accepted delivery stored once and processed; one pipeline each,
            # started once (the audit records each start, in the pipeline's transaction).
            assert sorted(d for _, d, _ in inbox) == sorted(accepted)
            assert {s for _, _, s in inbox} == {"processed"}
            by_event = Counter(e for _, e, _ in pipelines)
            assert sorted(by_event) == sorted(i for i, _, _ in inbox)
            assert set(by_event.values()) == {1}
            assert Counter(t["event_id"] for t in triggers) == by_event
            # Every job finished, each in one attempt that its machine ran to the end.
            assert len(jobs) == DELIVERIES and {s for _, s in jobs} == {"succeeded"}
            # No machine was terminated under a live attempt: every simulated agent ran
            # its job to the end on a running instance. An attempt can still be lost
            # with the replica SIGKILLed while it answered the claim (the agent never
            # got it): its heartbeat stops, it ends interrupted and its retry runs; no
            # attempt ends because its instance went.
            assert machines.killed_mid_job == []
            lost = [(a, e) for a, _, s, e in attempts if s != "succeeded"]
            # a finish refused is one for an attempt already ended as lost (below)
            unfinished = {int(e.rsplit(" ", 1)[1]) for e in machines.errors}
            assert unfinished <= {a for a, _ in lost}, machines.errors
            assert all(s in ("succeeded", "interrupted") for _, _, s, _ in attempts)
            assert all("heartbeat" in (e or "") for _, e in lost), lost
            print(f"\n{DELIVERIES} deliveries, {len(attempts)} attempts, {len(lost)} lost")

            # One RunInstances per attempt, as moto recorded them: every instance this
            # deployment started is one machine row, and no attempt has two. A pool's
            # launch may still be in flight (its row is written before RunInstances, its
            # instance id after), so the rows are read before the listing and after it.
            def machine_rows() -> list[tuple[str, str | None, int | None]]:
                with db.connect() as c:
                    return [
                        (a, iid, f)
                        for a, iid, f in c.execute(
                            select(Instance.agent_id, Instance.instance_id, Instance.launched_for)
                        )
                    ]

            before = machine_rows()
            pages = cloud.boto.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "tag:ployd:deployment", "Values": [deployment]}]
            )
            instances = [i for p in pages for r in p["Reservations"] for i in r["Instances"]]
            rows = machine_rows()
            tags = [{t["Key"]: t["Value"] for t in i["Tags"]} for i in instances]
            assert Counter(t["ployd:agent"] for t in tags).most_common(1)[0][1] == 1
            row_of = {a: iid for a, iid, _ in rows}
            for i, t in zip(instances, tags, strict=True):  # no instance without its row
                assert t["ployd:agent"] in row_of, f"{i['InstanceId']} has no machine row"
                assert row_of[t["ployd:agent"]] in (i["InstanceId"], None), (i, t)
            listed = {
                i["InstanceId"]: t["ployd:agent"] for i, t in zip(instances, tags, strict=True)
            }
            for a, iid, _ in before:  # no row naming an instance EC2 never started
                assert iid is None or listed.get(iid) == a, (a, iid)
            launched_for = Counter(f for _, iid, f in rows if iid and f is not None)
            assert launched_for and set(launched_for.values()) == {1}
            per_job = Counter(int(t["ployd:job"]) for t in tags if "ployd:job" in t)
            tries = Counter(j for _, j, _, _ in attempts)
            assert all(n <= tries[j] for j, n in per_job.items())  # a machine per attempt
            # The other deployment's runner was never touched.
            state = cloud.boto.describe_instances(InstanceIds=[theirs])["Reservations"]
            assert state[0]["Instances"][0]["State"]["Name"] == "running"
        finally:
            if machines is not None:
                await machines.stop()
            for r in replicas:
                r.stop()
            db.dispose()
            left = [i["InstanceId"] for i in cloud.running_managed()]
            if left:
                cloud.boto.terminate_instances(InstanceIds=left)
