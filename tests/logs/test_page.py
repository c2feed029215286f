"""The log page through real HTTP: rendering, anchors, the error line, folding, privacy
(403 without the token, across tenants), raw download with ranges, retry, and the SSE
live tail."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.logs.world import LogWorld, one_job

FAILING_LOG = (
    "\x1b[1mrunning tests\x1b[0m\n"
    "test_a \x1b[32mPASSED\x1b[0m\n"
    "<script>alert('x')</script> & friends\n"
    "E   AssertionError: 1 != 2\n"
    "\x1b[31mFAILED\x1b[0m test_b\n"
)


async def failed_job(w: LogWorld, **pipeline: Any) -> int:
    pid = w.pipeline(**pipeline)
    c = await w.claim()
    w.log(c, "workspace: new clone\n")
    w.step(c, 0, "running")
    w.log(c, "building\nbuilt\n")
    w.step(c, 0, "succeeded", 0)
    w.step(c, 1, "running")
    w.log(c, FAILING_LOG)
    w.step(c, 1, "failed", 1)
    w.finish(c, "failed", failed_step=1, code=1)
    await w.settled()
    return w.job_id(pid)


@pytest.mark.parametrize("store", ["disk", "s3"])
async def test_failing_job_page(log_world: Callable[..., Any], store: str) -> None:
    async with log_world(store, admin_token="root-token") as w:
        job = await failed_job(w)
        status, page, headers = await w.get(w.link(job))
        assert status == 200, page
        assert "script-src 'nonce-" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"
        # ANSI colours are spans with classes; the log's markup is shown, not run.
        assert '<span class="b">running tests</span>' in page
        assert '<span class="f2">PASSED</span>' in page
        assert '<span class="f1">FAILED</span>' in page
        assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; friends" in page
        assert "<script>alert" not in page
        # Numbered lines with anchors; the first error line is highlighted.
        assert '<div class="l" id="L1"><a class="n" href="#L1" data-n="1"></a>' in page
        err = re.search(r'<div class="l err" id="L(\d+)">', page)
        assert err is not None and err.group(1) == "7", page
        assert "AssertionError" in page.split('class="l err"', 1)[1].split("</div>", 1)[0]
        assert len(re.findall(r'class="l err"', page)) == 1
        # Steps folded; the failing one open, with its result.
        build = re.search(r'<details class="step" id="step-0"( open)?>', page)
        test = re.search(r'<details class="step" id="step-1"( open)?>', page)
        assert build is not None and build.group(1) is None
        assert test is not None and test.group(1) == " open"
        assert "failed (exit 1)" in page
        assert 'id="step-pre"' in page and "workspace: new clone" in page
        # Machine, market, attempts; no retry button without the admin token, and for a
        # local pipeline no advice to comment on a pull request.
        assert "g6.xlarge" in page and "spot" in page
        assert f"ployd retry {job}</code> on the server" in page and 'id="retry"' not in page
        assert "/ployd" not in page and "pull request" not in page
        # The cause, named, linked to its line; the attempt says why it ended.
        cause = page.split('id="cause"', 1)[1].split("</section>", 1)[0]
        assert 'href="#L7"' in cause and "AssertionError: 1 != 2" in cause
        assert "failed</span>: a step failed (exit 1) · started: pipeline started" in page
        assert "data-events=" not in page  # finished: nothing to follow


async def test_403_without_a_valid_token_everywhere(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        job = await failed_job(w)
        good = w.token(job)
        for suffix in ("", "/raw", "/events"):
            base = f"{w.url}/runs/{job}{suffix}"
            for query in ("", "?t=", "?t=forged.token", f"?t={good}x", "?t=zz.zz"):
                status, _, _ = await w.get(base + query)
                assert status == 403, (suffix, query)
            status, _, _ = await w.get(f"{base}?t={good}")
            assert status == 200, suffix
        # Another job's token does not open this one, nor does it open a missing job.
        other = w.job_id(w.pipeline())
        status, _, _ = await w.get(f"{w.url}/runs/{job}?t={w.token(other)}")
        assert status == 403
        status, _, _ = await w.get(f"{w.url}/runs/99999?t={good}")
        assert status == 403
        async with w.http.post(f"{w.url}/runs/{job}/retry?t=bad") as r:
            assert r.status == 403


async def test_one_installations_token_never_opens_anothers_logs(
    log_world: Callable[..., Any],
) -> None:
    async with log_world(admin_token="root-token") as w:
        a = await failed_job(w, tenant="111", forge="github", repo="acme/app")
        b = await failed_job(w, tenant="222", forge="github", repo="globex/app")
        assert w.tenant_of(a) != w.tenant_of(b)
        for job in (a, b):
            status, _, _ = await w.get(w.link(job))
            assert status == 200
        # b's token, with a's job id (and the reverse), in every URL: 403.
        for mine, theirs in ((a, b), (b, a)):
            for suffix in ("", "/raw", "/events"):
                url = f"{w.url}/runs/{mine}{suffix}?t={w.token(theirs)}"
                status, text, _ = await w.get(url)
                assert status == 403, (mine, suffix)
                assert "AssertionError" not in text


async def test_raw_download_and_ranges(log_world: Callable[..., Any]) -> None:
    async with log_world() as w:
        job = await failed_job(w)
        status, text, headers = await w.get(w.link(job, "/raw"))
        assert status == 200 and text.startswith("workspace: new clone\n")
        assert headers["Accept-Ranges"] == "bytes" and "Content-Disposition" not in headers
        full = text.encode()
        status, _, headers = await w.get(w.link(job, "/raw", download=1))
        assert headers["Content-Disposition"].startswith("attachment; filename=")
        assert headers["Content-Disposition"].endswith('.log"')
        for rng, want in (
            ("bytes=0-8", full[:9]),
            ("bytes=10-", full[10:]),
            ("bytes=-7", full[-7:]),
        ):
            async with w.http.get(w.link(job, "/raw"), headers={"Range": rng}) as r:
                assert r.status == 206, rng
                assert await r.read() == want
                assert r.headers["Content-Range"].endswith(f"/{len(full)}")
        async with w.http.get(w.link(job, "/raw"), headers={"Range": "bytes=99999-"}) as r:
            assert r.status == 416


async def test_retry_button_needs_the_admin_token(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        job = await failed_job(w)
        _, page, _ = await w.get(w.link(job))
        assert 'id="retry"' not in page and f"ployd retry {job}" in page
        cookies = {"ployd_admin": "root-token"}
        _, page, _ = await w.get(w.link(job), cookies=cookies)
        assert 'id="retry"' in page
        async with w.http.post(w.link(job, "/retry"), allow_redirects=False) as r:
            assert r.status == 403
        async with w.http.post(
            w.link(job, "/retry"),
            allow_redirects=False,
            headers={"Authorization": "Bearer root-token", "Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403
        async with w.http.post(
            w.link(job, "/retry"),
            allow_redirects=False,
            headers={"Authorization": "Bearer root-token"},
        ) as r:
            assert r.status == 303
            assert r.headers["Location"].startswith(f"/runs/{job}?t=")
        _, page, _ = await w.get(w.link(job))
        assert "attempt 2" in page and "retried by admin (log page)" in page


async def read_events(resp: aiohttp.ClientResponse, until: str) -> list[tuple[str, Any]]:
    """SSE events until one named ``until`` (with a deadline)."""
    events: list[tuple[str, Any]] = []
    name, data = "", ""
    async with asyncio.timeout(20):
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                events.append((name, json.loads(data)))
                if name == until:
                    return events
                name, data = "", ""
    return events


@pytest.mark.parametrize("store", ["disk", "s3"])
async def test_live_tail_over_sse(log_world: Callable[..., Any], store: str) -> None:
    async with log_world(store) as w:
        pid = w.pipeline(one_job(steps=("Train",)))
        job = w.job_id(pid)
        c = await w.claim()
        w.step(c, 0, "running")
        w.log(c, "epoch 1\npartial")
        _, page, _ = await w.get(w.link(job))
        assert 'data-events="' in page and 'id="live"' in page
        events_url = re.search(r'data-events="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert "offset=8" in events_url  # after "epoch 1\n": the partial line waits
        async with w.http.get(w.url + events_url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            w.log(c, " line\n\x1b[31mepoch 2\x1b[0m\n")
            first = await read_events(resp, "lines")
            rows = first[-1][1]["rows"]
            assert rows[0][0] == "0"
            assert 'id="L2"' in rows[0][1] and "partial line" in rows[0][1]
            assert '<span class="f1">epoch 2</span>' in rows[0][1] and 'id="L3"' in rows[0][1]
            w.log(c, "tail without newline")
            w.step(c, 0, "succeeded", 0)
            w.finish(c, "succeeded")
            rest = await read_events(resp, "end")
        names = [n for n, _ in rest]
        assert names[-1] == "end" and rest[-1][1]["state"] == "succeeded"
        last_rows = [r for n, d in rest if n == "lines" for r in d["rows"]]
        assert any("tail without newline" in r[1] and 'id="L4"' in r[1] for r in last_rows)
        # Resuming with Last-Event-ID sends only what came after.
        async with w.http.get(
            w.link(job, "/events", attempt=1), headers={"Last-Event-ID": "8"}
        ) as resp:
            events = await read_events(resp, "end")
        html = "".join(r[1] for n, d in events if n == "lines" for r in d["rows"])
        assert "epoch 1" not in html and 'id="L2"' in html


async def test_a_job_that_has_not_started_is_followed(log_world: Callable[..., Any]) -> None:
    async with log_world() as w:
        pid = w.pipeline()
        job = w.job_id(pid)
        status, page, _ = await w.get(w.link(job))
        assert status == 200 and 'data-events="' in page
        url = re.search(r'data-events="([^"]+)"', page).group(1).replace("&amp;", "&")
        async with w.http.get(w.url + url) as resp:
            c = await w.claim()
            w.step(c, 0, "running")
            w.log(c, "hello\n")
            events = await read_events(resp, "lines")
        assert "hello" in events[-1][1]["rows"][0][1]
