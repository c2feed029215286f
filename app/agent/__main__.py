"""`python -m app.agent --server URL --token T --agent-id ID --work-dir DIR [--once]`,
or the same arguments to the packaged agent: `python3 ployd-agent.pyz --server URL ...`
(its ``__main__`` passes ``package``, the file it runs from, so that it can update)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("ployd.agent")


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
        "--update-retry",
        type=float,
        default=5.0,
        help="seconds before trying again after a failed self-update (doubling, at most 300)",
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


def version() -> str:
    """This agent's version: its package's (``app.__version__``), the server's own when
    run from the server's source."""
    import app

    return app.__version__


async def amain(
    args: argparse.Namespace, argv: Sequence[str] = (), package: str | None = None
) -> int:
    from app.agent.agent import Agent
    from app.agent.client import AgentClient
    from app.agent.update import SelfUpdate

    client = AgentClient(args.server, args.token, version=version())
    log.info(
        "ployd agent %s on Python %s (%s), for %s",
        client.version,
        sys.version.split()[0],
        package or "from source",
        args.server,
    )
    updater = None
    if package is not None:
        updater = SelfUpdate(
            Path(package),
            argv,
            args.server,
            client.http,
            version=client.version,
            fallback_dir=args.work_dir,
        )
    try:
        agent = Agent(
            client,
            args.agent_id,
            args.work_dir,
            claim_wait=args.claim_wait,
            kill_grace_s=args.kill_grace,
            imds_url=args.imds_url,
            updater=updater,
            update_retry_s=args.update_retry,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.terminate)
        return await agent.run(once=args.once)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None, package: str | None = None) -> int:
    """Run the agent. ``package``: the file this agent runs from (a ``ployd-agent.pyz``),
    which it may replace with the server's version; None (run from source): it never
    updates."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s agent {args.agent_id} {version()} %(levelname)s %(message)s",
    )
    return asyncio.run(amain(args, argv, package))


if __name__ == "__main__":
    sys.exit(main())
