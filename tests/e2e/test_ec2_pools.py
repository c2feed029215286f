"""The EC2 executor's machines on moto, end to end: warm pools kept between their minimum
and maximum and retired after their idle TTL, machines past the maximum lifetime
terminated, a fork's machine retired after its job (never reused), and `resources.disk`
as the machine's root volume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.adapters.ec2.config import DEFAULT_ROOT_GB
from app.core.ec2_policy import EC2Policy, PoolPolicy
from app.core.hardware import Catalog
from app.core.triggers import Event, EventKind
from app.engine.engine import RepoRef
from app.handlers.pipelines import plan
from app.store.models import Instance, utcnow
from tests.e2e.ec2_world import EC2World

T4 = "version: 1\njobs:\n  t:\n    hardware: t4\n    steps: [{run: 'echo warm'}]\n"


def machines(w: EC2World) -> list[Instance]:
    with w.h.engine.db.session() as s:  # type: ignore[union-attr]
        return [m for m in s.query(Instance).order_by(Instance.id) if m.instance_id]


async def until(check: Callable[[], bool], what: str, deadline_s: float = 40.0) -> None:
    """Poll the executor's rows until ``check()`` holds (machines change without engine
    events), with a deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def states(w: EC2World) -> list[str]:
    return [m.state for m in machines(w)]


async def test_a_pool_keeps_its_minimum_warm_its_maximum_idle_and_retires_past_its_ttl(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    policy = EC2Policy(pools={"t4:1": PoolPolicy(min_idle=1, max_idle=1, idle_ttl_s=60)})
    async with ec2_world(policy) as w:
        w: EC2World
        # min_idle: a machine is started with no job asking, and waits idle
        await until(lambda: states(w) == ["idle"], "the pool's warm machine")
        (warm,) = machines(w)
        assert warm.hardware == "t4:1" and warm.launched_for is None
        repo, _ = make_repo({".ployd.yml": T4})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        assert w.h.job(pid, "t").attempts[0].machine == warm.agent_id  # the warm one
        # While it was busy the pool fell below its minimum: another was started. Now
        # two are idle, above max_idle 1: one goes.
        await until(lambda: sorted(states(w)) == ["idle", "terminated"], "max_idle kept")
        gone = next(m for m in machines(w) if m.state == "terminated")
        assert gone.error == "idle machine retired from its pool"
        (kept,) = [m for m in machines(w) if m.state == "idle"]
        # Past its TTL the last idle machine stays: it is the pool's minimum.
        assert w.executor is not None
        await w.executor.reconcile(utcnow() + timedelta(seconds=61))
        assert [m.state for m in machines(w) if m.agent_id == kept.agent_id] == ["idle"]
        assert len(w.running_managed()) == 1
        w.executor.policy = EC2Policy()  # no minimum: the world's clean-up retires it for good


async def test_an_idle_machine_past_its_ttl_is_retired(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    policy = EC2Policy(default_pool=PoolPolicy(min_idle=0, max_idle=2, idle_ttl_s=120))
    async with ec2_world(policy) as w:
        w: EC2World
        repo, _ = make_repo({".ployd.yml": T4})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        await until(lambda: states(w) == ["idle"], "the machine back in its pool")
        assert w.executor is not None
        await w.executor.reconcile(utcnow() + timedelta(seconds=119))
        assert states(w) == ["idle"]  # within its TTL
        await w.executor.reconcile(utcnow() + timedelta(seconds=121))
        (m,) = machines(w)
        assert (m.state, m.error) == ("terminated", "idle machine retired from its pool")
        assert w.running_managed() == []


async def test_a_machine_past_its_maximum_lifetime_is_terminated(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world(EC2Policy(max_lifetime_s=3600)) as w:
        w: EC2World
        repo, _ = make_repo({".ployd.yml": T4})
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        await until(lambda: states(w) == ["idle"], "the machine back in its pool")
        assert w.executor is not None
        assert await w.executor.reap(utcnow() + timedelta(minutes=59)) == 0
        assert await w.executor.reap(utcnow() + timedelta(minutes=61)) == 1
        (m,) = machines(w)
        assert (m.state, m.error) == ("terminated", "past its maximum lifetime")
        assert w.running_managed() == []


async def test_a_forks_machine_is_retired_after_its_job_and_never_reused(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world() as w:
        w: EC2World
        repo, sha = make_repo({".ployd.yml": T4})
        ev = Event(EventKind.PULL_REQUEST, ref="refs/pull/4/head", sha=sha, base_branch="main",
                   action="opened")
        plans = plan(T4, ev, Catalog.default())
        assert plans is not None
        fork = w.h.engine.create_pipeline(
            RepoRef(forge="local", full_name=str(repo), clone_url=repo.as_uri()), plans,
            ref=ev.ref, sha=sha, trigger="pull_request", pr_number=4, fork=True,
        )
        assert (await w.h.finished(fork)).state == "succeeded"
        assert w.executor is not None
        await w.executor.retired()
        (m,) = machines(w)
        assert (m.state, m.error) == ("terminated", "a fork's job ran on it")
        # The next job gets a machine of its own.
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        assert len(w.launched) == 2
        assert w.h.job(pid, "t").attempts[0].machine != m.agent_id


def root_volume_gb(w: EC2World, instance_id: str) -> int:
    found = w.boto.describe_instances(InstanceIds=[instance_id])
    (inst,) = [i for r in found["Reservations"] for i in r["Instances"]]
    (mapping,) = inst["BlockDeviceMappings"]
    (volume,) = w.boto.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
    return int(volume["Size"])


async def test_resources_disk_is_the_machines_root_volume(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    big = "version: 1\njobs:\n  d:\n    resources: {cpu: 2, disk: 300GB}\n"
    big += "    steps: [{run: 'df -h'}]\n"
    async with ec2_world() as w:
        w: EC2World
        for config in (big, T4):  # a CPU machine with 300 GB, then a GPU one as configured
            repo, _ = make_repo({".ployd.yml": config})
            pid = await w.h.start(repo)
            assert (await w.h.finished(pid)).state == "succeeded"
        await until(lambda: states(w) == ["idle", "idle"], "both machines in their pools")
        first, second = [m.instance_id for m in machines(w)]
        assert first and second
        assert root_volume_gb(w, first) == 300  # as asked
        assert root_volume_gb(w, second) == DEFAULT_ROOT_GB  # the configured root
