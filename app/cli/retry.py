"""`ployd retry JOB`: run a finished job again (failed, cancelled, timed out), or start a
manual one; the pipeline follows."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job: its id (17), PIPELINE/NAME (3/unit) or its URL")


def main(args: argparse.Namespace) -> int:
    from app.cli.apiclient import Client, job_id
    from app.cli.remote import guarded

    def body(client: Client) -> int:
        jid = job_id(client, args.job)
        done = client.post(f"/api/v1/jobs/{jid}/retry")
        job = client.get(f"/api/v1/jobs/{jid}")
        print(f"job {jid} ({job['name']}): attempt {done['attempt_id']} queued")
        print(f"  {client.job_url(job)}")
        return 0

    return guarded("retry", body)
