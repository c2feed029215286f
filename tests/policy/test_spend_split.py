"""A tenant's spend over the admin API and the dashboard, split by what the machine time
was: its jobs' run time, the boot time of machines started for them (in the budget), and
the idle time of warm machines bound to it (their pool's, shown, not in the budget)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.core.instances import InstanceState as S
from app.policy.enforce import month_start
from app.store import instances
from app.store.instances import NewInstance
from app.store.models import Pipeline, utcnow
from tests.e2e.conftest import Harness

PRICE = 3.6  # $/h: $0.001 a second


async def test_spend_shows_run_boot_and_pool_idle_apart(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": "version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n"})
    async with serve(agents=1) as h:
        h: Harness
        pid = await h.start(repo)
        assert (await h.finished(pid)).state == "succeeded"
        db = h.engine.db
        with db.session() as s:
            p = s.get(Pipeline, pid)
            assert p is not None
            tid = p.repository.tenant_id
            (attempt,) = [a for j in p.jobs for a in j.attempts]
            attempt.price_hourly, attempt.cost = PRICE, 0.06  # as if it ran 60 s on EC2
            aid = attempt.id
        now = utcnow()
        t0 = max(now - timedelta(seconds=900), month_start(now))

        def at(seconds: int) -> Any:
            return t0 + timedelta(seconds=seconds)

        m = instances.add(
            db,
            NewInstance(
                pool="l4:1",
                instance_type="g6.xlarge",
                hardware="l4:1",
                market="on-demand",
                az="us-east-1a",
                subnet_id="subnet-1",
                price_hourly=PRICE,
                agent_id="ec2-a",
                token_hash="tok-a",
                launched_for=aid,
            ),
            now=t0,
        ).id
        instances.register(db, "tok-a", "cred-a")
        instances.by_credential(db, "cred-a", now=at(120))
        instances.move(db, m, S.BUSY, now=at(120), attempt_id=aid, tenant_id=tid)
        instances.move(db, m, S.IDLE, now=at(180), attempt_id=None)
        instances.move(db, m, S.TERMINATING, now=at(480))
        instances.move(db, m, S.TERMINATED, now=at(480))

        status, spend = await h.get(f"/api/v1/tenants/{tid}/spend")
        assert status == 200, spend
        assert spend["machine_time"] == {
            "run": {"seconds": 60.0, "usd": 0.06},
            "boot": {"seconds": 120.0, "usd": 0.12},
            "idle": {"seconds": 300.0, "usd": 0.3},
        }
        assert spend["idle_by_pool"] == {"l4:1": {"seconds": 300.0, "usd": 0.3}}
        assert spend["spent_usd"] == 0.18  # run + boot: the pool's idle is not the tenant's
        assert spend["running_usd"] == 0.0

        status, page = await h.get("/")
        assert status == 200
        tenants = page.split("Spend this month, by tenant", 1)[1].split("</section>", 1)[0]
        assert "<td>$0.18</td><td>$0.06</td><td>$0.12</td><td>$0.30</td>" in tenants
        pools = page.split('id="machine-time"', 1)[1].split("</section>", 1)[0]
        assert "<td>l4:1</td><td>1 min · $0.06</td><td>2 min · $0.12</td>" in pools
        assert "<td>5 min · $0.30</td>" in pools
