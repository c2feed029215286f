"""`ployd github-manifest`: print the GitHub App manifest (webhook URL, events, the least
permissions), to register PloyD as an App (see README, "Connect GitHub")."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="PloyD's public URL (default: PLOYD_PUBLIC_URL)")
    parser.add_argument("--name", default="PloyD", help="the App's name on GitHub")
    parser.add_argument("--public", action="store_true", help="installable by any account")


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from app.adapters.github.manifest import manifest
    from app.settings import env_setting

    url = args.url or env_setting("PLOYD_PUBLIC_URL")
    if not url.startswith(("https://", "http://")):
        print(
            "ployd github-manifest: give --url https://ployd.example.com (or set "
            "PLOYD_PUBLIC_URL): GitHub must reach PloyD's webhook there",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(manifest(url, args.name, args.public), indent=2))
    return 0
