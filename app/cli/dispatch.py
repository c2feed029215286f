"""`ployd`: the command line.

Each subcommand lives in its own module under ``app.cli`` and is imported only when
it runs, so that quick commands (`ployd validate`, `ployd run`) do not pay for the
service's imports (aiohttp, SQLAlchemy, boto3).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module under app.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "check a .ployd.yml and print a one-line summary"),
    "plan": ("plan", "print the expanded jobs with their hardware candidates and prices"),
    "run": ("run", "run this working tree's .ployd.yml here, like CI would"),
    "serve": ("serve", "run the PloyD service (webhooks, API, dispatcher, executor)"),
    "db": ("db", "database migrations (ployd db upgrade)"),
    "github-manifest": ("github_manifest", "print the GitHub App manifest to register PloyD"),
    "secrets": ("secrets", "a repository's secrets: set (value from stdin), list, delete"),
    "inbox": ("inbox", "webhook deliveries: list [--failed], replay ID (a dead-lettered one)"),
    "audit": ("audit", "the audit trail: verify its hash chain, export it as JSON lines"),
    "agent": ("agent", "the agent as one file: ployd agent build [--out DIR]"),
    "agents": ("agents", "self-hosted agents: registration tokens for pools, list, disable"),
    # the service's commands: PLOYD_URL (default the local server), PLOYD_ADMIN_TOKEN
    "trigger": ("trigger", "start a pipeline of a repository on the service; --follow it"),
    "status": ("status", "the service's recent pipelines, or one pipeline's jobs"),
    "logs": ("logs", "a job's log from the service; --follow it until the job ends"),
    "retry": ("retry", "run a finished job again (or start a manual one)"),
    "cancel": ("cancel", "cancel a pipeline, or one job"),
    "open": ("open", "a job's signed log link: open it in a browser, or print it"),
}


def build_parser() -> argparse.ArgumentParser:
    from app import __version__

    parser = argparse.ArgumentParser(prog="ployd", description="PloyD: CI for ML teams.")
    parser.add_argument("--version", action="version", version=f"ployd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = importlib.import_module(f"app.cli.{module}")
        mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mod = importlib.import_module(f"app.cli.{args._module}")
    rc: int = mod.main(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
