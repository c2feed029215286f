"""The GitLab bot end to end: GitLab's documented payloads -> `ployd serve` -> the local
agent runs a real git repository's steps -> commit statuses, one summary note and award
emoji at the fake GitLab, which checks every call against the contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.github_world import fetch
from tests.e2e.gitlab_world import GitLabWorld

CONFIG = """
version: 1
jobs:
  unit:
    steps:
      - name: Test
        run: echo "running unit"; test -f ok.txt
  deploy:
    needs: [unit]
    steps:
      - run: echo deploy
  bench:
    when: manual
    steps:
      - run: echo bench
"""
PROJECT = "ml/models"
DEVELOPER, REPORTER = 30, 20


async def open_mr(
    w: GitLabWorld, iid: int, files: dict[str, str], author: str = "alice", fork: bool = False
) -> str:
    if fork:
        sha = w.fork_commit(PROJECT, files, iid)
    else:
        sha = w.commit(PROJECT, files, branch=f"mr-{iid}")
    w.fake.add_mr(PROJECT, iid, source_sha=sha, author=author, fork=fork)
    status, body = await w.deliver(
        "Merge Request Hook", w.merge_request(PROJECT, iid, sha, author=author)
    )
    assert status == 202, body
    return sha


async def test_merge_request_statuses_note_and_log_links(gitlab_world: Callable[..., Any]) -> None:
    async with gitlab_world() as w:
        w: GitLabWorld
        w.project(PROJECT, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        w.fake.set_member(PROJECT, "alice", DEVELOPER)
        await open_mr(w, 5, {"model.py": "x"})
        await w.settle()
        statuses = w.statuses(PROJECT)
        assert statuses["ployd/unit"]["status"] == "success"
        assert statuses["ployd/deploy"]["status"] == "success"
        assert statuses["ployd/bench"]["status"] == "skipped"
        # In order (a fast job may go from pending to success between two reports).
        order = {"pending": 0, "running": 1, "success": 2}
        states = [order[x] for x in w.history("ployd/unit")]
        assert states == sorted(states) and states[0] == 0 and states[-1] == 2
        url = statuses["ployd/unit"]["target_url"].replace("http://ployd.test", w.h.url)
        code, page = await fetch(w.h.http, url)
        assert code == 200 and "running unit" in page
        notes = [n for n in w.fake.notes.values() if "ployd:summary" in n["body"]]
        assert len(notes) == 1


async def test_failed_job_and_commands_with_refusals(gitlab_world: Callable[..., Any]) -> None:
    async with gitlab_world() as w:
        w.project(PROJECT, {".ployd.yml": CONFIG})  # no ok.txt: unit fails
        w.fake.set_member(PROJECT, "alice", REPORTER)  # the author, a Reporter
        w.fake.set_member(PROJECT, "rita", REPORTER)
        w.fake.set_member(PROJECT, "dev", DEVELOPER)
        await open_mr(w, 6, {"a.py": "1"})
        await w.settle()
        assert w.statuses(PROJECT)["ployd/unit"]["status"] == "failed"
        assert w.statuses(PROJECT)["ployd/deploy"]["status"] == "skipped"

        async def say(user: str, text: str) -> list[str]:
            before = set(w.fake.notes)
            await w.deliver("Note Hook", w.note(PROJECT, 6, text, user))
            await w.settle()
            return [
                w.fake.notes[n]["body"]
                for n in set(w.fake.notes) - before
                if w.fake.notes[n]["body"] != text
            ]

        def attempts(name: str) -> int:
            from app.store.models import Job

            with w.h.engine.db.session() as s:
                return len(s.query(Job).filter(Job.name == name).one().attempts)

        replies = await say("rita", "/ployd retry")  # a Reporter, not the author
        refusal = "@rita needs the Developer role to run /ployd retry (has Reporter): someone with"
        assert any(refusal in r for r in replies) and attempts("unit") == 1
        replies = await say("alice", "/ployd retry")  # the author, same hardware: allowed
        assert not any("needs" in r for r in replies) and attempts("unit") == 2
        replies = await say("dev", "/ployd retry unit on h10")
        assert any("did you mean h100" in r for r in replies)
        replies = await say("dev", "/ployd run bench")
        assert attempts("bench") == 1
        assert w.statuses(PROJECT)["ployd/bench"]["status"] == "success"
        awards = {a["name"] for a in w.fake.awards.values()}
        assert {"thumbsup", "confused"} <= awards


async def test_fork_merge_request_waits_for_a_developer(gitlab_world: Callable[..., Any]) -> None:
    """A fork's head is only refs/merge-requests/7/head in the project: GitLab refuses a
    status without that ref (404 References for commit), so every status carries it."""
    async with gitlab_world() as w:
        w.project(PROJECT, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        w.fake.set_member(PROJECT, "dev", DEVELOPER)
        w.fake.set_member(PROJECT, "rita", REPORTER)
        sha = await open_mr(w, 7, {"evil.py": "1"}, author="stranger", fork=True)
        assert w.fake.project(PROJECT).branch_containing(sha) is None
        await w.settle()
        unit = w.statuses(PROJECT)["ployd/unit"]
        assert unit["status"] == "pending" and unit["sha"] == sha
        assert "ok-to-test" in unit["description"]
        assert unit["ref"] == "refs/merge-requests/7/head"
        summary = [n for n in w.fake.notes.values() if "ployd:summary" in n["body"]]
        assert len(summary) == 1 and "ok-to-test" in summary[0]["body"]
        for who in ("stranger", "rita"):  # the author, a Reporter: not enough
            await w.deliver("Note Hook", w.note(PROJECT, 7, "/ployd ok-to-test", who))
            await w.settle()
            assert w.statuses(PROJECT)["ployd/unit"]["status"] == "pending"
        await w.deliver("Note Hook", w.note(PROJECT, 7, "/ployd ok-to-test", "dev"))
        await w.settle()
        statuses = w.statuses(PROJECT)
        assert statuses["ployd/unit"]["status"] == "success"
        assert statuses["ployd/deploy"]["status"] == "success"
        assert statuses["ployd/bench"]["status"] == "skipped"
        assert {st["ref"] for st in statuses.values()} == {"refs/merge-requests/7/head"}
        posts = w.fake.calls("POST", "/projects/:id/statuses/:sha")
        assert posts and all(c.params["ref"] == "refs/merge-requests/7/head" for c in posts)
        # (a 400 "Cannot transition" is GitLab's answer to a state re-posted: no-op)
        assert [c for c in posts if c.status >= 400 and c.status != 400] == []
        (summary,) = [n for n in w.fake.notes.values() if "ployd:summary" in n["body"]]
        assert "ok-to-test" not in summary["body"] and "unit" in summary["body"]


async def test_a_refused_status_keeps_neither_the_others_nor_the_note_back(
    gitlab_world: Callable[..., Any],
) -> None:
    async with gitlab_world() as w:
        w.project(PROJECT, {".ployd.yml": CONFIG, "ok.txt": "yes"})
        w.fake.set_member(PROJECT, "alice", DEVELOPER)
        # GitLab refuses every status of one job (say, a protected name): 403, not retried
        w.fake.fail_next(
            "POST", "/projects/*/statuses/*", 403, times=1, body={"message": "403 Forbidden"}
        )
        await open_mr(w, 11, {"a.py": "1"})
        await w.settle()
        posts = w.fake.calls("POST", "/projects/:id/statuses/:sha")
        first = posts[0]
        assert first.status == 403
        statuses = w.statuses(PROJECT)
        others = {"ployd/unit", "ployd/deploy", "ployd/bench"} - {first.params["name"]}
        assert others <= set(statuses)
        assert len([n for n in w.fake.notes.values() if "ployd:summary" in n["body"]]) == 1
        # Sent again at the next report: every job ends with its final status.
        assert statuses["ployd/unit"]["status"] == "success"
        assert statuses["ployd/deploy"]["status"] == "success"
        assert statuses["ployd/bench"]["status"] == "skipped"
        code, metrics = await fetch(w.h.http, w.h.url + "/metrics")
        assert code == 200
        line = next(x for x in metrics.splitlines() if x.startswith("ployd_forge_api_errors_total"))
        assert 'forge="gitlab"' in line and float(line.split()[-1]) >= 1


async def test_tokens_duplicates_and_invalid_config(gitlab_world: Callable[..., Any]) -> None:
    bad = "version: 1\njobs:\n  a:\n    needs: [b]\n    steps: [{run: 'true'}]\n"
    async with gitlab_world() as w:
        sha = w.project(PROJECT, {".ployd.yml": bad})
        push = w.push(PROJECT, "0" * 40, sha)
        status, _ = await w.deliver("Push Hook", push, token="wrong")
        assert status == 401
        status, _ = await w.deliver("Push Hook", push, token=None)
        assert status == 401
        status, _ = await w.deliver("Push Hook", push, key="k-1")
        assert status == 202
        status, body = await w.deliver("Push Hook", push, key="k-1")
        assert status == 200 and body == {"duplicate": "k-1"}
        await w.settle()
        config = w.statuses(PROJECT)["ployd/config"]
        assert config["status"] == "failed" and "1 error" in config["description"]
        from app.store.models import InboxEvent

        with w.h.engine.db.session() as s:
            assert s.query(InboxEvent).count() == 1
        status, _ = await w.deliver("Pipeline Hook", {"object_kind": "pipeline"})
        assert status == 202
        # On a merge request, the errors are listed in a note, with their lines.
        await open_mr(w, 8, {"x.py": "1"})
        await w.settle()
        notes = [n["body"] for n in w.fake.notes.values() if "cannot run" in n["body"]]
        assert notes and ".ployd.yml:4:" in notes[0]


async def test_closing_the_merge_request_cancels_it(gitlab_world: Callable[..., Any]) -> None:
    slow = "version: 1\njobs:\n  slow:\n    steps:\n      - run: echo READY-$((6*7)); sleep 300\n"
    async with gitlab_world() as w:
        w.project(PROJECT, {".ployd.yml": slow})
        sha = await open_mr(w, 9, {"a.py": "1"})
        assert w.h.server.gitlab is not None
        await w.h.server.gitlab.worker.drain()
        from app.store.models import Pipeline

        with w.h.engine.db.session() as s:
            pid = s.query(Pipeline).one().id
        await w.h.log_contains(pid, "slow", "READY-42")
        await w.h.server.gitlab.reporter.idle()
        assert w.statuses(PROJECT)["ployd/slow"]["status"] == "running"
        await w.deliver("Merge Request Hook", w.merge_request(PROJECT, 9, sha, action="close"))
        await w.settle()
        assert w.h.pipeline(pid).state == "cancelled"
        assert w.statuses(PROJECT)["ployd/slow"]["status"] == "canceled"
