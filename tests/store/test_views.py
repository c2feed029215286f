"""The store's query functions, on both databases: what they read, what they leave out
(another tenant's pipeline, a held one), and None or empty for what is not there."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.core.instances import InstanceState
from app.store import instances
from app.store.attempts import attempt_context
from app.store.db import Database
from app.store.instances import NewInstance
from app.store.models import Attempt, Instance, Job, Pipeline, Repository, Tenant
from app.store.overview import dashboard_summary
from app.store.pipelines import attempt_record, job_record, list_pipelines, pipeline_record
from app.store.queue import claimable, queued_attempts
from app.store.runs import job_tenant, load_attempt, load_job
from app.store.tenants import all_tenants

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def aware(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.connect(db_url)
    yield database
    database.dispose()


@dataclasses.dataclass
class World:
    """Two tenants: ``acme`` with two pipelines (one held for approval), ``zeta`` with
    one. Ids of what the tests look at."""

    acme: int
    zeta: int
    first: int  # acme's pipeline: build (2 attempts), test (queued), lint (queued)
    held: int  # acme's fork pipeline, held: one queued job
    other: int  # zeta's pipeline: one job, queued
    build: int
    test: int
    lint: int
    held_job: int
    other_job: int
    build_attempts: tuple[int, int]
    test_attempt: int
    lint_attempt: int
    held_attempt: int
    other_attempt: int


def _pipeline(s: Session, repo: Repository, **kw: Any) -> Pipeline:
    p = Pipeline(repository_id=repo.id, forge="local", ref="refs/heads/main", sha="a" * 40, **kw)
    s.add(p)
    s.flush()
    return p


def _job(s: Session, p: Pipeline, position: int, name: str, **kw: Any) -> Job:
    j = Job(pipeline_id=p.id, position=position, name=name, base_name=name, **kw)
    s.add(j)
    s.flush()
    return j


def _attempt(s: Session, j: Job, number: int, **kw: Any) -> Attempt:
    a = Attempt(job_id=j.id, number=number, **kw)
    s.add(a)
    s.flush()
    return a


@pytest.fixture
def world(db: Database) -> World:
    with db.session() as s:
        acme = Tenant(forge="github", external_id="11", name="acme")
        zeta = Tenant(forge="gitlab", external_id="22", name="zeta")
        s.add_all([acme, zeta])
        s.flush()
        r1 = Repository(tenant_id=acme.id, forge="github", full_name="acme/app", clone_url="u")
        r2 = Repository(tenant_id=zeta.id, forge="gitlab", full_name="zeta/lib", clone_url="u")
        s.add_all([r1, r2])
        s.flush()
        first = _pipeline(s, r1, trigger="push", actor="ann", created_at=T0)
        build = _job(
            s,
            first,
            0,
            "build",
            state="running",
            hardware=["l4:1"],
            candidates=["g6.xlarge"],
            spec={"steps": [{"title": "compile"}, {"title": ""}], "disk_gb": 80},
            matrix={"py": "3.11"},
            needs=[],
            queued_at=T0,
        )
        b1 = _attempt(
            s,
            build,
            1,
            state="interrupted",
            end_reason="spot_interruption",
            hardware=["l4:1"],
            cost=0.5,
            created_at=T0,
            claimed_at=T0 + timedelta(seconds=3),
            finished_at=T0 + timedelta(seconds=63),
            steps=[{"index": 0, "state": "succeeded", "log_offset": 0, "exit_code": 0}],
        )
        b2 = _attempt(s, build, 2, state="running", reason="retry after spot_interruption")
        test = _job(
            s, first, 1, "test", state="queued", needs=["build"], spec={"clean_machine": True}
        )
        t1 = _attempt(s, test, 1, state="queued")
        lint = _job(s, first, 2, "lint", state="queued", waiting_reason="waiting for capacity")
        l1 = _attempt(s, lint, 1, state="queued")
        held = _pipeline(s, r1, trigger="pull_request", fork=True, held=True, pr_number=7)
        hj = _job(s, held, 0, "build", state="queued")
        h1 = _attempt(s, hj, 1, state="queued")
        other = _pipeline(s, r2, trigger="push", created_at=T0 + timedelta(minutes=1))
        oj = _job(s, other, 0, "unit", state="queued", hardware=["cpu"])
        o1 = _attempt(s, oj, 1, state="queued")
        return World(
            acme=acme.id,
            zeta=zeta.id,
            first=first.id,
            held=held.id,
            other=other.id,
            build=build.id,
            test=test.id,
            lint=lint.id,
            held_job=hj.id,
            other_job=oj.id,
            build_attempts=(b1.id, b2.id),
            test_attempt=t1.id,
            lint_attempt=l1.id,
            held_attempt=h1.id,
            other_attempt=o1.id,
        )


# ---- pipelines (the JSON API) -----------------------------------------------------------


def test_pipelines_on_an_empty_database(db: Database) -> None:
    assert list_pipelines(db, 50) == []
    assert pipeline_record(db, 1) is None
    assert job_record(db, 1) is None
    assert attempt_record(db, 1) is None


def test_list_pipelines_newest_first_without_jobs(db: Database, world: World) -> None:
    got = list_pipelines(db, 50)
    assert [p.id for p in got] == [world.other, world.held, world.first]
    assert [p.repo for p in got] == ["zeta/lib", "acme/app", "acme/app"]
    assert all(p.jobs == () for p in got)
    assert [p.id for p in list_pipelines(db, 2)] == [world.other, world.held]


def test_list_pipelines_of_one_tenant(db: Database, world: World) -> None:
    assert [p.id for p in list_pipelines(db, 50, tenant_id=world.acme)] == [world.held, world.first]
    assert [p.id for p in list_pipelines(db, 50, tenant_id=world.zeta)] == [world.other]
    assert list_pipelines(db, 50, tenant_id=world.zeta + 100) == []


def test_pipeline_record_has_its_jobs_and_their_attempts(db: Database, world: World) -> None:
    p = pipeline_record(db, world.first)
    assert p is not None
    assert (p.repo, p.tenant_id, p.trigger, p.actor, p.state) == (
        "acme/app",
        world.acme,
        "push",
        "ann",
        "running",
    )
    assert aware(p.created_at) == T0 and p.finished_at is None
    assert [j.name for j in p.jobs] == ["build", "test", "lint"]  # by position
    build = p.jobs[0]
    assert [a.number for a in build.attempts] == [1, 2]
    assert build.attempts[0].id == world.build_attempts[0]
    assert build.attempts[0].end_reason == "spot_interruption" and build.attempts[0].cost == 0.5
    assert build.matrix == {"py": "3.11"} and build.hardware == ("l4:1",)
    assert build.candidates == ("g6.xlarge",) and p.jobs[1].needs == ("build",)
    assert [len(j.attempts) for j in p.jobs] == [2, 1, 1]


def test_pipeline_record_of_another_tenant_is_none(db: Database, world: World) -> None:
    assert pipeline_record(db, world.other, tenant_id=world.acme) is None
    assert pipeline_record(db, world.first, tenant_id=world.zeta) is None
    mine = pipeline_record(db, world.other, tenant_id=world.zeta)
    assert mine is not None and [j.name for j in mine.jobs] == ["unit"]
    assert pipeline_record(db, world.other + 100) is None


def test_job_and_attempt_records(db: Database, world: World) -> None:
    j = job_record(db, world.build)
    assert j is not None and j.pipeline_id == world.first
    assert [a.id for a in j.attempts] == list(world.build_attempts)
    a = attempt_record(db, world.build_attempts[0])
    assert a is not None and a == j.attempts[0]
    assert a.steps == ({"index": 0, "state": "succeeded", "log_offset": 0, "exit_code": 0},)
    assert aware(a.finished_at) == T0 + timedelta(seconds=63)
    assert job_record(db, world.other_job + 100) is None
    assert attempt_record(db, world.other_attempt + 100) is None


def test_records_are_frozen_and_detached(db: Database, world: World) -> None:
    j = job_record(db, world.build)
    assert j is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.state = "succeeded"  # type: ignore[misc]
    j.matrix["py"] = "changed"  # a copy: the next read is unchanged
    again = job_record(db, world.build)
    assert again is not None and again.matrix == {"py": "3.11"}


# ---- the log page's job, and a link's tenant ---------------------------------------------


def test_load_job_for_the_log_page(db: Database, world: World) -> None:
    job = load_job(db, world.build)
    assert job is not None
    assert (job.repo, job.tenant_id, job.pipeline_id) == ("acme/app", world.acme, world.first)
    assert job.queued_at == T0 and job.queued_at.tzinfo is not None  # always aware
    first = job.attempt(1)
    assert first is not None and first.failed and first.final
    assert [s.title for s in first.steps] == ["compile", "step 2"]
    assert [s.state for s in first.steps] == ["succeeded", "pending"]
    latest = job.attempt(None)
    assert latest is not None and latest.number == 2 and not latest.final
    assert job.attempt(3) is None
    a = load_attempt(db, world.build_attempts[1])
    assert a == latest
    assert load_job(db, world.other_job + 100) is None
    assert load_attempt(db, world.other_attempt + 100) is None


def test_job_tenant(db: Database, world: World) -> None:
    assert job_tenant(db, world.build) == world.acme
    assert job_tenant(db, world.other_job) == world.zeta  # another tenant's job: its tenant
    assert job_tenant(db, world.other_job + 100) is None


# ---- tenants ----------------------------------------------------------------------------


def test_all_tenants(db: Database) -> None:
    assert all_tenants(db) == []
    with db.session() as s:
        s.add_all([Tenant(forge="github", external_id="2", name="zed")])
        s.add_all([Tenant(forge="gitlab", external_id="1", name="amy")])
    by_id = all_tenants(db)
    assert [t.name for t in by_id] == ["zed", "amy"]
    assert [t.name for t in all_tenants(db, order="name")] == ["amy", "zed"]
    assert (by_id[0].forge, by_id[0].external_id) == ("github", "2")


# ---- the queue ----------------------------------------------------------------------------


def test_queue_on_an_empty_database(db: Database) -> None:
    assert queued_attempts(db) == []


def test_queued_attempts_leave_held_pipelines_out(db: Database, world: World) -> None:
    got = queued_attempts(db)
    assert [q.attempt_id for q in got] == [
        world.test_attempt,
        world.lint_attempt,
        world.other_attempt,
    ]
    test, _lint, other = got
    assert (test.job_id, test.tenant_id, test.fork) == (world.test, world.acme, False)
    assert test.spec == {"clean_machine": True}
    assert (other.tenant_id, other.hardware) == (world.zeta, ("cpu",))
    assert [q.attempt_id for q in queued_attempts(db, limit=1)] == [world.test_attempt]


def test_queued_attempts_know_a_lost_spot_machine(db: Database, world: World) -> None:
    with db.session() as s:
        s.add(Attempt(job_id=world.build, number=3, state="queued"))
    got = {q.job_id: q for q in queued_attempts(db)}
    assert got[world.build].spot_lost  # attempt 1 of the job lost its spot machine
    assert got[world.build].candidates == ("g6.xlarge",)
    assert not got[world.test].spot_lost and not got[world.other_job].spot_lost


def test_claimable_is_what_queued_attempts_read(db: Database, world: World) -> None:
    with db.session() as s:
        ids = [a.id for a in s.scalars(claimable())]
    assert ids == [q.attempt_id for q in queued_attempts(db)]


# ---- one attempt with what it belongs to -------------------------------------------------


def test_attempt_context(db: Database, world: World) -> None:
    a = attempt_context(db, world.build_attempts[0])
    assert a is not None
    assert (a.job_id, a.pipeline_id, a.tenant_id, a.repo) == (
        world.build,
        world.first,
        world.acme,
        "acme/app",
    )
    assert (a.number, a.state, a.end_reason, a.cost) == (1, "interrupted", "spot_interruption", 0.5)
    assert a.hardware == ("l4:1",) and a.job_hardware == ("l4:1",)
    assert aware(a.claimed_at) == T0 + timedelta(seconds=3)
    assert aware(a.pipeline_created_at) == T0 and not a.fork
    held = attempt_context(db, world.held_attempt)
    assert held is not None and held.fork and held.hardware == () and held.job_spec == {}
    assert attempt_context(db, world.other_attempt + 100) is None


# ---- machines -----------------------------------------------------------------------------


def _new(agent: str, **kw: object) -> NewInstance:
    fields: dict[str, object] = {
        "pool": "l4:1",
        "instance_type": "g6.xlarge",
        "hardware": "l4:1",
        "market": "spot",
        "az": "us-east-2a",
        "subnet_id": "subnet-1",
        "price_hourly": 0.4,
        "agent_id": agent,
        "token_hash": f"hash-{agent}",
    }
    return NewInstance(**(fields | kw))  # type: ignore[arg-type]


def test_machines_on_an_empty_database(db: Database) -> None:
    assert instances.live(db) == []
    assert instances.get(db, 1) is None
    assert instances.by_agent(db, "nobody") is None
    assert instances.move(db, 1, InstanceState.IDLE) is None
    instances.update(db, 1, instance_id="i-1")  # nothing to change: no error
    assert instances.register(db, "hash-nobody", "cred-nobody") is None
    assert instances.by_credential(db, "cred-nobody") is None
    assert instances.count_by_state(db) == []


def test_a_machine_through_its_states(db: Database) -> None:
    m = instances.add(db, _new("ag-1", launched_for=7, clean_after=True))
    assert (m.state, m.instance_id, m.launched_for, m.clean_after) == ("requested", None, 7, True)
    assert m.launched_at is not None and m.tenant_id is None
    instances.update(db, m.id, instance_id="i-abc")
    assert instances.get(db, m.id) == dataclasses.replace(m, instance_id="i-abc")
    # The registration token is exchanged once, for the agent's credential (issue 13).
    registered = instances.register(db, "hash-ag-1", "cred-ag-1")
    assert registered is not None and registered.outcome == "ok"
    assert registered.machine.state == "booting"  # it runs; its boot lasts until its first claim
    assert registered.machine.registered_at is not None
    claiming = instances.by_credential(db, "cred-ag-1")
    assert claiming is not None and claiming.state == "idle"
    assert claiming.registered_at is not None and claiming.idle_since is not None
    assert instances.by_credential(db, "cred-ag-1") == claiming
    busy = instances.move(db, m.id, InstanceState.BUSY, attempt_id=3, tenant_id=None)
    assert busy is not None and (busy.state, busy.attempt_id) == ("busy", 3)
    assert instances.by_agent(db, "ag-1") == busy
    again = instances.register(db, "hash-ag-1", "cred-other")  # a second use: refused
    assert again is not None and again.outcome == "used" and again.machine.state == "busy"
    assert instances.by_credential(db, "cred-other") is None
    assert instances.by_credential(db, "cred-ag-1") == busy
    assert instances.move(db, m.id, InstanceState.REQUESTED) is None  # not legal from busy
    gone = instances.move(db, m.id, InstanceState.TERMINATED, error="done")
    assert gone is not None and gone.terminated_at is not None and gone.error == "done"
    assert instances.live(db) == []
    late = instances.register(db, "hash-ag-1", "cred-late")  # a terminated machine's token
    assert late is not None and late.outcome == "gone"
    assert instances.by_credential(db, "cred-ag-1") is None
    assert instances.count_by_state(db) == [("terminated", 1)]


def test_live_machines_and_counts(db: Database) -> None:
    a = instances.add(db, _new("ag-a"))
    b = instances.add(db, _new("ag-b"))
    instances.move(db, b.id, InstanceState.TERMINATED)
    c = instances.add(db, _new("ag-c", state="idle"))
    assert sorted(m.id for m in instances.live(db)) == [a.id, c.id]
    assert sorted(instances.count_by_state(db)) == [
        ("idle", 1),
        ("requested", 1),
        ("terminated", 1),
    ]


def test_machine_fields_are_checked(db: Database) -> None:
    m = instances.add(db, _new("ag-1"))
    with pytest.raises(TypeError):
        instances.update(db, m.id, no_such_field=1)
    with pytest.raises(TypeError):
        instances.move(db, m.id, InstanceState.IDLE, state="busy")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.state = "idle"  # type: ignore[misc]


# ---- the dashboard ------------------------------------------------------------------------


def test_dashboard_summary_on_an_empty_database(db: Database) -> None:
    got = dashboard_summary(db, claimed_since=T0, finished_since=T0)
    assert (got.active, got.machines, got.claimed, got.cost) == ((), (), (), ())


def test_dashboard_summary(db: Database, world: World) -> None:
    with db.session() as s:
        s.add(
            Instance(
                pool="l4:1",
                instance_type="g6.xlarge",
                hardware="l4:1",
                market="spot",
                state="terminated",
                agent_id="gone",
                token_hash="t-gone",
            )
        )
    instances.add(db, _new("ag-1", state="idle"))
    got = dashboard_summary(db, claimed_since=T0, finished_since=T0)
    assert [(j.repo, j.name, j.state) for j in got.active] == [
        ("acme/app", "build", "running"),
        ("acme/app", "test", "queued"),
        ("acme/app", "lint", "queued"),
        ("acme/app", "build", "queued"),  # the held pipeline's job
        ("zeta/lib", "unit", "queued"),
    ]
    assert got.active[2].waiting_reason == "waiting for capacity"
    assert [m.agent_id for m in got.machines] == ["ag-1"]  # not the terminated one
    assert len(got.claimed) == 1 and got.claimed[0].hardware == ("l4:1",)
    assert got.cost == (("acme/app", 0.5),)
    later = T0 + timedelta(days=1)
    got = dashboard_summary(db, claimed_since=later, finished_since=later, active_limit=2)
    assert [j.name for j in got.active] == ["build", "test"]
    assert got.claimed == () and got.cost == ()
