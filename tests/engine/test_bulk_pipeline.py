"""Pipelines stored in bulk (``app.engine.creation``), on SQLite and PostgreSQL: the
jobs keep the planner's order, names, matrix values, needs and first states; the ready
ones get their first attempt; the DAG advances from there as before; and the path the
API and the forges take stores them off the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.core.config.errors import ConfigInvalid
from app.core.hardware import Catalog
from app.core.triggers import Event, EventKind
from app.engine.creation import TooManyJobs
from app.engine.engine import Engine, RepoRef
from app.handlers.pipelines import plan
from app.store.models import Attempt, Job, Pipeline

from .conftest import Driver

CONFIG = """\
version: 1
jobs:
  build:
    steps: [{run: make}]
  test:
    needs: [build]
    matrix:
      py: ["3.11", "3.12"]
      shard: [1, 2, 3]
      exclude: [{py: "3.11", shard: 3}]
      include: [{py: "3.13", shard: 9}]
    steps: [{run: 'pytest --shard ${{ matrix.shard }}'}]
  lint:
    steps: [{run: ruff .}]
  deploy:
    needs: [test, lint]
    steps: [{run: ./deploy}]
  bench:
    when: manual
    steps: [{run: ./bench}]
"""
TESTS = [
    "test (py=3.11, shard=1)",
    "test (py=3.11, shard=2)",
    "test (py=3.12, shard=1)",
    "test (py=3.12, shard=2)",
    "test (py=3.12, shard=3)",
    "test (py=3.13, shard=9)",
]
EVENT = Event(EventKind.API, ref="refs/heads/main", sha="c" * 40, default_branch="main")
REPO = RepoRef("local", "bulk/repo", "file:///bulk/repo")


def _jobs(engine: Engine, pid: int) -> list[Job]:
    with engine.db.session() as s:
        p = s.get(Pipeline, pid)
        assert p is not None
        jobs = list(p.jobs)
        for j in jobs:
            _ = [a.state for a in j.attempts]
        return jobs


async def test_bulk_insert_keeps_order_names_needs_and_states(driver: Driver) -> None:
    engine = driver.engine
    pid = driver.start(CONFIG)
    jobs = _jobs(engine, pid)
    assert [j.name for j in jobs] == ["build", *TESTS, "lint", "deploy", "bench"]
    assert [j.position for j in jobs] == list(range(len(jobs)))
    by = {j.name: j for j in jobs}
    assert by["test (py=3.12, shard=3)"].matrix == {"py": "3.12", "shard": "3"}
    assert by["test (py=3.13, shard=9)"].matrix == {"py": "3.13", "shard": "9"}
    assert by["test (py=3.11, shard=2)"].base_name == "test"
    assert by["test (py=3.11, shard=2)"].spec["steps"][0]["run"] == "pytest --shard 2"
    assert by["deploy"].needs == [*TESTS, "lint"]
    assert {n: j.state for n, j in by.items()} == {
        "build": "queued",
        **{t: "waiting" for t in TESTS},
        "lint": "queued",
        "deploy": "waiting",
        "bench": "manual",
    }
    for name in ("build", "lint"):
        (first,) = by[name].attempts
        assert (first.number, first.state, first.reason) == (1, "queued", "pipeline started")
        assert by[name].queued_at is not None
    assert all(not by[n].attempts for n in [*TESTS, "deploy", "bench"])
    assert driver.pipeline_state(pid) == "running"

    # The DAG advances from the bulk-stored rows as from any others.
    first = await driver.claim_all()
    assert sorted(c.name for c in first) == ["build", "lint"]
    for c in first:
        driver.finish(c)
    tests = await driver.claim_all()
    assert sorted(c.name for c in tests) == sorted(TESTS)
    assert driver.jobs(pid)["deploy"] == "waiting"
    for c in tests:
        driver.finish(c)
    (deploy,) = await driver.claim_all()
    assert deploy.name == "deploy"
    driver.finish(deploy)
    assert driver.pipeline_state(pid) == "succeeded"  # the manual job does not hold it


async def test_a_file_that_settles_at_once_is_stored_settled(driver: Driver) -> None:
    """Nothing to run (every job manual): the pipeline is stored finished; a job that
    needs a manual one waits."""
    pid = driver.start(
        "version: 1\njobs:\n  a: {when: manual, steps: [{run: x}]}\n"
        "  b: {needs: [a], steps: [{run: x}]}\n"
    )
    assert driver.jobs(pid) == {"a": "manual", "b": "waiting"}
    assert driver.pipeline_state(pid) == "running"  # b waits for a
    pid = driver.start("version: 1\njobs:\n  a: {when: manual, steps: [{run: x}]}\n")
    assert driver.pipeline_state(pid) == "succeeded"


async def test_thousands_of_jobs_are_stored_off_the_event_loop(engine: Engine) -> None:
    engine.max_jobs_per_pipeline = 3000
    side = ", ".join(f"v{i}" for i in range(16))
    text = "version: 1\njobs:\n" + "".join(
        f"  m{j}:\n    {'needs: [m0]' if j else ''}\n"
        f"    matrix: {{a: [{side}], b: [{side}]}}\n"
        "    steps: [{run: 'echo ${{ matrix.a }}-${{ matrix.b }}'}]\n"
        for j in range(10)
    )
    plans = plan(text, EVENT, Catalog.default(), max_jobs=3000)
    assert plans is not None and len(plans) == 2560
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    real = engine._create_pipeline

    def spy(*args: object) -> int:
        threads.add(threading.get_ident())
        return real(*args)  # type: ignore[arg-type]

    engine._create_pipeline = spy  # type: ignore[method-assign]
    ticks = 0

    async def tick() -> None:  # the loop keeps running while the jobs are stored
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    pid = await engine.create_pipeline_async(
        REPO, plans, ref=EVENT.ref, sha=EVENT.sha, trigger="api"
    )
    ticker.cancel()
    assert threads and loop_thread not in threads
    assert ticks > 1
    jobs = _jobs(engine, pid)
    assert [j.name for j in jobs] == [p.job.name for p in plans]
    assert jobs[0].name == "m0 (a=v0, b=v0)" and jobs[-1].name == "m9 (a=v15, b=v15)"
    assert len(jobs[300].needs) == 256 and jobs[300].needs[255] == "m0 (a=v15, b=v15)"
    queued = [j for j in jobs if j.state == "queued"]
    assert len(queued) == 256 and all(j.name.startswith("m0 ") for j in queued)
    with engine.db.session() as s:
        attempts = s.query(Attempt).join(Attempt.job).where(Job.pipeline_id == pid).count()
    assert attempts == 256
    got = await engine.claim("agent-1", 0)
    assert got is not None and got.job.name == "m0 (a=v0, b=v0)"  # oldest first


def test_more_jobs_than_the_limit_are_refused(engine: Engine) -> None:
    text = "version: 1\njobs:\n  m:\n    matrix: {a: [1, 2, 3]}\n    steps: [{run: x}]\n"
    with pytest.raises(ConfigInvalid) as info:
        plan(text, EVENT, Catalog.default(), max_jobs=2)
    assert "matrix of job 'm' (3 children) takes the pipeline to 3 jobs" in str(info.value)
    plans = plan(text, EVENT, Catalog.default())
    assert plans is not None
    engine.max_jobs_per_pipeline = 2  # a caller that planned without the limit
    with pytest.raises(TooManyJobs, match="3 jobs is over the limit of 2"):
        engine.create_pipeline(REPO, plans, ref=EVENT.ref, sha=EVENT.sha, trigger="api")
    with engine.db.session() as s:
        assert s.query(Pipeline).count() == 0  # nothing stored


def test_the_collector_resumes_after_the_last_bulk_insert() -> None:
    import gc

    from app.engine.creation import collector_paused

    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with collector_paused():
        assert not gc.isenabled()
        t.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread still stores its pipeline
    release.set()
    t.join(10)
    assert gc.isenabled()
