"""Stored pipelines (``app.store.forge_reports``' frozen views) -> the core's ``JobView`` /
``PipelineView`` (with signed log links, the failing step and the tail of its log)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.clock import aware
from app.core.logscan import first_error_line, tail
from app.core.report import JobView, PipelineView
from app.core.states import JobState, PipelineState
from app.core.weblinks import signed_job_url
from app.logs.store import LogStore
from app.store.forge_reports import ReportAttempt, ReportJob, ReportPipeline

TAIL_BYTES = 64 * 1024
TAIL_LINES = 60


def log_url(base_url: str, key: bytes, job: ReportJob, tenant_id: int) -> str:
    """The job's signed log link. It expires a fixed time after the job was created, so
    the link (and so the report that carries it) stays the same on every update."""
    created = aware(job.created_at)
    assert created is not None
    return signed_job_url(base_url, key, job.id, tenant_id, now=created.timestamp())


def failure_details(logs: LogStore, attempt: ReportAttempt) -> tuple[str | None, str, int | None]:
    """(failing step's title, the last lines of its log, the 1-based line number in the
    whole log of its first error-looking line)."""
    if not attempt.log_path:
        return None, "", None
    steps: Sequence[dict[str, Any]] = attempt.steps or ()
    idx = attempt.failed_step
    step = next((s for s in steps if s.get("index") == idx), None) if idx is not None else None
    start = int(step.get("log_offset", 0)) if step else max(attempt.log_size - TAIL_BYTES, 0)
    start = max(start, attempt.log_size - TAIL_BYTES)
    text = logs.read(attempt.log_path, start).decode("utf-8", errors="replace")
    lines = text.split("\n")  # as the log page numbers them (not splitlines: \r)
    if lines and lines[-1] == "":
        lines.pop()
    if start > 0 and lines and not (step and start == int(step.get("log_offset", 0))):
        lines = lines[1:]  # a partial first line
    first_line = logs.lines_before(attempt.log_path, start) + 1
    err = first_error_line(lines)
    anchor = first_line + (err if err is not None else max(len(lines) - 1, 0))
    title = (step.get("title") if step else None) or (
        f"step {idx + 1}" if idx is not None else None
    )
    return title, "\n".join(tail(lines, TAIL_LINES)), anchor


def job_view(
    job: ReportJob, *, logs: LogStore, base_url: str, key: bytes, tenant_id: int, held: bool
) -> JobView:
    state = JobState(job.state)
    last = job.last
    failed_step, log_tail, err_line = (None, "", None)
    if last is not None and state in (JobState.FAILED, JobState.TIMED_OUT, JobState.INTERRUPTED):
        failed_step, log_tail, err_line = failure_details(logs, last)
    waiting = None
    if state is JobState.QUEUED:  # the executor says why ("waiting for capacity: ...")
        waiting = job.waiting_reason or "waiting for a free machine"
    return JobView(
        job_id=job.id,
        name=job.name,
        state=state,
        allow_failure=job.allow_failure,
        hardware=tuple(job.hardware),
        instance_type=last.instance_type if last else None,
        spot=last.spot if last and last.instance_type else None,
        queued_at=aware(job.queued_at),
        started_at=aware(last.started_at) if last else None,
        finished_at=aware(job.finished_at) if state.final else None,
        cost_usd=last.cost if last else None,
        attempt=last.number if last else 1,
        attempt_reason=last.reason if last else "",
        end_reason=(last.error or last.end_reason) if last and last.state != "succeeded" else None,
        exit_code=last.exit_code if last else None,
        failed_step=failed_step,
        log_tail=log_tail,
        first_error_line=err_line,
        log_url=log_url(base_url, key, job, tenant_id),
        waiting_reason=waiting,
        waiting_since=aware(job.waiting_since or job.queued_at) if waiting else None,
        skip_reason=job.skip_reason,
        fork_gated=held and not state.final,
        manual=job.when == "manual",
    )


def pipeline_view(p: ReportPipeline) -> PipelineView:
    return PipelineView(
        id=p.id,
        state=PipelineState(p.state),
        sha=p.sha,
        ref=p.ref,
        trigger=p.trigger,
        forge=p.forge,
    )
