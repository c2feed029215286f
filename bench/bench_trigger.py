"""Bench: trigger -> first step started, on a warm local agent.

Starts `ployd serve` in-process (SQLite in a temp dir, the local executor with one warm
agent), then 50 times: POST /api/v1/pipelines for a real git repository whose one job's
first step writes the wall-clock time it started; the latency is that time minus the
time just before the POST. Baseline, measured in the same run: starting the same step
directly with `bash -c` (the floor any runner pays). Prints p50 and p95 of both.
Target: p50 under 150 ms.

Usage: python bench/bench_trigger.py [-n 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_P50_S = 0.150

CONFIG = """\
version: 1
jobs:
  first:
    steps:
      - run: date +%s.%N > "$STAMP_DIR/$PLOYD_PIPELINE_ID"
"""


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def run(n: int) -> int:
    import aiohttp

    from app.server import start_server
    from app.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stamps = root / "stamps"
        stamps.mkdir()
        repo = root / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        (repo / ".ployd.yml").write_text(CONFIG)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "bench")
        os.environ["STAMP_DIR"] = str(stamps)  # inherited by the agent and its steps

        settings = Settings(host="127.0.0.1", port=0, data_dir=root / "data", local_agents=1)
        server = await start_server(settings)
        engine = server.services.engine
        done = asyncio.Event()
        engine.listeners.append(lambda _ids: done.set())

        async def one(http: aiohttp.ClientSession) -> float:
            t0 = time.time()
            async with http.post(
                server.url + "/api/v1/pipelines", json={"repo": str(repo), "ref": "HEAD"}
            ) as r:
                body = await r.json()
                assert r.status == 201, body
            pid = body["id"]
            stamp = stamps / str(pid)
            while True:  # the pipeline's end is reported through the listener
                with engine.db.session() as s:
                    from app.store.models import Pipeline

                    p = s.get(Pipeline, pid)
                    assert p is not None
                    if p.state != "running":
                        break
                done.clear()
                await asyncio.wait_for(done.wait(), 30)
            return float(stamp.read_text()) - t0

        try:
            async with aiohttp.ClientSession() as http:
                await one(http)  # warm-up: first clone of the workspace
                latencies = [await one(http) for _ in range(n)]
        finally:
            await server.stop()

        baseline = []
        for _ in range(n):
            t0 = time.time()
            out = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", "date +%s.%N"],
                check=True,
                capture_output=True,
                text=True,
            )
            baseline.append(float(out.stdout) - t0)

    p50, p95 = pct(latencies, 50), pct(latencies, 95)
    b50, b95 = pct(baseline, 50), pct(baseline, 95)
    print(f"trigger -> first step started, warm local agent (n={n})")
    print(f"  ployd serve:  p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms")
    print(f"  bash -c:      p50 {b50 * 1000:7.1f} ms   p95 {b95 * 1000:7.1f} ms  (baseline)")
    print(f"  ratio p50:    {p50 / b50:7.1f} x   mean {statistics.mean(latencies) * 1000:.1f} ms")
    ok = p50 < TARGET_P50_S
    print(f"  target p50 < {TARGET_P50_S * 1000:.0f} ms: {'OK' if ok else 'TOO SLOW'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50)
    return asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    sys.exit(main())
