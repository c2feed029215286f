"""The local executor: ``concurrency`` warm agent processes on this machine.

Each agent (``python -m app.agent --agent-id local-N``) long-polls the server for a job,
so a queued job starts within milliseconds. An agent that exits is reported through
``on_agent_exit(agent_id, returncode)`` (so the server can mark its running attempt
interrupted) and restarted, with a growing delay when it keeps crashing.

Each start of an agent gets a fresh one-time registration token (``agent_token``, a
callable: the engine's ``new_registration_token``), written to the agent's standard
input and read once (``--token-fd 0``): never in its environment or its command line,
where its steps could read it (``/proc/<agent>/environ``, ``ps``). The agent exchanges
it for its credential, which it keeps in memory. The server's own ``PLOYD_*`` settings
are left out of the agents' environment too, and the agents confine their steps
(``app.agent.sandbox``: the step user, bubblewrap with the data directory hidden, an
environment built from nothing). A step an agent left running when it died is killed
before the agent's death is reported (and its attempt retried). On a GPU machine each
agent gets a disjoint share of the GPUs (``share_gpus``, as its ``CUDA_VISIBLE_DEVICES``),
reports only those, and gives its jobs only those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from app.agent.sandbox import StepRecords
from app.engine.notify import wait_set

log = logging.getLogger("ployd.executor.local")

OnAgentExit = Callable[[str, "int | None"], Awaitable[None]]

HEALTHY_UPTIME_S = 10.0  # an agent that lived this long did not crash-loop
MAX_BACKOFF_S = 30.0


class LocalExecutor:
    def __init__(
        self,
        server_url: str,
        agent_token: str | Callable[[], str],
        work_dir: Path,
        concurrency: int = 2,
        on_agent_exit: OnAgentExit | None = None,
        python: str = sys.executable,
        *,
        claim_wait: float = 25.0,
        stop_grace_s: float = 10.0,
        first_backoff_s: float = 0.25,
        agent_grace_s: float = 0.0,
        isolation: str = "auto",
        hide: tuple[Path, ...] = (),
        pass_env: str = "",
        container_runtime: str = "",
        log_format: str = "text",
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
        # SIGTERM (stop()): how long an agent may finish its running job; 0 stops it at
        # once (reported interrupted, and retried when the server runs again).
        self.agent_grace_s = agent_grace_s
        # How the agents confine their steps (their --isolation), and what the steps must
        # not see (the server's data directory).
        self.isolation = isolation
        self.hide = hide
        self.pass_env = pass_env  # the machine variables steps also get (--pass-env)
        self.container_runtime = container_runtime  # "": the agents find one
        self.log_format = log_format  # the agents' log lines, as the server's
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.restarts: dict[str, int] = {}
        # agent id -> the GPUs it may use (its CUDA_VISIBLE_DEVICES); none: no GPUs here
        self.gpu_shares: dict[str, str] = {}

    @property
    def agents(self) -> dict[str, int]:
        """agent_id -> pid of the agent processes running now."""
        return {a: p.pid for a, p in self._procs.items() if p.returncode is None}

    def notify_queued(self, count: int) -> None:
        """Nothing to do: the warm agents are already long-polling for jobs."""

    async def start(self) -> None:
        self._stopping.clear()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        from app.agent.hardware import detect_gpus

        found = await asyncio.to_thread(detect_gpus)
        self.gpu_shares = share_gpus(
            len(found), self.concurrency, os.environ.get("CUDA_VISIBLE_DEVICES")
        )
        for n in range(1, self.concurrency + 1):
            agent_id = f"local-{n}"
            await self._spawn(agent_id)
            self._tasks.append(asyncio.create_task(self._watch(agent_id), name=agent_id))

    def _token(self) -> str:
        return self.agent_token() if callable(self.agent_token) else self.agent_token

    async def _spawn(self, agent_id: str) -> None:
        env = agent_environment(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if agent_id in self.gpu_shares:  # its share of the machine's GPUs, its alone
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_shares[agent_id]
        if self.container_runtime:  # the server's choice, passed on (PLOYD_* are not)
            env["PLOYD_CONTAINER_RUNTIME"] = self.container_runtime
        # Each agent has its own workspaces: two jobs never share a checkout.
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "app.agent",
            "--server",
            self.server_url,
            "--token-fd",
            "0",
            "--agent-id",
            agent_id,
            "--work-dir",
            str(self.work_dir / agent_id),
            "--claim-wait",
            str(self.claim_wait),
            "--grace-s",
            str(self.agent_grace_s),
            "--isolation",
            self.isolation,
            *[a for p in self.hide for a in ("--hide", str(p))],
            "--pass-env",
            self.pass_env,
            *(("--log-format", "json") if self.log_format == "json" else ()),
            env=env,
            stdin=asyncio.subprocess.PIPE,
        )
        self._procs[agent_id] = proc
        assert proc.stdin is not None
        try:  # the token on a pipe, read once: not in the environment, not in argv
            proc.stdin.write(self._token().encode() + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.warning("agent %s exited before it read its token", agent_id)
        finally:
            proc.stdin.close()
        log.info("agent %s started (pid %s)", agent_id, proc.pid)

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
            # What its running step left (a killed agent cannot stop it) goes before its
            # attempt is given up and retried.
            killed = StepRecords(self.work_dir / agent_id).reap()
            if killed:
                log.warning("killed the steps agent %s left running: %s", agent_id, killed)
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
                await wait_set(self._stopping, backoff)
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


def share_gpus(gpus: int, agents: int, visible: str | None = None) -> dict[str, str]:
    """Each local agent's GPUs (``CUDA_VISIBLE_DEVICES``): the machine's ``gpus`` (or
    those ``visible`` names, when the server was given a subset) split into contiguous,
    disjoint blocks, the first agents taking one more when they do not divide evenly;
    agents beyond the GPUs get none (""). Empty when there are no GPUs: nothing to share.
    Two agents never hand the same GPU to two jobs."""
    pool = [str(i) for i in range(gpus)]
    if visible is not None:
        parts = [p.strip() for p in visible.split(",") if p.strip()]
        if all(p.isdigit() for p in parts):
            pool = [p for p in parts if int(p) < gpus]
    if not pool or agents <= 0:
        return {}
    size, extra = divmod(len(pool), agents)
    shares: dict[str, str] = {}
    at = 0
    for n in range(agents):
        take = size + (1 if n < extra else 0)
        shares[f"local-{n + 1}"] = ",".join(pool[at : at + take])
        at += take
    return shares


def agent_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a local agent starts with: the server's, without its ``PLOYD_*``
    settings (the admin token, the secret key, the database URL...): the steps' base
    environment is the agent's."""
    return {k: v for k, v in environ.items() if not k.startswith("PLOYD_")}
