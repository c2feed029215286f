"""Every instance-second attributed (``app.store.charges``), on both databases, with a
fixed clock: boot time and the life of a machine that never registered go to the attempt
it was launched for and that attempt's tenant, run time to the attempt it ran, warm-pool
idle time to the pool; a tenant's spend splits them (run / boot / idle)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.core.hardware import Catalog
from app.core.instances import InstanceState as S
from app.core.instances import cost_usd
from app.policy.enforce import PolicyBook
from app.store import charges
from app.store import instances as rows
from app.store.db import Database
from app.store.instances import NewInstance
from app.store.models import Tenant
from tests.store import rows as make

T0 = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
PRICE = 3.6  # $/h: $0.001 a second


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def machine(db: Database, n: int, launched_for: int | None, when: datetime = T0) -> int:
    return rows.add(
        db,
        NewInstance(
            pool="l4:1",
            instance_type="g6.xlarge",
            hardware="l4:1",
            market="on-demand",
            az="eu-west-1a",
            subnet_id="subnet-1",
            price_hourly=PRICE,
            agent_id=f"ec2-{n}",
            token_hash=f"tok{n}",
            launched_for=launched_for,
        ),
        now=when,
    ).id


def spend(db: Database, tenant_id: int, now: datetime) -> dict[str, object]:
    with db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        return PolicyBook(Catalog.default()).spend(s, tenant, now).as_json()


def charged(db: Database, row_id: int) -> list[tuple[str, int | None, int | None, float]]:
    with db.session() as s:
        return [
            (c.kind, c.attempt_id, c.tenant_id, c.seconds) for c in charges.of_instance(s, row_id)
        ]


def test_boot_120s_then_a_60s_job_charges_180s_to_the_attempts_tenant(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            acme = make.tenant(s, "acme")
            job = make.job(s, make.pipeline(s, make.repository(s, acme, "acme/app")), "train")
            # the engine's own cost of the attempt: price x claimed to ended (60 s)
            attempt = make.attempt(
                s,
                job,
                "succeeded",
                claimed_at=at(120),
                cost=cost_usd(PRICE, 60),
                price_hourly=PRICE,
            )
            ids = (acme.id, attempt.id)
        tenant_id, attempt_id = ids
        m = machine(db, 1, attempt_id)
        assert rows.get(db, m).state == S.REQUESTED  # type: ignore[union-attr]
        assert rows.register(db, "tok1", "cred1") is not None
        assert rows.get(db, m).state == S.BOOTING  # type: ignore[union-attr]
        rows.by_credential(db, "cred1", now=at(120))  # its agent's first claim
        rows.move(db, m, S.BUSY, now=at(120), attempt_id=attempt_id, tenant_id=tenant_id)
        rows.move(db, m, S.IDLE, now=at(180), attempt_id=None, idle_since=at(180))

        assert charged(db, m) == [
            ("boot", attempt_id, tenant_id, 120.0),  # claimed the moment it was ready
            ("run", attempt_id, tenant_id, 60.0),
        ]
        sp = spend(db, tenant_id, at(180))
        mt = sp["machine_time"]
        assert isinstance(mt, dict)
        assert mt["boot"] == {"seconds": 120.0, "usd": 0.12}
        assert mt["run"] == {"seconds": 60.0, "usd": 0.06}
        assert mt["boot"]["seconds"] + mt["run"]["seconds"] == 180.0
        assert sp["spent_usd"] == 0.18  # boot + run, against the budget
        # it now waits in its pool (bound to acme): that is the pool's, not the budget's
        sp = spend(db, tenant_id, at(480))
        assert sp["spent_usd"] == 0.18 and sp["running_usd"] == 0.0
        assert sp["machine_time"]["idle"] == {"seconds": 300.0, "usd": 0.3}  # type: ignore[index]
        assert sp["idle_by_pool"] == {"l4:1": {"seconds": 300.0, "usd": 0.3}}


def test_a_machine_that_never_registered_is_charged_to_its_attempt(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            acme = make.tenant(s, "acme")
            other = make.tenant(s, "other")
            job = make.job(s, make.pipeline(s, make.repository(s, acme, "acme/app")), "train")
            attempt = make.attempt(s, job)
            tenant_id, other_id, attempt_id = acme.id, other.id, attempt.id
        m = machine(db, 1, attempt_id)
        # while it boots, its cost accrues to the attempt's tenant
        sp = spend(db, tenant_id, at(300))
        assert sp["running_usd"] == 0.3 and sp["spent_usd"] == 0.0
        assert spend(db, other_id, at(300))["running_usd"] == 0.0
        rows.move(db, m, S.TERMINATING, now=at(600), error="did not register")  # boot timeout
        rows.move(db, m, S.TERMINATED, now=at(610))

        assert charged(db, m) == [("boot", attempt_id, tenant_id, 610.0)]
        assert rows.get(db, m).terminated_at is not None  # type: ignore[union-attr]
        sp = spend(db, tenant_id, at(700))
        assert sp["spent_usd"] == 0.61 and sp["running_usd"] == 0.0
        assert sp["machine_time"]["boot"] == {"seconds": 610.0, "usd": 0.61}  # type: ignore[index]
        assert spend(db, other_id, at(700))["spent_usd"] == 0.0


def test_a_bootstrap_failure_keeps_charging_its_attempt_until_gone(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            acme = make.tenant(s, "acme")
            job = make.job(s, make.pipeline(s, make.repository(s, acme, "acme/app")), "t")
            tenant_id, attempt_id = acme.id, make.attempt(s, job).id
        m = machine(db, 1, attempt_id)
        assert rows.fail_boot(db, "tok1", "python3 is 3.8") is not None
        rows.move(db, m, S.TERMINATED, now=at(90))
        assert charged(db, m) == [("boot", attempt_id, tenant_id, 90.0)]


def test_warm_pool_idle_time_goes_to_the_pool(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            acme = make.tenant(s, "acme")
            tenant_id = acme.id
        m = machine(db, 1, None)  # started to fill the pool: launched for no attempt
        rows.register(db, "tok1", "cred1")
        rows.by_credential(db, "cred1", now=at(90))
        assert rows.retire_idle(db, m, "idle TTL") is not None  # idle -> terminating
        rows.move(db, m, S.TERMINATED, now=at(1090))

        assert charged(db, m) == [("boot", None, None, 90.0), ("idle", None, None, 1000.0)]
        with db.session() as s:
            (pool,) = charges.by_pool(s, T0, at(2000))
        assert pool.pool == "l4:1"
        assert (pool.boot.seconds, pool.idle.seconds, pool.run.seconds) == (90.0, 1000.0, 0.0)
        assert pool.idle.usd == pytest.approx(1.0)
        sp = spend(db, tenant_id, at(2000))  # nobody's tenant: the pool's own
        assert sp["spent_usd"] == 0.0 and sp["idle_by_pool"] == {}


def test_every_second_of_a_life_is_in_exactly_one_stretch(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            acme = make.tenant(s, "acme")
            p = make.pipeline(s, make.repository(s, acme, "acme/app"))
            first, second = (
                make.attempt(s, make.job(s, p, "a")),
                make.attempt(s, make.job(s, p, "b")),
            )
            tenant_id, ids = acme.id, (first.id, second.id)
        m = machine(db, 1, ids[0])
        rows.register(db, "tok1", "cred1")
        rows.by_credential(db, "cred1", now=at(100))
        rows.move(db, m, S.BUSY, now=at(101), attempt_id=ids[0], tenant_id=tenant_id)
        rows.move(db, m, S.IDLE, now=at(400), attempt_id=None)
        rows.move(db, m, S.BUSY, now=at(450), attempt_id=ids[1])
        rows.move(db, m, S.DRAINING, now=at(500), attempt_id=None)
        rows.move(db, m, S.TERMINATING, now=at(505))
        rows.move(db, m, S.TERMINATED, now=at(520))
        got = charged(db, m)
        assert got == [
            ("boot", ids[0], tenant_id, 100.0),
            ("idle", None, None, 1.0),  # ready, not yet bound to a tenant
            ("run", ids[0], tenant_id, 299.0),
            ("idle", None, tenant_id, 50.0),
            ("run", ids[1], tenant_id, 50.0),
            ("idle", None, tenant_id, 20.0),  # draining and terminating: the pool's
        ]
        assert sum(c[3] for c in got) == 520.0
        with db.session() as s:
            stretches = charges.of_instance(s, m)
            for a, b in itertools.pairwise(stretches):
                assert a.ended_at == b.started_at  # no gap, no overlap
