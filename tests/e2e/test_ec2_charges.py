"""Every instance-second attributed, through the EC2 executor on moto: a machine that
never registered is charged, whole, to the attempt it was launched for; its replacement
boots and runs on the retry; each machine's stretches follow each other with no gap."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.core.clock import aware
from app.core.ec2_policy import EC2Policy
from app.core.hardware import Catalog
from app.policy.enforce import PolicyBook
from app.store import charges
from app.store.models import Instance, Pipeline, Tenant, utcnow
from tests.e2e.ec2_world import EC2World


async def test_boot_and_never_registered_time_go_to_the_attempts_tenant(
    ec2_world: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo(
        {".ployd.yml": "version: 1\njobs:\n  t:\n    hardware: t4\n    steps: [{run: 'echo ok'}]\n"}
    )
    async with ec2_world(EC2Policy(boot_timeout_s=60)) as w:
        w: EC2World
        w.boot = False
        pid = await w.h.start(repo)
        await w.h.until(lambda: len(w.launched) == 1, "a launch")
        silent = w.launched[0]
        assert w.executor is not None
        assert silent.state == "requested"
        await w.executor.reap()  # EC2 says running: booting, its agent not there yet
        with w.h.engine.db.session() as s:
            row = s.query(Instance).filter_by(agent_id=silent.agent_id).one()
            assert (row.state, row.meter_kind) == ("booting", "boot")
        w.boot = True
        await w.executor.reconcile(now=utcnow() + timedelta(seconds=61))
        assert (await w.h.finished(pid)).state == "succeeded"
        a1, a2 = w.h.job(pid, "t").attempts
        db = w.h.engine.db
        with db.session() as s:
            p = s.get(Pipeline, pid)
            assert p is not None
            tenant_id = p.repository.tenant_id
            by_agent = {m.agent_id: m for m in s.query(Instance)}
            never = by_agent[silent.agent_id]
            assert never.state == "terminated" and never.meter_kind is None
            (whole,) = charges.of_instance(s, never.id)
            assert (whole.kind, whole.attempt_id, whole.tenant_id) == ("boot", a1.id, tenant_id)
            life = (aware(never.terminated_at) - aware(never.launched_at)).total_seconds()
            assert abs(whole.seconds - life) < 1e-3  # its whole life, nothing left over

            second = by_agent[w.launched[1].agent_id]
            got = charges.of_instance(s, second.id)
            assert [(c.kind, c.attempt_id) for c in got if c.kind != "idle"] == [
                ("boot", a2.id),
                ("run", a2.id),
            ]
            assert all(c.tenant_id in (tenant_id, None) for c in got)
            for a, b in itertools.pairwise(got):
                assert a.ended_at == b.started_at
            assert second.state == "idle" and second.meter_kind == "idle"  # the pool's now
            assert second.metered_at == got[-1].ended_at

            boot_usd = whole.cost + got[0].cost
            boot_s = whole.seconds + got[0].seconds
            tenant = s.get(Tenant, tenant_id)
            assert tenant is not None
            spend = PolicyBook(Catalog.default()).spend(s, tenant)
        # (moto boots in milliseconds: the seconds are small, the split is what counts)
        assert spend.machine_time["boot"] == (pytest.approx(boot_s), pytest.approx(boot_usd))
        assert spend.spent_usd >= boot_usd + (a2.cost or 0.0) - 1e-9
