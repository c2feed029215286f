"""`ployd db upgrade`: run the database migrations (also done at every start)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade"], help="upgrade: migrate to the latest schema")
    parser.add_argument("--revision", default="heads", help="target revision (default: all heads)")


def main(args: argparse.Namespace) -> int:
    from app.settings import Settings
    from app.store.db import make_engine, upgrade

    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine, args.revision)
    finally:
        engine.dispose()
    print(f"database at {engine.url.render_as_string(hide_password=True)} is at {args.revision}")
    return 0
