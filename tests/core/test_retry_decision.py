"""After an attempt: another attempt by the job's retry policy, or the job's final state."""

from __future__ import annotations

import pytest

from app.core.config.model import DEFAULT_RETRY, RetryPolicy, RetryReason, SpotPolicy
from app.core.retry import Final, Retry, decide_after_attempt
from app.core.states import AttemptState, JobState

A = AttemptState
R = RetryReason
J = JobState
EVERYTHING = RetryPolicy(max=5, when=frozenset(R), exit_codes=(1, 2))
ALWAYS = RetryPolicy(max=2, when=frozenset({R.ALWAYS}))
SCRIPT = RetryPolicy(max=2, when=frozenset({R.SCRIPT_FAILURE}))
CODES = RetryPolicy(max=2, when=frozenset(), exit_codes=(3, 137))
NONE = RetryPolicy(max=0)


@pytest.mark.parametrize(
    ("policy", "final", "reason", "number", "exit_code", "spot", "expected"),
    [
        # what the default policy retries, and the words
        (DEFAULT_RETRY, A.INTERRUPTED, R.INFRASTRUCTURE, 1, None, SpotPolicy.AUTO,
         Retry(1, 2, "the machine or agent failed")),
        (DEFAULT_RETRY, A.INTERRUPTED, R.SPOT_INTERRUPTION, 2, None, SpotPolicy.ALWAYS,
         Retry(2, 2, "the spot instance was reclaimed")),
        # spot auto: the retry runs on-demand, and says so; not for another reason
        (DEFAULT_RETRY, A.INTERRUPTED, R.SPOT_INTERRUPTION, 1, None, SpotPolicy.AUTO,
         Retry(1, 2, "the spot instance was reclaimed, retrying on on-demand")),
        (DEFAULT_RETRY, A.INTERRUPTED, R.SPOT_INTERRUPTION, 1, None, SpotPolicy.NEVER,
         Retry(1, 2, "the spot instance was reclaimed")),
        (EVERYTHING, A.INTERRUPTED, R.INFRASTRUCTURE, 1, None, SpotPolicy.AUTO,
         Retry(1, 5, "the machine or agent failed")),
        # every reason's words; `always` has none of its own
        (EVERYTHING, A.FAILED, R.SCRIPT_FAILURE, 1, 1, SpotPolicy.AUTO,
         Retry(1, 5, "a step failed")),
        (EVERYTHING, A.TIMED_OUT, R.TIMEOUT, 1, None, SpotPolicy.AUTO,
         Retry(1, 5, "it timed out")),
        (EVERYTHING, A.FAILED, R.NO_CAPACITY, 1, None, SpotPolicy.AUTO,
         Retry(1, 5, "no machine could be had within retry.capacity_wait")),
        (EVERYTHING, A.FAILED, R.ALWAYS, 1, None, SpotPolicy.AUTO, Retry(1, 5, "always")),
        # the default policy does not retry a test failure or a timeout
        (DEFAULT_RETRY, A.FAILED, R.SCRIPT_FAILURE, 1, 1, SpotPolicy.AUTO, Final(J.FAILED)),
        (DEFAULT_RETRY, A.TIMED_OUT, R.TIMEOUT, 1, None, SpotPolicy.AUTO, Final(J.TIMED_OUT)),
        # succeeded and cancelled never retry, whatever the policy
        (EVERYTHING, A.SUCCEEDED, R.INFRASTRUCTURE, 1, None, SpotPolicy.AUTO,
         Final(J.SUCCEEDED)),
        (ALWAYS, A.SUCCEEDED, R.ALWAYS, 1, None, SpotPolicy.AUTO, Final(J.SUCCEEDED)),
        (EVERYTHING, A.CANCELLED, R.SPOT_INTERRUPTION, 1, None, SpotPolicy.AUTO,
         Final(J.CANCELLED)),
        (ALWAYS, A.CANCELLED, R.ALWAYS, 1, None, SpotPolicy.AUTO, Final(J.CANCELLED)),
        # no reason: nothing a policy covers, not even `always`
        (ALWAYS, A.TIMED_OUT, None, 1, None, SpotPolicy.AUTO, Final(J.TIMED_OUT)),
        (EVERYTHING, A.FAILED, None, 1, 1, SpotPolicy.AUTO, Final(J.FAILED)),
        (EVERYTHING, A.INTERRUPTED, None, 1, None, SpotPolicy.AUTO, Final(J.INTERRUPTED)),
        # max reached: attempt number max is followed by another, max + 1 is not
        (ALWAYS, A.FAILED, R.SCRIPT_FAILURE, 2, 1, SpotPolicy.AUTO, Retry(2, 2, "a step failed")),
        (ALWAYS, A.FAILED, R.SCRIPT_FAILURE, 3, 1, SpotPolicy.AUTO, Final(J.FAILED)),
        (DEFAULT_RETRY, A.INTERRUPTED, R.INFRASTRUCTURE, 3, None, SpotPolicy.AUTO,
         Final(J.INTERRUPTED)),
        (NONE, A.INTERRUPTED, R.INFRASTRUCTURE, 1, None, SpotPolicy.AUTO, Final(J.INTERRUPTED)),
        # exit_codes: a script failure with a listed code, only
        (CODES, A.FAILED, R.SCRIPT_FAILURE, 1, 3, SpotPolicy.AUTO, Retry(1, 2, "a step failed")),
        (CODES, A.FAILED, R.SCRIPT_FAILURE, 1, 137, SpotPolicy.AUTO,
         Retry(1, 2, "a step failed")),
        (CODES, A.FAILED, R.SCRIPT_FAILURE, 1, 1, SpotPolicy.AUTO, Final(J.FAILED)),
        (CODES, A.FAILED, R.SCRIPT_FAILURE, 1, None, SpotPolicy.AUTO, Final(J.FAILED)),
        (CODES, A.TIMED_OUT, R.TIMEOUT, 1, 3, SpotPolicy.AUTO, Final(J.TIMED_OUT)),
        (CODES, A.FAILED, R.SCRIPT_FAILURE, 3, 3, SpotPolicy.AUTO, Final(J.FAILED)),
        # a policy for script failures retries them whatever the code
        (SCRIPT, A.FAILED, R.SCRIPT_FAILURE, 1, 9, SpotPolicy.AUTO, Retry(1, 2, "a step failed")),
        (SCRIPT, A.INTERRUPTED, R.INFRASTRUCTURE, 1, None, SpotPolicy.AUTO,
         Final(J.INTERRUPTED)),
    ],
)
def test_decide_after_attempt(
    policy: RetryPolicy,
    final: AttemptState,
    reason: RetryReason | None,
    number: int,
    exit_code: int | None,
    spot: SpotPolicy,
    expected: Retry | Final,
) -> None:
    assert decide_after_attempt(policy, final, reason, number, exit_code, spot) == expected


def test_the_new_attempts_reason() -> None:
    decision = decide_after_attempt(
        DEFAULT_RETRY, A.INTERRUPTED, R.SPOT_INTERRUPTION, 1, spot=SpotPolicy.AUTO
    )
    assert isinstance(decision, Retry)
    assert decision.reason == (
        "retry 1 of 2: the spot instance was reclaimed, retrying on on-demand"
    )
    assert Retry(3, 5, "it timed out").reason == "retry 3 of 5: it timed out"


def test_defaults_are_no_exit_code_and_spot_auto() -> None:
    assert decide_after_attempt(DEFAULT_RETRY, A.INTERRUPTED, R.SPOT_INTERRUPTION, 1) == Retry(
        1, 2, "the spot instance was reclaimed, retrying on on-demand"
    )
    assert decide_after_attempt(CODES, A.FAILED, R.SCRIPT_FAILURE, 1) == Final(J.FAILED)
