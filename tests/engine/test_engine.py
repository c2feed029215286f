"""The engine on SQLite and PostgreSQL: DAG progress, retries, tokens, logs, cancel,
machine loss, and restarts, driven through the same calls the agent API makes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from app.core.states import IllegalTransition, JobState, job_transition
from app.engine.engine import AgentAuthError, Engine, NotAllowed, OutOfOrder
from app.engine.events import AttemptClaimed, AttemptEnded
from app.engine.hooks import EngineHooks
from app.logs.disk import DiskLogStore
from app.protocol import FinishReport, LogChunk, StepReport
from app.store.db import Database
from app.store.models import AuditRecord, utcnow

from .conftest import Driver

CHAIN = """
version: 1
jobs:
  a:
    steps: [{run: echo a}]
  b:
    needs: [a]
    steps: [{run: echo b}]
  c:
    needs: [b]
    steps: [{run: echo c}]
"""


async def test_dag_runs_in_order_and_pipeline_succeeds(driver: Driver) -> None:
    pid = driver.start(CHAIN)
    assert driver.jobs(pid) == {"a": "queued", "b": "waiting", "c": "waiting"}
    for expected in ("a", "b", "c"):
        claimed = await driver.claim_all()
        assert [c.name for c in claimed] == [expected]
        driver.finish(claimed[0])
    assert driver.jobs(pid) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert driver.pipeline_state(pid) == "succeeded"


async def test_parallel_jobs_are_all_claimable_at_once(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n"
        "  x: {steps: [{run: 'true'}]}\n  y: {steps: [{run: 'true'}]}\n"
        "  z: {needs: [x, y], steps: [{run: 'true'}]}\n"
    )
    first = await driver.claim_all()
    assert sorted(c.name for c in first) == ["x", "y"]
    driver.finish(first[0])
    assert await driver.claim() is None  # z still needs y
    driver.finish(first[1])
    (z,) = await driver.claim_all()
    assert z.name == "z"
    driver.finish(z)
    assert driver.pipeline_state(pid) == "succeeded"


async def test_failure_skips_dependents_but_not_always_jobs(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n"
        "  a: {retry: {max: 0}, steps: [{run: 'false'}]}\n"
        "  b: {needs: [a], steps: [{run: 'true'}]}\n"
        "  c: {needs: [b], steps: [{run: 'true'}]}\n"
        "  report: {needs: [a], when: always, steps: [{run: 'true'}]}\n"
    )
    (a,) = await driver.claim_all()
    driver.finish(a, "failed", reason="script_failure", exit_code=1, failed_step=0)
    states = driver.jobs(pid)
    assert states["a"] == "failed"
    assert states["b"] == "skipped" and states["c"] == "skipped"
    assert states["report"] == "queued"
    (report,) = await driver.claim_all()
    driver.finish(report)
    assert driver.pipeline_state(pid) == "failed"
    assert driver.job(pid, "b").skip_reason == "a job it needs did not succeed"


async def test_allow_failure_does_not_fail_the_pipeline(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n"
        "  flaky: {allow_failure: true, retry: {max: 0}, steps: [{run: 'false'}]}\n"
        "  after: {needs: [flaky], steps: [{run: 'true'}]}\n"
    )
    (flaky,) = await driver.claim_all()
    driver.finish(flaky, "failed", reason="script_failure", exit_code=1)
    (after,) = await driver.claim_all()
    assert after.name == "after"
    driver.finish(after)
    assert driver.jobs(pid) == {"flaky": "failed", "after": "succeeded"}
    assert driver.pipeline_state(pid) == "succeeded"


async def test_manual_job_waits_for_a_command(driver: Driver, engine: Engine) -> None:
    pid = driver.start(
        "version: 1\njobs:\n"
        "  unit: {steps: [{run: 'true'}]}\n"
        "  benchmark: {when: manual, steps: [{run: 'true'}]}\n"
    )
    assert driver.jobs(pid) == {"unit": "queued", "benchmark": "manual"}
    (unit,) = await driver.claim_all()
    driver.finish(unit)
    assert driver.pipeline_state(pid) == "succeeded"  # a manual job does not hold it open
    assert await driver.claim() is None
    bench = driver.job(pid, "benchmark")
    engine.retry_job(bench.id, "alice")
    assert driver.pipeline_state(pid) == "running"
    (b,) = await driver.claim_all()
    assert b.name == "benchmark"
    assert driver.job(pid, "benchmark").attempts[0].reason == "run by alice"
    driver.finish(b)
    assert driver.pipeline_state(pid) == "succeeded"


async def test_matrix_children_and_needs_on_all_of_them(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n"
        "  test:\n    matrix: {py: ['3.11', '3.12']}\n"
        "    env: {PY: '${{ matrix.py }}'}\n    steps: [{run: 'echo $PY'}]\n"
        "  deploy: {needs: [test], steps: [{run: 'true'}]}\n"
    )
    children = await driver.claim_all()
    assert sorted(c.name for c in children) == ["test (py=3.11)", "test (py=3.12)"]
    assert sorted(c.job["env"]["PY"] for c in children) == ["3.11", "3.12"]
    driver.finish(children[0])
    assert await driver.claim() is None
    driver.finish(children[1])
    (deploy,) = await driver.claim_all()
    assert deploy.name == "deploy"
    assert driver.job(pid, "deploy").needs == ["test (py=3.11)", "test (py=3.12)"]


async def test_retry_policy_retries_script_failure_and_records_reasons(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n"
        "  flaky:\n    retry: {max: 1, when: [script_failure]}\n    steps: [{run: 'false'}]\n"
    )
    (first,) = await driver.claim_all()
    driver.finish(first, "failed", reason="script_failure", exit_code=1)
    assert driver.jobs(pid) == {"flaky": "queued"}
    (second,) = await driver.claim_all()
    assert second.job["attempt_number"] == 2
    driver.finish(second, "failed", reason="script_failure", exit_code=1)
    job = driver.job(pid, "flaky")
    assert job.state == "failed"
    assert [a.reason for a in job.attempts] == ["pipeline started", "retry 1 of 1: a step failed"]
    assert [a.end_reason for a in job.attempts] == ["script_failure", "script_failure"]
    assert driver.pipeline_state(pid) == "failed"


async def test_default_policy_does_not_retry_a_test_failure(driver: Driver) -> None:
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'false'}]}\n")
    (t,) = await driver.claim_all()
    driver.finish(t, "failed", reason="script_failure", exit_code=1)
    assert driver.jobs(pid) == {"t": "failed"}
    assert len(driver.job(pid, "t").attempts) == 1


async def test_retry_on_listed_exit_code(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n  t:\n    retry: {max: 1, when: [infrastructure], exit_codes: [75]}\n"
        "    steps: [{run: 'exit 75'}]\n"
    )
    (t,) = await driver.claim_all()
    driver.finish(t, "failed", reason="script_failure", exit_code=75)
    assert driver.jobs(pid) == {"t": "queued"}


async def test_timeout_is_retried_only_when_the_policy_says(driver: Driver) -> None:
    pid = driver.start(
        "version: 1\njobs:\n  slow:\n    timeout: 1m\n    retry: {max: 1, when: [timeout]}\n"
        "    steps: [{run: 'sleep 100'}]\n"
    )
    (a,) = await driver.claim_all()
    driver.finish(a, "timed_out", reason="timeout")
    (b,) = await driver.claim_all()
    driver.finish(b, "timed_out", reason="timeout")
    assert driver.jobs(pid) == {"slow": "timed_out"}
    assert driver.pipeline_state(pid) == "failed"


async def test_machine_loss_interrupts_and_retries_by_default(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    first = await driver.claim("agent-x")
    assert first is not None
    engine.record_step(first.attempt_id, first.token, StepReport(0, "running"))
    assert engine.agent_lost("agent-x", "the agent process exited (code -9)") == 1
    job = driver.job(pid, "t")
    assert job.state == "queued"
    assert job.attempts[0].state == "interrupted"
    assert job.attempts[0].end_reason == "infrastructure"
    assert job.attempts[1].reason == "retry 1 of 2: the machine or agent failed"
    second = await driver.claim("agent-y")
    assert second is not None
    driver.finish(second)
    assert driver.pipeline_state(pid) == "succeeded"


async def test_job_tokens_are_scoped_to_one_live_attempt(driver: Driver, engine: Engine) -> None:
    driver.start(
        "version: 1\njobs:\n  a: {steps: [{run: 'true'}]}\n  b: {steps: [{run: 'true'}]}\n"
    )
    a, b = await driver.claim_all()
    with pytest.raises(AgentAuthError) as bad:
        engine.record_log(a.attempt_id, "not-a-token", LogChunk(0, "x"))
    assert bad.value.status == 401
    with pytest.raises(AgentAuthError) as other:
        engine.record_log(a.attempt_id, b.token, LogChunk(0, "x"))
    assert other.value.status == 403
    driver.finish(a)
    with pytest.raises(AgentAuthError) as done:
        engine.record_log(a.attempt_id, a.token, LogChunk(0, "x"))
    assert done.value.status == 409
    with pytest.raises(AgentAuthError):
        engine.check_agent_token("guess")


async def test_log_chunks_are_idempotent_and_ordered(driver: Driver, engine: Engine) -> None:
    driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    (t,) = await driver.claim_all()
    engine.record_log(t.attempt_id, t.token, LogChunk(0, "one\n"))
    engine.record_log(t.attempt_id, t.token, LogChunk(0, "one\n"))  # resent: ignored
    engine.record_log(t.attempt_id, t.token, LogChunk(1, "two\n"))
    with pytest.raises(OutOfOrder) as gap:
        engine.record_log(t.attempt_id, t.token, LogChunk(5, "five\n"))
    assert gap.value.expected == 2
    with engine.db.session() as s:
        from app.store.models import Attempt

        attempt = s.get(Attempt, t.attempt_id)
        assert attempt is not None and attempt.log_path
        assert engine.logs.read(attempt.log_path) == b"one\ntwo\n"


async def test_cancel_a_running_job_reaches_its_heartbeat(driver: Driver, engine: Engine) -> None:
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'sleep 100'}]}\n")
    (t,) = await driver.claim_all()
    waiting = asyncio.create_task(engine.heartbeat(t.attempt_id, t.token, 30))
    await asyncio.sleep(0)  # let the heartbeat start waiting
    assert not waiting.done()
    engine.cancel_pipeline(pid, "alice")
    assert await asyncio.wait_for(waiting, 5) is True
    driver.finish(t, "cancelled", reason="cancelled")
    assert driver.jobs(pid) == {"t": "cancelled"}
    assert driver.pipeline_state(pid) == "cancelled"


async def test_cancel_queued_and_waiting_jobs_at_once(driver: Driver, engine: Engine) -> None:
    pid = driver.start(CHAIN)
    engine.cancel_pipeline(pid, "alice")
    assert driver.jobs(pid) == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
    assert driver.pipeline_state(pid) == "cancelled"
    assert await driver.claim() is None
    with engine.db.session() as s:
        actions = [r.action for r in s.query(AuditRecord).order_by(AuditRecord.id)]
    assert actions == ["pipeline.trigger", "pipeline.cancel"]


async def test_retry_of_a_failed_job_reruns_its_skipped_dependents(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(CHAIN.replace("steps: [{run: echo a}]", "steps: [{run: 'false'}]"))
    (a,) = await driver.claim_all()
    driver.finish(a, "failed", reason="script_failure", exit_code=1)
    assert driver.jobs(pid) == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert driver.pipeline_state(pid) == "failed"
    engine.retry_job(driver.job(pid, "a").id, "bob")
    assert driver.jobs(pid) == {"a": "queued", "b": "waiting", "c": "waiting"}
    for name in ("a", "b", "c"):
        (x,) = await driver.claim_all()
        assert x.name == name
        driver.finish(x)
    assert driver.pipeline_state(pid) == "succeeded"


async def test_illegal_transitions_are_refused(driver: Driver, engine: Engine) -> None:
    with pytest.raises(IllegalTransition):
        job_transition(JobState.SUCCEEDED, JobState.RUNNING)
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    (_t,) = await driver.claim_all()
    with pytest.raises(NotAllowed):
        engine.retry_job(driver.job(pid, "t").id, "bob")  # still running


async def test_sweep_interrupts_an_agent_that_went_silent(driver: Driver, engine: Engine) -> None:
    pid = driver.start("version: 1\njobs:\n  quiet: {steps: [{run: 'true'}]}\n")
    (quiet,) = await driver.claim_all()
    engine.record_step(quiet.attempt_id, quiet.token, StepReport(0, "running"))
    assert engine.sweep(utcnow() + timedelta(seconds=59)) == 0
    assert engine.sweep(utcnow() + timedelta(seconds=61)) == 1
    job = driver.job(pid, "quiet")
    assert job.attempts[0].state == "interrupted" and job.state == "queued"
    assert job.attempts[0].error == "lost the agent's heartbeat"


async def test_sweep_times_out_a_job_its_agent_did_not_stop(driver: Driver, engine: Engine) -> None:
    engine.heartbeat_timeout = timedelta(hours=1)
    pid = driver.start("version: 1\njobs:\n  long: {timeout: 1m, steps: [{run: 'true'}]}\n")
    (long,) = await driver.claim_all()
    engine.record_step(long.attempt_id, long.token, StepReport(0, "running"))
    assert engine.sweep(utcnow() + timedelta(seconds=100)) == 0  # within timeout + grace
    assert engine.sweep(utcnow() + timedelta(minutes=2, seconds=1)) == 1
    job = driver.job(pid, "long")
    assert job.attempts[0].state == "timed_out" and job.state == "timed_out"


async def test_restart_loses_no_queued_job(driver: Driver, db_url: str, tmp_path: Path) -> None:
    pid = driver.start(CHAIN)
    driver.engine.db.dispose()
    db = Database.connect(db_url)
    try:
        again = Engine(db, DiskLogStore(tmp_path / "logs"))
        again.recover()
        got = await again.claim("agent-after-restart", 0)
        assert got is not None and got.job.name == "a"
        assert got.job.pipeline_id == pid
    finally:
        db.dispose()


async def test_restart_interrupts_what_was_running(
    driver: Driver, db_url: str, tmp_path: Path
) -> None:
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    (_t,) = await driver.claim_all()
    driver.engine.db.dispose()
    db = Database.connect(db_url)
    try:
        again = Engine(db, DiskLogStore(tmp_path / "logs"))
        assert again.recover() == 1
        got = await again.claim("new-agent", 0)
        assert got is not None and got.job.attempt_number == 2
    finally:
        db.dispose()
    assert pid


async def test_claim_waits_and_wakes_when_a_job_is_queued(driver: Driver, engine: Engine) -> None:
    waiter = asyncio.create_task(engine.claim("warm-agent", 10))
    await asyncio.sleep(0)
    assert not waiter.done()
    driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    got = await asyncio.wait_for(waiter, 5)
    assert got is not None and got.job.name == "t"


def _fork_pipeline(engine: Engine, make_repo, held: bool) -> int:  # type: ignore[no-untyped-def]
    from app.core.hardware import Catalog
    from app.core.triggers import Event, EventKind
    from app.engine.engine import RepoRef
    from app.handlers.pipelines import plan

    config = "version: 1\njobs:\n  t:\n    secrets: [TOKEN]\n    steps: [{run: 'true'}]\n"
    repo, sha = make_repo({".ployd.yml": config})
    ev = Event(
        EventKind.PULL_REQUEST, ref="refs/pull/1/head", sha=sha, base_branch="main", action="opened"
    )
    plans = plan(config, ev, Catalog.default())
    assert plans is not None
    return engine.create_pipeline(
        RepoRef("github", "acme/x", repo.as_uri()),
        plans,
        ref=ev.ref,
        sha=sha,
        trigger="pull_request",
        pr_number=1,
        fork=True,
        held=held,
        pr_author="mallory",
    )


async def test_held_fork_pipeline_runs_only_after_approval_and_gets_no_secrets(
    engine: Engine,
    make_repo,  # type: ignore[no-untyped-def]
) -> None:
    engine = Engine(
        engine.db, engine.logs, hooks=EngineHooks(secrets=lambda _p, _j: {"TOKEN": "super-secret"})
    )
    pid = _fork_pipeline(engine, make_repo, held=True)
    assert await engine.claim("a", 0) is None  # held: nothing to claim
    assert engine.approve(pid, "maintainer") is True
    assert engine.approve(pid, "maintainer") is False  # already approved
    got = await engine.claim("a", 0)
    assert got is not None
    assert got.job.secrets == {}  # a fork's pull request never receives secrets


async def test_spot_interruption_is_retried_on_demand_and_costed(
    driver: Driver, engine: Engine
) -> None:
    from app.engine.engine import AgentIdentity

    ended: list[tuple[str, int, str, bool]] = []
    engine.events.subscribe(
        AttemptEnded, lambda e: ended.append((e.agent_id, e.attempt_id, e.state, e.fork))
    )
    pid = driver.start("version: 1\njobs:\n  train: {workload: batch, steps: [{run: 'true'}]}\n")
    spot = AgentIdentity("i-spot", instance_type="g6.xlarge", spot=True, price_hourly=360.0)
    got = await engine.claim(spot, 0)
    assert got is not None
    engine.record_step(got.attempt_id, got.job_token, StepReport(0, "running"))
    engine.finish(
        got.attempt_id, got.job_token, FinishReport("interrupted", reason="spot_interruption")
    )
    job = driver.job(pid, "train")
    first, second = job.attempts
    assert first.state == "interrupted" and first.end_reason == "spot_interruption"
    assert first.instance_type == "g6.xlarge" and first.spot
    assert first.cost is not None and first.cost >= 0.0
    assert second.reason == ("retry 1 of 2: the spot instance was reclaimed, retrying on on-demand")
    assert ended == [("i-spot", first.id, "interrupted", False)]


async def test_an_agent_only_claims_jobs_its_machine_may_run(
    driver: Driver, engine: Engine
) -> None:
    from app.engine.engine import AgentIdentity

    driver.start(
        "version: 1\njobs:\n  small: {steps: [{run: 'true'}]}\n"
        "  big: {hardware: h100, steps: [{run: 'true'}]}\n"
    )
    claimed: list[tuple[str, int]] = []
    engine.events.subscribe(AttemptClaimed, lambda e: claimed.append((e.agent_id, e.attempt_id)))
    gpu = AgentIdentity(
        "i-gpu", instance_type="p5.4xlarge", accepts=lambda job, _p: "p5.4xlarge" in job.candidates
    )
    got = await engine.claim(gpu, 0)
    assert got is not None and got.job.name == "big"
    assert await engine.claim(gpu, 0) is None  # `small` does not want an H100
    assert claimed == [("i-gpu", got.attempt_id)]


async def test_a_job_waiting_for_a_machine_times_out(driver: Driver, engine: Engine) -> None:
    pid = driver.start("version: 1\njobs:\n  t: {timeout: 5m, steps: [{run: 'true'}]}\n")
    job = driver.job(pid, "t")
    engine.set_waiting(job.id, "waiting for capacity: tried p5.4xlarge spot us-east-1a")
    assert engine.sweep(utcnow() + timedelta(minutes=4)) == 0
    assert engine.sweep(utcnow() + timedelta(minutes=6)) == 1
    job = driver.job(pid, "t")
    assert job.state == "timed_out"
    (attempt,) = job.attempts  # no_capacity is not in the default retry.when
    assert attempt.end_reason == "no_capacity"
    assert "no capacity: waited longer than its timeout" in (attempt.error or "")
    assert "tried p5.4xlarge" in (attempt.error or "")


async def test_no_capacity_within_capacity_wait_is_retried_by_policy(
    driver: Driver, engine: Engine
) -> None:
    pid = driver.start(
        "version: 1\njobs:\n  t:\n    timeout: 1h\n"
        "    retry: {max: 1, when: [no_capacity], capacity_wait: 10m}\n"
        "    steps: [{run: 'true'}]\n"
    )
    job = driver.job(pid, "t")
    engine.set_waiting(job.id, "waiting for capacity: no h100 in us-east-1")
    from app.store.models import Attempt, Job

    with engine.db.session() as s:  # it has waited 11 minutes already
        s.get(Job, job.id).queued_at = utcnow() - timedelta(minutes=11)  # type: ignore[union-attr]
        for a in s.query(Attempt).filter_by(job_id=job.id):
            a.created_at = utcnow() - timedelta(minutes=11)
    assert engine.sweep(utcnow() - timedelta(minutes=2)) == 0  # 9 minutes: not yet
    assert engine.sweep() == 1
    job = driver.job(pid, "t")
    first, second = job.attempts
    assert (first.state, first.end_reason) == ("timed_out", "no_capacity")
    assert "retry.capacity_wait (0:10:00)" in (first.error or "")
    assert second.reason == "retry 1 of 1: no machine could be had within retry.capacity_wait"
    assert (job.state, second.state) == ("queued", "queued")
    # The retry waits afresh (its job keeps its place in line: queued_at unchanged).
    assert engine.sweep(utcnow() + timedelta(minutes=9)) == 0
    assert engine.sweep(utcnow() + timedelta(minutes=11)) == 1
    job = driver.job(pid, "t")
    assert job.state == "timed_out" and len(job.attempts) == 2  # the policy's max
    assert job.queued_at is not None and job.queued_at < second.created_at


async def test_an_approved_fork_pipeline_waits_for_a_machine_from_its_approval(
    driver: Driver, engine: Engine
) -> None:
    from app.core.hardware import Catalog
    from app.core.triggers import Event, EventKind
    from app.engine.engine import RepoRef
    from app.handlers.pipelines import plan

    text = "version: 1\njobs:\n  t: {timeout: 5m, steps: [{run: 'true'}]}\n"
    ev = Event(EventKind.PULL_REQUEST, ref="refs/pull/3/head", sha="a" * 40, base_branch="main",
               action="opened")
    plans = plan(text, ev, Catalog.default())
    assert plans is not None
    pid = engine.create_pipeline(
        RepoRef(forge="github", full_name="acme/fork", clone_url="file:///x"), plans,
        ref=ev.ref, sha=ev.sha, trigger="pull_request", pr_number=3, fork=True, held=True,
    )
    from app.store.models import Attempt, Job

    with engine.db.session() as s:  # held for two hours
        for j in s.query(Job).filter_by(pipeline_id=pid):
            j.queued_at = utcnow() - timedelta(hours=2)
            for a in s.query(Attempt).filter_by(job_id=j.id):
                a.created_at = utcnow() - timedelta(hours=2)
    assert engine.sweep() == 0  # held: no wait counted
    assert engine.approve(pid, "maint")
    assert engine.sweep(utcnow() + timedelta(minutes=4)) == 0  # not 2h late
    assert engine.sweep(utcnow() + timedelta(minutes=6)) == 1


async def _local_claim(engine: Engine, name: str) -> int:
    """Claim as one of ``engine``'s own local agents (registered with its one-time
    token, as the local executor's are); returns the attempt id."""
    from app.protocol import ClaimRequest, Hardware, Registration

    token = engine.new_registration_token()
    hw = Hardware(cpus=4, memory_mb=8192, disk_gb=50)
    registered = engine.register(token, Registration(name=name, version="t", hardware=hw))
    who = engine.authenticate(registered.credential, ClaimRequest(agent_id=name))
    got = await engine.claim(who, 0)
    assert got is not None
    return got.attempt_id


async def test_restart_on_a_shared_database_interrupts_only_what_no_replica_serves(
    driver: Driver, db_url: str, tmp_path: Path
) -> None:
    """Replicas share the database: a restarting server interrupts its own local agents'
    attempts (their credentials died with it) and attempts silent for longer than the
    bound, never those an agent heartbeats for to another replica."""
    from app.store.models import Attempt

    config = "version: 1\njobs:\n" + "".join(
        f"  j{i}: {{steps: [{{run: 'true'}}]}}\n" for i in range(4)
    )
    me = Engine(driver.engine.db, DiskLogStore(tmp_path / "me"), instance="replica-a")
    other = Engine(driver.engine.db, DiskLogStore(tmp_path / "b"), instance="replica-b")
    driver.engine = me
    driver.start(config)
    mine = await _local_claim(me, "local-1")
    theirs = await _local_claim(other, "local-1")  # the same name, another replica
    silent = (await driver.claim("pool-agent-9")).attempt_id  # type: ignore[union-attr]
    alive = (await driver.claim("pool-agent-7")).attempt_id  # type: ignore[union-attr]
    with me.db.session() as s:
        assert s.get(Attempt, mine).machine == "local-1@replica-a"  # type: ignore[union-attr]
        s.get(Attempt, silent).heartbeat_at = utcnow() - timedelta(seconds=16)  # type: ignore[union-attr]
    again = Engine(me.db, DiskLogStore(tmp_path / "me"), instance="replica-a")
    assert again.recover(shared=True, silent_s=15) == 2
    with me.db.session() as s:
        states = {a: s.get(Attempt, a).state for a in (mine, theirs, silent, alive)}  # type: ignore[union-attr]
    assert states == {
        mine: "interrupted",
        silent: "interrupted",
        theirs: "dispatching",
        alive: "dispatching",
    }
    # Not shared (SQLite): whatever was live is interrupted.
    assert again.recover() == 2
