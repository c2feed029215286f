"""The GitLab reporter: a commit status per job and one summary note per merge request,
each sent only when it changed, against the in-memory fake of its ports."""

from __future__ import annotations

import pytest

from app.adapters.gitlab.errors import GitLabError
from app.core.report import MARKER
from tests.reporters.world import World, sha

PROJECT = "ml/models"


async def test_a_status_per_job_and_one_summary_note(world: World) -> None:
    w, fake = world, world.gitlab
    pid = w.start("gitlab", pr=3)
    await w.gitlab_reporter().sync(pid)
    assert fake.ops() == ["set_status"] * 3 + ["create_note"]
    names = {name: posts[-1]["state"] for (_, _, name), posts in fake.statuses.items()}
    assert names == {"ployd/unit": "pending", "ployd/gpu": "pending", "ployd/bench": "skipped"}
    assert {key[:2] for key in fake.statuses} == {(PROJECT, sha(1))}
    (note,) = fake.notes.values()
    assert note.iid == 3 and MARKER in note.body


async def test_unchanged_statuses_and_note_are_not_sent_twice(world: World) -> None:
    w, fake = world, world.gitlab
    pid = w.start("gitlab", pr=3)
    await w.run_all()
    reporter = w.gitlab_reporter()
    await reporter.sync(pid)
    fake.clear()
    await reporter.sync(pid)
    await w.gitlab_reporter().sync(pid)
    assert fake.calls == []


async def test_a_change_posts_only_the_changed_status_and_edits_the_note(world: World) -> None:
    w, fake = world, world.gitlab
    pid = w.start("gitlab", pr=3)
    reporter = w.gitlab_reporter()
    await reporter.sync(pid)
    note_id = next(iter(fake.notes))
    fake.clear()
    _attempt, _token, name = await w.claim()
    assert name == "unit"
    await reporter.sync(pid)
    assert fake.ops("set_status") == ["set_status"]
    assert fake.status(PROJECT, sha(1), "ployd/unit") == {
        "state": "running",
        "target_url": fake.of("set_status")[0].kwargs["target_url"],
        "description": fake.of("set_status")[0].kwargs["description"],
        "ref": "refs/merge-requests/3/head",
    }
    assert [c.args[2] for c in fake.of("edit_note")] == [note_id]


async def test_a_push_has_statuses_and_no_note(world: World) -> None:
    w, fake = world, world.gitlab
    pid = w.start("gitlab")
    await w.run_all("failed", exit_code=1)
    await w.gitlab_reporter().sync(pid)
    assert fake.status(PROJECT, sha(1), "ployd/unit")["state"] == "failed"  # type: ignore[index]
    assert fake.notes == {}


async def test_statuses_name_the_pipelines_ref(world: World) -> None:
    w, fake = world, world.gitlab
    mr, push = w.start("gitlab", pr=3), w.start("gitlab")
    reporter = w.gitlab_reporter()
    await reporter.sync(mr)
    await reporter.sync(push)
    refs = {c.kwargs["ref"] for c in fake.of("set_status")}
    assert refs == {"refs/merge-requests/3/head", "main"}  # a branch by its name


async def test_a_refused_status_keeps_neither_the_others_nor_the_note_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w, fake = world, world.gitlab
    pid = w.start("gitlab", pr=3)
    reporter = w.gitlab_reporter()
    fake.fail("set_status", GitLabError(403, "403 Forbidden", operation="set_status"))
    reporter.on_change({pid})
    await reporter.idle()
    assert reporter.errors == 1
    assert fake.ops() == ["set_status"] * 3 + ["create_note"]
    assert len(fake.statuses) == 2 and len(fake.notes) == 1
    refusal = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert f"reporting pipeline {pid} to gitlab: status ployd/unit=pending on ml/models@" in refusal
    assert "(refs/merge-requests/3/head) refused: 403 403 Forbidden" in refusal
    fake.clear()
    reporter.on_change({pid})  # the next report sends the refused one, and only it
    await reporter.idle()
    assert fake.ops() == ["set_status"] and len(fake.statuses) == 3


async def test_a_refused_note_is_sent_again_at_the_next_report(world: World) -> None:
    w, fake = world, world.gitlab
    pid = w.start("gitlab", pr=3)
    reporter = w.gitlab_reporter()
    fake.fail("create_note", GitLabError(404, "404 Merge Request Not Found"))
    await reporter.sync(pid)
    assert len(fake.statuses) == 3 and fake.notes == {} and reporter.errors == 1
    await reporter.sync(pid)
    assert len(fake.notes) == 1
