"""`ployd open JOB [--print]`: the job's signed log link (the one a pull request gets,
valid without signing in); opened in a browser when there is one, and printed."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job: its id (17), PIPELINE/NAME (3/unit) or its URL")
    parser.add_argument("--print", action="store_true", help="only print the link")


def main(args: argparse.Namespace) -> int:
    import sys

    from app.cli.apiclient import Client, job_id
    from app.cli.remote import guarded

    def body(client: Client) -> int:
        url = str(client.get(f"/api/v1/jobs/{job_id(client, args.job)}/link")["url"])
        print(url, flush=True)
        if not args.print and sys.stdout.isatty():
            import webbrowser

            webbrowser.open(url)
        return 0

    return guarded("open", body)
