"""Bench: the log page's live tail and its first byte on a 100 MB log.

One `ployd serve` built with ``app.server.start_server`` (SQLite in a temp dir, logs on
disk, 0 local agents: this script plays the agent over the real agent API).

(a) Live tail latency: an SSE client follows a running job's page
    (``/runs/{job}/events?t=...``); the bench posts N log chunks, one line each, through
    the agent API (``POST /api/v1/agent/attempts/{id}/log``), one at a time, and times
    from just before each POST to the moment the SSE client has the line. Baseline in
    the same run: the round trip of that bare POST (the floor: the chunk stored and the
    answer back). Target: p50 < 250 ms.
(b) Time to first byte of the log page of a finished, failed job with a 100 MB log
    (written through the engine, 1 MB chunks, its error line in the middle of the last
    step), and the whole page's time; baseline: the first byte of the same log's raw
    download (``/runs/{job}/raw``). Target: page TTFB p50 < 200 ms.

Prints both figures with their ratios to the baselines; exits 0 when the targets are
met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.links import sign_job
from app.core.triggers import Event, EventKind
from app.engine.engine import RepoRef
from app.handlers.pipelines import plan
from app.protocol import FinishReport, LogChunk, StepReport
from app.server import Server, start_server
from app.settings import Settings
from app.store.models import Job, Pipeline

SECRET = "bench-logs-secret-0123456789"
CONFIG = """
version: 1
jobs:
  live:
    steps:
      - name: Stream
        run: "true"
  big:
    retry: {max: 0}
    steps:
      - name: Setup
        run: "true"
      - name: Test
        run: "true"
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def token_for(server: Server, job_id: int) -> str:
    with server.services.db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        tenant = job.pipeline.repository.tenant_id
    return sign_job(SECRET.encode(), job_id, tenant)


def jobs(server: Server, pid: int) -> dict[str, int]:
    with server.services.db.session() as s:
        p = s.get(Pipeline, pid)
        assert p is not None
        return {j.name: j.id for j in p.jobs}


async def claim(http: aiohttp.ClientSession, url: str, agent_token: str) -> tuple[int, str, str]:
    async with http.post(
        f"{url}/api/v1/agent/claim",
        json={"agent_id": f"bench-{time.monotonic_ns()}", "wait": 0},
        headers={"Authorization": f"Bearer {agent_token}"},
    ) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    return int(body["attempt_id"]), str(body["job_token"]), str(body["job"]["name"])


async def live_tail(server: Server, http: aiohttp.ClientSession, n: int) -> dict[str, float]:
    url, engine = server.url, server.services.engine
    agent_token = engine.new_agent_token()
    pid = engine.create_pipeline(
        RepoRef(forge="local", full_name="bench/logs", clone_url="file:///dev/null"),
        plan(
            CONFIG,
            Event(EventKind.API, ref="refs/heads/main", sha="b" * 40),
            server.services.catalog,
        )
        or (),
        ref="refs/heads/main",
        sha="b" * 40,
        trigger="api",
    )
    ids = jobs(server, pid)
    claimed = {}
    for _ in range(2):
        attempt, tok, name = await claim(http, url, agent_token)
        claimed[name] = (attempt, tok)
    attempt, tok = claimed["live"]
    auth = {"Authorization": f"Bearer {tok}"}
    log_url = f"{url}/api/v1/agent/attempts/{attempt}/log"
    await http.post(
        f"{url}/api/v1/agent/attempts/{attempt}/steps",
        json={"index": 0, "state": "running"},
        headers=auth,
    )
    job = ids["live"]
    events = f"{url}/runs/{job}/events?t={token_for(server, job)}&attempt=1&offset=0"
    arrived: dict[int, float] = {}
    got = asyncio.Event()

    async def follow() -> None:
        async with http.get(events) as resp:
            assert resp.status == 200
            name = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "lines":
                    now = time.perf_counter()
                    for _key, html in json.loads(line[6:])["rows"]:
                        for part in html.split("stamp-")[1:]:
                            arrived.setdefault(int(part.split("<", 1)[0].split()[0]), now)
                    got.set()

    follower = asyncio.create_task(follow())
    # The stream is open once it has answered its first bytes: send a first line.
    latencies, posts = [], []
    for seq, i in enumerate(range(-1, n)):
        got.clear()
        t0 = time.perf_counter()
        async with http.post(
            log_url, json={"seq": seq, "data": f"stamp-{i} line\n"}, headers=auth
        ) as r:
            assert r.status == 200, await r.text()
        t1 = time.perf_counter()
        async with asyncio.timeout(10):
            while i not in arrived:
                await got.wait()
                got.clear()
        if i >= 0:  # the first line only opened the stream
            latencies.append((arrived[i] - t0) * 1000)
            posts.append((t1 - t0) * 1000)
    follower.cancel()
    server.services.engine.finish(attempt, tok, FinishReport("succeeded"))
    big_attempt, big_tok = claimed["big"]
    server.bench_big = (ids["big"], big_attempt, big_tok)  # type: ignore[attr-defined]
    return {
        "p50": statistics.median(latencies),
        "p95": pct(latencies, 95),
        "post_p50": statistics.median(posts),
        "post_p95": pct(posts, 95),
    }


def write_big_log(server: Server, size_mb: int) -> int:
    job, attempt, tok = server.bench_big  # type: ignore[attr-defined]
    engine = server.services.engine
    line = "epoch 3 step 1200 loss=0.4312 lr=3e-4 \x1b[32mok\x1b[0m " + "." * 40 + "\n"
    block = line * ((1 << 20) // len(line))
    seq = 0
    engine.record_step(attempt, tok, StepReport(0, "running"))
    engine.record_log(attempt, tok, LogChunk(seq, "setting up\n"))
    seq += 1
    engine.record_step(attempt, tok, StepReport(0, "succeeded", 0))
    engine.record_step(attempt, tok, StepReport(1, "running"))
    for i in range(size_mb):
        data = block if i != size_mb - 1 else "E   AssertionError: loss diverged\n" + block
        engine.record_log(attempt, tok, LogChunk(seq, data))
        seq += 1
    engine.record_step(attempt, tok, StepReport(1, "failed", 1))
    engine.finish(attempt, tok, FinishReport("failed", failed_step=1, exit_code=1))
    with server.services.db.session() as s:
        from app.store.models import Attempt

        found = s.get(Attempt, attempt)
        assert found is not None and found.log_path
        server.bench_big_path = found.log_path  # type: ignore[attr-defined]
    return job


async def first_byte(http: aiohttp.ClientSession, url: str) -> tuple[float, float, int]:
    """(ms to the first body byte, ms to the whole body, bytes)."""
    t0 = time.perf_counter()
    async with http.get(url) as r:
        assert r.status == 200, r.status
        first = await r.content.readany()
        t1 = time.perf_counter()
        n = len(first)
        while True:
            chunk = await r.content.readany()
            if not chunk:
                break
            n += len(chunk)
        t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t0) * 1000, n


async def first_byte_only(http: aiohttp.ClientSession, url: str) -> float:
    """ms to the first body byte; the rest is not downloaded (the connection closes)."""
    t0 = time.perf_counter()
    async with http.get(url) as r:
        assert r.status == 200, r.status
        await r.content.readany()
        t1 = time.perf_counter()
        r.close()
    return (t1 - t0) * 1000


async def page_ttfb(
    server: Server, http: aiohttp.ClientSession, size_mb: int, runs: int
) -> dict[str, float]:
    job = await asyncio.to_thread(write_big_log, server, size_mb)
    t = token_for(server, job)
    page = f"{server.url}/runs/{job}?t={t}"
    raw = f"{server.url}/runs/{job}/raw?t={t}"
    await first_byte(http, page)  # warm: imports, page cache
    ttfb, full, raw_ttfb, page_bytes = [], [], [], 0
    for _ in range(runs):
        a, b, page_bytes = await first_byte(http, page)
        ttfb.append(a)
        full.append(b)
        raw_ttfb.append(await first_byte_only(http, raw))
    size = server.services.logs.size(server.bench_big_path)  # type: ignore[attr-defined]
    return {
        "ttfb_p50": statistics.median(ttfb),
        "ttfb_p95": pct(ttfb, 95),
        "full_p50": statistics.median(full),
        "raw_ttfb_p50": statistics.median(raw_ttfb),
        "page_kb": page_bytes / 1024,
        "log_mb": size / (1 << 20),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=50)
    ap.add_argument("--log-mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ployd-bench-logs-") as tmp:
        settings = Settings(
            host="127.0.0.1", port=0, data_dir=Path(tmp), local_agents=0, secret_key=SECRET
        )
        server = await start_server(settings)
        try:
            async with aiohttp.ClientSession() as http:
                live = await live_tail(server, http, args.lines)
                page = await page_ttfb(server, http, args.log_mb, args.runs)
        finally:
            await server.stop()
    ok_live = live["p50"] < 250
    ok_page = page["ttfb_p50"] < 200
    print(f"(a) live tail, {args.lines} lines: chunk POST -> line at the SSE client")
    print(f"    p50 {live['p50']:.1f} ms, p95 {live['p95']:.1f} ms   (target p50 < 250 ms)")
    print(
        f"    baseline: the bare POST round trip p50 {live['post_p50']:.1f} ms, "
        f"p95 {live['post_p95']:.1f} ms"
    )
    print(
        f"    ratio p50 {live['p50'] / live['post_p50']:.2f}x the POST round trip   "
        f"{'OK' if ok_live else 'MISSED'}"
    )
    print(
        f"(b) log page of a {page['log_mb']:.0f} MB log ({args.runs} runs, "
        f"page {page['page_kb']:.0f} KB)"
    )
    print(
        f"    time to first byte p50 {page['ttfb_p50']:.1f} ms, p95 {page['ttfb_p95']:.1f} ms"
        f"   (target p50 < 200 ms)"
    )
    print(f"    whole page p50 {page['full_p50']:.1f} ms")
    print(
        f"    baseline: the raw download's first byte p50 {page['raw_ttfb_p50']:.1f} ms; "
        f"ratio TTFB {page['ttfb_p50'] / page['raw_ttfb_p50']:.2f}x, whole page "
        f"{page['full_p50'] / page['raw_ttfb_p50']:.2f}x   {'OK' if ok_page else 'MISSED'}"
    )
    return 0 if ok_live and ok_page else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
