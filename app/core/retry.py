"""What a job does after one of its attempts ended: another attempt, or its final state.

Pure: the engine gives the job's retry policy and how the attempt ended, and applies the
answer to its rows (``app.engine.progress.end_attempt``).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config.model import RetryPolicy, RetryReason, SpotPolicy
from app.core.states import AttemptState, JobState, job_state_for_attempt

# How a retry's reason names why the attempt before it ended.
RETRY_WORDS = {
    RetryReason.SCRIPT_FAILURE: "a step failed",
    RetryReason.TIMEOUT: "it timed out",
    RetryReason.INFRASTRUCTURE: "the machine or agent failed",
    RetryReason.SPOT_INTERRUPTION: "the spot instance was reclaimed",
    RetryReason.NO_CAPACITY: "no machine could be had within retry.capacity_wait",
}


@dataclass(frozen=True, slots=True)
class Retry:
    """Queue another attempt. ``number`` is the attempt that ended, ``of`` the policy's
    ``max``; ``reason`` is what the new attempt says about why it exists."""

    number: int
    of: int
    words: str

    @property
    def reason(self) -> str:
        return f"retry {self.number} of {self.of}: {self.words}"


@dataclass(frozen=True, slots=True)
class Final:
    """No other attempt: the job ends in ``job_state``."""

    job_state: JobState


def decide_after_attempt(
    policy: RetryPolicy,
    final: AttemptState,
    reason: RetryReason | None,
    attempt_number: int,
    exit_code: int | None = None,
    spot: SpotPolicy = SpotPolicy.AUTO,
) -> Retry | Final:
    """After attempt number ``attempt_number`` (1-based) ended in ``final`` for ``reason``
    (None: nothing a policy covers), retry by ``policy`` or end the job. ``spot`` is the
    job's spot mode: with ``auto`` a retry after a spot interruption runs on-demand."""
    retryable = final not in (AttemptState.SUCCEEDED, AttemptState.CANCELLED)
    if retryable and reason is not None and policy.allows(reason, attempt_number, exit_code):
        words = RETRY_WORDS.get(reason, reason.value)
        if reason is RetryReason.SPOT_INTERRUPTION and spot is SpotPolicy.AUTO:
            words += ", retrying on on-demand"
        return Retry(attempt_number, policy.max, words)
    return Final(job_state_for_attempt(final))
