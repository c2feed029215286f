"""Tenants' policy: the file's validation, quotas that make jobs wait (and say why),
refusals for hardware, timeouts and budgets, and the spend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from app.core.hardware import Catalog
from app.engine.engine import AgentIdentity, Engine
from app.policy.enforce import PolicyBook
from app.policy.model import PolicyError, load_file, parse_file
from app.protocol import FinishReport
from app.store.models import Attempt, Pipeline, Tenant, utcnow
from tests.e2e.conftest import Harness
from tests.engine.conftest import Driver

TWO_CPU = (
    "version: 1\njobs:\n  a: {steps: [{run: 'true'}]}\n  b: {steps: [{run: 'true'}]}\n"
    "  c: {steps: [{run: 'true'}]}\n"
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"defaults": {"allowed_hardware": "l4"}}, "defaults.allowed_hardware: expected a list"),
        ({"defaults": {"allowed_hardware": ["q99"]}}, "unknown hardware class 'q99'"),
        ({"defaults": {"max_concurrent": {"l4": -1}}}, "max_concurrent.l4: must not be negative"),
        ({"defaults": {"max_concurrent": {"l4": 1.5}}}, "expected a whole number"),
        ({"defaults": {"max_timeout": "forever"}}, "max_timeout: 'forever' is not a duration"),
        ({"defaults": {"budget": {"monthly": 5}}}, "budget: expected {monthly_usd"),
        ({"defaults": {"budget": {"monthly_usd": 5, "warn_at": 2}}}, "warn_at: a fraction"),
        ({"defaults": {"max_gpus": 1}}, "unknown key 'max_gpus'"),
        ({"tenants": {"acme": {}}}, "name a tenant as forge:id"),
        ({"tennants": {}}, "unknown key 'tennants'"),
        ({"defaults": {"notify": {"slack": "S"}}}, "defaults.notify: expected a list"),
        ({"defaults": {"notify": [{"teams": "x"}]}}, "defaults.notify[0]: unknown key 'teams'"),
        ({"defaults": {"notify": [{"slack": "S", "on": ["x"]}]}}, "'x' is not one of"),
    ],
)
def test_bad_policies_say_where(data: Any, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_file(data, "policy.yml", Catalog.default().classes())
    assert message in str(e.value)
    assert str(e.value).startswith("policy.yml: ")


def test_file_defaults_and_tenant_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(
        "defaults:\n  allowed_hardware: [cpu, l4]\n  max_timeout: 4h\n"
        "  budget: {monthly_usd: 500, warn_at: 80%}\n"
        "tenants:\n  'github:123':\n    max_concurrent: {l4: 2}\n    max_timeout: 1h\n"
    )
    f = load_file(path, Catalog.default().classes())
    policy, source = f.for_tenant("github", "123", "acme")
    assert source == "file:github:123"
    assert policy.max_timeout_s == 3600 and policy.max_concurrent == {"l4": 2}
    assert policy.allowed_hardware == {"cpu", "l4"} and policy.budget is not None
    assert policy.budget.warn_at == 0.8
    other, source = f.for_tenant("gitlab", "9", "beta")
    assert source == "file:defaults" and other.max_concurrent is None
    path.write_text("defaults: [unclosed\n")
    with pytest.raises(PolicyError, match=r"p.yml: not valid YAML \(line"):
        load_file(path)
    book = PolicyBook(Catalog.default(), str(tmp_path / "good.yml"), parse_file({}, "x"))
    assert book.reload() is False  # the file is gone: the old policy stays


def test_notify_defaults_per_tenant_override_and_round_trip() -> None:
    f = parse_file(
        {
            "defaults": {"notify": [{"slack": "OPS_SLACK", "on": ["failure", "budget"]}]},
            "tenants": {
                "github:1": {"notify": [{"email": ["a@x.io", "b@x.io"], "branches": ["main"]}]},
                "github:2": {"notify": []},  # this tenant: no default channels
            },
        },
        "policy.yml",
    )
    base, _ = f.for_tenant("gitlab", "7", "other")
    assert base.notify is not None and [c.kind for c in base.notify] == ["slack"]
    assert base.notify[0].on == {"failure", "budget"}
    one, _ = f.for_tenant("github", "1", "acme")
    assert one.notify is not None and one.notify[0].target == "a@x.io,b@x.io"
    assert f.for_tenant("github", "2", "b")[0].notify == ()
    again = parse_file({"defaults": one.as_json()}, "x").defaults
    assert again.notify == one.notify
    # As the policy file is read (YAML 1.1: the key `on` is the boolean true).
    yml = yaml.safe_load("defaults:\n  notify:\n    - slack: S\n      on: [budget]\n")
    assert parse_file(yml, "p.yml").defaults.notify[0].on == {"budget"}  # type: ignore[index]


async def test_concurrency_quota_waits_says_why_and_runs_after(
    with_policy: Callable[[str], PolicyBook], driver: Driver, engine: Engine
) -> None:
    with_policy("tenants:\n  'local:local':\n    max_concurrent: {cpu: 2}\n")
    pid = driver.start(TWO_CPU)
    first = await driver.claim_all()
    assert sorted(c.name for c in first) == ["a", "b"]
    job_c = driver.job(pid, "c")
    assert job_c.state == "queued"
    assert job_c.waiting_reason == (
        "waiting for the cpu quota: local may run 2 cpu jobs at once (max_concurrent.cpu, "
        "policy from file:local:local); 2 jobs ahead (2 running, 0 queued before it)"
    )
    assert engine.admitted(job_c.attempts[0].id) is False  # executors start no machine
    driver.finish(first[0])
    assert engine.admitted(job_c.attempts[0].id) is True
    (c,) = await driver.claim_all()
    assert c.name == "c"


async def test_quota_is_first_come_first_served(
    with_policy: Callable[[str], PolicyBook], driver: Driver, engine: Engine
) -> None:
    with_policy("defaults:\n  max_concurrent: {cpu: 1}\n")
    pid = driver.start(TWO_CPU)
    ids = {n: driver.job(pid, n).attempts[0].id for n in "abc"}
    assert engine.admitted(ids["a"]) is True
    assert engine.admitted(ids["c"]) is False
    assert "2 jobs ahead (0 running, 2 queued before it)" in (
        driver.job(pid, "c").waiting_reason or ""
    )


def _gpu_job(timeout: str = "2h", hardware: str = "l4") -> str:
    return (
        f"version: 1\njobs:\n  train:\n    hardware: {hardware}\n    timeout: {timeout}\n"
        "    steps: [{run: 'true'}]\n"
    )


async def test_disallowed_hardware_is_refused(
    with_policy: Callable[[str], PolicyBook], driver: Driver
) -> None:
    with_policy("defaults:\n  allowed_hardware: [cpu, t4]\n")
    pid = driver.start(_gpu_job())
    job = driver.job(pid, "train")
    assert job.state == "failed" and await driver.claim() is None
    assert job.attempts[0].error == (
        "refused: hardware class l4 is not allowed for tenant local (local:local) "
        "(allowed: cpu, t4; policy from file:defaults)"
    )


async def test_a_timeout_above_the_maximum_is_refused(
    with_policy: Callable[[str], PolicyBook], driver: Driver
) -> None:
    with_policy("defaults:\n  max_timeout: 1h\n")
    pid = driver.start(_gpu_job("1h30m"))
    job = driver.job(pid, "train")
    assert job.state == "failed"
    assert job.attempts[0].error == (
        "refused: the job's timeout 1h30m is above the maximum of 1h for tenant local "
        "(local:local) (policy from file:defaults)"
    )
    ok = driver.start(_gpu_job("1h"))
    assert driver.job(ok, "train").state == "queued"


async def test_budget_refusal_with_the_figures_and_spend(
    with_policy: Callable[[str], PolicyBook], driver: Driver, engine: Engine
) -> None:
    book = with_policy("defaults:\n  budget: {monthly_usd: 10, warn_at: 0.5}\n")
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    # an earlier job this month cost $8.50 on a machine priced by the hour
    got = await engine.claim(AgentIdentity("m1", instance_type="g6.xlarge", price_hourly=1.0), 0)
    assert got is not None
    engine.finish(got.attempt_id, got.job_token, FinishReport("succeeded"))
    with engine.db.session() as s:
        a = s.get(Attempt, got.attempt_id)
        assert a is not None
        a.cost = 8.5
    price = Catalog.default().get("g6.xlarge").price_usd_hour
    pid = driver.start(_gpu_job("2h"))
    job = driver.job(pid, "train")
    assert job.state == "failed" and await driver.claim() is None
    estimate = price * 2
    assert job.attempts[0].error == (
        "refused: the monthly budget of tenant local (local:local) would be passed: "
        f"$8.50 spent so far in {utcnow():%Y-%m} + this job's estimated ${estimate:.2f} "
        f"(g6.xlarge at ${price:.4f}/h x 2h timeout) > budget $10.00"
    )
    with engine.db.session() as s:
        tenant = s.scalars(select(Tenant)).one()
        spend = book.spend(s, tenant)
    assert spend.spent_usd == pytest.approx(8.5)
    assert spend.as_json()["warning"] is True and spend.as_json()["over_budget"] is False
    small = driver.start("version: 1\njobs:\n  t: {timeout: 5m, steps: [{run: 'true'}]}\n")
    assert driver.job(small, "t").state == "queued"  # a cheap job still fits


async def test_policy_and_spend_over_the_admin_api(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("defaults:\n  max_timeout: 2h\n")
    repo, _ = make_repo({".ployd.yml": "version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n"})
    async with serve(agents=1, policy_file=str(policy)) as h:
        h: Harness
        pid = await h.start(repo)
        assert (await h.finished(pid)).state == "succeeded"
        with h.engine.db.session() as s:
            p = s.get(Pipeline, pid)
            assert p is not None
            tid = p.repository.tenant_id
        status, body = await h.get(f"/api/v1/tenants/{tid}/policy")
        assert status == 200 and body["effective"] == {"max_timeout": "2h"}
        assert body["source"] == "file:defaults" and body["stored"] is None
        async with h.http.put(
            h.url + f"/api/v1/tenants/{tid}/policy",
            json={"max_concurrent": {"l4": 1}, "budget": {"monthly_usd": 100}},
        ) as r:
            assert r.status == 200
            body = await r.json()
        assert body["effective"] == {
            "max_concurrent": {"l4": 1},
            "max_timeout": "2h",
            "budget": {"monthly_usd": 100.0, "warn_at": 0.8},
        }
        async with h.http.put(
            h.url + f"/api/v1/tenants/{tid}/policy", json={"max_concurrent": {"zz": 1}}
        ) as r:
            assert r.status == 400
            assert "unknown hardware class 'zz'" in (await r.json())["error"]
        status, spend = await h.get(f"/api/v1/tenants/{tid}/spend")
        assert status == 200 and spend["budget_usd"] == 100.0 and spend["spent_usd"] == 0.0
        status, _ = await h.get("/api/v1/tenants/999/spend")
        assert status == 404
        status, tenants = await h.get("/api/v1/tenants")
        assert [t["id"] for t in tenants["tenants"]] == [tid]
        from app.store.models import AuditRecord

        with h.engine.db.session() as s:
            changes = [a for a in s.scalars(select(AuditRecord)) if a.action == "policy.set"]
        assert len(changes) == 1 and changes[0].actor == "admin-api"
        assert changes[0].details["after"]["max_concurrent"] == {"l4": 1}


async def test_matrix_children_are_gated_by_their_own_hardware(
    with_policy: Callable[[str], PolicyBook], driver: Driver
) -> None:
    """The engine gates one job per distinct (hardware, spec but scripts) among those
    queued together: every child on a refused class is refused, the others queue, and
    a `when: always` job that needs them is judged after the refusals."""
    with_policy("defaults:\n  allowed_hardware: [cpu, t4]\n")
    pid = driver.start(
        "version: 1\njobs:\n"
        "  gpu:\n    matrix: {hardware: [l4, t4], shard: [1, 2, 3]}\n"
        "    steps: [{run: 'pytest --shard ${{ matrix.shard }}'}]\n"
        "  report:\n    needs: [gpu]\n    when: always\n    steps: [{run: 'true'}]\n"
    )
    states = driver.jobs(pid)
    assert {n: s for n, s in states.items() if "l4" in n} == {
        f"gpu (hardware=l4, shard={i})": "failed" for i in (1, 2, 3)
    }
    assert {n: s for n, s in states.items() if "t4" in n} == {
        f"gpu (hardware=t4, shard={i})": "queued" for i in (1, 2, 3)
    }
    assert states["report"] == "waiting"
    refused = driver.job(pid, "gpu (hardware=l4, shard=2)").attempts[0]
    assert refused.error is not None and "hardware class l4 is not allowed" in refused.error
    claimed = await driver.claim_all()
    assert sorted(c.name for c in claimed) == [f"gpu (hardware=t4, shard={i})" for i in (1, 2, 3)]
