"""GitHub check runs, built as plain dicts: one per job (``ployd / NAME``; the one for the
configuration is in ``report.config``). Every field stays within GitHub's documented limits
(tests/contracts/github-rest-openapi-subset.json): output.summary and output.text at most
65535 characters, at most 50 annotations per request, at most 3 actions whose label,
description and identifier are at most 20, 40 and 20 characters."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from app.core.report.markdown import (
    NONE,
    between,
    clip,
    clock,
    code_span,
    escape_md,
    fence_for,
    human_duration,
    human_money,
    iso,
    md_url,
    strip_ansi,
)
from app.core.report.views import JobView
from app.core.states import RETRYABLE, JobState

MAX_OUTPUT = 65535  # output.summary, output.text
MAX_ACTIONS = 3
MAX_ACTION_LABEL = 20
MAX_ACTION_DESCRIPTION = 40
MAX_ACTION_IDENTIFIER = 20
MAX_TITLE = 255  # not documented; kept short so it reads well in the checks list
MAX_NAME = 100  # not documented; a name is the key of a required check, kept short
CHECK_PREFIX = "ployd / "

_CONCLUSION = {
    JobState.SUCCEEDED: "success",
    JobState.FAILED: "failure",
    JobState.CANCELLED: "cancelled",
    JobState.TIMED_OUT: "timed_out",
    JobState.SKIPPED: "skipped",
    JobState.INTERRUPTED: "failure",
}
FAILED = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.INTERRUPTED})


def check_name(job_name: str) -> str:
    """``ployd / NAME``; a name too long is cut and given a short hash of the whole, so two
    long matrix children never share a check name."""
    name = " ".join(job_name.split())
    full = CHECK_PREFIX + name
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(CHECK_PREFIX) - len(digest) - 2
    return f"{CHECK_PREFIX}{name[:keep]}… {digest}"


def action(label: str, description: str, identifier: str) -> dict[str, str]:
    """A check run action within GitHub's limits (label and description are clipped; an
    identifier that does not fit is a programming error: the handler could not read it)."""
    if not identifier or len(identifier) > MAX_ACTION_IDENTIFIER:
        raise ValueError(f"action identifier {identifier!r}: 1 to {MAX_ACTION_IDENTIFIER} chars")
    return {
        "label": clip(label, MAX_ACTION_LABEL),
        "description": clip(description, MAX_ACTION_DESCRIPTION),
        "identifier": identifier,
    }


def _retry_on(bigger: str) -> dict[str, str] | None:
    """``Retry on BIGGER``; None when the spec is too long for the identifier (the label,
    ``Retry on `` against ``retry-on:``, is then as long, so it fits whenever that does)."""
    identifier = f"retry-on:{bigger}"
    if len(identifier) > MAX_ACTION_IDENTIFIER:
        return None
    return action(f"Retry on {bigger}", f"Run again on {bigger}", identifier)


def actions_for(view: JobView, bigger: str | None = None) -> list[dict[str, str]]:
    """Up to three actions: ``Run`` for a manual job not started; ``Retry`` (and ``Retry on
    BIGGER`` when given) for a job that finished without success (skipped jobs excepted:
    retry what they needed instead)."""
    out: list[dict[str, str]] = []
    if view.fork_gated:
        return out
    if view.state is JobState.MANUAL:
        out.append(action("Run", "Start this manual job", "run"))
    elif view.state in RETRYABLE:
        out.append(action("Retry", "Run this job again, same hardware", "retry"))
        if bigger:
            extra = _retry_on(bigger)
            if extra is not None:
                out.append(extra)
    return out[:MAX_ACTIONS]


# -- titles and summaries -------------------------------------------------------------


def _status(view: JobView) -> str:
    if view.fork_gated or view.state is JobState.MANUAL or view.state.final:
        return "completed"
    if view.state is JobState.RUNNING:
        return "in_progress"
    return "queued"


def _conclusion(view: JobView) -> str | None:
    if view.fork_gated:
        return "action_required"
    if view.state is JobState.MANUAL:
        return "neutral"
    if view.state in FAILED and view.allow_failure:
        return "neutral"  # allowed to fail: shown, never blocking
    return _CONCLUSION.get(view.state)


def _machine(view: JobView) -> str:
    if view.instance_type is None:
        return "not chosen yet"
    kind = {True: "spot", False: "on-demand", None: ""}[view.spot]
    return view.instance_type + (f", {kind}" if kind else "")


def _title(view: JobView, now: datetime) -> str:
    name = " ".join(view.name.split())
    took = between(view.started_at, view.finished_at)
    dur = f" in {human_duration(took)}" if took is not None else ""
    where = f" on {view.hardware_label}" if view.hardware else ""
    if view.fork_gated:
        return "waiting for a maintainer's /ployd ok-to-test"
    s = view.state
    if s is JobState.MANUAL:
        return f"manual job: comment /ployd run {name}"
    if s is JobState.SUCCEEDED:
        title = f"succeeded{dur}{where}"
    elif s is JobState.FAILED:
        step = f" at {view.failed_step.splitlines()[0]}" if view.failed_step else ""
        code = f" (exit code {view.exit_code})" if view.exit_code is not None else ""
        title = ("failed, allowed to fail" if view.allow_failure else "failed") + step + code
    elif s is JobState.TIMED_OUT:
        after = f" after {human_duration(took)}" if took is not None else ""
        title = ("allowed to fail, " if view.allow_failure else "") + f"timed out{after}"
    elif s is JobState.CANCELLED:
        title = "cancelled" + (f": {view.end_reason}" if view.end_reason else "")
    elif s is JobState.SKIPPED:
        title = "skipped" + (f": {view.skip_reason}" if view.skip_reason else "")
    elif s is JobState.INTERRUPTED:
        why = f" ({view.end_reason})" if view.end_reason else ""
        title = f"interrupted: the machine was lost{why}"
    elif s is JobState.RUNNING:
        title = f"running on {_machine(view)}"
    elif s is JobState.DISPATCHING:
        title = view.waiting_reason or f"starting a machine for {view.hardware_label}"
    elif s is JobState.QUEUED:
        title = view.waiting_reason or f"queued for {view.hardware_label}"
    else:  # waiting
        title = view.waiting_reason or "waiting for the jobs it needs"
    return clip(" ".join(title.split()), MAX_TITLE)


def _waiting_line(view: JobView, now: datetime) -> str | None:
    if view.state.final or view.state is JobState.RUNNING:
        return None
    if view.fork_gated:
        reason = (
            "this pull request comes from a fork: its jobs run once someone with write "
            "access comments `/ployd ok-to-test`"
        )
    elif view.state is JobState.MANUAL:
        reason = f"a manual job: comment {code_span('/ployd run ' + view.name)} to start it"
    elif view.waiting_reason:
        reason = escape_md(view.waiting_reason)
    else:
        return None
    since = view.waiting_since or view.queued_at
    when = ""
    if since is not None:
        when = f" (since {clock(since)}, {human_duration(between(since, now) or 0)} ago)"
    return f"⏳ **Waiting:** {reason}{when}"


def job_summary(view: JobView, now: datetime) -> str:
    """The check run summary: why it waits (when it does), then hardware, machine, queue
    time, duration and cost."""
    lines: list[str] = []
    waiting = _waiting_line(view, now)
    if waiting:
        lines += [waiting, ""]
    if view.state is JobState.SKIPPED and view.skip_reason:
        lines += [f"**Skipped:** {escape_md(view.skip_reason)}", ""]
    if view.state is JobState.INTERRUPTED:
        why = f" ({escape_md(view.end_reason)})" if view.end_reason else ""
        lines += [f"💥 **The machine was lost**{why}; the job did not finish.", ""]
    elif view.end_reason and view.state.final and view.state is not JobState.SKIPPED:
        lines += [f"**Ended:** {escape_md(view.end_reason)}", ""]
    queued = between(view.queued_at, view.started_at or (None if view.state.final else now))
    if view.started_at is not None:
        ran = between(view.started_at, view.finished_at or now)
        running = view.finished_at is None and not view.state.final
        duration = human_duration(ran or 0) + (" so far" if running else "")
    else:
        duration = NONE
    cost = human_money(view.cost_usd) if view.cost_usd is not None else NONE
    lines += [
        "| hardware | machine | queued | duration | cost |",
        "| --- | --- | --- | --- | --- |",
        f"| {escape_md(view.hardware_label)} | {escape_md(_machine(view))} "
        f"| {human_duration(queued) if queued is not None else NONE} | {duration} | {cost} |",
    ]
    if view.attempt > 1:
        reason = f": {escape_md(view.attempt_reason)}" if view.attempt_reason else ""
        lines += ["", f"Attempt {view.attempt}{reason}"]
    if view.log_url:
        lines += ["", f"[Full log]({md_url(view.log_url)})"]
    return clip("\n".join(lines), MAX_OUTPUT)


def failure_text(view: JobView, limit: int = MAX_OUTPUT) -> str:
    """The failing step and the last lines of its log in a ``text`` fence: escape codes
    stripped, trimmed from the top to fit ``limit``, in a fence the log cannot close."""
    step = view.failed_step.splitlines()[0] if view.failed_step else "unknown step"
    code = f" (exit code {view.exit_code})" if view.exit_code is not None else ""
    what = {
        JobState.TIMED_OUT: "Timed out in step",
        JobState.INTERRUPTED: "Interrupted in step",
    }.get(view.state, "Failed step")
    head = f"### {what}: {code_span(step)}{code}\n\n"
    log = strip_ansi(view.log_tail).strip("\n")
    if not log:
        return clip(head + "No log output.", limit)
    fence = fence_for(log)
    lines = log.split("\n")
    total = len(lines)
    # Lines are kept from the bottom until the budget runs out (the note about the lines
    # left out is budgeted at its largest).
    note_max = len(f"… {total} earlier lines not shown\n")
    url = _details_url(view)
    tail = f"\n\n[Full log]({md_url(url)})" if url else ""
    budget = limit - len(head) - 2 * (len(fence) + 1) - len("text") - note_max - len(tail) - 1
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > budget:
            if not kept:  # one enormous line: keep its end
                keep = max(0, budget - 2)
                kept.append(line[len(line) - keep :])
            break
        kept.append(line)
        size += len(line) + 1
    kept.reverse()
    dropped = total - len(kept)
    note = f"… {dropped} earlier lines not shown\n" if dropped else ""
    body = "\n".join(kept)
    return f"{head}{fence}text\n{note}{body}\n{fence}{tail}"


def _details_url(view: JobView) -> str | None:
    if not view.log_url:
        return None
    url = view.log_url
    if view.state in FAILED and view.first_error_line is not None:
        url = url.split("#", 1)[0] + f"#L{view.first_error_line}"
    return url


def check_run(view: JobView, *, now: datetime, bigger: str | None = None) -> dict[str, Any]:
    """The fields of the job's check run, for create (add ``head_sha``) or update.

    ``bigger``: the next bigger hardware (``bigger_hardware``), offered as a second
    retry button on failure."""
    status = _status(view)
    body: dict[str, Any] = {
        "name": check_name(view.name),
        "external_id": str(view.job_id),
        "status": status,
    }
    conclusion = _conclusion(view)
    if status == "completed" and conclusion is not None:
        body["conclusion"] = conclusion
    details = _details_url(view)
    if details:
        body["details_url"] = details
    if view.started_at is not None:
        body["started_at"] = iso(view.started_at)
    if status == "completed" and view.finished_at is not None:
        body["completed_at"] = iso(view.finished_at)
    output: dict[str, str] = {"title": _title(view, now), "summary": job_summary(view, now)}
    if view.state in FAILED and (view.log_tail or view.failed_step):
        output["text"] = failure_text(view)
    body["output"] = output
    acts = actions_for(view, bigger)
    if acts:
        body["actions"] = acts
    return body
