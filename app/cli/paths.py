"""The one path argument of `ployd run`, `validate`, `plan` and `trigger`: an optional
positional PATH, with ``-f/--file`` as its alias. PATH is a ``.ployd.yml`` (any name) or
a directory holding one; the default is ``.ployd.yml`` here."""

from __future__ import annotations

import argparse
import os

DEFAULT_NAME = ".ployd.yml"


def add_path_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        default=None,
        metavar="PATH",
        help=f"the .ployd.yml to {what}, or a directory holding one (default: ./{DEFAULT_NAME})",
    )
    parser.add_argument(
        "--file", "-f", dest="file", default=None, metavar="PATH", help="the same as PATH"
    )


class PathConflict(ValueError):
    pass


def config_path(args: argparse.Namespace) -> str:
    """The configuration file PATH / ``-f`` name (a directory's ``.ployd.yml``).
    Raises PathConflict when both are given and name different files."""
    given = [p for p in (args.path, args.file) if p is not None]
    files = [_file(p) for p in given]
    if len(files) == 2 and os.path.normpath(files[0]) != os.path.normpath(files[1]):
        raise PathConflict(f"two paths given ({given[0]} and -f {given[1]}): give one")
    return files[0] if files else DEFAULT_NAME


def _file(path: str) -> str:
    if os.path.isdir(path):
        return os.path.join(path, DEFAULT_NAME) if path != "." else DEFAULT_NAME
    return path
