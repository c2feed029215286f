"""Metrics and the dashboard, on a real server that ran a real pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

CONFIG = (
    "version: 1\njobs:\n  a: {steps: [{run: 'echo a'}]}\n"
    "  b: {needs: [a], steps: [{run: 'false'}], retry: {max: 0}}\n"
)


def sample(text: str, name: str) -> float:
    """The value of one sample line ``name{...} value`` of the exposition."""
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name!r} in:\n{text}")


async def test_metrics_after_a_pipeline(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    async with serve(agents=1) as h:
        pid = await h.start(repo)
        await h.finished(pid)
        status, text = await h.get("/metrics")
        assert status == 200
        assert sample(text, 'ployd_queue_wait_seconds_count{hardware_class="cpu"}') == 2
        assert sample(text, 'ployd_job_duration_seconds_count{hardware_class="cpu"}') == 2
        assert sample(text, "ployd_trigger_to_start_seconds_count") == 2
        assert sample(text, 'ployd_attempts_ended_total{result="succeeded"}') == 1
        assert sample(text, 'ployd_attempts_ended_total{result="failed"}') == 1
        assert "ployd_instances" in text and "ployd_capacity_fallbacks" in text
        assert "ployd_webhooks_received" in text and "ployd_spot_interruptions_total" in text


async def test_webhook_rejections_are_counted(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        sha = w.repo("acme/m", {".ployd.yml": CONFIG})
        push = w.push("acme/m", "0" * 40, sha)
        await w.deliver("push", push, secret="wrong")
        await w.deliver("push", push)
        await w.settle()
        _, text = await w.h.get("/metrics")
        assert (
            sample(text, 'ployd_webhooks_rejected_total{forge="github",reason="bad_signature"}')
            == 1
        )
        assert sample(text, 'ployd_webhooks_received_total{forge="github"}') == 1


async def test_dashboard_needs_the_admin_token(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    async with serve(agents=1, admin_token="s3cret-admin") as h:
        auth = {"Authorization": "Bearer s3cret-admin"}
        status, body = await h.post("/api/v1/pipelines", {"repo": str(repo)}, headers=auth)
        assert status == 201
        await h.finished(int(body["id"]))
        status, page = await h.get("/")
        assert status == 401 and "Admin token" in page
        status, _ = await h.get("/metrics")
        assert status == 401
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(h.url + "/login", data={"token": "nope"}) as r:
                assert r.status == 401
            async with http.post(h.url + "/login", data={"token": "s3cret-admin"}) as r:
                assert r.status == 200  # redirected to the dashboard
                page = await r.text()
        assert "Last 24 hours" in page and "Machines" in page
        assert "queue p50" in page and "<svg" in page
        assert "$0.00" in page  # local machines cost nothing
        assert "Spend this month, by tenant" in page and "local:local" in page


async def test_dashboard_shows_why_a_job_waits(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    async with serve(agents=0) as h:  # no agent: the job waits
        pid = await h.start(repo)
        job = h.job(pid, "a")
        h.engine.set_waiting(job.id, "waiting for capacity: tried p5.4xlarge spot us-east-1a")
        status, page = await h.get("/")
        assert status == 200
        assert "waiting for capacity: tried p5.4xlarge spot us-east-1a" in page
        assert "1 job(s) queued or running" in page or "job(s) queued or running" in page
