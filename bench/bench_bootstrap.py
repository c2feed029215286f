"""Bench: how fast a machine joins.

* bootstrap: the EC2 user data executed for real in a throwaway root (``systemctl`` and
  ``shutdown`` stubbed, as in tests/e2e), from the script's start to the agent's first
  claim reaching `ployd serve` on loopback: checks python3, downloads the agent from the
  server and checks its SHA-256, writes the unit and starts the agent. Target: < 5 s.
* agent start: ``python3 -I ployd-agent-VERSION.pyz --server ...`` from the process's
  start to its first claim reaching the server. Target: < 1 s.

Baseline in the same run: ``python3 -c pass`` (start and exit of the same interpreter).

Usage: python bench/bench_bootstrap.py [-n 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.stats import percentile

TARGET_BOOTSTRAP_S = 5.0
TARGET_AGENT_S = 1.0


class FirstClaims:
    """The time each agent's first claim reached the server (wraps the engine's token
    check, which every claim goes through first)."""

    def __init__(self, engine: object) -> None:
        self.at: dict[str, float] = {}
        self._seen = asyncio.Event()
        original = engine.authenticate  # type: ignore[attr-defined]

        def authenticate(token: str, claim: object) -> object:
            agent_id = getattr(claim, "agent_id", claim)  # a ClaimRequest, or an id
            if agent_id not in self.at:
                self.at[str(agent_id)] = time.perf_counter()
                self._seen.set()
            return original(token, claim)

        engine.authenticate = authenticate  # type: ignore[attr-defined]

    async def wait(self, agent_id: str, timeout: float = 60.0) -> float:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while agent_id not in self.at:
            self._seen.clear()
            await asyncio.wait_for(self._seen.wait(), max(end - loop.time(), 0.001))
        return self.at[agent_id]


def baseline(python: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        out.append(time.perf_counter() - t0)
    return out


async def run(n: int) -> int:
    from app.adapters.ec2.userdata import user_data
    from app.server import start_server
    from app.settings import Settings
    from tests.e2e.machine import Machine

    python = shutil.which("python3") or sys.executable
    boots: list[float] = []
    starts: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(host="127.0.0.1", port=0, data_dir=root / "data", local_agents=0)
        server = await start_server(settings)
        try:
            claims = FirstClaims(server.services.engine)
            agent = server.services.agent
            package = agent.write(root / "opt")
            for i in range(n):
                m = Machine(root / f"machine-{i}")
                script = user_data(
                    server.url,
                    server.services.engine.new_registration_token(),  # one per machine
                    f"boot-{i}",
                    agent_url=f"{server.url}/agent/ployd-agent.pyz",
                    agent_sha256=agent.sha256,
                )
                try:
                    t0 = time.perf_counter()
                    code = await m.run(script)
                    assert code == 0, m.output
                    boots.append(await claims.wait(f"boot-{i}") - t0)
                finally:
                    await m.stopped()
                token = server.services.engine.new_registration_token()
                t0 = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    python, "-I", str(package), "--server", server.url, "--token", token,
                    "--agent-id", f"start-{i}", "--work-dir", str(root / f"work-{i}"),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")},
                )
                try:
                    starts.append(await claims.wait(f"start-{i}") - t0)
                finally:
                    proc.terminate()
                    await proc.wait()
        finally:
            await server.stop()
    base = baseline(python, n)
    b50 = percentile(base, 50) or 1e-9
    version = subprocess.run([python, "-V"], capture_output=True, text=True).stdout.strip()
    print(f"machine joins: first claim reaching `ployd serve` on loopback, n={n} ({version})")
    ok = True
    for what, values, target in (
        ("bootstrap script start", boots, TARGET_BOOTSTRAP_S),
        ("agent (pyz) start", starts, TARGET_AGENT_S),
    ):
        p50, p95 = percentile(values, 50) or 0.0, percentile(values, 95) or 0.0
        good = p95 < target
        ok = ok and good
        print(
            f"  {what:24} p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   "
            f"ratio p50 {p50 / b50:5.1f} x   target < {target * 1000:.0f} ms: "
            f"{'OK' if good else 'TOO SLOW'}"
        )
    print(f"  {'python3 -c pass':24} p50 {b50 * 1000:7.1f} ms   (baseline)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    return asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    sys.exit(main())
