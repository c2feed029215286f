"""Reserved capacity end to end, through the proxy that answers DescribeCapacityReservations
as EC2 does (moto has none): at start the executor asks EC2 about the configured ids and
fills in what an entry left out; an expired reservation, a Capacity Block outside its
window and a reservation for another tenant are not launched into (RunInstances on the
wire asserted); a full reservation's refusal moves on to the next candidate, and the
block is used once its window opens. A type EC2 contradicts stops the executor's start,
naming both. A reservation for a tenant's test jobs is theirs, and a warm pool gets only
the one open to everyone."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.adapters.ec2.config import EC2Config, EC2ConfigError
from app.adapters.ec2.regions import parse_reservations
from app.store.models import Instance, utcnow
from tests.e2e.ec2_world import EC2World
from tests.fakes.ec2_proxy import EC2Proxy

REGION = "us-east-2"  # moto offers the g6 types in both of the world's AZs
CR_FOUND, CR_EXPIRED, CR_BLOCK, CR_TEAM = (f"cr-0123456789abcdef{i}" for i in range(4))
L4 = "version: 1\njobs:\n  t:\n    hardware: l4\n    spot: never\n    steps: [{run: 'echo ok'}]\n"
TARGET = "CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"


def proxy(w: EC2World) -> EC2Proxy:
    assert w.proxy is not None
    return w.proxy


def with_reservations(entries: list[dict[str, Any]]) -> Callable[[EC2World], EC2Config]:
    def network(w: EC2World) -> EC2Config:
        base = w.network()
        from dataclasses import replace

        parsed = parse_reservations(json.dumps(entries), {REGION})
        return replace(base, reservations=parsed)

    return network


async def queued(w: EC2World, make_repo: Callable[..., tuple[Path, str]]) -> int:
    assert w.h is not None
    repo, _ = make_repo({".ployd.yml": L4})
    pid = await w.h.start(repo)
    await w.h.until(
        lambda: all(j.attempts and j.attempts[-1].state == "queued"
                    for j in w.h.pipeline(pid).jobs),  # type: ignore[union-attr]
        "the job queued",
    )
    return pid


def launched(w: EC2World) -> list[Instance]:
    with w.h.engine.db.session() as s:  # type: ignore[union-attr]
        return [m for m in s.query(Instance).order_by(Instance.id) if m.instance_id]


async def test_reservations_as_ec2_says_them_first_the_usable_ones_only(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = utcnow()
    entries = [
        {"id": CR_BLOCK},  # a Capacity Block of g6.xlarge: EC2 says so, and its window
        {"id": CR_TEAM, "tenants": ["github:acme"]},  # g6.xlarge, another team's
        {"id": CR_EXPIRED, "instance_type": "g6.xlarge"},
        {"id": CR_FOUND},  # only an id: EC2 says g6.2xlarge in REGIONb
    ]

    def network(w: EC2World) -> EC2Config:
        p = proxy(w)
        p.reserve(CR_FOUND, "g6.2xlarge", f"{REGION}b", available=1)
        p.reserve(CR_EXPIRED, "g6.xlarge", f"{REGION}a", state="expired", available=0)
        p.reserve(CR_TEAM, "g6.xlarge", f"{REGION}a", available=4)
        p.reserve(CR_BLOCK, "g6.xlarge", f"{REGION}a", kind="capacity-block",
                  starts=now + timedelta(hours=2), ends=now + timedelta(hours=26))
        return with_reservations(entries)(w)

    caplog.set_level(logging.WARNING, logger="ployd.ec2")
    async with ec2_world(region=REGION, proxy=True, timer=False, network=network) as w:
        w: EC2World
        assert w.executor is not None and w.executor.scheduler is not None
        w.boot = False
        # asked once at start, all four ids in one call of the home region
        (asked,) = proxy(w).of("DescribeCapacityReservations")
        assert sorted(v for k, v in asked.items() if k.startswith("CapacityReservationId.")) \
            == sorted([CR_FOUND, CR_EXPIRED, CR_BLOCK, CR_TEAM])
        by_id = {r.target: r for r in w.executor.scheduler.fleet.reservations}
        found, block = by_id[CR_FOUND], by_id[CR_BLOCK]
        assert (found.instance_type, found.az, found.region, found.available) == (
            "g6.2xlarge", f"{REGION}b", REGION, 1)
        assert block.kind == "capacity-block" and block.starts is not None
        assert abs(block.starts - (now + timedelta(hours=2))) < timedelta(seconds=1)
        assert f"capacity reservation {CR_EXPIRED}: EC2 says it is expired: not used" in \
            caplog.text

        pid = await queued(w, make_repo)
        await w.executor.reconcile(now)
        (first,) = proxy(w).of("RunInstances")  # the usable reservation, first try
        assert (first["InstanceType"], first[TARGET]) == ("g6.2xlarge", CR_FOUND)
        assert "InstanceMarketOptions.MarketType" not in first  # an ODCR: on-demand
        assert first["SubnetId"] == w.executor.config.subnets[1]  # its AZ's subnet
        assert w.h.job(pid, "t").waiting_reason == (
            f"starting a g6.2xlarge (on-demand, {REGION}b, capacity reservation {CR_FOUND})")
        (machine,) = launched(w)
        assert (machine.reservation, machine.market) == (CR_FOUND, "on-demand")
        w.h.engine.cancel_pipeline(pid, "test")

        # two hours on: the block's window is open, and it is first (g6.xlarge)
        later = now + timedelta(hours=2, minutes=1)
        pid = await queued(w, make_repo)
        await w.executor.reconcile(later)
        into_block = proxy(w).of("RunInstances")[1]
        assert (into_block["InstanceType"], into_block[TARGET]) == ("g6.xlarge", CR_BLOCK)
        assert into_block["InstanceMarketOptions.MarketType"] == "capacity-block"
        assert into_block["SubnetId"] == w.executor.config.subnets[0]
        block_row = launched(w)[-1]
        assert (block_row.reservation, block_row.market, block_row.clean_after) == (
            CR_BLOCK, "capacity-block", True)  # one job, then it goes: the block ends
        w.h.engine.cancel_pipeline(pid, "test")

        # both are full now (the proxy used up their one instance each): EC2 refuses
        # ReservationCapacityExceeded, and the next candidate is tried at once
        pid = await queued(w, make_repo)
        await w.executor.reconcile(later + timedelta(minutes=1))
        block_full, odcr_full, plain = proxy(w).of("RunInstances")[2:]
        assert (block_full[TARGET], odcr_full[TARGET]) == (CR_BLOCK, CR_FOUND)
        assert TARGET not in plain and plain["InstanceType"] == "g6.xlarge"
        assert [st for a, _, st in proxy(w).requests if a == "RunInstances"][2:] == [
            400, 400, 200]
        # never: the expired one, the other team's
        targets = {r.get(TARGET) for r in proxy(w).of("RunInstances")}
        assert targets == {CR_FOUND, CR_BLOCK, None}
        w.h.engine.cancel_pipeline(pid, "test")

        # the reaper's pass asks EC2 again (REFRESH_S on): no free instance in either
        await w.executor.reap(later + timedelta(minutes=10))
        assert len(proxy(w).of("DescribeCapacityReservations")) == 2
        by_id = {r.target: r for r in w.executor.scheduler.fleet.reservations}
        assert (by_id[CR_FOUND].available, by_id[CR_BLOCK].available) == (0, 0)


async def test_a_type_ec2_contradicts_stops_the_start_naming_both(
    ec2_world: Callable[..., Any],
) -> None:
    def network(w: EC2World) -> EC2Config:
        proxy(w).reserve(CR_FOUND, "g6.2xlarge", f"{REGION}b")
        return with_reservations([{"id": CR_FOUND, "instance_type": "g6.4xlarge"}])(w)

    with pytest.raises(EC2ConfigError, match=(
            r"PLOYD_EC2_CAPACITY_RESERVATIONS\[0\] \(cr-0123456789abcdef0\): "
            r"instance_type='g6.4xlarge', but EC2 says cr-0123456789abcdef0 is 'g6.2xlarge'")):
        async with ec2_world(region=REGION, proxy=True, timer=False, network=network):
            pass


async def test_an_id_ec2_does_not_know_stops_the_start(ec2_world: Callable[..., Any]) -> None:
    network = with_reservations([{"id": CR_FOUND}])
    with pytest.raises(EC2ConfigError, match=f"EC2 does not know {CR_FOUND} in {REGION}"):
        async with ec2_world(region=REGION, proxy=True, timer=False, network=network):
            pass


async def test_a_teams_reservation_is_its_jobs_and_a_warm_pool_gets_the_open_one(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]],
) -> None:
    from app.core.ec2_policy import EC2Policy, PoolPolicy

    cr_open = "cr-0123456789abcdef4"
    entries = [
        # the harness's repositories are the local tenant's
        {"id": CR_TEAM, "tenants": ["local:local"], "workloads": ["test"]},
        {"id": cr_open},
    ]

    def network(w: EC2World) -> EC2Config:
        proxy(w).reserve(CR_TEAM, "g6.xlarge", f"{REGION}a", available=4)
        proxy(w).reserve(cr_open, "g6.2xlarge", f"{REGION}b", available=4)
        return with_reservations(entries)(w)

    policy = EC2Policy(pools={"l4:1": PoolPolicy(min_idle=1, max_idle=1, idle_ttl_s=600)})
    async with ec2_world(policy, region=REGION, proxy=True, timer=False, network=network) as w:
        w: EC2World
        assert w.executor is not None
        w.boot = False
        await w.executor.reconcile()  # the pool's machine: no tenant, no workload
        (warm,) = proxy(w).of("RunInstances")
        assert (warm["InstanceType"], warm[TARGET]) == ("g6.2xlarge", cr_open)
        (pool_row,) = launched(w)
        assert (pool_row.reservation, pool_row.launched_for, pool_row.clean_after) == (
            cr_open, None, False)

        pid = await queued(w, make_repo)  # the local tenant's test job: the team's
        await w.executor.reconcile()
        job_run = proxy(w).of("RunInstances")[1]
        assert (job_run["InstanceType"], job_run[TARGET]) == ("g6.xlarge", CR_TEAM)
        job_row = launched(w)[-1]
        assert job_row.reservation == CR_TEAM and job_row.launched_for is not None
        assert job_row.clean_after  # for some workloads only: never kept warm for others
        w.h.engine.cancel_pipeline(pid, "test")


async def test_ec2_is_asked_again_when_a_blocks_window_opens(
    ec2_world: Callable[..., Any],
) -> None:
    t0 = utcnow()
    starts = t0 + timedelta(minutes=2)

    def network(w: EC2World) -> EC2Config:
        proxy(w).reserve(CR_BLOCK, "g6.xlarge", f"{REGION}a", kind="capacity-block",
                         state="scheduled", starts=starts, ends=starts + timedelta(days=1))
        return with_reservations([{"id": CR_BLOCK}])(w)

    async with ec2_world(region=REGION, proxy=True, timer=False, network=network) as w:
        w: EC2World
        assert w.executor is not None and w.executor.scheduler is not None
        asks = lambda: len(proxy(w).of("DescribeCapacityReservations"))  # noqa: E731
        assert asks() == 1
        (block,) = w.executor.scheduler.fleet.reservations
        assert block.state == "scheduled"
        await w.executor.reap(t0 + timedelta(minutes=1))
        assert asks() == 1  # within REFRESH_S, nothing started: not asked
        proxy(w).reservations[CR_BLOCK].state = "active"  # EC2, from the block's start
        await w.executor.reap(t0 + timedelta(minutes=2, seconds=30))
        assert asks() == 2  # the window opened since the last answer
        (block,) = w.executor.scheduler.fleet.reservations
        assert block.state == "active"
        await w.executor.reap(t0 + timedelta(minutes=3))
        assert asks() == 2
