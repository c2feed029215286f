"""Bench: agent start -> registered, for a self-hosted agent with a pool's token.

Starts `ployd serve` in-process (SQLite in a temp dir, no local agents), then n times:
makes a one-time registration token for a pool, starts `python -m app.agent --server URL`
with it (a real process: interpreter start, imports, hardware detection, the register
call), and measures from just before the process is spawned to the server's
``AgentRegistered`` event; the agent is then stopped (SIGTERM). Baseline, measured in the
same run: `python -c pass` (the interpreter start any agent pays). Prints p50 and p95 of
both. Target: p50 under 1 s.

Usage: python bench/bench_register.py [-n 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
TARGET_P50_S = 1.0


async def run(n: int) -> int:
    from app.engine.events import AgentRegistered
    from app.server import start_server
    from app.settings import Settings

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(host="127.0.0.1", port=0, data_dir=root / "data", local_agents=0)
        server = await start_server(settings)
        registered = asyncio.Event()
        server.services.engine.events.subscribe(AgentRegistered, lambda _e: registered.set())
        try:
            for i in range(n):
                token = server.services.pools.create_token("bench", ["*"]).token
                registered.clear()
                t0 = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "app.agent", "--server", server.url,
                    "--agent-id", f"bench-{i}", "--work-dir", str(root / "w"),
                    env={**env, "PLOYD_AGENT_TOKEN": token},
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )
                await asyncio.wait_for(registered.wait(), 30)
                latencies.append(time.perf_counter() - t0)
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        finally:
            await server.stop()
    baseline = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - t0)
    p50, p95 = percentile(latencies, 50) or 0.0, percentile(latencies, 95) or 0.0
    b50, b95 = percentile(baseline, 50) or 1e-9, percentile(baseline, 95) or 0.0
    print(f"agent start -> registered, self-hosted agent with a pool token (n={n})")
    print(f"  agent:            p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms")
    print(f"  python -c pass:   p50 {b50 * 1000:7.1f} ms   p95 {b95 * 1000:7.1f} ms  (baseline)")
    ok = p50 < TARGET_P50_S
    print(f"  target p50 < {TARGET_P50_S * 1000:.0f} ms: {'OK' if ok else 'TOO SLOW'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    return asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    sys.exit(main())
