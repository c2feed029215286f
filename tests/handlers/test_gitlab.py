"""GitLab's handlers, feature by feature, against the in-memory fake of their ports."""

from __future__ import annotations

import pytest

from app.adapters.gitlab.errors import GitLabError
from app.core.report import MARKER
from tests.handlers.world import (
    CONFIG,
    DEVELOPER,
    INVALID,
    MAINTAINER,
    PROJECT,
    REPORTER,
    ZERO,
    GitLabWorld,
)

GUEST, OWNER = 10, 50
TAGS = "version: 1\non:\n  push:\n    branches: [main]\n    tags: ['v*']"


async def open_mr(w: GitLabWorld, iid: int = 5, *, author: str = "alice", head: int = 1) -> int:
    """A merge request whose pipeline ran, its unit job failing; the pipeline's id."""
    await w.deliver("Merge Request Hook", w.merge_request(iid, w.commit(head), author=author))
    await w.run_queued("failed", exit_code=1)
    (p,) = [p for p in w.pipelines() if p.pr_number == iid]
    assert p.jobs == {"unit": "failed", "gpu": "skipped", "bench": "manual"}
    w.fake.clear()
    return p.id


# -- starting pipelines -----------------------------------------------------------------


async def test_merge_request_starts_a_pipeline_at_its_last_commit(gitlab: GitLabWorld) -> None:
    w = gitlab
    head = w.commit(1)
    w.fake.mr_files[(PROJECT, 5)] = ["model.py"]
    await w.deliver("Merge Request Hook", w.merge_request(5, head))
    p = w.pipeline()
    assert (p.sha, p.ref, p.trigger, p.pr_number, p.pr_author) == (
        head,
        "refs/merge-requests/5/head",
        "merge_request",
        5,
        "alice",
    )
    assert not p.fork and not p.held
    assert w.fake.ops() == ["get_mr", "mr_changed_files", "get_file"]


@pytest.mark.parametrize(
    ("ref", "trigger"), [("refs/heads/main", "push"), ("refs/tags/v1", "tag_push")]
)
async def test_pushes_and_tags(gitlab: GitLabWorld, ref: str, trigger: str) -> None:
    w = gitlab
    head = w.commit(1, config=CONFIG.replace("version: 1", TAGS))
    hook = "Tag Push Hook" if trigger == "tag_push" else "Push Hook"
    await w.deliver(hook, w.push(head, ref=ref))
    await w.deliver(hook, w.push(head, ref=ref))  # the same push again
    p = w.pipeline()
    assert (p.ref, p.trigger) == (ref, trigger)
    assert w.fake.ops() == ["get_file"]


async def test_a_deleted_branch_starts_nothing(gitlab: GitLabWorld) -> None:
    w = gitlab
    await w.deliver("Push Hook", w.push(ZERO, before=w.commit(1)))
    assert w.pipelines() == [] and w.fake.calls == []


async def test_an_invalid_config_on_a_push_is_one_failed_status(gitlab: GitLabWorld) -> None:
    w = gitlab
    head = w.commit(1, config=INVALID)
    await w.deliver("Push Hook", w.push(head))
    assert w.pipelines() == []
    assert w.fake.ops() == ["get_file", "set_status"]
    status = w.fake.status(PROJECT, head, "ployd/config")
    assert status is not None
    assert (status["state"], status["description"]) == ("failed", "2 errors in .ployd.yml")
    assert w.fake.notes == {}  # no merge request to write in


async def test_an_invalid_config_on_a_merge_request_is_a_status_and_one_note(
    gitlab: GitLabWorld,
) -> None:
    w = gitlab
    head = w.commit(1, config=INVALID)
    await w.deliver("Merge Request Hook", w.merge_request(5, head))
    assert w.pipelines() == []
    assert w.fake.ops("set_status", "create_note") == ["set_status", "create_note"]
    (note,) = w.fake.notes.values()
    assert note.iid == 5 and "unti" in note.body and ".ployd.yml" in note.body


async def test_new_commits_supersede_and_closing_cancels(gitlab: GitLabWorld) -> None:
    w = gitlab
    first, second = w.commit(1), w.commit(2)
    await w.deliver("Merge Request Hook", w.merge_request(5, first))
    await w.deliver("Merge Request Hook", w.merge_request(5, second, action="update"))
    old, new = w.pipelines()
    assert (old.state, new.state) == ("cancelled", "running")
    await w.deliver("Merge Request Hook", w.merge_request(5, second, action="merge"))
    assert w.pipelines()[1].state == "cancelled"
    assert ("alice (merged)", "pipeline.cancel", f"pipeline:{new.id}") in w.audit()


async def test_unknown_changes_let_every_path_filter_pass(gitlab: GitLabWorld) -> None:
    w = gitlab
    w.fake.fail("mr_changed_files", GitLabError(500, "Internal Server Error"))
    await w.deliver("Merge Request Hook", w.merge_request(5, w.commit(1)))
    assert w.pipeline().jobs["unit"] == "queued"


# -- forks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fork", "level", "held"),
    [
        (True, REPORTER, True),  # below Developer: held
        (True, GUEST, True),
        (True, 0, True),
        (True, DEVELOPER, False),
        (True, OWNER, False),
        (False, REPORTER, False),  # a branch of the project itself: runs
    ],
)
async def test_who_a_fork_merge_request_waits_for(
    gitlab: GitLabWorld, fork: bool, level: int, held: bool
) -> None:
    w = gitlab
    w.member("mallory", level)
    payload = w.merge_request(9, w.commit(1), author="mallory", fork=fork)
    await w.deliver("Merge Request Hook", payload)
    p = w.pipeline()
    assert (p.fork, p.held) == (fork, held)
    assert bool(await w.run_queued()) is not held


async def test_a_fork_runs_nothing_until_a_developer_says_ok_to_test(gitlab: GitLabWorld) -> None:
    w = gitlab
    w.member("mallory", REPORTER)
    w.member("dev", DEVELOPER)
    payload = w.merge_request(9, w.commit(1), author="mallory", fork=True)
    await w.deliver("Merge Request Hook", payload)
    assert await w.run_queued() == []

    await w.deliver("Note Hook", w.note(9, "/ployd ok-to-test", "mallory"))
    assert w.pipeline().held
    assert w.fake.emoji[-1][3] == "confused"
    assert (
        "@mallory needs the Developer role to run /ployd ok-to-test (has Reporter): someone "
        "with the Developer, Maintainer or Owner role on the project can run it"
    ) in w.replies()[-1]

    await w.deliver("Note Hook", w.note(9, "/ployd ok-to-test", "dev"))
    assert not w.pipeline().held
    assert w.fake.emoji[-1][3] == "thumbsup"
    assert await w.run_queued() == ["unit", "gpu"]


# -- commands ---------------------------------------------------------------------------

NEEDED = "needs the Developer role to run /ployd retry (has {role})"


@pytest.mark.parametrize(
    ("body", "user", "level", "emoji", "reply", "unit_attempts"),
    [
        ("/ployd retry unit", "dev", DEVELOPER, "thumbsup", None, 2),
        ("/ployd retry unit", "maint", MAINTAINER, "thumbsup", None, 2),
        ("> /ployd retry unit", "dev", DEVELOPER, None, None, 1),  # a quoted reply
        ("```\n/ployd retry unit\n```", "dev", DEVELOPER, None, None, 1),
        ("please /ployd retry unit", "dev", DEVELOPER, None, None, 1),
        ("/ployd retyr unit", "dev", DEVELOPER, "confused", "did you mean /ployd retry?", 1),
        ("/ployd retry unit", "rita", REPORTER, "confused", NEEDED.format(role="Reporter"), 1),
        ("/ployd retry unit", "rita", GUEST, "confused", NEEDED.format(role="Guest"), 1),
        ("/ployd retry unit", "rita", 0, "confused", NEEDED.format(role="no role"), 1),
        ("/ployd retry unit", "alice", REPORTER, "thumbsup", None, 2),  # the author
        ("/ployd retry unit on cpu:16", "alice", REPORTER, "confused", "other hardware", 1),
        ("/ployd help", "rita", 0, "eyes", "### PloyD commands", 1),
    ],
)
async def test_commands_in_notes(
    gitlab: GitLabWorld,
    body: str,
    user: str,
    level: int,
    emoji: str | None,
    reply: str | None,
    unit_attempts: int,
) -> None:
    w = gitlab
    w.member(user, level)
    await open_mr(w)
    note = w.note(5, body, user)
    await w.deliver("Note Hook", note)
    note_id = note["object_attributes"]["id"]
    assert w.fake.emoji == ([] if emoji is None else [(PROJECT, 5, note_id, emoji)])
    if reply is None:
        assert w.fake.notes == {}
    else:
        (answer,) = w.replies()
        assert answer.startswith(f"@{user}\n\n") and reply in answer
    assert w.pipelines()[0].attempts["unit"] == unit_attempts
    if w.fake.ops("access_level"):
        assert w.fake.of("access_level")[0].args == (PROJECT, w._users[user])  # by user id


@pytest.mark.parametrize(
    ("body", "system"),
    [
        ("/ployd retry unit", True),  # GitLab's own note
        (f"{MARKER}\n/ployd retry unit", False),  # PloyD's summary lists commands
    ],
)
async def test_notes_that_are_never_commands(gitlab: GitLabWorld, body: str, system: bool) -> None:
    w = gitlab
    w.member("maint", MAINTAINER)
    await open_mr(w)
    await w.deliver("Note Hook", w.note(5, body, "maint", system=system))
    assert w.fake.calls == []
    assert w.pipelines()[0].attempts["unit"] == 1
