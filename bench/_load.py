"""Open-loop load generator for bench_webhooks.py, run as a subprocess.

Reads one JSON job per line on stdin, answers one JSON result per line on stdout:

    job:    {"url": ..., "rate": 200, "n": 500, "event": "pull_request",
             "body_file": "/tmp/...json", "secret": "...", "prefix": "lvl200-"}
    result: {"latencies_ms": [...], "statuses": {"202": 500}, "elapsed_s": ...,
             "lag_ms_p99": ..., "lag_ms_max": ..., "errors": 0}

Open loop: request i is started at t0 + i/rate whatever happened to the earlier ones
(each is its own task), so "200 deliveries per second" is the offered rate. A latency
is measured from the moment the request is actually started (just before the POST) to
the moment its whole answer was read; ``lag`` is how late the client started requests
against the schedule (the client keeping up is a precondition of trusting the numbers).
Every delivery carries a unique ``X-GitHub-Delivery``; the body (and so its signature,
which covers the body only) is the same for all of them. Keep-alive connections, no
limit on their number. Exits at EOF on stdin.

With ``"mode": "closed"`` (and ``concurrency``, ``duration_s`` instead of ``rate``,
``n``) it runs as wrk does instead: a fixed number of connections, each sending the next
request as soon as the last answer is read: the most a server answers per second.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def run_job(http: aiohttp.ClientSession, job: dict[str, Any]) -> dict[str, Any]:
    body = Path(job["body_file"]).read_bytes()
    signature = "sha256=" + hmac.new(job["secret"].encode(), body, hashlib.sha256).hexdigest()
    n, rate = int(job["n"]), float(job["rate"])
    base = {
        "X-GitHub-Event": job["event"],
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }
    headers = [dict(base, **{"X-GitHub-Delivery": f"{job['prefix']}{i}"}) for i in range(n)]
    latencies: list[float] = []
    lags: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    last_done = 0.0

    async def one(i: int) -> None:
        nonlocal errors, last_done
        t = time.perf_counter()
        try:
            async with http.post(job["url"], data=body, headers=headers[i]) as r:
                await r.read()
                statuses[str(r.status)] += 1
        except Exception:  # a refused or reset connection is a result too
            errors += 1
            return
        done = time.perf_counter()
        last_done = max(last_done, done)
        latencies.append((done - t) * 1000)

    tasks = []
    t0 = time.perf_counter() + 0.01
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.perf_counter() - due) * 1000)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = (last_done or time.perf_counter()) - t0
    return {
        "latencies_ms": latencies,
        "statuses": dict(statuses),
        "elapsed_s": elapsed,
        "lag_ms_p99": _pct(lags, 99),
        "lag_ms_max": max(lags) if lags else 0.0,
        "errors": errors,
    }


async def run_closed(http: aiohttp.ClientSession, job: dict[str, Any]) -> dict[str, Any]:
    """Closed loop, as wrk runs: ``concurrency`` connections, each sending its next
    request as soon as the answer to the last one is read, for ``duration_s``."""
    body = Path(job["body_file"]).read_bytes()
    signature = "sha256=" + hmac.new(job["secret"].encode(), body, hashlib.sha256).hexdigest()
    base = {
        "X-GitHub-Event": job["event"],
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    ok_ids: list[str] = []
    errors = 0
    end = time.perf_counter() + float(job["duration_s"])

    async def worker(w: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < end:
            delivery = f"{job['prefix']}{w}-{i}"
            i += 1
            headers = dict(base, **{"X-GitHub-Delivery": delivery})
            t = time.perf_counter()
            try:
                async with http.post(job["url"], data=body, headers=headers) as r:
                    await r.read()
                    statuses[str(r.status)] += 1
                    if 200 <= r.status < 300:
                        ok_ids.append(delivery)
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(int(job["concurrency"]))))
    return {
        "latencies_ms": latencies,
        "statuses": dict(statuses),
        "elapsed_s": time.perf_counter() - t0,
        "lag_ms_p99": 0.0,
        "lag_ms_max": 0.0,
        "errors": errors,
        "ok_ids": ok_ids if job.get("want_ids") else [],
    }


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        while line := await reader.readline():
            if not line.strip():
                continue
            job = json.loads(line)
            run = run_closed if job.get("mode") == "closed" else run_job
            result = await run(http, job)
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
