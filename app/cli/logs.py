"""`ployd logs JOB [--follow]`: the log of a job's latest attempt, from the service;
``--follow`` keeps printing until that attempt ends (exit 0 only if it succeeded)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job: its id (17), PIPELINE/NAME (3/unit) or its URL")
    parser.add_argument(
        "--follow", "-F", action="store_true", help="keep printing until the attempt ends"
    )


def main(args: argparse.Namespace) -> int:
    from app.cli.apiclient import Client, job_id
    from app.cli.remote import follow_log, guarded

    def body(client: Client) -> int:
        jid = job_id(client, args.job)
        state = follow_log(client, jid, sys.stdout.buffer, follow=args.follow)
        if state is None:
            job = client.get(f"/api/v1/jobs/{jid}")
            print(
                f"job {jid} ({job['name']}) has no log yet: it is {job['state']}", file=sys.stderr
            )
            return 1
        if args.follow:
            return 0 if state == "succeeded" else 1
        return 0

    return guarded("logs", body)
