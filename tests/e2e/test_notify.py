"""Notifications end to end: `ployd serve` with a repository whose `.ployd.yml` has
`notify:`; a fake Slack and a webhook receiver on loopback and an SMTP server (aiosmtpd)
get the right messages for `started`, `failure`, `success` and `fixed`, with the failing
job's cause line from its log; a receiver that answers 500 is retried with backoff, then
given up and recorded, while the pipeline finishes without waiting for it; no secret is
in any message. Receivers on loopback get nothing without PLOYD_NOTIFY_ALLOW_NETS; a
channel's `branches:` match a push's branch and a pull request's target branch."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.engine.engine import RepoRef
from app.results.notify import Notifier
from app.store import notifications as rows
from tests.fakes.receivers import Receivers, serve_receivers, smtp_server

SLACK_URL_PATH = "/slack/T000/B000/XXXXSECRETXXXX"
HOOK_KEY = "hmac-key-never-in-a-message"
CAUSE = "FileNotFoundError: ok.txt is missing"
LOOPBACK = ("127.0.0.0/8",)  # PLOYD_NOTIFY_ALLOW_NETS for receivers on loopback


async def until(notifier: Notifier, check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds, re-checking after each delivery try."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60.0
    while not check():
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        notifier.progress.clear()
        if check():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(notifier.progress.wait(), left)


def config(r: Receivers) -> str:
    return f"""
version: 1
notify:
  - slack: SLACK_URL
    on: [started, failure, fixed]
  - webhook: {r.url("/hook")}
    secret: HOOK_KEY
    on: [failure, success, fixed]
  - webhook: {r.url("/broken")}
    on: [failure]
  - email: [team@example.com]
    on: [failure]
jobs:
  unit:
    steps:
      - name: Wait for the started message
        run: |
          for i in $(seq 600); do
            curl -sf "{r.url("/_seen")}?path={SLACK_URL_PATH}&text=started" && break
            sleep 0.1
          done
      - name: Test
        run: |
          echo checking
          if ! test -f ok.txt; then
            printf 'Traceback (most recent call last):\\n  File "train.py", line 3\\n' >&2
            printf 'FileNotFoundError: ok.txt is missing\\n' >&2
            exit 1
          fi
  lint:
    steps:
      - run: echo fine
"""


async def test_slack_webhook_and_email_get_the_right_messages_and_a_500_is_given_up(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with serve_receivers() as r:
        r.answers["/broken"] = [500]
        # Slack's `started` message is left unanswered, and the job waits until it
        # arrived: the pipeline then runs and ends while that delivery hangs.
        r.hold.add(SLACK_URL_PATH)
        with smtp_server() as (smtp_host, smtp_port, mail):
            repo, _ = make_repo({".ployd.yml": config(r)})
            async with serve(
                agents=1,
                smtp_host=smtp_host,
                smtp_port=smtp_port,
                notify_allow_nets=LOOPBACK,  # the receivers are on 127.0.0.1
            ) as h:
                notifier = h.server.notifier
                assert notifier is not None
                notifier.backoff_base_s = 0.01  # the schedule's shape, not its length
                notifier.http_timeout_s = 300.0  # the held request waits for the test
                h.engine.add_repositories(
                    [RepoRef(forge="local", full_name=str(repo), clone_url=repo.as_uri())]
                )
                store = h.server.services.security.secrets
                store.set(str(repo), "SLACK_URL", r.url(SLACK_URL_PATH), forge="local")
                store.set(str(repo), "HOOK_KEY", HOOK_KEY, forge="local")

                # 1. unit fails (no ok.txt).
                pid = await h.start(repo)

                def recorded(event: str, kind: str) -> list[rows.NotificationView]:
                    return [
                        v
                        for v in rows.listing(h.engine.db, pid)
                        if v.event == event and v.kind == kind
                    ]

                p = await h.finished(pid)
                assert p.state == "failed"
                # It ended while Slack had not answered the `started` message.
                assert not r.release.is_set()
                assert [v.tries for v in recorded("started", "slack")] == [0]

                await until(
                    notifier,
                    lambda: (
                        len(r.at(SLACK_URL_PATH)) == 2
                        and len(r.at("/hook")) == 1
                        and len(mail.messages) == 1
                    ),
                    "slack, the webhook and the email",
                )
                started, failed = (x.json()["text"] for x in r.at(SLACK_URL_PATH))
                assert f"pipeline #{pid} started" in started
                assert f"pipeline #{pid} failed" in failed
                assert f"/pipelines/{pid}" in failed
                assert "unit" in failed and "step 'Test'" in failed and "lint" not in failed
                # The cause finder's line of its log, not only the exit code.
                assert CAUSE in failed and "exit code" not in failed
                assert f"/runs/{p.jobs[0].id}?t=" in failed

                hook = r.at("/hook")[0]
                body = hook.body
                expected = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
                assert hook.headers["X-PloyD-Signature"] == expected
                assert hook.headers["X-PloyD-Event"] == "failure"
                payload = hook.json()
                assert payload["pipeline"]["id"] == pid and payload["pipeline"]["state"] == "failed"
                assert [j["name"] for j in payload["failing_jobs"]] == ["unit"]
                assert payload["failing_jobs"][0]["cause"] == f"step 'Test': {CAUSE}"

                email = mail.messages[0]
                assert email["To"] == "team@example.com"
                assert f"pipeline #{pid} failed" in email["Subject"]
                assert "unit" in email.get_payload() and CAUSE in email.get_payload()

                # 2. Slack answers now; /broken answers 500 every time: retried, given up.
                r.release.set()
                await until(
                    notifier,
                    lambda: [v.state for v in recorded("failure", "webhook")] == ["sent", "failed"],
                    "the broken webhook to be given up",
                )
                broken = next(v for v in recorded("failure", "webhook") if v.state == "failed")
                assert broken.tries == 5 and broken.error is not None
                assert "answered HTTP 500" in broken.error
                assert len(r.at("/broken")) == 5
                code, listed = await h.get(f"/api/v1/pipelines/{pid}/notifications")
                assert code == 200
                by = {(n["channel"], n["event"], n["target"]): n for n in listed["notifications"]}
                gone = by[("webhook", "failure", r.url("/broken"))]
                assert gone["state"] == "failed" and gone["tries"] == 5
                assert by[("slack", "failure", "SLACK_URL")]["state"] == "sent"
                assert by[("email", "failure", "team@example.com")]["state"] == "sent"
                assert "XXXXSECRETXXXX" not in str(listed)

                # 3. Fixed: ok.txt added; success to the webhook, fixed to both.
                make_repo({"ok.txt": "yes"}, path=repo)
                pid2 = await h.start(repo)
                assert (await h.finished(pid2)).state == "succeeded"
                await until(
                    notifier,
                    lambda: len(r.at(SLACK_URL_PATH)) == 4 and len(r.at("/hook")) == 3,
                    "the fixed notifications",
                )
                assert f"pipeline #{pid2} is fixed" in r.at(SLACK_URL_PATH)[-1].json()["text"]
                events = sorted(x.headers["X-PloyD-Event"] for x in r.at("/hook")[1:])
                assert events == ["fixed", "success"]
                assert len(mail.messages) == 1  # email is only for failures

                # No secret in anything sent.
                everything = b"".join(x.body for x in r.received) + b"".join(
                    m.as_bytes() for m in mail.messages
                )
                assert HOOK_KEY.encode() not in everything
                assert b"XXXXSECRETXXXX" not in everything


BUDGET_CONFIG = """
version: 1
notify:
  - webhook: {hook}
    on: [failure, success]
jobs:
  unit:
    steps:
      - run: echo ok
"""


async def test_budget_warning_goes_to_the_tenants_channels_and_the_pull_request(
    github_world: Callable[..., Any],
) -> None:
    from app.policy.model import parse_file

    repo_name = "acme/models"
    async with serve_receivers() as r, github_world() as w:
        notifier = w.h.server.notifier
        assert notifier is not None
        book = w.h.server.services.security.policy
        # The operator's defaults: a budget the job's estimate passes 1% of, and a channel.
        book.file = parse_file(
            {
                "defaults": {
                    "budget": {"monthly_usd": 1000, "warn_at": 0.00001},
                    "notify": [{"webhook": r.url("/ops"), "on": ["budget", "success"]}],
                }
            },
            "policy",
        )
        w.repo(repo_name, {".ployd.yml": BUDGET_CONFIG.format(hook=r.url("/team"))})
        head = w.commit(repo_name, {"a.py": "1"}, branch="pr-4")
        w.fake.add_pull(repo_name, 4, head_sha=head, user={"login": "alice"})
        await w.deliver("pull_request", w.pull_request(repo_name, 4, head))
        await w.settle()
        await until(
            notifier,
            lambda: len(r.at("/ops")) == 2 and len(r.at("/team")) == 1,
            "the budget warning and the success",
        )
        ops = next(x for x in r.at("/ops") if x.headers["X-PloyD-Event"] == "budget")
        assert ops.headers["X-PloyD-Event"] == "budget"
        note = ops.json()["note"]
        assert note.startswith("budget: tenant ") and "of its monthly budget" in note
        assert "crossed by job unit" in note
        assert r.at("/team")[0].headers["X-PloyD-Event"] == "success"  # no budget: not asked
        assert "X-PloyD-Signature" not in ops.headers  # no secret named: not signed
        # On the pull request: the summary comment says it.
        body = summary_of(w, 4)
        assert "💸 budget: tenant " in body

        # A fork's pull request: its file's channels are not used; the tenant's are.
        fork_head = w.commit(repo_name, {"b.py": "1"}, branch="pr-5")
        w.fake.add_pull(repo_name, 5, head_sha=fork_head, user={"login": "mallory"})
        w.fake.set_permission(repo_name, "alice", "write")
        await w.deliver(
            "pull_request", w.pull_request(repo_name, 5, fork_head, fork=True, author="alice")
        )
        await w.settle()
        await until(notifier, lambda: len(r.at("/ops")) == 3, "the fork's success to /ops")
        fork_pid = max(v.pipeline_id or 0 for v in rows.listing(w.h.engine.db))
        targets = [
            v.channel_target
            for v in rows.listing(w.h.engine.db, fork_pid)
            if v.kind != rows.PR_KIND  # the budget line on its pull request
        ]
        assert targets == [r.url("/ops")]  # the tenant's channel only, not the file's /team
        assert len(r.at("/team")) == 1


def summary_of(w: Any, number: int) -> str:
    found = [
        c["body"]
        for c in w.fake.comments.values()
        if c["_issue"] == number and "ployd:summary" in c["body"]
    ]
    assert len(found) == 1
    return str(found[0])


GUARD_CONFIG = """
version: 1
notify:
  - webhook: {hook}
    on: [success]
  - slack: SLACK_URL
    on: [success]
jobs:
  unit:
    steps:
      - run: echo ok
"""


@pytest.mark.parametrize("allowed", [False, True], ids=["refused", "allowed"])
async def test_a_files_webhook_and_slack_url_on_loopback_need_the_operators_allow_setting(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], allowed: bool
) -> None:
    """A `.ployd.yml` may not make PloyD's server post to its own machine: without
    PLOYD_NOTIFY_ALLOW_NETS the receiver on 127.0.0.1 gets nothing and each delivery is
    given up at once, saying why (never the Slack URL); with it, both are delivered."""
    async with serve_receivers() as r:
        repo, _ = make_repo({".ployd.yml": GUARD_CONFIG.format(hook=r.url("/hook"))})
        extra = {"notify_allow_nets": LOOPBACK} if allowed else {}
        async with serve(agents=1, **extra) as h:
            notifier = h.server.notifier
            assert notifier is not None
            h.engine.add_repositories(
                [RepoRef(forge="local", full_name=str(repo), clone_url=repo.as_uri())]
            )
            store = h.server.services.security.secrets
            store.set(str(repo), "SLACK_URL", r.url(SLACK_URL_PATH), forge="local")
            pid = await h.start(repo)
            assert (await h.finished(pid)).state == "succeeded"

            def views() -> dict[str, rows.NotificationView]:
                return {v.kind: v for v in rows.listing(h.engine.db, pid) if v.event == "success"}

            await until(
                notifier,
                lambda: len(views()) == 2 and all(v.state != "pending" for v in views().values()),
                "both deliveries to end",
            )
            got = views()
            if allowed:
                assert {k: v.state for k, v in got.items()} == {"webhook": "sent", "slack": "sent"}
                assert len(r.at("/hook")) == 1 and len(r.at(SLACK_URL_PATH)) == 1
                return
            assert r.received == []  # nothing was sent
            for kind, v in got.items():
                assert v.state == "failed" and v.tries == 1, kind  # not retried
                assert v.error is not None
                assert "127.0.0.1 is a loopback address" in v.error, v.error
                assert "PLOYD_NOTIFY_ALLOW_NETS" in v.error
            assert got["webhook"].error is not None
            assert got["webhook"].error.startswith(f"the webhook {r.url('/hook')} was not sent")
            assert got["slack"].error is not None
            assert got["slack"].error.startswith("the Slack webhook was not sent")
            code, listed = await h.get(f"/api/v1/pipelines/{pid}/notifications")
            assert code == 200
            assert "XXXXSECRETXXXX" not in str(listed) and SLACK_URL_PATH not in str(listed)


BRANCH_CONFIG = """
version: 1
on: [push, pull_request]  # every branch's pushes (by default: the default branch's)
notify:
  - webhook: {every}
    on: [success]
  - webhook: {main}
    on: [success]
    branches: [main]
jobs:
  unit:
    steps:
      - run: echo ok
"""


async def test_branches_match_a_pushs_branch_and_a_pull_requests_target_branch(
    github_world: Callable[..., Any],
) -> None:
    """`branches: [main]` on a channel: a push to another branch sends it nothing, a push
    to main does; a pull request is matched by its target branch, not its head's."""
    name = "acme/models"
    async with serve_receivers() as r, github_world() as w:
        notifier = w.h.server.notifier
        assert notifier is not None
        db = w.h.engine.db
        w.repo(name, {".ployd.yml": BRANCH_CONFIG.format(every=r.url("/all"), main=r.url("/main"))})

        async def run(event: str, payload: dict[str, Any]) -> int:
            """Deliver, wait for the unfiltered channel's message; the pipeline's id. Both
            channels are decided in one transaction, so the filtered one's fate is known
            once the unfiltered one has its message."""
            seen = len(r.at("/all"))
            await w.deliver(event, payload)
            await w.settle()
            await until(notifier, lambda: len(r.at("/all")) == seen + 1, f"{event} to /all")
            return int(r.at("/all")[-1].json()["pipeline"]["id"])

        def recorded(pid: int) -> list[str]:
            return sorted(v.channel_target for v in rows.listing(db, pid))

        # A push to a branch that is not main: only the unfiltered channel.
        sha = w.commit(name, {"a.py": "1"}, branch="feature")
        pid = await run("push", w.push(name, "0" * 40, sha, ref="refs/heads/feature"))
        assert recorded(pid) == [r.url("/all")]

        # A push to main: both.
        sha = w.commit(name, {"b.py": "1"}, branch="main")
        pid = await run("push", w.push(name, "0" * 40, sha, ref="refs/heads/main"))
        assert recorded(pid) == sorted([r.url("/all"), r.url("/main")])
        await until(notifier, lambda: len(r.at("/main")) == 1, "main's push to /main")
        assert r.at("/main")[0].json()["pipeline"]["id"] == pid

        # A pull request from pr-7 into main: matched by main, its target.
        head = w.commit(name, {"c.py": "1"}, branch="pr-7")
        w.fake.add_pull(name, 7, head_sha=head, user={"login": "alice"})
        pid = await run("pull_request", w.pull_request(name, 7, head, base="main"))
        assert recorded(pid) == sorted([r.url("/all"), r.url("/main")])
        await until(notifier, lambda: len(r.at("/main")) == 2, "the pull request to /main")
        assert r.at("/main")[1].json()["pull_request"]["number"] == 7

        # A pull request from a branch named main into develop: its head is not matched.
        head = w.commit(name, {"d.py": "1"}, branch="pr-8")
        w.fake.add_pull(name, 8, head_sha=head, user={"login": "alice"})
        payload = w.pull_request(name, 8, head, base="develop")
        payload["pull_request"]["head"]["ref"] = "main"
        pid = await run("pull_request", payload)
        assert recorded(pid) == [r.url("/all")]
        assert len(r.at("/main")) == 2
