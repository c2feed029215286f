"""The job page's newer parts through real HTTP: operators without a token, the page
that says how to get access, the cause box with its way out (retry on a bigger GPU),
forge advice only for forge pipelines, the pipeline's summary for a visitor by link,
the whole-log search, and the header that settles when the live attempt ends."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.logs.test_page import failed_job, read_events
from tests.logs.test_store import objects
from tests.logs.world import LogWorld, one_job

OOM_LOG = (
    "Epoch 1/3\n"
    "Traceback (most recent call last):\n"
    '  File "train.py", line 9, in <module>\n'
    "    loss.backward()\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
)
GPU_JOB = (
    "version: 1\njobs:\n  train:\n    hardware: l4\n    retry: {max: 0}\n"
    "    steps:\n      - name: Train\n        run: python train.py\n"
)


async def oom_job(w: LogWorld, **pipeline: Any) -> int:
    pid = w.pipeline(GPU_JOB, **pipeline)
    c = await w.claim()
    w.step(c, 0, "running")
    w.log(c, OOM_LOG)
    w.step(c, 0, "failed", 1)
    w.finish(c, "failed", failed_step=0, code=1)
    await w.settled()
    return w.job_id(pid, "train")


async def test_operators_need_no_token_and_others_are_told_how_to_get_in(
    log_world: Callable[..., Any],
) -> None:
    async with log_world() as w:  # no admin token: loopback, everyone is the operator
        job = await failed_job(w)
        status, page, _ = await w.get(f"{w.url}/runs/{job}")
        assert status == 200 and 'id="retry"' in page and 'href="/pipelines"' in page
    async with log_world(admin_token="root-token") as w:
        job = await failed_job(w)
        status, page, headers = await w.get(f"{w.url}/runs/{job}")
        assert status == 403 and headers["Content-Type"].startswith("text/html")
        assert "malformed token" not in page
        assert "Details" in page and f"ployd open {job}" in page and "/login?next=" in page
        status, page, _ = await w.get(f"{w.url}/runs/{job}?t=forged.token")
        assert status == 403 and "this link is not valid" in page
        status, page, _ = await w.get(
            f"{w.url}/runs/{job}", headers={"Authorization": "Bearer root-token"}
        )
        assert status == 200 and "AssertionError" in page


async def test_cuda_oom_offers_a_bigger_gpu(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        job = await oom_job(w, forge="github", tenant="77", repo="acme/train")
        _, page, _ = await w.get(w.link(job))  # a visitor by link: the command, no button
        cause = page.split('id="cause"', 1)[1].split("</section>", 1)[0]
        assert "CUDA out of memory" in cause and "retry on a bigger GPU (l40s:1)" in cause
        assert "/ployd retry train on l40s:1" in cause and 'id="retry-bigger"' not in cause
        err = re.search(r'<div class="l err" id="L(\d+)">', page)
        assert err is not None and err.group(1) == "5"  # the exception line, not "Traceback"
        admin = {"Authorization": "Bearer root-token"}
        _, page, _ = await w.get(w.link(job), headers=admin)
        assert 'id="retry-bigger"' in page and 'name="hardware" value="l40s:1"' in page
        async with w.http.post(
            w.link(job, "/retry"), data={"hardware": "no-such-gpu"}, headers=admin
        ) as r:
            assert r.status == 400 and "hardware" in await r.text()
        async with w.http.post(
            w.link(job, "/retry"),
            data={"hardware": "l40s:1"},
            headers=admin,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        _, page, _ = await w.get(w.link(job), headers=admin)
        assert "retried by admin (log page) on l40s:1" in page


async def test_a_local_pipeline_retries_on_a_bigger_gpu_by_button_and_by_api(
    log_world: Callable[..., Any],
) -> None:
    admin = {"Authorization": "Bearer root-token"}
    async with log_world(admin_token="root-token") as w:
        job = await oom_job(w)  # a local pipeline: the button, no forge advice
        _, page, _ = await w.get(w.link(job), headers=admin)
        cause = page.split('id="cause"', 1)[1].split("</section>", 1)[0]
        assert 'id="retry-bigger"' in cause and 'name="hardware" value="l40s:1"' in cause
        assert "/ployd" not in cause and "comment" not in cause
        assert f"or run <code>ployd retry {job} --on l40s:1</code>" in cause
        api = f"{w.url}/api/v1/jobs/{job}/retry"
        for bad, says in (
            ({"hardware": "h1000"}, "unknown hardware 'h1000'; did you mean h100? known: "),
            ({"hardware": "l4:64"}, "no l4 machine has 64 accelerators; l4 offers"),
            ({"hardware": 7}, "hardware must be a hardware spec CLASS[:COUNT]"),
            ({"hardware": ""}, "hardware must be a hardware spec CLASS[:COUNT]"),
        ):
            async with w.http.post(api, json=bad, headers=admin) as r:
                assert r.status == 400, bad
                assert says in (await r.json())["error"], bad
        async with w.http.post(api, json={"hardware": "L40S"}, headers=admin) as r:
            assert r.status == 201
            attempt_id = (await r.json())["attempt_id"]
        async with w.http.get(f"{w.url}/api/v1/jobs/{job}", headers=admin) as r:
            body = await r.json()
        assert body["hardware"] == ["l40s:1"] and body["candidates"]
        assert all(t.startswith("g6e.") for t in body["candidates"]), body["candidates"]
        assert body["attempts"][-1]["id"] == attempt_id
        assert body["attempts"][-1]["reason"] == "retried by api on l40s:1"
        # the page of the new attempt says so too
        _, page, _ = await w.get(w.link(job), headers=admin)
        assert "retried by api on l40s:1" in page


async def test_forge_advice_and_the_pipeline_summary_for_a_visitor(
    log_world: Callable[..., Any],
) -> None:
    async with log_world(admin_token="root-token") as w:
        pid = w.pipeline(
            one_job("lint") + "  unit:\n    steps: [{run: 'true'}]\n",
            forge="gitlab",
            tenant="9",
            repo="ml/models",
        )
        c = await w.claim()
        w.finish(c, "failed", failed_step=0, code=2)
        lint, unit = w.job_id(pid, "lint"), w.job_id(pid, "unit")
        job = lint if c.job_id == lint else unit
        other = unit if job == lint else lint
        _, page, _ = await w.get(w.link(job))
        assert "on the merge request" in page and "/ployd retry" in page
        summary = page.split('id="pipeline-summary"', 1)[1].split("</section>", 1)[0]
        m = re.search(rf'href="/runs/{other}\?t=([^"]+)"', summary)
        assert m is not None, summary  # the sibling's link is signed: it opens
        status, _, _ = await w.get(f"{w.url}/runs/{other}?t={m.group(1)}")
        assert status == 200
        assert 'href="/pipelines' not in page  # the pipeline pages are the operators'


async def test_search_covers_the_whole_log(log_world: Callable[..., Any]) -> None:
    async with log_world(admin_token="root-token") as w:
        pid = w.pipeline(one_job(steps=("Big",)))
        c = await w.claim()
        w.step(c, 0, "running")
        for part in range(3):  # 6000 lines: three pages' worth
            w.log(c, "".join(f"line {part * 2000 + i}\n" for i in range(2000)))
        w.log(c, "\x1b[31mneedle in the haystack\x1b[0m\nlast line\n")
        w.step(c, 0, "failed", 1)
        w.finish(c, "failed", failed_step=0, code=1)
        await w.settled()
        job = w.job_id(pid)
        async with w.http.get(w.link(job, "/search", q="LINE 17")) as r:
            body = await r.json()
        assert r.status == 200
        assert [m["line"] for m in body["matches"]][:3] == [18, 171, 172]
        assert body["lines"] == 6002 and not body["more"]
        async with w.http.get(w.link(job, "/search", q="needle")) as r:
            (hit,) = (await r.json())["matches"]
        assert hit["text"] == "needle in the haystack" and hit["line"] == 6001
        status, page, _ = await w.get(w.url + hit["href"].split("#")[0])
        assert status == 200 and 'id="L6001"' in page
        async with w.http.get(w.link(job, "/search", q="line")) as r:
            body = await r.json()
        assert len(body["matches"]) == 200 and body["more"]
        async with w.http.get(w.link(job, "/search", q="")) as r:
            assert r.status == 400 and "q:" in (await r.json())["error"]
        async with w.http.get(f"{w.url}/runs/{job}/search?q=line") as r:
            assert r.status == 403


async def test_the_header_settles_when_the_attempt_ends(log_world: Callable[..., Any]) -> None:
    async with log_world() as w:
        pid = w.pipeline(one_job(steps=("Train",)))
        job = w.job_id(pid)
        c = await w.claim()
        w.step(c, 0, "running")
        w.log(c, "epoch 1\n")
        _, page, _ = await w.get(w.link(job))
        events_url = re.search(r'data-events="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert 'attempt 1</b> · <span class="s-running">running</span>' in page
        async with w.http.get(w.url + events_url) as resp:
            await read_events(resp, "steps")  # the stream is up
            w.step(c, 0, "succeeded", 0)
            w.finish(c, "succeeded")
            events = await read_events(resp, "end")
        header = events[-1][1]["header"]
        assert events[-1][1]["state"] == "succeeded"
        assert '<span class="s-succeeded">succeeded</span>' in header
        assert "running" not in header.split('id="attempts"', 1)[1].split("</ol>", 1)[0]
        assert re.search(r"<dt>duration</dt><dd>\d+ms</dd>", header), header
        assert 'id="retry"' in header


def _events_url(page: str) -> str | None:
    m = re.search(r'<main id="log" data-events="([^"]+)"', page)
    return m.group(1).replace("&amp;", "&") if m else None


async def test_a_range_of_a_live_log_settles_and_its_last_page_follows(
    log_world: Callable[..., Any],
) -> None:
    async with log_world() as w:
        pid = w.pipeline(one_job(steps=("Train",)))
        job = w.job_id(pid)
        c = await w.claim()
        w.step(c, 0, "running")
        w.log(c, "".join(f"line {i}\n" for i in range(1, 2501)))
        size = sum(len(f"line {i}\n") for i in range(1, 2501))
        # the first page: not the tail, so no lines come; it is told when the log grows
        _, first, _ = await w.get(w.link(job, **{"from": 0}))
        url = _events_url(first)
        assert url is not None and "lines=0" in url and f"offset={size}" in url
        assert '<a id="grown" href="' in first and 'id="live"' not in first
        assert '<span class="shown" data-first="1">lines 1 to 2000</span>' in first
        # the last page ("later lines"): the live tail, from its end
        later = re.search(r'href="([^"]*)">↓ later lines', first)
        assert later is not None
        _, last, _ = await w.get(w.url + later.group(1).replace("&amp;", "&"))
        tail = _events_url(last)
        assert tail is not None and "lines=0" not in tail and f"offset={size}" in tail
        assert 'data-first="2001">lines 2001 to 2500</span>' in last and 'id="grown"' not in last
        async with w.http.get(w.url + url) as watch, w.http.get(w.url + tail) as follow:
            await read_events(watch, "steps")  # both streams are up
            await read_events(follow, "steps")
            w.log(c, "line 2501\nline 2502\n")
            grown = await read_events(watch, "grown")
            assert grown[-1][1] == {"size": size + 20}
            rows = await read_events(follow, "lines")
            assert rows[-1][1]["last"] == 2502 and "line 2502" in str(rows[-1][1]["rows"])
            w.step(c, 0, "succeeded", 0)
            w.finish(c, "succeeded")
            settled = await read_events(watch, "end")
            ended = await read_events(follow, "end")
        assert "lines" not in [name for name, _ in grown + settled]  # none to a range's page
        for events in (settled, ended):
            assert events[-1][1]["state"] == "succeeded"
            assert '<span class="s-succeeded">succeeded</span>' in events[-1][1]["header"]
        # once ended, no page of it follows anything
        for query in ({"from": 0}, {}):
            _, page, _ = await w.get(w.link(job, **query))
            assert _events_url(page) is None and 'id="grown"' not in page


@pytest.mark.parametrize("store", ["disk", "s3"])
async def test_lines_carry_the_time_their_chunk_arrived(
    log_world: Callable[..., Any], store: str
) -> None:
    import time

    async with log_world(store) as w:
        pid = w.pipeline(one_job(steps=("Train",)))
        c = await w.claim()
        w.step(c, 0, "running")
        before = time.time()
        w.log(c, "one\ntwo\n")
        w.log(c, "three\n")
        after = time.time()
        path = _log_path(w, pid)
        _, page, _ = await w.get(w.link(w.job_id(pid)))  # running: S3's from the rows
        _stamped(page, 3, before, after)
        w.step(c, 0, "failed", 1)
        w.finish(c, "failed", failed_step=0, code=1)
        await w.settled()
        _, page, _ = await w.get(w.link(w.job_id(pid)))
        assert 'id="ts-toggle"' in page
        _stamped(page, 3, before, after)  # one per line
        times = w.store.chunk_times(path)
        assert [off for off, _ in times] == [0, 8]  # "one\ntwo\n", then "three\n"
        assert all(before - 0.001 <= t <= after + 0.001 for _, t in times)
        if store == "s3":  # beside the log's object; another replica reads them there
            from app.logs.s3 import S3LogStore

            assert isinstance(w.store, S3LogStore)
            keys = [o["Key"] for o in objects(w, w.services.settings.aws_endpoint_url)]
            assert keys == [f"ployd/logs/{path}", f"ployd/logs/{path}.times"]
            assert S3LogStore(w.engine.db, w.store.config).chunk_times(path) == times


def _stamped(page: str, n: int, before: float, after: float) -> None:
    """``n`` lines on the page, each stamped with a time between ``before`` and ``after``."""
    from datetime import UTC, datetime, timedelta

    stamps = re.findall(r'<span class="ts">(\d\d):(\d\d):(\d\d)\.(\d{3})</span>', page)
    assert len(stamps) == n
    day = datetime.fromtimestamp(before, UTC)
    for h, m, s, ms in stamps:
        t = day.replace(hour=int(h), minute=int(m), second=int(s), microsecond=int(ms) * 1000)
        if t.timestamp() < before - 43200:  # the day turned between the two
            t += timedelta(days=1)
        assert before - 0.001 <= t.timestamp() <= after + 0.001


def _log_path(w: LogWorld, pid: int) -> str:
    from app.store.models import Job

    with w.engine.db.session() as s:
        job = s.get(Job, w.job_id(pid))
        assert job is not None
        path = job.attempts[-1].log_path
        assert path is not None
        return path


async def test_without_an_admin_token_a_public_address_means_links_only(
    log_world: Callable[..., Any],
) -> None:
    # Behind a proxy every visitor comes from loopback: PLOYD_PUBLIC_URL says so.
    async with log_world(public_url="https://ci.example.com") as w:
        job = await failed_job(w)
        status, page, _ = await w.get(f"{w.url}/runs/{job}")
        assert status == 403 and "AssertionError" not in page
        status, _, _ = await w.get(w.link(job))
        assert status == 200
        async with w.http.get(w.url + "/pipelines", allow_redirects=False) as r:
            assert r.status == 303
        async with w.http.get(w.url + "/") as r:
            assert r.status == 401
    async with log_world(public_url="http://127.0.0.1:8080") as w:
        job = await failed_job(w)
        status, _, _ = await w.get(f"{w.url}/runs/{job}")
        assert status == 200
