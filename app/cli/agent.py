"""`ployd agent build [--out DIR]`: write the agent as one file, ployd-agent-VERSION.pyz.

The same file `ployd serve` serves at /agent/ployd-agent.pyz: bake it into a machine
image at /opt/ployd/ployd-agent.pyz and the EC2 bootstrap uses it without downloading
(when its SHA-256 is the server's), or run it anywhere with `python3 FILE --server URL`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    build = sub.add_parser(
        "build",
        help="write ployd-agent-VERSION.pyz (a zipapp that python3 3.9+ runs as it is)",
        description="Write the agent as one file, ployd-agent-VERSION.pyz; prints its path "
        "and SHA-256. Two builds of the same sources are byte-identical.",
    )
    build.add_argument(
        "--out", type=Path, default=Path("."), help="the directory to write it in (default: .)"
    )


def main(args: argparse.Namespace) -> int:
    from app.agentbuild import AgentPackage

    package = AgentPackage.build()
    path = package.write(args.out)
    print(f"{path}  ({len(package.data)} bytes, agent {package.version})")
    print(f"sha256 {package.sha256}")
    return 0
