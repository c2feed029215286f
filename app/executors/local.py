"""The local executor: ``concurrency`` warm agent processes on this machine.

Each agent (``python -m app.agent --agent-id local-N``) long-polls the server for a job,
so a queued job starts within milliseconds. An agent that exits is reported through
``on_agent_exit(agent_id, returncode)`` (so the server can mark its running attempt
interrupted) and restarted, with a growing delay when it keeps crashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("ployd.executor.local")

OnAgentExit = Callable[[str, "int | None"], Awaitable[None]]

HEALTHY_UPTIME_S = 10.0  # an agent that lived this long did not crash-loop
MAX_BACKOFF_S = 30.0


class LocalExecutor:
    def __init__(
        self,
        server_url: str,
        agent_token: str,
        work_dir: Path,
        concurrency: int = 2,
        on_agent_exit: OnAgentExit | None = None,
        python: str = sys.executable,
        *,
        claim_wait: float = 25.0,
        stop_grace_s: float = 10.0,
        first_backoff_s: float = 0.25,
    ) -> None:
        self.server_url = server_url
        self.agent_token = agent_token
        self.work_dir = Path(work_dir)
        self.concurrency = concurrency
        self.on_agent_exit = on_agent_exit
        self.python = python
        self.claim_wait = claim_wait
        self.stop_grace_s = stop_grace_s
        self.first_backoff_s = first_backoff_s
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.restarts: dict[str, int] = {}

    @property
    def agents(self) -> dict[str, int]:
        """agent_id -> pid of the agent processes running now."""
        return {a: p.pid for a, p in self._procs.items() if p.returncode is None}

    def notify_queued(self, count: int) -> None:
        """Nothing to do: the warm agents are already long-polling for jobs."""

    async def start(self) -> None:
        self._stopping.clear()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, self.concurrency + 1):
            agent_id = f"local-{n}"
            await self._spawn(agent_id)
            self._tasks.append(asyncio.create_task(self._watch(agent_id), name=agent_id))

    async def _spawn(self, agent_id: str) -> None:
        env = dict(os.environ)
        env["PLOYD_AGENT_TOKEN"] = self.agent_token  # not in argv, where `ps` shows it
        env["PYTHONUNBUFFERED"] = "1"
        # Each agent has its own workspaces: two jobs never share a checkout.
        self._procs[agent_id] = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "app.agent",
            "--server",
            self.server_url,
            "--agent-id",
            agent_id,
            "--work-dir",
            str(self.work_dir / agent_id),
            "--claim-wait",
            str(self.claim_wait),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.info("agent %s started (pid %s)", agent_id, self._procs[agent_id].pid)

    async def _watch(self, agent_id: str) -> None:
        """Restart ``agent_id`` whenever it exits, until stop()."""
        backoff = 0.0
        while True:
            proc = self._procs[agent_id]
            started = time.monotonic()
            rc = await proc.wait()
            if self._stopping.is_set():
                return
            log.warning("agent %s (pid %s) exited with %s", agent_id, proc.pid, rc)
            if self.on_agent_exit is not None:
                try:
                    await self.on_agent_exit(agent_id, rc)
                except Exception:
                    log.exception("on_agent_exit(%s) failed", agent_id)
            if time.monotonic() - started >= HEALTHY_UPTIME_S:
                backoff = 0.0
            else:
                backoff = min(max(backoff * 2, self.first_backoff_s), MAX_BACKOFF_S)
            if backoff:
                # Wait out the backoff, unless stop() comes first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
            if self._stopping.is_set():
                return
            self.restarts[agent_id] = self.restarts.get(agent_id, 0) + 1
            await self._spawn(agent_id)

    async def stop(self) -> None:
        self._stopping.set()
        procs = [p for p in self._procs.values() if p.returncode is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        if procs:
            _, pending = await asyncio.wait(
                [asyncio.create_task(p.wait()) for p in procs], timeout=self.stop_grace_s
            )
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            for w in pending:
                await w
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
