"""`ployd serve`: the service on its embedded default (SQLite, local executor, logs on disk)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (PLOYD_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (PLOYD_PORT, default 8080)")
    parser.add_argument(
        "--data-dir",
        help="where the database, logs and workspaces live (PLOYD_DATA_DIR, default .ployd-data)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines, or one JSON object a line for log shippers (PLOYD_LOG_FORMAT)",
    )


def main(args: argparse.Namespace) -> int:
    import sys

    from app.settings import Settings, SettingsError

    names = {
        "host": "PLOYD_HOST",
        "port": "PLOYD_PORT",
        "data_dir": "PLOYD_DATA_DIR",
        "log_format": "PLOYD_LOG_FORMAT",
    }
    flags = {
        name: str(getattr(args, flag))
        for flag, name in names.items()
        if getattr(args, flag, None) is not None
    }
    try:
        settings = Settings.from_env(overrides=flags)
        settings.check_exposure()
    except SettingsError as e:
        print(f"ployd serve: {e}", file=sys.stderr)
        return 2
    from app.logformat import configure

    configure(settings.log_level, settings.log_format)
    from app.server import run_on_loop, serve_forever

    try:
        run_on_loop(settings.event_loop, serve_forever(settings))
    except SettingsError as e:  # found while starting: a bad policy file, EC2 settings...
        print(f"ployd serve: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"ployd serve: cannot listen on {settings.host}:{settings.port}: {e}", file=sys.stderr
        )
        return 1
    return 0
