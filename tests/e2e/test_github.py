"""The GitHub App end to end: signed deliveries from GitHub's real payloads -> `ployd
serve` -> the local executor's agent runs the steps of a real git repository -> check
runs, comments and reactions at the fake GitHub, which validates every request against
GitHub's OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.github_world import GitHubWorld, fetch
from tests.fakes.github import load_fixture

CONFIG = """
version: 1
jobs:
  unit:
    steps:
      - name: Test
        run: echo "running unit"; test -f ok.txt
  gpu:
    needs: [unit]
    hardware: l4
    steps:
      - run: echo gpu
  bench:
    when: manual
    steps:
      - run: echo bench
"""
REPO = "acme/models"


async def test_pull_request_to_check_runs_with_log_links(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        w: GitHubWorld
        w.repo(REPO, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        head = w.commit(REPO, {"model.py": "x = 1\n"}, branch="pr-7")
        w.fake.add_pull(REPO, 7, head_sha=head, user={"login": "alice"})
        w.fake.set_permission(REPO, "alice", "write")
        status, body = await w.deliver("pull_request", w.pull_request(REPO, 7, head))
        assert status == 202, body
        await w.settle()
        runs = w.check_runs()
        assert set(runs) == {"ployd / unit", "ployd / gpu", "ployd / bench"}
        unit = runs["ployd / unit"]
        assert unit["status"] == "completed" and unit["conclusion"] == "success"
        assert unit["head_sha"] == head
        assert runs["ployd / gpu"]["conclusion"] == "success"
        assert runs["ployd / bench"]["conclusion"] == "neutral"  # manual: not run
        # Every check run went through queued -> in_progress -> completed.
        statuses = [c.json.get("status") for c in w.fake.calls("*", "*/check-runs*") if c.json]
        assert statuses[0] == "queued" and "in_progress" in statuses
        # The details link opens the log (no clicks through anything else).
        url = unit["details_url"].replace("http://ployd.test", w.h.url)
        code, page = await fetch(w.h.http, url)
        assert code == 200 and "running unit" in page
        code, _ = await fetch(w.h.http, url.split("?")[0] + "?t=forged.token")
        assert code == 403
        # One summary comment on the pull request.
        comments = [c for c in w.fake.comments.values() if "ployd:summary" in c["body"]]
        assert len(comments) == 1 and "unit" in comments[0]["body"]


async def test_failing_job_puts_its_excerpt_in_the_check_run(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        w.repo(REPO, {".ployd.yml": CONFIG})  # no ok.txt: `test -f ok.txt` fails
        head = w.commit(REPO, {"a.py": "1"}, branch="pr-1")
        w.fake.add_pull(REPO, 1, head_sha=head, user={"login": "alice"})
        await w.deliver("pull_request", w.pull_request(REPO, 1, head))
        await w.settle()
        runs = w.check_runs()
        unit = runs["ployd / unit"]
        assert unit["conclusion"] == "failure"
        assert "Test" in unit["output"]["text"] and "running unit" in unit["output"]["text"]
        assert "#L" in unit["details_url"]
        identifiers = [a["identifier"] for a in unit["_actions"]]
        assert "retry" in identifiers
        assert runs["ployd / gpu"]["conclusion"] == "skipped"


async def test_invalid_config_is_one_failed_check_run_with_annotations(
    github_world: Callable[..., Any],
) -> None:
    bad = "version: 1\njobs:\n  unit:\n    needs: [unti]\n    steps: [{run: 'true'}]\n"
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": bad})
        status, _ = await w.deliver("push", w.push(REPO, "0" * 40, sha))
        assert status == 202
        await w.settle()
        runs = w.check_runs()
        assert list(runs) == ["ployd / config"]
        run = runs["ployd / config"]
        assert run["conclusion"] == "failure"
        notes = w.fake.annotations[run["id"]]
        assert notes[0]["path"] == ".ployd.yml" and notes[0]["start_line"] == 4
        assert "unti" in notes[0]["message"]


async def test_signatures_duplicates_and_refusals(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        push = w.push(REPO, "0" * 40, sha)
        status, _ = await w.deliver("push", push, secret="wrong")
        assert status == 401
        status, _ = await w.deliver("push", push, headers={"X-Hub-Signature-256": ""})
        assert status == 401
        status, _ = await w.deliver("push", push, delivery="d-1")
        assert status == 202
        status, body = await w.deliver("push", push, delivery="d-1")
        assert status == 200 and body == {"duplicate": "d-1"}
        await w.settle()
        with w.h.engine.db.session() as s:
            from app.store.models import InboxEvent, Pipeline

            assert s.query(Pipeline).count() == 1
            assert s.query(InboxEvent).count() == 1  # the bad signatures stored nothing
        no_install = {k: v for k, v in push.items() if k != "installation"}
        status, body = await w.deliver("push", no_install)
        assert status == 400 and "installed as a GitHub App" in body["error"]
        status, body = await w.deliver("ping", {"zen": "Keep it logically awesome."})
        assert status == 200
        status, _ = await w.deliver("star", {"action": "created"})
        assert status == 202


async def test_fork_pull_request_waits_for_ok_to_test(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        w.repo(REPO, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        head = w.commit(REPO, {"evil.py": "1"}, branch="pr-9")
        w.fake.add_pull(REPO, 9, head_sha=head, user={"login": "mallory"})
        w.fake.set_permission(REPO, "mallory", "read")
        w.fake.set_permission(REPO, "maint", "maintain")
        await w.deliver("pull_request", w.pull_request(REPO, 9, head, author="mallory", fork=True))
        await w.settle()
        runs = w.check_runs()
        assert runs["ployd / unit"]["conclusion"] == "action_required"
        # The fork's author cannot approve their own pull request.
        await w.deliver("issue_comment", w.comment(REPO, 9, "/ployd ok-to-test", "mallory"))
        await w.settle()
        assert w.check_runs()["ployd / unit"]["conclusion"] == "action_required"
        replies = [c["body"] for c in w.fake.comments.values() if "needs write access" in c["body"]]
        assert replies
        await w.deliver("issue_comment", w.comment(REPO, 9, "/ployd ok-to-test", "maint"))
        await w.settle()
        assert w.check_runs()["ployd / unit"]["conclusion"] == "success"
        with w.h.engine.db.session() as s:
            from app.store.models import Pipeline

            p = s.query(Pipeline).one()
            assert p.fork and not p.held


async def test_commands_retry_run_cancel_help_and_refusals(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        w.repo(REPO, {".ployd.yml": CONFIG})
        head = w.commit(REPO, {"a.py": "1"}, branch="pr-3")
        w.fake.add_pull(REPO, 3, head_sha=head, user={"login": "alice"})
        w.fake.set_permission(REPO, "alice", "read")  # the author, read-only
        w.fake.set_permission(REPO, "bob", "write")
        w.fake.set_permission(REPO, "eve", "read")
        await w.deliver("pull_request", w.pull_request(REPO, 3, head))
        await w.settle()
        assert w.check_runs()["ployd / unit"]["conclusion"] == "failure"

        async def say(user: str, text: str) -> list[str]:
            before = set(w.fake.comments)
            await w.deliver("issue_comment", w.comment(REPO, 3, text, user))
            await w.settle()
            return [
                w.fake.comments[c]["body"]
                for c in set(w.fake.comments) - before
                if not w.fake.comments[c]["body"].startswith(text)
            ]

        def attempts(name: str) -> int:
            with w.h.engine.db.session() as s:
                from app.store.models import Job

                job = s.query(Job).filter(Job.name == name).one()
                return len(job.attempts)

        # A read-only stranger may not retry; the author may, on the same hardware only.
        replies = await say("eve", "/ployd retry")
        assert any("needs write access" in r for r in replies) and attempts("unit") == 1
        replies = await say("alice", "/ployd retry unit on h100")
        assert any("needs write access" in r for r in replies) and attempts("unit") == 1
        replies = await say("alice", "/ployd retry")
        assert not replies and attempts("unit") == 2
        # A writer: unknown job and hardware get helpful answers.
        replies = await say("bob", "/ployd retry unti")
        assert any("did you mean 'unit'" in r for r in replies)
        replies = await say("bob", "/ployd retry unit on h10")
        assert any("did you mean h100" in r for r in replies)
        replies = await say("bob", "/ployd rety")
        assert any("unknown command" in r for r in replies)
        # Retry on other hardware, run a manual job, help.
        # (cpu:1: the local agent reports this machine's CPUs, and gets only what fits)
        replies = await say("bob", "/ployd retry unit on cpu:1")
        assert not replies and attempts("unit") == 3
        replies = await say("bob", "/ployd run bench")
        assert not replies and attempts("bench") == 1
        assert w.check_runs()["ployd / bench"]["conclusion"] == "success"
        replies = await say("bob", "/ployd help")
        assert any("/ployd retry" in r and "unit" in r for r in replies)
        reactions = {r["content"] for r in w.fake.reactions}
        assert {"+1", "confused"} <= reactions
        # Quoted and fenced commands do nothing.
        before = attempts("unit")
        await say("bob", "> /ployd retry\n```\n/ployd retry\n```")
        assert attempts("unit") == before


async def test_cancel_command_and_closed_pull_request(github_world: Callable[..., Any]) -> None:
    slow = "version: 1\njobs:\n  slow:\n    steps:\n      - run: echo READY-$((6*7)); sleep 300\n"
    async with github_world() as w:
        w.repo(REPO, {".ployd.yml": slow})
        head = w.commit(REPO, {"a.py": "1"}, branch="pr-4")
        w.fake.add_pull(REPO, 4, head_sha=head, user={"login": "bob"})
        w.fake.set_permission(REPO, "bob", "write")
        await w.deliver("pull_request", w.pull_request(REPO, 4, head, author="bob"))
        gh = w.h.server.github
        assert gh is not None
        await gh.worker.drain()
        with w.h.engine.db.session() as s:
            from app.store.models import Pipeline

            pid = s.query(Pipeline).one().id
        await w.h.log_contains(pid, "slow", "READY-42")
        await w.deliver("issue_comment", w.comment(REPO, 4, "/ployd cancel", "bob"))
        await w.settle()
        assert w.check_runs()["ployd / slow"]["conclusion"] == "cancelled"
        # A new run, then the pull request is closed: it is cancelled too.
        head2 = w.commit(REPO, {"b.py": "2"}, branch="pr-4")
        await w.deliver(
            "pull_request", w.pull_request(REPO, 4, head2, author="bob", action="synchronize")
        )
        await gh.worker.drain()
        await w.h.log_contains(pid + 1, "slow", "READY-42")
        closed = w.pull_request(REPO, 4, head2, author="bob", action="closed")
        await w.deliver("pull_request", closed)
        await w.settle()
        assert w.h.pipeline(pid + 1).state == "cancelled"


async def test_github_errors_are_retried_and_checks_still_end_right(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        w.fake.fail_next("POST", "/repos/{owner}/{repo}/check-runs", status=502, times=2)
        w.fake.rate_limit_next(
            "PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", retry_after=0
        )
        await w.deliver("push", w.push(REPO, "0" * 40, sha))
        await w.settle()
        runs = w.check_runs()
        assert runs["ployd / unit"]["conclusion"] == "success"
        assert runs["ployd / gpu"]["conclusion"] == "success"
        statuses = [c.status for c in w.fake.calls("POST", "/repos/{owner}/{repo}/check-runs")]
        assert statuses.count(502) == 2


async def test_check_run_buttons_retry_and_run(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": CONFIG})  # unit fails: no ok.txt
        w.fake.set_permission(REPO, "bob", "write")
        w.fake.set_permission(REPO, "eve", "read")
        await w.deliver("push", w.push(REPO, "0" * 40, sha))
        await w.settle()
        runs = w.check_runs()
        unit, bench = runs["ployd / unit"], runs["ployd / bench"]

        def button(run: dict[str, Any], identifier: str | None, user: str) -> dict[str, Any]:
            p = load_fixture(
                "check_run.requested_action.1" if identifier else "check_run.rerequested.1"
            )
            p["check_run"].update(id=run["id"], external_id=run["external_id"], head_sha=sha)
            if identifier:
                p["requested_action"] = {"identifier": identifier}
            p.update(
                repository=w._repository(REPO),
                installation=w.installation(REPO),
                sender={"login": user, "type": "User"},
            )
            return p

        def attempts(name: str) -> int:
            with w.h.engine.db.session() as s:
                from app.store.models import Job

                return len(s.query(Job).filter(Job.name == name).one().attempts)

        await w.deliver("check_run", button(unit, "retry", "eve"))  # read-only: refused
        await w.settle()
        assert attempts("unit") == 1
        await w.deliver("check_run", button(unit, "retry", "bob"))
        await w.settle()
        assert attempts("unit") == 2
        await w.deliver("check_run", button(unit, None, "bob"))  # GitHub's "Re-run"
        await w.settle()
        assert attempts("unit") == 3
        await w.deliver("check_run", button(bench, "run", "bob"))
        await w.settle()
        assert w.check_runs()["ployd / bench"]["conclusion"] == "success"


async def test_check_suite_and_push_for_one_commit_start_one_pipeline(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        suite = load_fixture("check_suite.requested.1")
        suite["check_suite"].update(head_sha=sha, head_branch="main", before="0" * 40)
        suite.update(repository=w._repository(REPO), installation=w.installation(REPO))
        await w.deliver("check_suite", suite)
        await w.deliver("push", w.push(REPO, "0" * 40, sha))
        await w.settle()
        with w.h.engine.db.session() as s:
            from app.store.models import Pipeline

            assert [p.trigger for p in s.query(Pipeline)] == ["check_suite"]


async def test_merge_group_runs_like_a_pull_request_into_its_base(
    github_world: Callable[..., Any],
) -> None:
    config = (
        "version: 1\non:\n  pull_request:\n    branches: [main]\n"
        "jobs:\n  t: {steps: [{run: 'true'}]}\n"
    )
    async with github_world() as w:
        w.repo(REPO, {".ployd.yml": config})
        head = w.commit(REPO, {"q.py": "1"}, branch="gh-readonly-queue/main/pr-5")
        group = load_fixture("merge_group.checks_requested.1")
        group["merge_group"].update(
            head_sha=head,
            head_ref="refs/heads/gh-readonly-queue/main/pr-5",
            base_ref="refs/heads/main",
        )
        group.update(repository=w._repository(REPO), installation=w.installation(REPO))
        await w.deliver("merge_group", group)
        await w.settle()
        assert w.check_runs()["ployd / t"]["conclusion"] == "success"


async def test_installations_become_tenants(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        created = load_fixture("installation.created.1")
        created["installation"].update(id=4242, account={"login": "newco"})
        created["repositories"] = [{"full_name": "newco/a"}, {"full_name": "newco/b"}]
        await w.deliver("installation", created)
        await w.h.server.github.worker.drain()  # type: ignore[union-attr]
        from app.store.models import Repository, Tenant

        with w.h.engine.db.session() as s:
            tenant = s.query(Tenant).filter(Tenant.external_id == "4242").one()
            assert tenant.active and tenant.name == "newco"
            repos = {r.full_name for r in s.query(Repository).filter_by(tenant_id=tenant.id)}
            assert repos == {"newco/a", "newco/b"}
        deleted = load_fixture("installation.deleted.1")
        deleted["installation"].update(id=4242, account={"login": "newco"})
        await w.deliver("installation", deleted)
        await w.h.server.github.worker.drain()  # type: ignore[union-attr]
        with w.h.engine.db.session() as s:
            assert not s.query(Tenant).filter(Tenant.external_id == "4242").one().active


async def test_more_commands_run_all_retry_job_retry_on_and_cancel_job(
    github_world: Callable[..., Any],
) -> None:
    config = (
        "version: 1\njobs:\n"
        "  unit: {retry: {max: 0}, steps: [{run: 'false'}]}\n"
        "  lint: {steps: [{run: 'true'}]}\n"
        "  slow: {when: manual, steps: [{run: 'echo SLOW-$((6*7)); sleep 300'}]}\n"
    )
    async with github_world() as w:
        w.repo(REPO, {".ployd.yml": config})
        head = w.commit(REPO, {"a.py": "1"}, branch="pr-11")
        w.fake.add_pull(REPO, 11, head_sha=head, user={"login": "bob"})
        w.fake.set_permission(REPO, "bob", "write")
        await w.deliver("pull_request", w.pull_request(REPO, 11, head, author="bob"))
        await w.settle()

        def job(name: str) -> Any:
            from app.store.models import Job

            with w.h.engine.db.session() as s:
                j = s.query(Job).filter(Job.name == name).one()
                _ = [a.reason for a in j.attempts]
                return j

        async def say(text: str) -> None:
            await w.deliver("issue_comment", w.comment(REPO, 11, text, "bob"))
            await w.h.server.github.worker.drain()  # type: ignore[union-attr]

        await say("/ployd retry lint")  # a job that passed, by name
        await w.settle()
        assert len(job("lint").attempts) == 2
        # the failed jobs, on other hardware (cpu:1: one any machine has, as the local
        # agent reports this machine's CPUs and gets only the jobs that fit)
        await say("/ployd retry on cpu:1")
        await w.settle()
        unit = job("unit")
        assert len(unit.attempts) == 2 and unit.hardware == ["cpu:1"]
        assert unit.attempts[1].reason == "retried by bob on cpu:1"
        await say("/ployd run all")  # manual ones too
        pid = unit.pipeline_id
        await w.h.log_contains(pid, "slow", "SLOW-42")
        await say("/ployd cancel slow")
        await w.settle()
        assert job("slow").state == "cancelled"
        assert w.check_runs()["ployd / slow"]["conclusion"] == "cancelled"
        assert {r["content"] for r in w.fake.reactions} == {"+1"}


async def test_every_pull_request_type_is_taken_in_and_means_what_the_config_says(
    github_world: Callable[..., Any],
) -> None:
    """`labeled` (like every action `on.pull_request.types` names) is accepted and starts
    a pipeline when the config names it; an action no type names is answered 'ignored'."""
    labeled = "version: 1\non:\n  pull_request:\n    types: [labeled]\n" + CONFIG.split("\n", 2)[2]
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": labeled, "ok.txt": "yes"})
        status, body = await w.deliver("pull_request", w.pull_request(REPO, 3, sha))
        assert status == 202 and "accepted" in body  # opened: taken in, starts nothing
        assigned = w.pull_request(REPO, 3, sha, action="assigned")
        status, body = await w.deliver("pull_request", assigned)
        assert status == 202 and body == {"ignored": "pull_request.assigned"}
        label = w.pull_request(REPO, 3, sha, action="labeled")
        status, body = await w.deliver("pull_request", label)
        assert status == 202 and "accepted" in body
        await w.settle()
        with w.h.engine.db.session() as s:
            from app.store.models import Pipeline

            (p,) = s.query(Pipeline).all()
            assert (p.sha, p.pr_number, p.state) == (sha, 3, "succeeded")
