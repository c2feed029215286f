"""`ployd inbox list [--failed]`, `ployd inbox replay ID`: the webhook deliveries, and
putting a dead-lettered one (its handler failed every attempt) back to be handled."""

from __future__ import annotations

import argparse
import sys


def _inbox_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delivery id (a positive number)")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    lister = sub.add_parser("list", help="the newest deliveries, with status and last error")
    lister.add_argument(
        "--failed", action="store_true", help="only dead-lettered ones (failed every attempt)"
    )
    lister.add_argument(
        "--limit", type=_inbox_id, default=50, help="how many, newest first (default 50)"
    )
    replay = sub.add_parser("replay", help="handle a dead-lettered delivery again")
    replay.add_argument("id", type=_inbox_id, help="the delivery's id (from `ployd inbox list`)")


def main(args: argparse.Namespace) -> int:
    from app.settings import Settings, SettingsError
    from app.store import inbox_claims
    from app.store.db import Database

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"ployd inbox: {e}", file=sys.stderr)
        return 2
    db = Database.connect(settings.db_url)
    try:
        if args.action == "replay":
            before = inbox_claims.replay(db, args.id)
            if before is None:
                print(f"ployd inbox: no delivery {args.id}", file=sys.stderr)
                return 1
            if before != inbox_claims.FAILED:
                print(
                    f"ployd inbox: delivery {args.id} is {before}, not failed: nothing to replay",
                    file=sys.stderr,
                )
                return 1
            print(f"delivery {args.id} queued again: a running server handles it shortly")
            return 0
        rows = inbox_claims.deliveries(db, failed_only=args.failed, limit=args.limit)
        if not rows:
            print("no failed deliveries" if args.failed else "no deliveries")
            return 0
        print(
            f"{'ID':>8}  {'FORGE':<7} {'EVENT':<20} {'STATUS':<10} {'TRIES':>5}  RECEIVED / ERROR"
        )
        for d in rows:
            status = d.status + ("*" if d.leased else "")
            received = d.received_at.strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"{d.id:>8}  {d.forge:<7} {d.event[:20]:<20} {status:<10} {d.attempts:>5}  "
                f"{received}  {d.delivery_id}"
            )
            if d.error:
                print(f"{'':>10}error: {d.error.splitlines()[0][:200]}")
        return 0
    finally:
        db.dispose()
