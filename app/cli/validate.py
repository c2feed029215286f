"""`ployd validate [PATH]`: check a .ployd.yml; a one-line summary, or every error."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.cli.paths import add_path_argument

    add_path_argument(parser, "check")
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="how to print errors: text (FILE:LINE:COL: message, on stderr) "
        "or json (a list of {file, line, column, message}, on stdout)",
    )
    parser.add_argument(
        "--catalog",
        default=None,
        metavar="FILE",
        help="an extra hardware catalog (JSON); default: $PLOYD_CATALOG_FILE",
    )


def main(args: argparse.Namespace) -> int:
    import sys

    from app.cli.paths import PathConflict, config_path

    try:
        args.path = config_path(args)
    except PathConflict as conflict:
        print(f"ployd validate: {conflict}", file=sys.stderr)
        return 2
    import json

    from app.core.config.errors import ConfigInvalid
    from app.core.config.loader import load_config_file
    from app.core.expand import expand
    from app.core.hardware import Catalog, CatalogError
    from app.settings import SettingsError, env_setting, max_jobs_per_pipeline

    try:
        catalog = Catalog.load(args.catalog or env_setting("PLOYD_CATALOG_FILE") or None)
        max_jobs = max_jobs_per_pipeline()  # the server's limit, for the same answer
    except (CatalogError, SettingsError) as exc:
        print(f"ployd validate: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config_file(args.path, catalog=catalog, max_jobs=max_jobs)
    except FileNotFoundError:
        print(
            f"ployd validate: {args.path}: no such file (write one, or pass its path)",
            file=sys.stderr,
        )
        return 2
    except IsADirectoryError:
        print(f"ployd validate: {args.path}: is a directory, not a file", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ployd validate: {args.path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except ConfigInvalid as exc:
        if args.format == "json":
            print(json.dumps([e.to_dict() for e in exc.errors], indent=2))
        else:
            for e in exc.errors:
                print(e, file=sys.stderr)
            n = len(exc.errors)
            print(f"{args.path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    jobs = expand(config, catalog)
    manual = sum(1 for j in jobs if j.spec.when.value == "manual")
    specs: list[str] = []
    for j in jobs:
        for s in j.hardware:
            if str(s) not in specs:
                specs.append(str(s))
        if not j.hardware and j.candidates:
            label = f"{catalog.get(j.candidates[0]).cls} (resources)"
            if label not in specs:
                specs.append(label)
    extra = f" ({manual} manual)" if manual else ""
    if args.format == "json":
        print("[]")
    else:
        print(
            f"{args.path}: valid, {len(jobs)} job{'s' if len(jobs) != 1 else ''} after matrix "
            f"expansion{extra}, hardware: {', '.join(specs)}"
        )
    return 0
