"""The GitLab-style commit status of a job (GitLab reports through commit statuses)."""

from __future__ import annotations

from app.core.report.checks import FAILED
from app.core.report.markdown import between, clip, human_duration
from app.core.report.views import JobView
from app.core.states import JobState

MAX_STATUS_DESCRIPTION = 255  # GitLab's commit status description

_GITLAB = {
    JobState.WAITING: "pending",
    JobState.MANUAL: "skipped",
    JobState.QUEUED: "pending",
    JobState.DISPATCHING: "pending",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "success",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "canceled",
    JobState.TIMED_OUT: "failed",
    JobState.SKIPPED: "skipped",
    JobState.INTERRUPTED: "failed",
}


def status_for(view: JobView) -> tuple[str, str]:
    """A GitLab commit status (``pending``, ``running``, ``success``, ``failed``,
    ``canceled``, ``skipped``) and its description (at most 255 characters): result,
    hardware, duration. A job allowed to fail reports ``success`` with "failed, allowed
    to fail"; a fork's gated job ``pending``; a manual job not started ``skipped``."""
    state = _GITLAB[view.state]
    took = between(view.started_at, view.finished_at)
    where = f" on {view.hardware_label}" if view.hardware else ""
    dur = f" in {human_duration(took)}" if took is not None else ""
    word = view.state.value.replace("_", " ")
    if view.fork_gated:
        return "pending", "from a fork: waiting for /ployd ok-to-test from a Developer or higher"
    if view.state is JobState.MANUAL:
        desc = f"manual job: comment /ployd run {view.name}"
    elif view.state in FAILED and view.allow_failure:
        state, desc = "success", f"{word}, allowed to fail{where}{dur}"
    elif view.state is JobState.SKIPPED:
        desc = "skipped" + (f": {view.skip_reason}" if view.skip_reason else "")
    elif view.state in FAILED and view.failed_step and view.state is JobState.FAILED:
        desc = f"failed at {view.failed_step.splitlines()[0]}{where}{dur}"
    elif view.state is JobState.TIMED_OUT and view.end_reason:
        desc = f"timed out{where}: {view.end_reason}"  # e.g. no capacity for its wait
    elif not view.state.final and view.waiting_reason and view.state is not JobState.RUNNING:
        desc = view.waiting_reason
        if view.attempt > 1 and view.attempt_reason:
            desc += f" ({view.attempt_reason})"  # e.g. retry 1 of 2: no machine ...
    else:
        desc = f"{word}{where}{dur}"
    return state, clip(" ".join(desc.split()), MAX_STATUS_DESCRIPTION)
