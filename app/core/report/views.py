"""What the report builders read: a view of one job (its latest attempt) and of a pipeline.

The handlers assemble these from the store; the builders never look anything up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.core.report.markdown import NONE
from app.core.states import JobState, PipelineState


@dataclass(frozen=True, slots=True)
class JobView:
    job_id: int
    name: str  # concrete name: `unit`, `gpu-tests (python=3.11, hardware=l4)`
    state: JobState
    allow_failure: bool = False
    hardware: tuple[str, ...] = ()  # specs in preference order, e.g. ("l4:1",)
    instance_type: str | None = None  # the machine of the latest attempt
    spot: bool | None = None  # None = not known yet
    queued_at: datetime | None = None  # tz-aware, like every timestamp here
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost_usd: float | None = None
    attempt: int = 1
    attempt_reason: str = ""  # why this attempt exists, e.g. "retried after a spot interruption"
    end_reason: str | None = None  # e.g. "spot interruption", "cancelled by @alice"
    exit_code: int | None = None
    failed_step: str | None = None  # the failing step's title
    log_tail: str = ""  # the last lines of the failing step's log (ANSI codes allowed)
    first_error_line: int | None = None  # in the full log, for the #L anchor
    log_url: str = ""  # already signed
    waiting_reason: str | None = None  # e.g. "waiting for capacity: tried p5.4xlarge (...)"
    waiting_since: datetime | None = None
    skip_reason: str | None = None
    fork_gated: bool = False  # a fork's pull request awaiting /ployd ok-to-test
    manual: bool = False  # `when: manual`

    @property
    def hardware_label(self) -> str:
        """The hardware asked for, in preference order (``h100:8 / a100:8``), or a dash."""
        return " / ".join(self.hardware) if self.hardware else NONE


@dataclass(frozen=True, slots=True)
class PipelineView:
    id: int
    state: PipelineState
    sha: str
    ref: str
    trigger: str  # "pull_request", "push", "command", ...
    forge: str = "github"  # whose words the report uses: "github" or "gitlab"
