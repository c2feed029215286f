"""The GitHub reporter: a check run per job and a summary comment per pull request, each
sent only when it changed, against the in-memory fake of its ports."""

from __future__ import annotations

import pytest

from app.adapters.github.errors import GitHubError
from app.core.report import MARKER
from app.protocol import FinishReport, LogChunk, StepReport
from tests.reporters.world import World, sha


async def test_a_check_run_per_job_and_one_summary_comment(world: World) -> None:
    w, fake = world, world.github
    pid = w.start("github", pr=7)
    await w.github_reporter().sync(pid)
    assert fake.ops() == ["create_check_run"] * 3 + ["create_comment"]
    runs = {r["name"]: r for r in fake.check_runs.values()}
    assert set(runs) == {"ployd / unit", "ployd / gpu", "ployd / bench"}
    assert all(r["repo"] == "acme/models" and r["head_sha"] == sha(1) for r in runs.values())
    assert runs["ployd / unit"]["status"] == "queued"
    assert runs["ployd / bench"]["conclusion"] == "neutral"  # manual: not run
    assert runs["ployd / unit"]["details_url"].startswith("http://ployd.test/runs/")
    (comment,) = fake.comments.values()
    assert comment.number == 7 and MARKER in comment.body


async def test_an_unchanged_report_is_not_sent_twice(world: World) -> None:
    w, fake = world, world.github
    pid = w.start("github", pr=7)
    await w.run_all()  # all final: the reports no longer change with the clock
    reporter = w.github_reporter()
    await reporter.sync(pid)
    fake.clear()
    await reporter.sync(pid)
    await w.github_reporter().sync(pid)  # what was sent is remembered in the store
    assert fake.calls == []


async def test_a_change_updates_only_what_changed(world: World) -> None:
    w, fake = world, world.github
    pid = w.start("github", pr=7)
    await w.run_all()
    reporter = w.github_reporter()
    await reporter.sync(pid)
    runs = {r["name"]: run_id for run_id, r in fake.check_runs.items()}
    fake.clear()
    w.engine.retry_job(_job_id(w, pid, "gpu"), "wendy")
    await reporter.sync(pid)
    assert fake.ops() == ["update_check_run", "edit_comment"]
    (update,) = fake.of("update_check_run")
    assert update.args[1] == runs["ployd / gpu"]
    assert fake.check_runs[runs["ployd / gpu"]]["status"] == "queued"


async def test_a_failed_job_carries_its_log_excerpt_and_retry_buttons(world: World) -> None:
    w, fake = world, world.github
    pid = w.start("github")
    attempt, token, name = await w.claim()
    assert name == "unit"
    log = "collecting\nE   AssertionError: 1 != 2\nFAILED\n"
    w.engine.record_log(attempt, token, LogChunk(0, log))
    w.engine.record_step(attempt, token, StepReport(0, "failed", 1))
    w.engine.finish(attempt, token, FinishReport("failed", exit_code=1, failed_step=0))
    await w.github_reporter().sync(pid)
    unit = next(r for r in fake.check_runs.values() if r["name"] == "ployd / unit")
    assert unit["conclusion"] == "failure"
    assert "AssertionError: 1 != 2" in unit["output"]["text"]
    assert "#L2" in unit["details_url"]  # the first error-looking line
    assert "retry" in [a["identifier"] for a in unit["actions"]]
    assert fake.ops("create_comment") == []  # a push: no pull request to comment on


async def test_a_newer_pipeline_of_the_request_owns_the_comment(world: World) -> None:
    w, fake = world, world.github
    old = w.start("github", pr=7, head=1)
    new = w.start("github", pr=7, head=2)
    reporter = w.github_reporter()
    await reporter.sync(old)
    assert fake.ops("create_comment", "edit_comment") == []
    await reporter.sync(new)
    assert fake.ops("create_comment") == ["create_comment"]
    await w.run_all()
    await reporter.sync(new)
    assert fake.ops("create_comment", "edit_comment") == ["create_comment", "edit_comment"]
    assert len(fake.comments) == 1


async def test_a_fork_pipeline_held_shows_action_required(world: World) -> None:
    w, fake = world, world.github
    pid = w.start("github", pr=9, fork=True, held=True, pr_author="mallory")
    await w.github_reporter().sync(pid)
    runs = {r["name"]: r for r in fake.check_runs.values()}
    assert runs["ployd / unit"]["conclusion"] == "action_required"


async def test_other_forges_pipelines_and_unknown_ones_are_not_reported(world: World) -> None:
    w, fake = world, world.github
    gitlab_pid = w.start("gitlab", pr=3)
    reporter = w.github_reporter()
    await reporter.sync(gitlab_pid)
    await reporter.sync(999)
    assert fake.calls == []


async def test_a_refused_check_run_keeps_neither_the_others_nor_the_comment_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w, fake = world, world.github
    pid = w.start("github", pr=7)
    await w.run_all()
    reporter = w.github_reporter()
    fake.fail("create_check_run", GitHubError(422, "Validation Failed"))
    reporter.on_change({pid})
    await reporter.idle()
    assert reporter.errors == 1
    assert len(fake.check_runs) == 2 and len(fake.comments) == 1  # the others arrived
    refusal = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert f"reporting pipeline {pid} to github: check run ployd / " in refusal
    assert "acme/models@" in refusal and "422 Validation Failed" in refusal
    reporter.on_change({pid})  # the next report sends what was refused
    await reporter.idle()
    assert len(fake.check_runs) == 3 and len(fake.comments) == 1
    fake.clear()
    reporter.on_change({pid})
    await reporter.idle()
    assert fake.calls == []


def _job_id(w: World, pid: int, name: str) -> int:
    from app.store.models import Job

    with w.engine.db.session() as s:
        return int(s.query(Job.id).filter_by(pipeline_id=pid, name=name).one()[0])
