"""Pure payload builders for forge reports: check runs (GitHub), commit statuses (GitLab),
the summary comment, and the next bigger machine to offer for a retry.

Modules: ``views`` (what the builders read), ``checks`` (job check runs), ``config``
(the config check run), ``comment`` (the summary comment), ``status`` (GitLab commit
statuses), ``bigger`` (hardware ladder), ``markdown`` (escaping, fences, ANSI, formats)."""

from app.core.report.bigger import bigger_hardware, gpu_ladder
from app.core.report.checks import (
    action,
    actions_for,
    check_name,
    check_run,
    failure_text,
    job_summary,
)
from app.core.report.comment import MARKER, summary_comment
from app.core.report.config import annotation_batches, config_error_note, config_error_report
from app.core.report.status import status_for
from app.core.report.views import JobView, PipelineView

__all__ = [
    "MARKER",
    "JobView",
    "PipelineView",
    "action",
    "actions_for",
    "annotation_batches",
    "bigger_hardware",
    "check_name",
    "check_run",
    "config_error_note",
    "config_error_report",
    "failure_text",
    "gpu_ladder",
    "job_summary",
    "status_for",
    "summary_comment",
]
