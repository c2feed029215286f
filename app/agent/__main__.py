"""`python -m app.agent --server URL --token T --agent-id ID --work-dir DIR [--once]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.agent", description="The PloyD agent.")
    p.add_argument("--server", required=True, help="the PloyD server's base URL")
    p.add_argument(
        "--token",
        default=os.environ.get("PLOYD_AGENT_TOKEN"),
        help="agent token (default: $PLOYD_AGENT_TOKEN)",
    )
    p.add_argument("--agent-id", required=True)
    p.add_argument(
        "--work-dir",
        required=True,
        type=Path,
        help="where workspaces live (one per repository, reused)",
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
        "--imds-url",
        default=os.environ.get("PLOYD_IMDS_URL"),
        help="on EC2: the instance metadata service to watch for spot interruptions "
        "(http://169.254.169.254); default $PLOYD_IMDS_URL, unset: not watched",
    )
    args = p.parse_args(argv)
    if not args.token:
        p.error("no agent token: pass --token or set PLOYD_AGENT_TOKEN")
    return args


async def amain(args: argparse.Namespace) -> int:
    from app.agent.agent import Agent
    from app.agent.client import AgentClient

    client = AgentClient(args.server, args.token)
    try:
        agent = Agent(
            client,
            args.agent_id,
            args.work_dir,
            claim_wait=args.claim_wait,
            kill_grace_s=args.kill_grace,
            imds_url=args.imds_url,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.terminate)
        return await agent.run(once=args.once)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s agent {args.agent_id} %(levelname)s %(message)s"
    )
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
