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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stamps import STEP, Trigger, bash_baseline, stamped_repo

from app.core.stats import percentile

TARGET_P50_S = 0.300
CONFIG = f"version: 1\njobs:\n  gpu:\n    hardware: l4\n    steps:\n      - run: {STEP}\n"


async def run(n: int) -> int:
    import logging

    import aiohttp
    from moto.server import ThreadedMotoServer

    from app.core.ec2_policy import EC2Policy
    from app.server import start_server
    from app.settings import Settings
    from tests.e2e.conftest import Harness
    from tests.e2e.ec2_world import EC2World

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            repo, stamps = stamped_repo(root, CONFIG)
            world = EC2World(f"http://{host}:{port}", "us-east-2", root)
            config = world.network()
            settings = Settings(
                port=0,
                data_dir=root / "data",
                local_agents=0,
                secret_key="test-secret-key-0123456789abcdef",
            )
            server = await start_server(settings)
            async with aiohttp.ClientSession() as http:
                world.h = Harness(server, http)
                await world.start_executor(EC2Policy(), config)
                trigger = Trigger(server, http, repo, stamps)
                try:
                    cold = await trigger.once()  # boots the machine; then it waits in its pool
                    warm = [await trigger.once() for _ in range(n)]
                    launches = len(world.launched)
                finally:
                    await world.stop()
                    await server.stop()
    finally:
        moto.stop()
    baseline = bash_baseline(n)
    p50, p95 = percentile(warm, 50) or 0.0, percentile(warm, 95) or 0.0
    b50 = percentile(baseline, 50) or 1e-9
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
