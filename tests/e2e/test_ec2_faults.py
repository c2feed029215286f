"""EC2's answers, as EC2 gives them: errors injected at the HTTP level (status and EC2's
XML error body) by a proxy on loopback between botocore and moto
(``tests.fakes.ec2_proxy``), one test per class of RunInstances refusal, each asserting
what the job says and how many RunInstances calls a round made; and a machine
terminated behind PloyD's back: its attempt ends interrupted, is retried once elsewhere,
and is not relaunched in a loop.

The executor runs no passes of its own here (``timer=False``): each test drives
``reconcile()``/``reap()`` and counts the calls in between."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.adapters.ec2.client import EC2Client
from app.adapters.ec2.transport import RetryPolicy
from app.store import avoid
from app.store.models import Instance, utcnow
from tests.e2e.ec2_world import EC2World
from tests.fakes.ec2_proxy import EC2Proxy

REGION = "us-east-2"  # offers every type these jobs use in both of the world's AZs
T4 = "version: 1\njobs:\n  t:\n    hardware: t4\n    spot: never\n    steps: [{run: 'echo ok'}]\n"


def repo_with(make_repo: Callable[..., tuple[Path, str]], config: str) -> Path:
    repo, _ = make_repo({".ployd.yml": config})
    return repo


def proxy(w: EC2World) -> EC2Proxy:
    assert w.proxy is not None
    return w.proxy


def runs(w: EC2World) -> list[dict[str, str]]:
    """The RunInstances requests that reached "EC2" so far."""
    return proxy(w).of("RunInstances")


def waiting(w: EC2World, pid: int, job: str = "t") -> str:
    return w.h.job(pid, job).waiting_reason or ""  # type: ignore[union-attr]


async def queued(w: EC2World, repo: Path) -> int:
    assert w.h is not None
    pid = await w.h.start(repo)
    await w.h.until(
        lambda: all(
            j.attempts and j.attempts[-1].state == "queued" for j in w.h.pipeline(pid).jobs
        ),  # type: ignore[union-attr]
        "the job queued",
    )
    return pid


def launched(w: EC2World) -> list[Instance]:
    with w.h.engine.db.session() as s:  # type: ignore[union-attr]
        return [m for m in s.query(Instance).order_by(Instance.id) if m.instance_id]


async def test_no_capacity_moves_to_the_next_candidate_at_once(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        assert w.executor is not None
        w.boot = False
        first, second = w.executor.config.subnets
        proxy(w).fail(
            "RunInstances",
            500,
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient g4dn.xlarge capacity in the Availability "
            f"Zone you requested ({REGION}a).",
            where={"SubnetId": first},
        )
        pid = await queued(w, repo_with(make_repo, T4))
        await w.executor.reconcile()
        calls = runs(w)
        assert [c["SubnetId"] for c in calls] == [first, second]  # one round: two calls
        assert {c["InstanceType"] for c in calls} == {"g4dn.xlarge"}
        assert waiting(w, pid) == f"starting a g4dn.xlarge (on-demand, {REGION}b)"
        (machine,) = launched(w)
        assert machine.az == f"{REGION}b"
        w.h.engine.cancel_pipeline(pid, "test")


async def test_a_round_makes_a_bounded_number_of_calls(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    from app.executors.ec2 import MAX_LAUNCH_CALLS

    config = T4.replace("spot: never", "workload: batch")  # every size, AZ and market
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        assert w.executor is not None
        proxy(w).fail("RunInstances", 500, "InsufficientInstanceCapacity", "none")
        pid = await queued(w, repo_with(make_repo, config))
        now = utcnow()
        await w.executor.reconcile(now)
        assert len(runs(w)) == MAX_LAUNCH_CALLS == 8
        assert "waiting for capacity" in waiting(w, pid)
        await w.executor.reconcile(now + timedelta(seconds=1))  # backoff: 4 to 5 s
        assert len(runs(w)) == 8
        await w.executor.reconcile(now + timedelta(seconds=6))
        assert len(runs(w)) == 16
        w.h.engine.cancel_pipeline(pid, "test")


async def test_spot_not_possible_here_goes_on_demand_and_is_remembered(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = T4.replace("spot: never", "workload: batch")  # spot first
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        assert w.executor is not None
        w.boot = False
        proxy(w).fail(
            "RunInstances",
            400,
            "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
            "The provided credentials do not have permission to create the service-linked "
            "role for EC2 Spot Instances.",
            where={"InstanceMarketOptions.MarketType": "spot"},
        )
        pid = await queued(w, repo_with(make_repo, config))
        await w.executor.reconcile()
        calls = runs(w)
        assert len(calls) == 2  # spot refused once, then on-demand in the same round
        assert calls[0].get("InstanceMarketOptions.MarketType") == "spot"
        assert "InstanceMarketOptions.MarketType" not in calls[1]
        reason = waiting(w, pid)
        assert reason.startswith("starting a g4dn.xlarge (on-demand,")
        assert "spot is not possible here" in reason
        assert "ServiceLinkedRoleCreationNotPermitted" in reason
        # The account cannot use spot: the next job goes on-demand at once.
        pid2 = await queued(w, repo_with(make_repo, config))
        await w.executor.reconcile()
        assert len(runs(w)) == 3
        assert "InstanceMarketOptions.MarketType" not in runs(w)[2]
        assert {m.market for m in launched(w)} == {"on-demand"}
        for p in (pid, pid2):
            w.h.engine.cancel_pipeline(p, "test")


async def test_a_used_up_quota_says_which_and_where_and_backs_off(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    # two quotas: G and VT (t4) and P (a100), on-demand
    config = T4.replace("hardware: t4", "hardware: [t4, a100]")
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        assert w.executor is not None
        w.executor.rng = random.Random(17)
        proxy(w).fail(
            "RunInstances",
            400,
            "VcpuLimitExceeded",
            "You have requested more vCPU capacity than your current vCPU limit of 0 allows "
            "for the instance bucket that the specified instance type belongs to. Please "
            "visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to "
            "this limit.",
        )
        pid = await queued(w, repo_with(make_repo, config))
        now = utcnow()
        await w.executor.reconcile(now)
        # one call per quota, however many sizes and AZs each has
        families = [c["InstanceType"].split(".")[0][0] for c in runs(w)]
        assert sorted(families) == ["g", "p"]
        reason = waiting(w, pid)
        assert "waiting for an EC2 quota: Running On-Demand G and VT instances (L-DB2E81BA)" in (
            reason
        )
        assert "Running On-Demand P instances (L-417A185B)" in reason
        assert f"in {REGION} is used up (VcpuLimitExceeded:" in reason
        assert "servicequotas/home/services/ec2/quotas/L-DB2E81BA" in reason
        assert "waiting for capacity" not in reason  # not shown as capacity
        # backoff: nothing before the first wait (30 to 60 s, jittered) is over
        await w.executor.reconcile(now + timedelta(seconds=29))
        assert len(runs(w)) == 2
        await w.executor.reconcile(now + timedelta(seconds=61))
        assert len(runs(w)) == 4  # again one call per quota
        # the second wait is longer (60 to 120 s after that round)
        await w.executor.reconcile(now + timedelta(seconds=61 + 59))
        assert len(runs(w)) == 4
        w.h.engine.cancel_pipeline(pid, "test")


@pytest.mark.parametrize(
    ("status", "code", "message", "setting"),
    [
        (
            400,
            "InvalidAMIID.NotFound",
            "The image id '[ami-0abc]' does not exist",
            "PLOYD_EC2_AMIS",
        ),
        (
            400,
            "InvalidSubnetID.NotFound",
            "The subnet ID 'subnet-1' does not exist",
            "PLOYD_EC2_SUBNETS",
        ),
        (
            400,
            "InvalidBlockDeviceMapping",
            "Volume of size 100GB is smaller than snapshot 'snap-1', expect size >= 120GB",
            "PLOYD_EC2_ROOT_GB",
        ),
        (
            403,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. Encoded authorization "
            "failure message: abc",
            "IAM policy",
        ),
    ],
)
async def test_a_bad_request_fails_the_job_naming_the_setting_without_a_retry_loop(
    ec2_world: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    status: int,
    code: str,
    message: str,
    setting: str,
) -> None:
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        assert w.executor is not None
        proxy(w).fail("RunInstances", status, code, message)
        pid = await queued(w, repo_with(make_repo, T4))
        await w.executor.reconcile()
        assert len(runs(w)) == 1
        assert (await w.h.finished(pid)).state == "failed"
        (attempt,) = w.h.job(pid, "t").attempts
        assert attempt.state == "failed"
        assert code in (attempt.error or "") and setting in (attempt.error or "")
        assert "retrying cannot help" in (attempt.error or "")
        assert w.h.job(pid, "t").waiting_reason is None
        await w.executor.reconcile(utcnow() + timedelta(minutes=10))
        assert len(runs(w)) == 1  # no retry loop


async def test_throttling_backs_off(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        ex = w.executor
        assert ex is not None
        w.boot = False
        ex.rng = random.Random(3)
        sleeps: list[float] = []

        async def sleep(s: float) -> None:
            sleeps.append(s)

        ex.ec2 = EC2Client(ex.ec2.boto, retry=RetryPolicy(max_attempts=3), sleep=sleep)
        ex.clients[ex.config.region] = ex.ec2  # the home region's client, as launches find it
        fault = proxy(w).fail(
            "RunInstances", 503, "RequestLimitExceeded", "Request limit exceeded."
        )
        pid = await queued(w, repo_with(make_repo, T4))
        now = utcnow()
        await ex.reconcile(now)
        assert len(runs(w)) == 3  # the client's own bounded retries, then the round ends
        assert sleeps == [0.5, 1.0]
        reason = waiting(w, pid)
        assert reason.startswith("EC2 is throttling PloyD's API calls (RequestLimitExceeded:")
        assert "launches resume after" in reason
        await ex.reconcile(now + timedelta(seconds=4))  # the wait: 5 to 10 s, jittered
        assert len(runs(w)) == 3
        fault.times = fault.hits  # EC2 answers again
        await ex.reconcile(now + timedelta(seconds=11))
        assert len(runs(w)) == 4
        assert waiting(w, pid).startswith("starting a g4dn.xlarge")
        w.h.engine.cancel_pipeline(pid, "test")


OFFERINGS = (
    '<DescribeInstanceTypeOfferingsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    "<requestId>r-1</requestId><instanceTypeOfferingSet>"
    "<item><instanceType>g4dn.xlarge</instanceType><locationType>availability-zone"
    "</locationType><location>{az}</location></item>"
    "<item><instanceType>g4dn.2xlarge</instanceType><locationType>availability-zone"
    "</locationType><location>{az}</location></item>"
    "</instanceTypeOfferingSet></DescribeInstanceTypeOfferingsResponse>"
)


async def test_type_az_pairs_ec2_does_not_offer_are_never_tried(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        assert w.executor is not None
        w.boot = False
        _first, second = w.executor.config.subnets
        proxy(w).answer("DescribeInstanceTypeOfferings", OFFERINGS.format(az=f"{REGION}b"))
        proxy(w).fail("RunInstances", 500, "InsufficientInstanceCapacity", "none")
        pid = await queued(w, repo_with(make_repo, T4))
        await w.executor.reconcile()
        tried = [(c["InstanceType"], c["SubnetId"]) for c in runs(w)]
        assert tried == [("g4dn.xlarge", second), ("g4dn.2xlarge", second)]
        assert "tried g4dn.xlarge on-demand" in waiting(w, pid)
        await w.executor.reconcile(utcnow() + timedelta(minutes=5))
        assert len(runs(w)) == 4 and all(c["SubnetId"] == second for c in runs(w))
        assert proxy(w).calls["DescribeInstanceTypeOfferings"] == 1  # cached
        w.h.engine.cancel_pipeline(pid, "test")


async def test_a_machine_terminated_behind_ploids_back_interrupts_its_attempt_once(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = (
        "version: 1\njobs:\n  t:\n    hardware: t4\n    spot: never\n    steps:\n"
        "      - run: |\n"
        '          if [ "$PLOYD_ATTEMPT" = 1 ]; then echo READY-$((6*7)); sleep 300; fi\n'
        "          echo done\n"
    )
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        ex = w.executor
        assert ex is not None
        pid = await queued(w, repo_with(make_repo, config))
        await ex.reconcile()
        await w.h.log_contains(pid, "t", "READY-42")
        (first,) = launched(w)
        # a person (or AWS) terminates it: PloyD is not told
        w.boto.terminate_instances(InstanceIds=[first.instance_id])
        later = utcnow() + timedelta(minutes=3)
        await ex.reap(later)
        a1 = w.h.job(pid, "t").attempts[0]
        assert a1.state == "interrupted" and a1.end_reason == "infrastructure"
        assert first.instance_id in (a1.error or "")
        assert "Client.UserInitiatedShutdown" in (a1.error or "")  # what EC2 said
        await ex.reconcile()  # the retry's machine: another candidate
        assert (await w.h.finished(pid)).state == "succeeded"
        a1, a2 = w.h.job(pid, "t").attempts
        assert a2.state == "succeeded" and a2.reason.startswith("retry 1 of")
        # more passes of the reaper and the launcher start nothing more
        await ex.reap(later + timedelta(minutes=1))
        await ex.reconcile(later + timedelta(minutes=1))
        calls = runs(w)
        assert len(calls) == 2
        key = (first.instance_type, first.az)
        second = launched(w)[1]
        assert (second.instance_type, second.az) != key
        # the avoid list is the job's, stored, and outlives the successful launch
        job_id = w.h.job(pid, "t").id
        avoided = avoid.active(w.h.engine.db, job_id, utcnow())
        assert list(avoided) == [f"{first.instance_type} {first.market} {first.az}"]
        assert "Client.UserInitiatedShutdown" in avoided[next(iter(avoided))][0]
        states = {m.agent_id: m.state for m in launched(w)}
        assert states[first.agent_id] == "terminated"


async def test_a_machine_gone_before_it_registered_is_not_relaunched_for_the_same_attempt(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    """A bootstrap that shut its machine down without a word, or a person who ended it
    while it booted: before, the reaper marked it gone and the same attempt got another
    machine on every pass (the relaunch loop); now the attempt ends interrupted, once."""
    async with ec2_world(region=REGION, proxy=True, timer=False) as w:
        w: EC2World
        ex = w.executor
        assert ex is not None
        w.boot = False
        pid = await queued(w, repo_with(make_repo, T4))
        await ex.reconcile()
        (first,) = launched(w)
        w.boto.terminate_instances(InstanceIds=[first.instance_id])
        later = utcnow() + timedelta(minutes=3)
        await ex.reap(later)
        a1 = w.h.job(pid, "t").attempts[0]
        assert a1.state == "interrupted" and a1.end_reason == "infrastructure"
        assert "Client.UserInitiatedShutdown" in (a1.error or "")
        w.boot = True
        for k in range(3):  # passes of the launcher and the reaper: one new machine only
            await ex.reconcile(later + timedelta(minutes=k))
            await ex.reap(later + timedelta(minutes=k))
        assert (await w.h.finished(pid)).state == "succeeded"
        assert len(runs(w)) == 2
        assert [a.state for a in w.h.job(pid, "t").attempts] == ["interrupted", "succeeded"]
        second = launched(w)[1]
        assert (second.instance_type, second.az) != (first.instance_type, first.az)
