"""Notifications end to end: `ployd serve` with a repository whose `.ployd.yml` has
`notify:`; a fake Slack and a webhook receiver on loopback and an SMTP server (aiosmtpd)
get the right messages for `started`, `failure`, `success` and `fixed`; a receiver that
answers 500 is retried with backoff, then given up and recorded, while the pipeline
finishes without waiting for it; no secret is in any message."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.engine.engine import RepoRef
from app.results.notify import Notifier
from app.store import notifications as rows
from tests.fakes.receivers import Receivers, serve_receivers, smtp_server

SLACK_URL_PATH = "/slack/T000/B000/XXXXSECRETXXXX"
HOOK_KEY = "hmac-key-never-in-a-message"


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
      - name: Test
        run: echo checking; test -f ok.txt
  lint:
    steps:
      - run: echo fine
"""


async def test_slack_webhook_and_email_get_the_right_messages_and_a_500_is_given_up(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with serve_receivers() as r:
        release = asyncio.Event()
        r.answers["/broken"] = [500]
        gate_first = {"held": False}
        original = r._handle

        async def held(request: Any) -> Any:  # the first call to /broken hangs until released
            if request.path == "/broken" and not gate_first["held"]:
                gate_first["held"] = True
                await release.wait()
            return await original(request)

        r._handle = held  # type: ignore[method-assign]
        with smtp_server() as (smtp_host, smtp_port, mail):
            repo, _ = make_repo({".ployd.yml": config(r)})
            async with serve(agents=1, smtp_host=smtp_host, smtp_port=smtp_port) as h:
                notifier = h.server.notifier
                assert notifier is not None
                notifier.backoff_base_s = 0.01  # the schedule's shape, not its length
                h.engine.add_repositories(
                    [RepoRef(forge="local", full_name=str(repo), clone_url=repo.as_uri())]
                )
                store = h.server.services.security.secrets
                store.set(str(repo), "SLACK_URL", r.url(SLACK_URL_PATH), forge="local")
                store.set(str(repo), "HOOK_KEY", HOOK_KEY, forge="local")

                # 1. unit fails (no ok.txt).
                pid = await h.start(repo)
                p = await h.finished(pid)
                assert p.state == "failed"
                # The pipeline ended while the /broken delivery was still held open.
                assert not release.is_set()

                def recorded(event: str, kind: str) -> list[rows.NotificationView]:
                    return [
                        v
                        for v in rows.listing(h.engine.db, pid)
                        if v.event == event and v.kind == kind
                    ]

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
                assert f"/runs/{p.jobs[0].id}?t=" in failed

                hook = r.at("/hook")[0]
                body = hook.body
                expected = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
                assert hook.headers["X-PloyD-Signature"] == expected
                assert hook.headers["X-PloyD-Event"] == "failure"
                payload = hook.json()
                assert payload["pipeline"]["id"] == pid and payload["pipeline"]["state"] == "failed"
                assert [j["name"] for j in payload["failing_jobs"]] == ["unit"]
                assert payload["failing_jobs"][0]["cause"].startswith("step 'Test'")

                email = mail.messages[0]
                assert email["To"] == "team@example.com"
                assert f"pipeline #{pid} failed" in email["Subject"]
                assert "unit" in email.get_payload()

                # 2. The held receiver now answers 500, every time: retried, then given up.
                release.set()
                await until(
                    notifier,
                    lambda: [v.state for v in recorded("failure", "webhook")] == ["sent", "failed"],
                    "the broken webhook to be given up",
                )
                broken = next(v for v in recorded("failure", "webhook") if v.state == "failed")
                assert broken.tries == 5 and broken.error is not None
                assert "answered HTTP 500" in broken.error
                assert len(r.at("/broken")) == 5

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
