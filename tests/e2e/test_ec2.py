"""The EC2 executor end to end, on moto's server mode reached through its endpoint URL:
jobs start on the right machine, capacity errors fall back, spot interruptions retry
on-demand, machines that never register are replaced, warm pools are reused, orphans are
reaped, and nothing is left running."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from app.core.ec2_policy import EC2Policy
from app.store.models import Instance, utcnow
from tests.e2e.ec2_world import EC2World


def repo_with(make_repo: Callable[..., tuple[Path, str]], config: str) -> Path:
    repo, _ = make_repo({".ployd.yml": config})
    return repo


def instances(w: EC2World) -> list[Instance]:
    """The machines EC2 started (a launch EC2 refused leaves a row without an id)."""
    with w.h.engine.db.session() as s:  # type: ignore[union-attr]
        rows = s.query(Instance).order_by(Instance.id)
        return [m for m in rows if m.instance_id]


async def test_a_job_runs_on_its_machine_which_then_waits_in_the_pool(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = "version: 1\njobs:\n  gpu:\n    hardware: l4\n    steps: [{run: 'echo on-gpu'}]\n"
    async with ec2_world() as w:
        w: EC2World
        repo = repo_with(make_repo, config)
        pid = await w.h.start(repo)
        assert (await w.h.finished(pid)).state == "succeeded"
        (attempt,) = w.h.job(pid, "gpu").attempts
        assert attempt.instance_type is not None and attempt.instance_type.startswith("g6.")
        assert attempt.price_hourly and attempt.cost is not None
        (machine,) = instances(w)
        assert machine.state == "idle" and machine.instance_id
        described = w.boto.describe_instances(InstanceIds=[machine.instance_id])
        inst = described["Reservations"][0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["ployd:pool"].startswith("l4:") and tags["ployd:managed"] == "true"
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        # The next job of the same tenant takes the warm machine: no new launch.
        pid2 = await w.h.start(repo)
        assert (await w.h.finished(pid2)).state == "succeeded"
        assert len(w.launched) == 1
        assert w.h.job(pid2, "gpu").attempts[0].machine == machine.agent_id


async def test_capacity_errors_fall_back_in_order_then_wait_and_say_so(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = (
        "version: 1\njobs:\n  train:\n    hardware: [h100, a100]\n    workload: train\n"
        "    spot: never\n    steps: [{run: 'echo trained'}]\n"
    )
    # a region that offers p5, p5en and p4d in both AZs (instance type offerings are
    # honoured: a type/AZ pair EC2 does not offer is never tried)
    async with ec2_world(region="us-east-2") as w:
        tried: list[str] = []
        refuse = {"n": 4}  # every h100 option: 2 sizes x 2 AZs

        def no_capacity(params: dict[str, Any], **_: Any) -> None:
            tried.append(f"{params['InstanceType']} {params['SubnetId']}")
            if refuse["n"] > 0:
                refuse["n"] -= 1
                raise ClientError(
                    {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "none"}},
                    "RunInstances",
                )

        assert w.executor is not None
        w.executor.ec2.boto.meta.events.register(
            "before-parameter-build.ec2.RunInstances", no_capacity
        )
        pid = await w.h.start(repo_with(make_repo, config))
        assert (await w.h.finished(pid)).state == "succeeded"
        # h100 before a100 (the job's preference order), each AZ in turn, on-demand only.
        types = [t.split()[0] for t in tried]
        assert len(types) == 5
        assert all(t.startswith("p5.") for t in types[:4]) and types[4].startswith("p4d")
        assert len({t.split()[1] for t in tried[:2]}) == 2  # the next AZ at once
        (machine,) = instances(w)
        assert machine.market == "on-demand"

        # Now nothing has capacity: the job waits, says what was tried, and retries later.
        refuse["n"] = 10_000
        tried.clear()
        pid2 = await w.h.start(repo_with(make_repo, config.replace("[h100, a100]", "h200")))
        await w.h.until(
            lambda: "waiting for capacity" in (w.h.job(pid2, "train").waiting_reason or ""),
            "the job to say it waits for capacity",
        )
        reason = w.h.job(pid2, "train").waiting_reason or ""
        assert "tried p5en" in reason
        w.h.engine.cancel_pipeline(pid2, "test")


async def test_spot_interruption_retries_on_demand(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = (
        "version: 1\njobs:\n  batch:\n    hardware: l4\n    workload: batch\n    steps:\n"
        "      - run: |\n"
        '          if [ "$PLOYD_ATTEMPT" = 1 ]; then echo READY-$((6*7)); sleep 300; fi\n'
        "          echo done\n"
    )
    async with ec2_world() as w:
        pid = await w.h.start(repo_with(make_repo, config))
        await w.h.log_contains(pid, "batch", "READY-42")
        first = instances(w)[0]
        assert first.market == "spot"
        w.interrupt(first.agent_id)
        assert (await w.h.finished(pid)).state == "succeeded"
        a1, a2 = w.h.job(pid, "batch").attempts
        assert a1.state == "interrupted" and a1.end_reason == "spot_interruption" and a1.spot
        assert a2.state == "succeeded" and not a2.spot
        assert "retrying on on-demand" in a2.reason
        assert w.executor is not None
        await w.executor.retired()
        machines = {m.agent_id: m for m in instances(w)}
        assert machines[first.agent_id].state == "terminated"  # interrupted: never reused


async def test_a_machine_that_never_registers_is_replaced(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = "version: 1\njobs:\n  t:\n    hardware: t4\n    steps: [{run: 'echo ok'}]\n"
    async with ec2_world(EC2Policy(boot_timeout_s=60)) as w:
        w.boot = False
        pid = await w.h.start(repo_with(make_repo, config))
        await w.h.until(lambda: len(w.launched) == 1, "a launch")
        silent = w.launched[0]
        w.boot = True
        assert w.executor is not None
        await w.executor.reconcile(now=utcnow() + timedelta(seconds=61))
        assert (await w.h.finished(pid)).state == "succeeded"
        a1, a2 = w.h.job(pid, "t").attempts
        assert a2.state == "succeeded"
        assert a1.state == "interrupted" and a1.end_reason == "infrastructure"
        assert "did not register" in (a1.error or "")
        states = {m.agent_id: m.state for m in instances(w)}
        assert states[silent.agent_id] == "terminated"
        second = w.launched[1]
        assert (second.instance_type, second.az) != (silent.instance_type, silent.az) or (
            second.market != silent.market
        )


async def test_orphans_and_leaks_are_reaped(ec2_world: Callable[..., Any]) -> None:
    """The reaper ends its own deployment's orphans only: another deployment's runners
    in the same account (staging beside production), and instances that are not
    PloyD's, are never touched."""
    async with ec2_world() as w:
        assert w.executor is not None
        mine = w.executor.deployment
        assert mine.startswith("ployd-")  # made once per database by the migrations

        def run(tags: dict[str, str]) -> str:
            tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
            spec = [{"ResourceType": "instance", "Tags": tag_list}] if tags else []
            return str(
                w.boto.run_instances(
                    ImageId=w.executor.config.amis["default"],
                    MinCount=1,
                    MaxCount=1,
                    InstanceType="t3.micro",
                    TagSpecifications=spec,
                )["Instances"][0]["InstanceId"]
            )

        managed = {"ployd:managed": "true", "ployd:pool": "t4:1"}
        orphan = run(managed | {"ployd:deployment": mine, "ployd:agent": "ec2-nobody"})
        theirs = run(managed | {"ployd:deployment": "staging", "ployd:agent": "ec2-theirs"})
        untagged = run(managed)  # PloyD's, but whose? not this deployment's to end
        stranger = run({})
        assert await w.executor.reap() == 1
        state = {
            i["InstanceId"]: i["State"]["Name"]
            for r in w.boto.describe_instances(InstanceIds=[orphan, theirs, untagged, stranger])[
                "Reservations"
            ]
            for i in r["Instances"]
        }
        assert state[orphan] == "terminated"
        assert state[theirs] == "running"  # the other deployment's: never touched
        assert state[untagged] == "running"
        assert state[stranger] == "running"  # not PloyD's: never touched
        w.boto.terminate_instances(InstanceIds=[theirs, untagged, stranger])


async def test_the_reaper_never_ends_a_launch_in_flight(ec2_world: Callable[..., Any]) -> None:
    """A machine's row is written before RunInstances (its agent id is the ClientToken):
    an instance whose row does not know its id yet (the launch is in flight, or the
    replica that launched it died before it wrote the id) is the row's, not an orphan;
    the reaper fills the id in."""
    from app.store.instances import NewInstance

    async with ec2_world() as w:
        ex = w.executor
        assert ex is not None
        row = ex.machines.add(
            NewInstance(
                pool="t4:1",
                instance_type="g4dn.xlarge",
                hardware="t4:1",
                market="on-demand",
                az="",
                subnet_id=ex.config.subnets[0],
                price_hourly=0.5,
                agent_id="ec2-inflight0001",
                token_hash="x" * 64,
            )
        )
        tags = {
            "ployd:pool": "t4:1",
            "ployd:agent": row.agent_id,
            "ployd:deployment": ex.deployment,
        }

        async def launch() -> str:  # as _launch calls it, stopped before it writes the id
            return await ex.ec2.launch(
                "g4dn.xlarge",
                ex.config.subnets[0],
                "on-demand",
                user_data="#!/bin/sh\n",
                tags=tags,
                root_gb=20,
                client_token=row.agent_id,
                ami=ex.config.amis["default"],
            )

        iid = await launch()
        assert ex.machines.get(row.id).instance_id is None  # type: ignore[union-attr]
        assert await ex.reap() == 0
        assert [i["InstanceId"] for i in w.running_managed()] == [iid]
        assert ex.machines.get(row.id).instance_id == iid  # type: ignore[union-attr]


async def test_a_pass_launches_nothing_for_a_job_taken_while_it_launched(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    """A pass reads the queued attempts once, then launches one after another (each a
    RunInstances round trip): a job an idle machine took meanwhile gets no machine of
    its own (under a burst, stale lists launched a machine per finished job)."""
    from sqlalchemy import update

    from app.store.models import Attempt

    config = (
        "version: 1\njobs:\n"
        "  a:\n    hardware: t4\n    steps: [{run: 'echo a'}]\n"
        "  b:\n    hardware: t4\n    steps: [{run: 'echo b'}]\n"
    )
    async with ec2_world() as w:
        w.boot = False  # launched machines stay on their way: no agent takes a job
        ex = w.executor
        assert ex is not None
        taken: list[int] = []

        async def take_the_others(row: Any, _script: str) -> None:
            with w.h.engine.db.session() as s:  # an idle machine claims the rest
                others = s.scalars(
                    update(Attempt)
                    .where(Attempt.state == "queued", Attempt.id != row.launched_for)
                    .values(state="running")
                    .returning(Attempt.id)
                ).all()
            taken.extend(others)

        ex.on_launched.append(take_the_others)
        await w.h.start(repo_with(make_repo, config))
        await ex.reconcile()
        assert len(taken) == 1  # the other job was queued when the pass read the list
        assert len(w.launched) == 1, [m.launched_for for m in w.launched]
        await ex.stop()  # machines on their way for jobs no agent runs: gone with the test
        w.boto.terminate_instances(InstanceIds=[i["InstanceId"] for i in w.running_managed()])


async def test_a_clean_machine_job_never_takes_a_warm_machine(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    warm = "version: 1\njobs:\n  t:\n    hardware: t4\n    steps: [{run: 'echo warm'}]\n"
    clean = warm.replace("    steps:", "    clean_machine: true\n    steps:")
    async with ec2_world() as w:
        pid = await w.h.start(repo_with(make_repo, warm))
        assert (await w.h.finished(pid)).state == "succeeded"
        (first,) = instances(w)
        assert first.state == "idle"
        pid2 = await w.h.start(repo_with(make_repo, clean))
        assert (await w.h.finished(pid2)).state == "succeeded"
        assert len(w.launched) == 2  # a fresh machine, not the warm one
        machines = {m.agent_id: m for m in instances(w)}
        second = next(m for a, m in machines.items() if a != first.agent_id)
        assert w.h.job(pid2, "t").attempts[0].machine == second.agent_id
        assert w.executor is not None
        await w.executor.retired()
        machines = {m.agent_id: m for m in instances(w)}
        assert machines[second.agent_id].state == "terminated"  # retired after its job
        assert machines[first.agent_id].state == "idle"
