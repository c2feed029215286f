"""`ployd trigger [PATH] [--ref REF] [--follow]`: start a pipeline of the git repository
PATH is in (its ``.ployd.yml`` at REF, default HEAD) on the service (``PLOYD_URL``);
``--follow`` prints the jobs' states as they change and ends with the pipeline's result
and its URL (exit 0 only when it succeeded)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.cli.paths import add_path_argument

    add_path_argument(parser, "run on the service (the repository's own)")
    parser.add_argument("--ref", default="HEAD", help="the branch, tag or commit (default: HEAD)")
    parser.add_argument(
        "--follow", action="store_true", help="print the jobs' states until the pipeline ends"
    )


def _git(here: str, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", here, *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ValueError(f"{here} is not in a git repository") from None


def repository_of(config: str | None) -> str:
    """The top of the git repository whose ``.ployd.yml`` ``config`` is; with None, of
    the one the current directory is in (ValueError)."""
    if config is None:
        return _git(os.getcwd(), "rev-parse", "--show-toplevel")
    here = os.path.dirname(os.path.abspath(config))
    top = _git(here, "rev-parse", "--show-toplevel")
    if os.path.realpath(config) != os.path.realpath(os.path.join(top, ".ployd.yml")):
        raise ValueError(
            f"{config}: the service reads .ployd.yml at the top of the repository "
            f"({top}); give that directory"
        )
    return top


def main(args: argparse.Namespace) -> int:
    from app.cli.apiclient import Client
    from app.cli.paths import PathConflict, config_path
    from app.cli.remote import follow_pipeline, guarded

    try:
        given = args.path is not None or args.file is not None
        repo = repository_of(config_path(args) if given else None)
    except (PathConflict, ValueError) as e:
        print(f"ployd trigger: {e}", file=sys.stderr)
        return 2
    if args.ref == "HEAD" and _git(repo, "status", "--porcelain", "--untracked-files=no"):
        print(
            f"ployd trigger: {repo} has uncommitted changes: the pipeline runs the commit "
            "at HEAD, without them",
            file=sys.stderr,
        )

    def body(client: Client) -> int:
        started = client.post("/api/v1/pipelines", {"repo": repo, "ref": args.ref, "actor": "cli"})
        if started.get("id") is None:
            print(f"no pipeline started for {repo} at {args.ref}: {started.get('reason')}")
            return 1
        pid = int(started["id"])
        sha = str(started.get("sha") or "")[:12]
        print(f"pipeline {pid} started: {repo} at {started.get('ref', args.ref)} ({sha})")
        print(f"  {client.pipeline_url(started)}", flush=True)
        if not args.follow:
            return 0
        return follow_pipeline(client, pid, sys.stdout)

    return guarded("trigger", body)
