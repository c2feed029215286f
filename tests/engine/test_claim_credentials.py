"""Clone credentials: a forge's hook returns them for a claimed job, and the engine puts
them into the (frozen) claim, instead of the hook editing it in place."""

from __future__ import annotations

from dataclasses import replace

from app.engine.engine import Engine
from app.engine.hooks import Credentials, EngineHooks
from app.protocol import CloneAuth, JobPayload

from .conftest import Driver

ONE_JOB = "version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n"


async def test_credentials_add_the_clone_auth_and_its_mask_and_keep_the_url(
    driver: Driver, engine: Engine
) -> None:
    seen: list[JobPayload] = []
    auth = CloneAuth("x", "tok-123")

    async def hook(job: JobPayload) -> Credentials | None:
        seen.append(job)
        return Credentials(auth)

    engine = Engine(engine.db, engine.logs, hooks=EngineHooks(payload_hooks={"local": hook}))
    driver = Driver(engine, driver.make_repo)
    driver.start(ONE_JOB)
    got = await engine.claim("a", 0)
    assert got is not None
    assert got.job.clone_auth == auth and got.job.clone_url.startswith("file://")
    assert got.job.mask == ("tok-123", "x:tok-123")
    wire = got.to_json()["job"]
    assert wire["clone_auth"] == {"username": "x", "token": "tok-123"}
    assert wire["mask"] == ["tok-123", "x:tok-123"]
    # The hook saw the job as the engine made it; that object itself was not changed.
    (before,) = seen
    assert before.clone_auth is None and before.mask == ()
    assert got.job == replace(before, clone_auth=auth, mask=("tok-123", "x:tok-123"))


async def test_no_credentials_leave_the_job_as_it_is(driver: Driver, engine: Engine) -> None:
    async def hook(job: JobPayload) -> Credentials | None:
        return None

    engine = Engine(engine.db, engine.logs, hooks=EngineHooks(payload_hooks={"local": hook}))
    driver = Driver(engine, driver.make_repo)
    driver.start(ONE_JOB)
    got = await engine.claim("a", 0)
    assert got is not None
    assert got.job.clone_url.startswith("file://") and got.job.mask == ()


async def test_a_hook_that_fails_ends_the_attempt_before_any_agent_gets_it(
    driver: Driver, engine: Engine
) -> None:
    calls = 0

    async def hook(job: JobPayload) -> Credentials | None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the forge is down")

    engine = Engine(engine.db, engine.logs, hooks=EngineHooks(payload_hooks={"local": hook}))
    driver = Driver(engine, driver.make_repo)
    pid = driver.start("version: 1\njobs:\n  t: {retry: {max: 1}, steps: [{run: 'true'}]}\n")
    assert await engine.claim("a", 0) is None  # the first try and its retry both failed
    assert calls == 2
    job = driver.job(pid, "t")
    assert [a.state for a in job.attempts] == ["interrupted", "interrupted"]
    assert job.attempts[0].error == "could not prepare the job: the forge is down"
    assert job.state == "interrupted"


async def test_finish_infrastructure_takes_a_claim_or_its_attempt_id(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start("version: 1\njobs:\n  a: {steps: [{run: 'true'}]}\n"
                       "  b: {steps: [{run: 'true'}]}\n")
    first = await engine.claim("x", 0)
    second = await engine.claim("x", 0)
    assert first is not None and second is not None
    engine.finish_infrastructure(first, "lost it")
    engine.finish_infrastructure(second.attempt_id, "lost it too")
    states = {j.name: j.attempts[0].state for j in (driver.job(pid, "a"), driver.job(pid, "b"))}
    assert states == {"a": "interrupted", "b": "interrupted"}
