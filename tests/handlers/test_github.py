"""GitHub's handlers, feature by feature, against the in-memory fake of their ports."""

from __future__ import annotations

import pytest

from app.adapters.github.errors import GitHubError
from app.engine.engine import NotAllowed
from tests.handlers.world import (
    CONFIG,
    INSTALLATION,
    INVALID,
    REPO,
    ZERO,
    GitHubWorld,
)

FAILED_UNIT = {"unit": "failed", "gpu": "skipped", "bench": "manual"}


async def open_pr(
    w: GitHubWorld, number: int = 7, *, author: str = "alice", head: int = 1, **kw: object
) -> int:
    """A pull request whose pipeline ran, its unit job failing; the pipeline's id."""
    await w.deliver("pull_request", w.pull_request(number, w.commit(head), author=author, **kw))
    await w.run_queued("failed", exit_code=1)
    (p,) = [p for p in w.pipelines() if p.pr_number == number]
    assert p.jobs == FAILED_UNIT
    w.fake.clear()
    return p.id


# -- starting pipelines -----------------------------------------------------------------


async def test_pull_request_starts_a_pipeline_at_its_head(github: GitHubWorld) -> None:
    w = github
    w.fake.pr_files[(REPO, 7)] = ["model.py"]
    head = w.commit(1)
    await w.deliver("pull_request", w.pull_request(7, head))
    p = w.pipeline()
    assert (p.sha, p.ref, p.trigger, p.pr_number, p.pr_author) == (
        head,
        "refs/pull/7/head",
        "pull_request",
        7,
        "alice",
    )
    assert p.jobs == {"unit": "queued", "gpu": "waiting", "bench": "manual"}
    assert not p.fork and not p.held
    assert w.fake.ops() == ["changed_files_pr", "get_file"]  # no permission asked: no fork


async def test_no_config_file_starts_nothing(github: GitHubWorld) -> None:
    w = github
    await w.deliver("push", w.push(w.commit(1, config=None)))
    assert w.pipelines() == []
    assert w.fake.ops() == ["get_file"]


async def test_an_invalid_config_is_reported_once_with_every_error(github: GitHubWorld) -> None:
    w = github
    head = w.commit(1, config=INVALID)
    await w.deliver("push", w.push(head))
    assert w.pipelines() == []
    assert w.fake.ops() == ["get_file", "create_check_run"]  # one report, not one per error
    (run,) = w.fake.check_runs.values()
    assert run["name"] == "ployd / config" and run["head_sha"] == head
    assert run["conclusion"] == "failure"
    annotations = run["output"]["annotations"]
    assert len(annotations) == 2
    assert {a["start_line"] for a in annotations} == {4, 6}
    assert any("unti" in a["message"] for a in annotations)


@pytest.mark.xfail(
    strict=True,
    reason="known, kept as it is: the push and the check_suite GitHub sends for one commit "
    "each read the invalid config and each report it (two `ployd / config` check runs)",
)
async def test_an_invalid_config_pushed_is_reported_once_for_push_and_check_suite(
    github: GitHubWorld,
) -> None:
    w = github
    head = w.commit(1, config=INVALID)
    await w.deliver("push", w.push(head))
    await w.deliver("check_suite", w.check_suite(head))
    assert len(w.fake.runs_named("ployd / config")) == 1


async def test_push_and_check_suite_of_one_commit_start_one_pipeline(
    github: GitHubWorld,
) -> None:
    w = github
    head = w.commit(1)
    await w.deliver("check_suite", w.check_suite(head))
    await w.deliver("push", w.push(head))
    await w.deliver("check_suite", w.check_suite(head))
    (p,) = w.pipelines()
    assert p.trigger == "check_suite"
    assert w.fake.ops("get_file") == ["get_file"]


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"deleted": True}, "a deleted branch"),
        ({"after": ZERO}, "no commit"),
    ],
)
async def test_pushes_that_start_nothing(
    github: GitHubWorld, payload: dict[str, object], why: str
) -> None:
    w = github
    await w.deliver("push", {**w.push(w.commit(1)), **payload})
    assert w.pipelines() == [], why
    assert w.fake.calls == []


async def test_changed_files_feed_path_filters_and_a_failed_lookup_lets_all_run(
    github: GitHubWorld,
) -> None:
    w = github
    config = CONFIG + "  docs:\n    paths: [docs/**]\n    steps:\n      - run: 'true'\n"
    first, second, third = w.commit(1, config), w.commit(2, config), w.commit(3, config)
    w.fake.compares[(REPO, first, second)] = ["model.py"]
    await w.deliver("push", w.push(second, before=first))
    w.fake.fail("changed_files_compare", GitHubError(502, "Bad Gateway"))
    await w.deliver("push", w.push(third, before=second))
    by_sha = {p.sha: p.jobs for p in w.pipelines()}
    assert by_sha[second]["docs"] == "skipped"  # only model.py changed
    assert by_sha[third]["docs"] == "queued"  # unknown: the filter passes


async def test_new_commits_supersede_and_closing_cancels(github: GitHubWorld) -> None:
    w = github
    first, second = w.commit(1), w.commit(2)
    await w.deliver("pull_request", w.pull_request(7, first))
    await w.deliver("pull_request", w.pull_request(7, second, action="synchronize"))
    old, new = w.pipelines()
    assert (old.sha, old.state) == (first, "cancelled")
    assert (new.sha, new.state) == (second, "running")
    await w.deliver("pull_request", w.pull_request(7, second, action="closed", sender="bob"))
    assert w.pipelines()[1].state == "cancelled"
    assert ("bob (pull request closed)", "pipeline.cancel", f"pipeline:{new.id}") in w.audit()


async def test_merge_group_is_tested_like_a_pull_request_into_its_base(
    github: GitHubWorld,
) -> None:
    w = github
    head = w.commit(1)
    group = {
        "head_sha": head,
        "head_ref": "refs/heads/gh-readonly-queue/main/pr-7-abc",
        "base_ref": "refs/heads/main",
    }
    payload = {
        **w._base(),
        "action": "checks_requested",
        "merge_group": group,
        "sender": {"login": "q"},
    }
    await w.deliver("merge_group", payload)
    p = w.pipeline()
    assert (p.trigger, p.ref, p.pr_number) == ("merge_group", group["head_ref"], None)


# -- forks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fork", "role", "held"),
    [
        (True, "read", True),  # a fork from someone who cannot write: held
        (True, "none", True),
        (True, "triage", True),
        (True, "write", False),  # a writer's fork runs at once
        (True, "admin", False),
        (False, "read", False),  # a branch of the repository itself: runs
    ],
)
async def test_who_a_fork_pull_request_waits_for(
    github: GitHubWorld, fork: bool, role: str, held: bool
) -> None:
    w = github
    w.fake.set_permission(REPO, "mallory", role)
    await w.deliver("pull_request", w.pull_request(9, w.commit(1), author="mallory", fork=fork))
    p = w.pipeline()
    assert (p.fork, p.held) == (fork, held)
    assert (w.fake.ops("permission") == ["permission"]) is fork
    assert bool(await w.run_queued()) is not held


async def test_a_fork_runs_nothing_until_a_writer_says_ok_to_test(github: GitHubWorld) -> None:
    w = github
    w.fake.set_permission(REPO, "mallory", "read")
    w.fake.set_permission(REPO, "maint", "maintain")
    await w.deliver("pull_request", w.pull_request(9, w.commit(1), author="mallory", fork=True))
    assert await w.run_queued() == []  # held: no agent gets its jobs

    await w.deliver("issue_comment", w.comment(9, "/ployd ok-to-test", "mallory"))
    assert w.pipeline().held
    assert w.fake.reactions[-1][2] == "confused"
    assert "@mallory needs write access to run /ployd ok-to-test (has read)" in w.replies()[-1]
    assert await w.run_queued() == []

    await w.deliver("issue_comment", w.comment(9, "/ployd ok-to-test", "maint"))
    assert not w.pipeline().held
    assert w.fake.reactions[-1][2] == "+1"
    assert await w.run_queued() == ["unit", "gpu"]

    await w.deliver("issue_comment", w.comment(9, "/ployd ok-to-test", "maint"))
    assert "nothing was waiting for `/ployd ok-to-test`" in w.replies()[-1]


async def test_a_failed_permission_lookup_counts_as_no_permission(github: GitHubWorld) -> None:
    w = github
    w.fake.set_permission(REPO, "mallory", "admin")
    w.fake.fail("permission", GitHubError(502, "Bad Gateway"))
    await w.deliver("pull_request", w.pull_request(9, w.commit(1), author="mallory", fork=True))
    assert w.pipeline().held


# -- commands ---------------------------------------------------------------------------

WRITE_NEEDED = "needs write access to run /ployd retry (has {role})"


@pytest.mark.parametrize(
    ("body", "user", "role", "reaction", "reply", "unit_attempts"),
    [
        ("/ployd retry unit", "wendy", "write", "+1", None, 2),
        ("/ployd retry", "wendy", "maintain", "+1", None, 2),  # the failed jobs
        ("   /PLOYD RETRY unit", "wendy", "write", "+1", None, 2),
        # a quoted reply, code, prose: not commands
        ("> /ployd retry unit", "wendy", "write", None, None, 1),
        ("> @alice wrote:\n> /ployd retry unit\n\nthanks!", "wendy", "write", None, None, 1),
        ("```\n/ployd retry unit\n```", "wendy", "write", None, None, 1),
        ("    /ployd retry unit", "wendy", "write", None, None, 1),
        ("<!-- /ployd retry unit -->", "wendy", "write", None, None, 1),
        ("please `/ployd retry unit`", "wendy", "write", None, None, 1),
        ("please /ployd retry unit", "wendy", "write", None, None, 1),
        ("/ployds retry unit", "wendy", "write", None, None, 1),
        ("/ployd-retry unit", "wendy", "write", None, None, 1),
        # near misses: addressed to PloyD, but wrong
        ("/ployd retyr unit", "wendy", "write", "confused", "did you mean /ployd retry?", 1),
        ("/ployd retry unti", "wendy", "write", "confused", "did you mean 'unit'?", 1),
        ("/ployd retry on", "wendy", "write", "confused", "'on' needs a hardware spec", 1),
        ("/ployd", "wendy", "write", "confused", "'/ployd' needs a command", 1),
        # without write access
        ("/ployd retry unit", "rita", "read", "confused", WRITE_NEEDED.format(role="read"), 1),
        ("/ployd retry unit", "rita", "triage", "confused", WRITE_NEEDED.format(role="triage"), 1),
        ("/ployd retry unit", "nobody", None, "confused", WRITE_NEEDED.format(role="none"), 1),
        ("/ployd run bench", "rita", "read", "confused", "to run /ployd run (has read)", 1),
        # the author may retry their own jobs, on the same hardware only
        ("/ployd retry unit", "alice", "read", "+1", None, 2),
        ("/ployd retry unit on cpu:16", "alice", "read", "confused", "on other hardware", 1),
        ("/ployd retry unit on cpu:16", "wendy", "write", "+1", None, 2),
        # help is for everyone, and answers
        ("/ployd help", "nobody", None, "eyes", "### PloyD commands", 1),
    ],
)
async def test_commands_in_comments(
    github: GitHubWorld,
    body: str,
    user: str,
    role: str | None,
    reaction: str | None,
    reply: str | None,
    unit_attempts: int,
) -> None:
    w = github
    w.fake.set_permission(REPO, "alice", "read")
    if role is not None:
        w.fake.set_permission(REPO, user, role)
    await open_pr(w)
    comment = w.comment(7, body, user)
    await w.deliver("issue_comment", comment)
    expected = [] if reaction is None else [(REPO, comment["comment"]["id"], reaction)]
    assert w.fake.reactions == expected
    if reply is None:
        assert w.fake.comments == {}
    else:
        (answer,) = w.replies()
        assert answer.startswith(f"@{user}\n\n") and reply in answer
    assert w.pipelines()[0].attempts["unit"] == unit_attempts


async def test_commands_of_one_comment_run_in_order_asking_permission_once(
    github: GitHubWorld,
) -> None:
    w = github
    w.fake.set_permission(REPO, "wendy", "write")
    await open_pr(w)
    body = "/ployd retry unit\n/ployd cancel unit\n/ployd retyr\n/ployd run bench"
    await w.deliver("issue_comment", w.comment(7, body, "wendy"))
    p = w.pipelines()[0]
    assert p.jobs["unit"] == "cancelled" and p.jobs["bench"] == "queued"
    assert w.fake.ops("permission") == ["permission"]
    (answer,) = w.replies()
    assert "`/ployd retyr`: unknown command" in answer
    assert w.fake.reactions[-1][2] == "confused"
    actions = [a for _, a, _ in w.audit() if a.startswith("command.")]
    assert actions == ["command.retry", "command.cancel", "command.run"]


@pytest.mark.parametrize(
    ("comment", "why"),
    [
        ({"bot": True}, "a bot's words (PloyD's own comments list commands)"),
        ({"on_issue": True}, "a plain issue, not a pull request"),
    ],
)
async def test_comments_that_are_never_commands(
    github: GitHubWorld, comment: dict[str, bool], why: str
) -> None:
    w = github
    w.fake.set_permission(REPO, "wendy", "admin")
    await open_pr(w)
    await w.deliver("issue_comment", w.comment(7, "/ployd retry unit", "wendy", **comment))
    assert w.fake.calls == [], why
    assert w.pipelines()[0].attempts["unit"] == 1


async def test_commands_before_any_pipeline(github: GitHubWorld) -> None:
    w = github
    await w.deliver("issue_comment", w.comment(3, "/ployd retry\n/ployd help", "wendy"))
    (answer,) = w.replies()
    assert "`/ployd retry`: PloyD has not run on this request yet" in answer
    assert "### PloyD commands" in answer
    assert w.fake.ops("permission") == []


async def test_commands_act_on_the_latest_pipeline_of_the_request(github: GitHubWorld) -> None:
    w = github
    w.fake.set_permission(REPO, "wendy", "write")
    await open_pr(w, head=1)
    await w.deliver("pull_request", w.pull_request(7, w.commit(2), action="synchronize"))
    await w.deliver("issue_comment", w.comment(7, "/ployd run bench", "wendy"))
    old, new = w.pipelines()
    assert old.jobs["bench"] == "manual" and new.jobs["bench"] == "queued"


# -- the check runs' buttons ------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "role", "identifier", "attempts", "hardware_asked"),
    [
        ("wendy", "write", None, 2, None),  # "Re-run"
        ("wendy", "write", "retry", 2, None),
        ("wendy", "write", "retry-on:cpu:16", 2, "cpu:16"),
        ("rita", "read", None, 1, None),  # refused, silently: no conversation to answer in
        ("rita", "read", "retry-on:cpu:16", 1, None),
    ],
)
async def test_buttons_on_a_branch_pipeline(
    github: GitHubWorld,
    user: str,
    role: str,
    identifier: str | None,
    attempts: int,
    hardware_asked: str | None,
) -> None:
    w = github
    w.fake.set_permission(REPO, user, role)
    await w.deliver("push", w.push(w.commit(1)))
    await w.run_queued("failed", exit_code=1)
    pid = w.pipeline().id
    w.fake.clear()
    await w.deliver("check_run", w.check_run(w.job_id(pid, "unit"), user, identifier))
    assert w.pipeline().attempts["unit"] == attempts
    assert w.fake.ops() == ["permission"]
    if hardware_asked:
        assert w.hardware(pid, "unit") == [hardware_asked]


async def test_buttons_on_a_pull_request_answer_in_it(github: GitHubWorld) -> None:
    w = github
    w.fake.set_permission(REPO, "alice", "read")
    w.fake.set_permission(REPO, "rita", "read")
    pid = await open_pr(w)
    unit = w.job_id(pid, "unit")
    await w.deliver("check_run", w.check_run(unit, "rita"))
    (answer,) = w.replies()
    assert answer.startswith("@rita") and "needs write access" in answer
    await w.deliver("check_run", w.check_run(unit, "alice"))  # the author: same hardware
    assert w.pipelines()[0].attempts["unit"] == 2
    assert len(w.replies()) == 1


@pytest.mark.parametrize("external_id", ["", "abc", "999999"])
async def test_buttons_of_unknown_check_runs_do_nothing(
    github: GitHubWorld, external_id: str
) -> None:
    w = github
    payload = w.check_run(0, "wendy")
    payload["check_run"]["external_id"] = external_id
    await w.deliver("check_run", payload)
    assert w.fake.calls == []


async def test_rerun_all_checks_retries_every_finished_job(github: GitHubWorld) -> None:
    w = github
    head = w.commit(1)
    await w.deliver("push", w.push(head))
    assert await w.run_queued() == ["unit", "gpu"]
    suite = {**w._base(), "action": "rerequested", "check_suite": {"head_sha": head}}
    await w.deliver("check_suite", {**suite, "sender": {"login": "wendy"}})
    p = w.pipeline()
    assert p.attempts == {"unit": 2, "gpu": 2, "bench": 0}  # the manual job never ran
    assert p.jobs == {"unit": "queued", "gpu": "queued", "bench": "manual"}


@pytest.mark.xfail(
    strict=True,
    raises=NotAllowed,
    reason="known bug, kept as it is: retrying the failed job first puts the jobs it "
    "skipped back to waiting, and retrying those then raises",
)
async def test_rerun_all_checks_after_a_failure_with_skipped_dependents(
    github: GitHubWorld,
) -> None:
    w = github
    head = w.commit(1)
    await w.deliver("push", w.push(head))
    await w.run_queued("failed", exit_code=1)
    suite = {**w._base(), "action": "rerequested", "check_suite": {"head_sha": head}}
    await w.deliver("check_suite", {**suite, "sender": {"login": "wendy"}})
    assert w.pipeline().attempts == {"unit": 2, "gpu": 0, "bench": 0}


# -- installations ----------------------------------------------------------------------


async def test_installations_become_tenants_and_their_repositories_are_known(
    github: GitHubWorld,
) -> None:
    w = github
    installation = {"id": INSTALLATION, "account": {"login": "acme"}}
    repos = [{"full_name": REPO}, {"full_name": "acme/data"}]
    sender = {"login": "owner"}
    created = {"action": "created", "installation": installation, "repositories": repos}
    await w.deliver("installation", {**created, "sender": sender})
    assert w.tenants() == {str(INSTALLATION): ("acme", True)}
    with w.engine.db.session() as s:
        from app.store.models import Repository

        names = {r.full_name: r.clone_url for r in s.query(Repository)}
    assert names == {
        REPO: f"https://github.com/{REPO}.git",
        "acme/data": "https://github.com/acme/data.git",
    }

    renamed = {"id": INSTALLATION, "account": {"login": "acme-corp"}}
    await w.deliver(
        "installation", {"action": "suspend", "installation": renamed, "sender": sender}
    )
    assert w.tenants() == {str(INSTALLATION): ("acme-corp", False)}
    removed = {"action": "removed", "installation": installation, "repositories_removed": repos[1:]}
    await w.deliver("installation_repositories", {**removed, "sender": sender})
    assert [a for _, a, _ in w.audit()] == [
        "installation.created",
        "installation.suspend",
        "installation.repos_removed",
    ]
    assert w.fake.calls == []


async def test_a_pipeline_knows_its_installation(github: GitHubWorld) -> None:
    w = github
    await w.deliver("push", w.push(w.commit(1)))
    assert w.ctx.installation_of(w.pipeline().id) == (REPO, INSTALLATION)
