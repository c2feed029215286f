"""`ployd retry JOB [--on CLASS[:COUNT]]`: run a finished job again (failed, cancelled,
timed out), or start a manual one, optionally on other hardware (a CUDA out of memory:
the next class up, as the log page says); the pipeline follows."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job: its id (17), PIPELINE/NAME (3/unit) or its URL")
    parser.add_argument(
        "--on",
        metavar="CLASS[:COUNT]",
        help="retry on this hardware instead (e.g. h100, l40s:1, a100:8)",
    )


def main(args: argparse.Namespace) -> int:
    from app.cli.apiclient import Client, job_id
    from app.cli.remote import guarded

    def body(client: Client) -> int:
        jid = job_id(client, args.job)
        body = {"hardware": args.on} if args.on is not None else {}
        done = client.post(f"/api/v1/jobs/{jid}/retry", body)
        job = client.get(f"/api/v1/jobs/{jid}")
        where = f" on {', '.join(job['hardware'])}" if args.on is not None else ""
        print(f"job {jid} ({job['name']}): attempt {done['attempt_id']} queued{where}")
        print(f"  {client.job_url(job)}")
        return 0

    return guarded("retry", body)
