"""`python -m app.agent --server URL --token TOKEN [--agent-id ID] [--work-dir DIR] [--once]`.

The token is a one-time registration token (``ployd agents token create``, an EC2
machine's user data, or the local executor's per-start one): the agent registers with it
at start and from then on claims with the credential it gets back, kept in memory only.
Where the token comes from, first found: ``--token-fd N`` (read once from that inherited
file descriptor, e.g. 0 for standard input: nowhere a step could read it), ``--token``,
``$PLOYD_AGENT_TOKEN`` (removed from the environment at once: the steps' environment is
built from it).

SIGTERM (or SIGINT): take no new job, let the running one finish for up to ``--grace-s``
seconds, then exit 0; a second SIGTERM, or the grace running out, stops the job (it is
reported interrupted, and its retry policy decides).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from app.agent import VERSION
from app.protocol import MAX_AGENT_ID, Hardware, Registration

TOKEN_ENV = "PLOYD_AGENT_TOKEN"
DEFAULT_WORK_DIR = Path("~/.ployd-agent/work")
DEFAULT_GRACE_S = 600.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.agent", description="The PloyD agent.")
    p.add_argument("--server", required=True, help="the PloyD server's base URL")
    p.add_argument(
        "--token",
        help=f"the registration token (default: ${TOKEN_ENV}); used once, at start",
    )
    p.add_argument(
        "--token-fd",
        type=int,
        metavar="FD",
        help="read the registration token from this inherited file descriptor (0: "
        "standard input), once",
    )
    p.add_argument(
        "--agent-id",
        default=socket.gethostname().split(".")[0][:MAX_AGENT_ID] or "agent",
        help="this agent's name (default: the host name)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"where workspaces live (one per repository, reused; default {DEFAULT_WORK_DIR})",
    )
    p.add_argument(
        "--labels",
        default="",
        help="labels this agent reports, k=v,k2=v2 (its pool's token may add more)",
    )
    p.add_argument("--once", action="store_true", help="exit after one job")
    p.add_argument(
        "--claim-wait",
        type=float,
        default=25.0,
        help="seconds the server may hold a claim (at most 30)",
    )
    p.add_argument(
        "--kill-grace",
        type=float,
        default=3.0,
        help="seconds between SIGTERM and SIGKILL of a step's process group",
    )
    p.add_argument(
        "--grace-s",
        type=float,
        default=DEFAULT_GRACE_S,
        help="on SIGTERM, seconds the running job may take to finish before it is stopped "
        f"(default {DEFAULT_GRACE_S:g}; 0: stop it at once)",
    )
    p.add_argument(
        "--imds-url",
        default=os.environ.get("PLOYD_IMDS_URL"),
        help="on EC2: the instance metadata service to watch for spot interruptions "
        "(http://169.254.169.254); default $PLOYD_IMDS_URL, unset: not watched",
    )
    args = p.parse_args(argv)
    # Out of the environment whatever happens next: steps and git inherit it.
    from_env = os.environ.pop(TOKEN_ENV, None)
    if args.token_fd is not None:
        try:
            args.token = read_token(args.token_fd)
        except OSError as e:
            p.error(f"--token-fd {args.token_fd}: {e}")
    elif not args.token:
        args.token = from_env
    if not args.token:
        p.error(f"no token: pass --token, --token-fd or set {TOKEN_ENV}")
    try:
        args.labels = parse_labels(args.labels)
    except ValueError as e:
        p.error(str(e))
    args.work_dir = args.work_dir.expanduser()
    return args


def read_token(fd: int) -> str:
    """The first line that comes on ``fd`` (a pipe the agent inherited), read once; the
    descriptor is closed afterwards (standard input: replaced by ``/dev/null``)."""
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 4096)
        if not data:
            break
        chunks.append(data)
        if b"\n" in data:
            break
    if fd == 0:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    else:
        os.close(fd)
    return b"".join(chunks).decode().split("\n", 1)[0].strip()


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as a dict (the server checks what they may hold)."""
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--labels: {item.strip()!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def not_dumpable() -> None:
    """On Linux, make this process non-dumpable: processes of the same user (steps, when
    they run as the agent's user) can then neither ptrace it nor read its memory,
    ``/proc/<pid>/environ`` or its open files, where its credential lives. Best effort;
    root still can (steps run as another user: docs/agent-protocol.md)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (ImportError, OSError, AttributeError):
        pass


def detect_hardware(work_dir: Path) -> Hardware:
    """This machine's hardware, for the registration: ``app.agent.hardware``'s detection
    where the agent has it, else the CPUs alone."""
    try:
        module = importlib.import_module("app.agent.hardware")
        detected = module.detect(work_dir)
        if isinstance(detected, Hardware):
            return detected
    except Exception:  # no detection module, or it failed: say what is certain
        pass
    return Hardware(cpus=os.cpu_count() or 1, memory_mb=0, disk_gb=0)


async def amain(args: argparse.Namespace) -> int:
    from app.agent.agent import Agent
    from app.agent.client import AgentClient

    client = AgentClient(args.server, args.token)
    try:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        registration = Registration(
            name=args.agent_id,
            version=VERSION,
            hardware=detect_hardware(args.work_dir),
            labels=args.labels,
        )
        agent = Agent(
            client,
            args.agent_id,
            args.work_dir,
            claim_wait=args.claim_wait,
            kill_grace_s=args.kill_grace,
            imds_url=args.imds_url,
            registration=registration,
            grace_s=args.grace_s,
        )
        args.token = None  # the client holds it until it is exchanged, then forgets it
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.terminate)
        return await agent.run(once=args.once)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    not_dumpable()
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s agent {args.agent_id} %(levelname)s %(message)s"
    )
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
