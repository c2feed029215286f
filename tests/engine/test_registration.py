"""Registration tokens are used once, credentials are each agent's own, and a pool's
agents claim only what their pool may run: the engine with the pools' and the EC2
machines' registrars and authenticators, as ``app.wiring`` gives them, on both
databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.hardware import Catalog
from app.core.triggers import Event, EventKind
from app.engine.engine import AgentAuthError, Engine, RepoRef
from app.engine.hooks import EngineHooks
from app.executors.ec2_machines import Machines, token_hash
from app.handlers.pipelines import plan
from app.pools import Pools
from app.protocol import ClaimRequest, FinishReport, Gpu, Hardware, Registration
from app.store import instances
from app.store.db import Database
from app.store.instances import NewInstance
from app.store.models import AgentRegistrationToken, Attempt, AuditRecord, utcnow

CPU = Hardware(cpus=8, memory_mb=32000, disk_gb=100)
ONE_JOB = "version: 1\njobs:\n  {name}: {{steps: [{{run: 'true'}}]}}\n"


@pytest.fixture
def pools(engine_db: Database) -> Pools:
    return Pools(engine_db)


@pytest.fixture
def machines(engine_db: Database) -> Machines:
    return Machines(engine_db)


@pytest.fixture
def engine_hooks(pools: Pools, machines: Machines) -> EngineHooks:
    return EngineHooks(
        registrars=(pools.register, machines.register),
        authenticators=(pools.identity, machines.identity),
    )


def reg(name: str = "lab-1", **kw: Any) -> Registration:
    return Registration(name=name, version=kw.pop("version", "0.1.0"),
                        hardware=kw.pop("hardware", CPU), **kw)


def audit(engine: Engine, action: str) -> list[AuditRecord]:
    with engine.db.session() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def start(
    engine: Engine, make_repo: Callable[..., tuple[Path, str]], forge: str, tenant: str,
    job: str = "t",
) -> int:
    """A pipeline of one job for ``tenant`` (its external id and name) on ``forge``."""
    config = ONE_JOB.format(name=job)
    repo, sha = make_repo({".ployd.yml": config})
    plans = plan(config, Event(EventKind.PUSH, ref="refs/heads/main", sha=sha), Catalog.default())
    assert plans is not None
    return engine.create_pipeline(
        RepoRef(forge, f"{tenant}/app-{job}", repo.as_uri(), tenant_external_id=tenant,
                tenant_name=tenant),
        plans, ref="refs/heads/main", sha=sha, trigger="push",
    )


async def test_a_registration_token_is_used_once_and_a_second_use_is_audited(
    engine: Engine, pools: Pools
) -> None:
    new = pools.create_token("lab", ["github:acme"], labels="rack=b2", actor="ops")
    assert new.token.startswith("ployd_reg_") and new.info.used_at is None
    with engine.db.session() as s:  # only the hash is stored
        stored = s.scalars(select(AgentRegistrationToken)).one()
        assert new.token not in (stored.token_hash, *map(str, stored.labels.values()))
    got = engine.register(new.token, reg("lab-1", labels={"gpu": "a100", "rack": "x"}))
    assert got.agent_id == "lab-1" and got.credential != new.token

    with pytest.raises(AgentAuthError) as again:
        engine.register(new.token, reg("lab-2"))
    assert again.value.status == 401
    assert "used already (by agent lab-1)" in str(again.value)
    assert "ployd agents token create --pool lab" in str(again.value)
    (refused,) = audit(engine, "agent.register.refused")
    assert (refused.actor, refused.target, refused.details["reason"]) == (
        "agent:lab-2", "pool:lab", "used")
    (registered,) = audit(engine, "agent.register")
    assert (registered.actor, registered.target) == ("agent:lab-1", "pool:lab")
    (created,) = audit(engine, "agent.token.create")
    assert created.actor == "ops" and new.token not in str(created.details)

    (agent,) = pools.agents()
    assert (agent.name, agent.pool, agent.tenants, agent.state) == (
        "lab-1", "lab", ("github:acme",), "active")
    assert agent.labels == {"gpu": "a100", "rack": "b2"}  # the token's labels win
    # The registration token does not claim; the credential does, as the registered name.
    with pytest.raises(AgentAuthError):
        engine.authenticate(new.token, "lab-1")
    assert engine.authenticate(got.credential, "calls-itself-x").agent_id == "lab-1"
    with pytest.raises(AgentAuthError, match="unknown registration token"):
        engine.register("ployd_reg_guess", reg())


async def test_an_expired_token_is_refused_and_audited(engine: Engine, pools: Pools) -> None:
    new = pools.create_token("lab", ["*"], expires="1h")
    with engine.db.session() as s:
        s.execute(update(AgentRegistrationToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(AgentAuthError) as expired:
        engine.register(new.token, reg())
    assert expired.value.status == 401 and "expired at" in str(expired.value)
    assert [r.details["reason"] for r in audit(engine, "agent.register.refused")] == ["expired"]
    assert pools.agents() == []


async def test_a_pool_for_tenant_a_never_gets_tenant_bs_job(
    engine: Engine, pools: Pools, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    a = engine.register(pools.create_token("acme-pool", ["github:acme"]).token, reg("a-1"))
    everyone = engine.register(pools.create_token("shared", ["*"]).token, reg("any-1"))
    b_pipeline = start(engine, make_repo, "github", "bravo", "b-job")  # the only job queued
    who_a = engine.authenticate(a.credential, "a-1")
    assert await engine.claim(who_a, 0) is None
    a_pipeline = start(engine, make_repo, "github", "acme", "a-job")
    got = await engine.claim(who_a, 0)
    assert got is not None and got.job.pipeline_id == a_pipeline and got.job.name == "a-job"
    assert await engine.claim(engine.authenticate(a.credential, "a-1"), 0) is None
    # A tenant of the same name on another forge is another tenant.
    start(engine, make_repo, "gitlab", "acme", "gl-job")
    assert await engine.claim(engine.authenticate(a.credential, "a-1"), 0) is None
    b = await engine.claim(engine.authenticate(everyone.credential, "any-1"), 0)
    assert b is not None and b.job.pipeline_id == b_pipeline  # '*' serves everyone


async def test_other_tenants_queued_jobs_never_hide_a_pools_own(
    engine: Engine, pools: Pools, make_repo: Callable[..., tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claim looks at the oldest CLAIM_SCAN queued attempts; a tenant-scoped pool's are
    those of its tenants, however many of other tenants' are queued ahead of them."""
    import app.engine.engine as engine_module

    monkeypatch.setattr(engine_module, "CLAIM_SCAN", 2)
    a = engine.register(pools.create_token("acme-pool", ["github:acme"]).token, reg("a-1"))
    for n in range(3):  # more of bravo's than one scan sees, all older than acme's
        start(engine, make_repo, "github", "bravo", f"b-{n}")
    mine = start(engine, make_repo, "github", "acme", "a-job")
    got = await engine.claim(engine.authenticate(a.credential, "a-1"), 0)
    assert got is not None and got.job.pipeline_id == mine


async def test_disable_drains_an_agent(
    engine: Engine, pools: Pools, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    lab = engine.register(pools.create_token("lab", ["local:local", "github:acme"]).token,
                          reg("lab-1"))
    start(engine, make_repo, "github", "acme", "first")
    running = await engine.claim(engine.authenticate(lab.credential, "lab-1"), 0)
    assert running is not None
    (agent,) = pools.agents()
    assert agent.job is not None and agent.job.attempt_id == running.attempt_id
    assert agent.job.name == "first"

    identity_before = engine.authenticate(lab.credential, "lab-1")  # a long poll under way
    assert pools.disable("lab-1", actor="ops").state == "draining"
    start(engine, make_repo, "github", "acme", "second")
    assert await engine.claim(identity_before, 0) is None  # read again at claim time
    assert await engine.claim(engine.authenticate(lab.credential, "lab-1"), 0) is None
    # Its running job goes on and finishes; then the agent is disabled.
    engine.finish(running.attempt_id, running.job_token, FinishReport("succeeded"))
    assert pools.agents()[0].state == "disabled"
    assert await engine.claim(engine.authenticate(lab.credential, "lab-1"), 0) is None
    assert [r.details["state"] for r in audit(engine, "agent.disable")] == ["draining"]

    assert pools.enable("lab-1").state == "active"
    second = await engine.claim(engine.authenticate(lab.credential, "lab-1"), 0)
    assert second is not None and second.job.name == "second"
    with pytest.raises(LookupError, match="no agent named 'nobody'"):
        pools.disable("nobody")


async def test_claims_record_last_seen_version_and_hardware(
    engine: Engine, pools: Pools
) -> None:
    lab = engine.register(pools.create_token("lab", ["*"]).token, reg("lab-1", version="0.1.0"))
    (before,) = pools.agents()
    assert before.hardware["cpus"] == 8 and before.version == "0.1.0"
    h100 = Gpu(name="NVIDIA H100 80GB HBM3", model="h100", memory_mb=81559)
    eight = Hardware(192, 2_000_000, 3500, (h100,) * 8)
    engine.authenticate(lab.credential, ClaimRequest("lab-1", version="0.2.0", hardware=eight))
    (after,) = pools.agents()
    assert after.version == "0.2.0" and len(after.hardware["gpus"]) == 8
    assert after.last_seen is not None and after.last_seen >= before.last_seen  # type: ignore[operator]


async def test_a_name_of_another_pool_is_refused_without_using_the_token(
    engine: Engine, pools: Pools
) -> None:
    engine.register(pools.create_token("lab", ["*"]).token, reg("box"))
    other = pools.create_token("cloud", ["*"])
    with pytest.raises(AgentAuthError) as taken:
        engine.register(other.token, reg("box"))
    assert taken.value.status == 409 and "registered in pool lab" in str(taken.value)
    for reserved in ("local-1", "ec2-0123456789abcdef"):  # the executors' own agents
        with pytest.raises(AgentAuthError) as own:
            engine.register(other.token, reg(reserved))
        assert own.value.status == 409 and "PloyD's own agents'" in str(own.value)
    assert engine.register(other.token, reg("box-2")).agent_id == "box-2"  # still usable


async def test_the_same_name_registering_again_replaces_its_credential(
    engine: Engine, pools: Pools
) -> None:
    first = engine.register(pools.create_token("lab", ["*"]).token, reg("box"))
    pools.disable("box")
    second = engine.register(pools.create_token("lab", ["*"]).token, reg("box"))
    with pytest.raises(AgentAuthError):
        engine.authenticate(first.credential, "box")  # the old process's credential died
    assert engine.authenticate(second.credential, "box").agent_id == "box"
    (agent,) = pools.agents()
    assert agent.state == "disabled"  # what the operator decided stays


async def test_a_restarted_agent_renews_its_saved_credential_and_its_old_job_is_retried(
    engine: Engine, pools: Pools, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    first = engine.register(pools.create_token("lab", ["github:acme"]).token, reg("box"))
    pipeline = start(engine, make_repo, "github", "acme", "long")
    running = await engine.claim(engine.authenticate(first.credential, "box"), 0)
    assert running is not None
    pools.disable("box")  # draining: what the operator decided outlives the restart

    # The agent process died (a reboot); the new one starts with the credential it saved,
    # reporting what it has now.
    eight = Hardware(192, 2_000_000, 3500, (Gpu("NVIDIA H100 80GB HBM3", "h100", 81559),) * 8)
    renewed = engine.register(first.credential, reg("renamed-locally", version="0.2.0",
                                                    hardware=eight))
    assert renewed.agent_id == "box"  # the name the server knows it by
    assert renewed.credential.startswith("ployd_agent_")
    assert renewed.credential != first.credential
    with pytest.raises(AgentAuthError):  # a copy of the older file is worth nothing now
        engine.authenticate(first.credential, "box")
    with pytest.raises(AgentAuthError, match="unknown registration token"):
        engine.register(first.credential, reg("box"))
    assert engine.authenticate(renewed.credential, "box").agent_id == "box"
    (agent,) = pools.agents()
    assert (agent.pool, agent.tenants, agent.version) == ("lab", ("github:acme",), "0.2.0")
    assert len(agent.hardware["gpus"]) == 8 and agent.state == "disabled"
    # What it ran died with the old process: interrupted at once and retried, not left
    # to the heartbeat timeout.
    with engine.db.session() as s:
        attempts = list(s.scalars(select(Attempt).order_by(Attempt.id)))
    assert [(a.state, a.end_reason) for a in attempts] == [
        ("interrupted", "infrastructure"), ("queued", None)]
    assert "agent box restarted" in (attempts[0].error or "")
    assert attempts[1].number == 2 and pipeline
    (renewal,) = [r for r in audit(engine, "agent.register") if r.details.get("renewed")]
    assert (renewal.actor, renewal.target) == ("agent:box", "pool:lab")
    assert first.credential not in str(renewal.details)
    assert renewed.credential not in str(renewal.details)


async def test_bad_agent_labels_and_names_are_refused(engine: Engine, pools: Pools) -> None:
    new = pools.create_token("lab", ["*"])
    with pytest.raises(AgentAuthError) as bad:
        engine.register(new.token, reg(labels={"a b": "c"}))
    assert bad.value.status == 400 and "label key 'a b'" in str(bad.value)
    with pytest.raises(AgentAuthError) as named:
        engine.register(new.token, reg("lab 1/<b>"))
    assert named.value.status == 400 and "agent name 'lab 1/<b>'" in str(named.value)
    assert engine.register(new.token, reg("lab-1")).agent_id == "lab-1"  # not used up


async def test_local_registration_tokens_are_used_once(engine: Engine) -> None:
    token = engine.new_registration_token()
    got = engine.register(token, reg("local-1"))
    assert engine.authenticate(got.credential, "whatever").agent_id == "local-1"
    with pytest.raises(AgentAuthError, match="used already"):
        engine.register(token, reg("local-1"))
    assert [r.target for r in audit(engine, "agent.register.refused")] == ["local"]
    # The agent restarted: a new token, a new credential; the old one is dead.
    again = engine.register(engine.new_registration_token(), reg("local-1"))
    with pytest.raises(AgentAuthError):
        engine.authenticate(got.credential, "local-1")
    assert engine.authenticate(again.credential, "local-1").agent_id == "local-1"


async def test_an_ec2_machines_user_data_token_registers_once(
    engine: Engine, machines: Machines, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    token = "user-data-token-0123456789"
    row = machines.add(NewInstance(
        pool="1:m5.large", instance_type="m5.large", hardware="cpu:2", market="on-demand",
        az="us-east-2a", subnet_id="subnet-1", price_hourly=0.1, agent_id="ec2-ag-1",
        token_hash=token_hash(token)))
    instances.update(engine.db, row.id, instance_id="i-0abc")
    got = engine.register(token, reg("ec2-ag-1"))
    assert got.agent_id == "ec2-ag-1"
    assert machines.get(row.id).state == "booting"  # type: ignore[union-attr]  # it runs
    who = engine.authenticate(got.credential, "ec2-ag-1")
    assert machines.get(row.id).state == "idle"  # type: ignore[union-attr]  # first claim
    assert (who.agent_id, who.instance_type) == ("ec2-ag-1", "m5.large")
    with pytest.raises(AgentAuthError) as again:
        engine.register(token, reg("ec2-ag-1"))  # a step that read the user data
    assert again.value.status == 401 and "registered already" in str(again.value)
    (refused,) = audit(engine, "agent.register.refused")
    assert (refused.target, refused.details["reason"]) == ("instance:i-0abc", "used")
    with pytest.raises(AgentAuthError):
        engine.authenticate(token, "ec2-ag-1")  # the user-data token never claims
    with engine.db.session() as s:
        assert s.scalars(select(Attempt)).all() == []
