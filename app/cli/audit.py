"""`ployd audit verify|export`: check the audit trail's hash chain; export it as JSON lines."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from app.core.clock import aware


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("verify", help="check every record's hash and link; exit 1 at a break")
    e = sub.add_parser("export", help="JSON lines to standard output, oldest first")
    e.add_argument(
        "--since", type=_date, help="only records at or after DATE (2026-11-01 or ISO time, UTC)"
    )


def _date(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: write 2026-11-01 or 2026-11-01T12:00:00"
        ) from None
    return aware(at)


def main(args: argparse.Namespace) -> int:
    from app.audit.chain import export, verify
    from app.settings import Settings, SettingsError
    from app.store.db import Database

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"ployd audit: {e}", file=sys.stderr)
        return 2
    db = Database.connect(settings.db_url)
    try:
        with db.session() as s:
            if args.action == "verify":
                n, broken = verify(s)
                if broken is not None:
                    print(f"audit chain BROKEN at record {broken.record_id}: {broken.reason}")
                    return 1
                print(f"audit chain verified: {n} records")
                return 0
            for line in export(s, args.since):
                sys.stdout.write(line + "\n")
    finally:
        db.dispose()
    return 0
