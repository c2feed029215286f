"""What the service commands (`trigger`, `status`, `logs`, `retry`, `cancel`, `open`) share:
the error wrapper, durations, and following a pipeline or a log until it ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

from app.cli.apiclient import ApiError, Client
from app.core.states import ATTEMPT_FINAL, JOB_FINAL, AttemptState, JobState, PipelineState

POLL_S = 0.5  # how often --follow asks the service


def guarded(command: str, body: Callable[[Client], int]) -> int:
    """``body(client)``; an ApiError is printed as ``ployd COMMAND: message``, exit 1."""
    client = Client()
    try:
        return body(client)
    except ApiError as e:
        print(f"ployd {command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _when(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def duration(obj: dict[str, Any], start: str = "started_at", now: datetime | None = None) -> str:
    """``1.2s`` / ``3m04s`` from an API object's start and ``finished_at``; for a running
    job or pipeline the time since it started, ``12.5s so far`` (by this machine's clock,
    ``now``); "-" if unknown."""
    a, b = _when(obj.get(start)), _when(obj.get("finished_at"))
    so_far = ""
    if a is not None and b is None and obj.get("state") == JobState.RUNNING:
        b = now or datetime.now(UTC)
        b = b if a.tzinfo else b.replace(tzinfo=None)  # a naive time is UTC (PloyD's)
        so_far = " so far"
    if a is None or b is None:
        return "-"
    s = max((b - a).total_seconds(), 0.0)
    if s < 60:
        return f"{s:.1f}s{so_far}"
    m, sec = divmod(int(s), 60)
    took = f"{m}m{sec:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"
    return took + so_far


def job_final(state: str) -> bool:
    try:
        return JobState(state) in JOB_FINAL
    except ValueError:
        return False


def table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    """Columns padded to their widest cell; the last one not padded."""
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)]
        print("  ".join([*cells, r[-1]]).rstrip(), file=out)


def job_line(client: Client, job: dict[str, Any], width: int) -> str:
    state = str(job["state"])
    line = f"  {job['name']:<{width}}  {state}"
    if job_final(state) and state != JobState.SKIPPED:
        line += f"  {duration(job)}  {client.job_url(job)}"
    elif state == JobState.SKIPPED and job.get("skip_reason"):
        line += f"  ({job['skip_reason']})"
    return line


def follow_pipeline(client: Client, pid: int, out: TextIO, poll_s: float = POLL_S) -> int:
    """Print each job's state as it changes until the pipeline ends; then its result and
    its URL. 0 when it succeeded, 1 otherwise."""
    seen: dict[int, str] = {}
    while True:
        p = client.get(f"/api/v1/pipelines/{pid}")
        jobs = p.get("jobs", [])
        width = max((len(j["name"]) for j in jobs), default=0)
        for j in jobs:
            if seen.get(j["id"]) != j["state"]:
                seen[j["id"]] = j["state"]
                print(job_line(client, j, width), file=out, flush=True)
        if p["state"] != PipelineState.RUNNING:
            took = duration(p, "created_at")
            print(f"pipeline {pid} {p['state']} in {took}: {client.pipeline_url(p)}", file=out)
            out.flush()
            return 0 if p["state"] == PipelineState.SUCCEEDED else 1
        time.sleep(poll_s)


def follow_log(
    client: Client, jid: int, out: BinaryIO, *, follow: bool, poll_s: float = POLL_S
) -> str | None:
    """Write the log of the job's latest attempt to ``out``; with ``follow``, until that
    attempt ends (waiting for one to start unless the job ended or is manual). The
    attempt's last state seen, or None when the job has no attempt to show."""
    attempt: dict[str, Any] | None = None
    while attempt is None:
        job = client.get(f"/api/v1/jobs/{jid}")
        attempts = job["attempts"]
        if attempts:
            attempt = attempts[-1]
        elif not follow or job_final(job["state"]) or job["state"] == JobState.MANUAL:
            return None  # nothing to follow: it will not run by itself
        else:
            time.sleep(poll_s)
    offset = 0
    while True:
        r = client.request("GET", f"/api/v1/attempts/{attempt['id']}/log", query={"offset": offset})
        if r.body:
            out.write(r.body)
            out.flush()
            offset += len(r.body)
        state = r.headers.get("x-attempt-state", "")
        size = int(r.headers.get("x-log-size", "0") or 0)
        ended = _attempt_final(state)
        if not follow or (ended and offset >= size):
            return state
        if not r.body:
            time.sleep(poll_s)


def _attempt_final(state: str) -> bool:
    try:
        return AttemptState(state) in ATTEMPT_FINAL
    except ValueError:
        return False
