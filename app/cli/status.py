"""`ployd status [PIPELINE]`: the service's recent pipelines, or one pipeline's jobs
(state, duration, attempts, link)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pipeline", nargs="?", help="a pipeline's id or URL (default: the recent ones)"
    )
    parser.add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many recent pipelines (default 20)"
    )


def main(args: argparse.Namespace) -> int:
    from app.cli.apiclient import ApiError, Client, pipeline_id
    from app.cli.remote import duration, guarded, table

    def recent(client: Client) -> int:
        rows = client.get("/api/v1/pipelines", limit=max(args.limit, 1))["pipelines"]
        if not rows:
            print("no pipelines yet (ployd trigger starts one)")
            return 0
        out: list[tuple[str, ...]] = [("ID", "STATE", "REPOSITORY", "REF", "SHA", "TOOK", "URL")]
        for p in rows:
            out.append(
                (
                    str(p["id"]),
                    p["state"],
                    p["repo"],
                    p["ref"],
                    str(p.get("sha") or "")[:12],
                    duration(p, "created_at"),
                    client.pipeline_url(p),
                )
            )
        table(out, sys.stdout)
        return 0

    def one(client: Client) -> int:
        pid = pipeline_id(args.pipeline)
        if pid is None:
            raise ApiError(f"{args.pipeline!r} is not a pipeline: give its id or its URL")
        p = client.get(f"/api/v1/pipelines/{pid}")
        print(
            f"pipeline {pid} {p['state']}: {p['repo']} at {p['ref']} "
            f"({str(p.get('sha') or '')[:12]}), {p['trigger']} by {p.get('actor') or '-'}"
        )
        print(f"  {client.pipeline_url(p)}")
        rows: list[tuple[str, ...]] = [("ID", "JOB", "STATE", "DURATION", "ATTEMPTS", "URL")]
        for j in p["jobs"]:
            state = j["state"] + (f" ({j['skip_reason']})" if j.get("skip_reason") else "")
            rows.append(
                (str(j["id"]), j["name"], state, duration(j), str(j["attempts"]), client.job_url(j))
            )
        table(rows, sys.stdout)
        return 0 if p["state"] in ("succeeded", "running") else 1

    return guarded("status", one if args.pipeline else recent)
