"""Bench: trigger -> first step started, on a warm local agent.

Starts `ployd serve` in-process (SQLite in a temp dir, the local executor with one warm
agent), then 50 times: POST /api/v1/pipelines for a real git repository whose one job's
first step writes the wall-clock time it started; the latency is that time minus the
time just before the POST. Baseline, measured in the same run: starting the same step
directly with `bash -c` (the floor any runner pays). Prints p50 and p95 of both.
Target: p50 at or under 98 ms (the figure measured before the agent was rebuilt; it must
not regress).

Usage: python bench/bench_trigger.py [-n 50]
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

TARGET_P50_S = 0.098
CONFIG = f"version: 1\njobs:\n  first:\n    steps:\n      - run: {STEP}\n"


async def measure(n: int, isolation: str) -> list[float]:
    import aiohttp

    from app.server import start_server
    from app.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # unsandboxed steps of a root server run as ployd-job
        repo, stamps = stamped_repo(root, CONFIG)
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=root / "data",
            local_agents=1,
            step_isolation=isolation,
        )
        server = await start_server(settings)
        try:
            async with aiohttp.ClientSession() as http:
                trigger = Trigger(server, http, repo, stamps)
                await trigger.once()  # warm-up: first clone of the workspace
                return [await trigger.once() for _ in range(n)]
        finally:
            await server.stop()


async def run(n: int) -> int:
    # Side by side: steps in the sandbox (the default where bubblewrap is installed) and
    # without it (their own user and environment only), then plain bash.
    latencies = await measure(n, "auto")
    unboxed = await measure(n, "none")
    baseline = bash_baseline(n)
    p50, p95 = percentile(latencies, 50) or 0.0, percentile(latencies, 95) or 0.0
    u50, u95 = percentile(unboxed, 50) or 0.0, percentile(unboxed, 95) or 0.0
    b50, b95 = percentile(baseline, 50) or 1e-9, percentile(baseline, 95) or 0.0
    print(f"trigger -> first step started, warm local agent (n={n})")
    print(f"  ployd serve:  p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms  (steps sandboxed)")
    print(f"  no sandbox:   p50 {u50 * 1000:7.1f} ms   p95 {u95 * 1000:7.1f} ms  (isolation none)")
    print(f"  bash -c:      p50 {b50 * 1000:7.1f} ms   p95 {b95 * 1000:7.1f} ms  (baseline)")
    print(f"  ratio p50:    {p50 / b50:7.1f} x bash, sandbox costs {(p50 - u50) * 1000:.1f} ms")
    ok = p50 <= TARGET_P50_S
    print(f"  target p50 <= {TARGET_P50_S * 1000:.0f} ms: {'OK' if ok else 'TOO SLOW'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50)
    return asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    sys.exit(main())
