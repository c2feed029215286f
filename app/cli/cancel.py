"""`ployd cancel PIPELINE|JOB`: cancel a pipeline (its id or URL) or one job
(``PIPELINE/NAME``, its URL, or ``--job ID``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        help="a pipeline (its id 3, or its URL) or a job (3/unit, or its /runs/ URL)",
    )
    parser.add_argument("--job", type=int, metavar="ID", help="the job with this id")


def main(args: argparse.Namespace) -> int:
    import sys

    from app.cli.apiclient import Client, job_id, pipeline_id
    from app.cli.remote import guarded

    if (args.target is None) == (args.job is None):
        print("ployd cancel: give a pipeline, PIPELINE/NAME, or --job ID", file=sys.stderr)
        return 2

    def body(client: Client) -> int:
        pid = pipeline_id(args.target) if args.target is not None else None
        if pid is not None:
            n = client.post(f"/api/v1/pipelines/{pid}/cancel")["cancelled_jobs"]
            print(f"pipeline {pid}: {n} job{'s' if n != 1 else ''} cancelled")
            return 0
        jid = args.job if args.job is not None else job_id(client, args.target)
        client.post(f"/api/v1/jobs/{jid}/cancel")
        job = client.get(f"/api/v1/jobs/{jid}")
        print(f"job {jid} ({job['name']}): {job['state']}")
        return 0

    return guarded("cancel", body)
