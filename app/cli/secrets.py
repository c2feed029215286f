"""`ployd secrets set|list|delete`: a repository's secrets, in this server's database.

The value is read from standard input (``echo -n ... | ployd secrets set ...`` or typed
at the prompt), never from the command line, where other users could see it in ``ps``
and shells keep it in their history.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

FORGES = ("github", "gitlab", "local")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    s = sub.add_parser("set", help="set a secret; the value is read from standard input")
    _common(s)
    s.add_argument("name", help="the secret's name, as jobs declare it under secrets:")
    s.add_argument(
        "--branch", default="", help="only for branches matching this pattern (main, release/*)"
    )
    s.add_argument(
        "--reference",
        action="store_true",
        help="standard input holds a reference resolved when a job starts: "
        "aws-sm:NAME_OR_ARN[#json-key] or aws-ssm:/path",
    )
    ls = sub.add_parser("list", help="a repository's secrets: names and scopes, never values")
    _common(ls)
    d = sub.add_parser("delete", help="delete a secret")
    _common(d)
    d.add_argument("name")
    d.add_argument("--branch", default="", help="the branch pattern it was set for")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", required=True, help="OWNER/NAME (a path for a local repository)")
    p.add_argument("--forge", choices=FORGES, help="when the name is known on several forges")


def read_value(stream: TextIO | None = None) -> str:
    """The value from standard input: a prompt without echo on a terminal; otherwise all
    of it, without one trailing newline (``echo`` adds it)."""
    stdin = stream if stream is not None else sys.stdin
    if stdin.isatty():
        import getpass

        return getpass.getpass("value (not echoed): ")
    value = stdin.read()
    if value.endswith("\r\n"):
        return value[:-2]
    return value[:-1] if value.endswith("\n") else value


def main(args: argparse.Namespace) -> int:
    from app.secrets.references import ReferenceError
    from app.secrets.setup import store_from
    from app.secrets.store import SecretError
    from app.settings import Settings, SettingsError
    from app.store.db import Database

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"ployd secrets: {e}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(settings.db_url)
    try:
        store = store_from(settings, db)
        if args.action == "set":
            value = read_value()
            if not value:
                print("ployd secrets: no value on standard input", file=sys.stderr)
                return 2
            info = store.set(
                args.repo,
                args.name,
                value,
                forge=args.forge,
                branch=args.branch,
                actor="cli",
                reference=args.reference,
            )
            scope = f" for branches {info.branch}" if info.branch else ""
            print(f"set {info.name} for {info.repo}{scope}")
        elif args.action == "list":
            infos = store.list(args.repo, forge=args.forge)
            if not infos:
                print(f"no secrets for {args.repo}")
            for i in infos:
                where = i.branch or "*"
                kind = i.reference if i.kind == "reference" else "value"
                updated = i.updated_at.strftime("%Y-%m-%d %H:%M")
                print(f"{i.name}\tbranch={where}\t{kind}\tupdated {updated} by {i.updated_by}")
        else:
            store.delete(args.repo, args.name, forge=args.forge, branch=args.branch, actor="cli")
            print(f"deleted {args.name} from {args.repo}")
    except (SecretError, ReferenceError) as e:
        print(f"ployd secrets: {e}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0
