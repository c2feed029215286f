"""Bench: trigger -> first step started on a warm EC2 pool machine (simulated).

moto's server on loopback stands in for EC2, reached through its endpoint URL; a machine
is "booted" by starting the real agent locally with the registration token from the user
data moto recorded (as the tests do). One job warms the pool; then N times: POST
/api/v1/pipelines for a job on the same hardware, whose first step writes the wall-clock
time it started; latency = that time minus the time just before the POST. Baseline in the
same run: the same step started directly with `bash -c`. Target: p50 under 300 ms.

Usage: python bench/bench_ec2_warm.py [-n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_P50_S = 0.300
CONFIG = """\
version: 1
jobs:
  gpu:
    hardware: l4
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
    import logging

    import aiohttp
    from moto.server import ThreadedMotoServer

    from app.executors.ec2_policy import EC2Policy
    from app.server import start_server
    from app.settings import Settings
    from app.store.models import Pipeline
    from tests.e2e.conftest import Harness
    from tests.e2e.ec2_world import EC2World

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            stamps = root / "stamps"
            stamps.mkdir()
            os.environ["STAMP_DIR"] = str(stamps)
            repo = root / "repo"
            repo.mkdir()
            git(repo, "init", "-q", "-b", "main")
            (repo / ".ployd.yml").write_text(CONFIG)
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "bench")
            world = EC2World(f"http://{host}:{port}", "us-east-2", root)
            config = world.network()
            settings = Settings(port=0, data_dir=root / "data", local_agents=0, secret_key="k")
            server = await start_server(settings)
            engine = server.services.engine
            done = asyncio.Event()
            engine.listeners.append(lambda _ids: done.set())
            async with aiohttp.ClientSession() as http:
                world.h = Harness(server, http)
                await world.start_executor(EC2Policy(), config)

                async def one() -> float:
                    t0 = time.time()
                    async with http.post(
                        server.url + "/api/v1/pipelines", json={"repo": str(repo)}
                    ) as r:
                        pid = (await r.json())["id"]
                    while True:
                        with engine.db.session() as s:
                            p = s.get(Pipeline, pid)
                            assert p is not None
                            if p.state != "running":
                                assert p.state == "succeeded", p.state
                                break
                        done.clear()
                        await asyncio.wait_for(done.wait(), 60)
                    return float((stamps / str(pid)).read_text()) - t0

                try:
                    cold = await one()  # boots the machine; it then waits in its pool
                    warm = [await one() for _ in range(n)]
                    launches = len(world.launched)
                finally:
                    await world.stop()
                    await server.stop()
        baseline = []
        for _ in range(n):
            t0 = time.time()
            out = subprocess.run(
                ["bash", "-c", "date +%s.%N"], capture_output=True, text=True, check=True
            )
            baseline.append(float(out.stdout) - t0)
    finally:
        moto.stop()
    p50, p95 = pct(warm, 50), pct(warm, 95)
    b50 = pct(baseline, 50)
    print(f"trigger -> first step started on a warm EC2 pool machine (simulated), n={n}")
    print(f"  cold (machine boot, first clone): {cold * 1000:8.1f} ms")
    print(
        f"  warm pool:   p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms  "
        f"({launches} machine launched in all)"
    )
    print(f"  bash -c:     p50 {b50 * 1000:7.1f} ms  (baseline)   ratio p50 {p50 / b50:.1f} x")
    ok = p50 < TARGET_P50_S and launches == 1
    print(
        f"  target p50 < {TARGET_P50_S * 1000:.0f} ms on the warm machine: "
        f"{'OK' if ok else 'TOO SLOW'}"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=30)
    return asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    sys.exit(main())
