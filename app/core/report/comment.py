"""The one summary comment per pull request, edited in place (found by its hidden marker)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.core.hardware import Catalog
from app.core.report.bigger import bigger_hardware
from app.core.report.checks import FAILED
from app.core.report.markdown import (
    NONE,
    between,
    clip,
    clock,
    code_span,
    escape_md,
    human_duration,
    md_url,
)
from app.core.report.views import JobView, PipelineView
from app.core.states import RETRYABLE, JobState, PipelineState

MARKER = "<!-- ployd:summary -->"
MAX_COMMENT = 65536  # GitHub's limit on a comment body
_COMMENT_BUDGET = MAX_COMMENT - 2048  # room for the header, the notes and the footer

_PIPELINE = {
    PipelineState.RUNNING: ("🔄", "running"),
    PipelineState.SUCCEEDED: ("✅", "succeeded"),
    PipelineState.FAILED: ("❌", "failed"),
    PipelineState.CANCELLED: ("⏹️", "cancelled"),
}
_EMOJI = {
    JobState.WAITING: "💤",
    JobState.MANUAL: "⏸️",
    JobState.QUEUED: "⏳",
    JobState.DISPATCHING: "⏳",
    JobState.RUNNING: "🔄",
    JobState.SUCCEEDED: "✅",
    JobState.FAILED: "❌",
    JobState.CANCELLED: "⏹️",
    JobState.TIMED_OUT: "⏱️",
    JobState.SKIPPED: "⏭️",
    JobState.INTERRUPTED: "💥",
}


def job_emoji(view: JobView) -> str:
    if view.fork_gated:
        return "🔒"
    if view.state in FAILED and view.allow_failure:
        return "⚠️"
    return _EMOJI[view.state]


def _duration(view: JobView, now: datetime | None) -> str:
    if view.started_at is not None:
        end = view.finished_at or now
        took = between(view.started_at, end)
        if took is None:
            return NONE
        return human_duration(took) + ("" if view.finished_at or view.state.final else " so far")
    if view.state in (JobState.QUEUED, JobState.DISPATCHING) and now is not None:
        since = view.waiting_since or view.queued_at
        if since is not None:
            return f"queued {human_duration(between(since, now) or 0)}"
    return NONE


def _row(view: JobView, now: datetime | None) -> str:
    hw = escape_md(view.hardware_label)
    if view.instance_type:
        hw += f" · {escape_md(view.instance_type)}" + (" (spot)" if view.spot else "")
    log = f"[log]({md_url(view.log_url)})" if view.log_url else NONE
    state = view.state.value.replace("_", " ")
    if view.fork_gated:
        state = "awaiting ok-to-test"
    elif view.state in FAILED and view.allow_failure:
        state += ", allowed"
    return (
        f"| {job_emoji(view)} | {escape_md(view.name)} | {state} | {hw} "
        f"| {_duration(view, now)} | {log} |"
    )


def _notes(jobs: Sequence[JobView], now: datetime | None) -> list[str]:
    """Why jobs wait: no silent waits."""
    out: list[str] = []
    for v in jobs:
        if v.waiting_reason and not v.state.final and v.state is not JobState.RUNNING:
            since = v.waiting_since or v.queued_at
            when = f" (since {clock(since)})" if since is not None else ""
            out.append(f"- ⏳ {escape_md(v.name)}: {escape_md(v.waiting_reason)}{when}")
    return out


def _failed_example(jobs: Sequence[JobView], catalog: Catalog | None) -> str:
    for v in jobs:
        if v.state in RETRYABLE and v.hardware and catalog is not None:
            bigger = bigger_hardware(v.hardware[0], catalog)
            if bigger:
                base = v.name.split(" (", 1)[0]
                return f"/ployd retry {base} on {bigger}"
    return "/ployd retry JOB on HARDWARE"


def summary_comment(
    pipeline: PipelineView,
    jobs: Sequence[JobView],
    *,
    marker: str = MARKER,
    now: datetime | None = None,
    catalog: Catalog | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The pull request's summary comment: the hidden ``marker``, a header with the
    pipeline's state and short sha, a table of jobs, why any waits, and the commands to
    retry. ``now`` shows running and waiting times; ``catalog`` names a bigger machine in
    the retry hint. The footer writes commands as inline code, so the comment itself
    never reads as a command. ``extra``: more markdown lines before the footer (the
    results section, ``app.core.results.report``)."""
    emoji, word = _PIPELINE[pipeline.state]
    gated = any(v.fork_gated for v in jobs)
    if gated and pipeline.state is PipelineState.RUNNING:
        who = (
            "a Developer, Maintainer or Owner"
            if pipeline.forge == "gitlab"
            else "someone with write access"
        )
        emoji, word = "🔒", f"waiting for `/ployd ok-to-test` from {who}"
    lines = [
        marker,
        f"### {emoji} PloyD pipeline #{pipeline.id} {word} · `{pipeline.sha[:7]}`",
        "",
    ]
    if not jobs:
        lines.append("No jobs in this pipeline.")
    else:
        lines += [
            "| | job | state | hardware | duration | log |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        size = sum(len(x) for x in lines)
        for i, v in enumerate(jobs):
            row = _row(v, now)
            if size + len(row) + 1 > _COMMENT_BUDGET:
                lines.append(f"| | … and {len(jobs) - i} more jobs | | | | |")
                break
            lines.append(row)
            size += len(row) + 1
    notes = _notes(jobs, now)
    if notes:
        lines += ["", *notes[:20]]
        if len(notes) > 20:
            lines.append(f"- … and {len(notes) - 20} more waiting")
    lines += extra
    failed = any(v.state in RETRYABLE for v in jobs)
    hints: list[str] = []
    if failed:
        hints += [
            f"retry the failed jobs: {code_span('/ployd retry')}",
            f"on bigger hardware: {code_span(_failed_example(jobs, catalog))}",
        ]
    hints.append(f"every command: {code_span('/ployd help')}")
    lines += ["", "<sub>" + " · ".join(hints) + "</sub>"]
    return clip("\n".join(lines) + "\n", MAX_COMMENT)
