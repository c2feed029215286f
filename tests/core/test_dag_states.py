"""The state machines and DAG advancement, table-driven."""

import pytest

from app.core.config.model import When
from app.core.dag import Node, advance, initial_state, pipeline_result, settle, with_needs
from app.core.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    AttemptState,
    IllegalTransition,
    JobState,
    PipelineState,
    attempt_transition,
    job_transition,
)

J, A = JobState, AttemptState


@pytest.mark.parametrize(
    ("cur", "tgt"),
    [
        (J.WAITING, J.QUEUED),
        (J.WAITING, J.SKIPPED),
        (J.MANUAL, J.QUEUED),
        (J.QUEUED, J.DISPATCHING),
        (J.DISPATCHING, J.RUNNING),
        (J.DISPATCHING, J.INTERRUPTED),
        (J.RUNNING, J.SUCCEEDED),
        (J.RUNNING, J.INTERRUPTED),
        (J.RUNNING, J.QUEUED),
        (J.FAILED, J.QUEUED),
        (J.SKIPPED, J.WAITING),
    ],
)
def test_legal_job_transitions(cur: JobState, tgt: JobState) -> None:
    assert job_transition(cur, tgt) is tgt


@pytest.mark.parametrize(
    ("cur", "tgt"),
    [
        (J.SUCCEEDED, J.RUNNING),
        (J.WAITING, J.RUNNING),
        (J.QUEUED, J.SUCCEEDED),
        (J.MANUAL, J.RUNNING),
        (J.CANCELLED, J.FAILED),
        (J.SKIPPED, J.SUCCEEDED),
    ],
)
def test_illegal_job_transitions(cur: JobState, tgt: JobState) -> None:
    with pytest.raises(IllegalTransition, match=f"{cur.value} -> {tgt.value}"):
        job_transition(cur, tgt)


def test_final_attempts_never_move() -> None:
    for final in (A.SUCCEEDED, A.FAILED, A.CANCELLED, A.TIMED_OUT, A.INTERRUPTED):
        assert final.final
        for target in AttemptState:
            with pytest.raises(IllegalTransition):
                attempt_transition(final, target)
    assert attempt_transition(A.RUNNING, A.INTERRUPTED) is A.INTERRUPTED
    with pytest.raises(IllegalTransition):
        attempt_transition(A.QUEUED, A.RUNNING)


def test_every_state_has_its_transitions_listed() -> None:
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptState)


def nodes(*specs: Node) -> dict[str, Node]:
    return {n.name: n for n in specs}


def test_initial_states() -> None:
    assert initial_state(Node("a")) is J.QUEUED
    assert initial_state(Node("b", needs=("a",))) is J.WAITING
    assert initial_state(Node("m", when=When.MANUAL)) is J.MANUAL


def test_advance_queues_when_needs_succeed_and_skips_on_failure() -> None:
    ns = nodes(Node("a"), Node("b", ("a",)), Node("c", ("b",)), Node("d", ("a",), When.ALWAYS))
    assert advance(ns, {"a": J.RUNNING, "b": J.WAITING, "c": J.WAITING, "d": J.WAITING}) == {}
    assert advance(ns, {"a": J.SUCCEEDED, "b": J.WAITING, "c": J.WAITING, "d": J.WAITING}) == {
        "b": J.QUEUED,
        "d": J.QUEUED,
    }
    failed = {"a": J.FAILED, "b": J.WAITING, "c": J.WAITING, "d": J.WAITING}
    assert settle(ns, failed) == {"b": J.SKIPPED, "c": J.SKIPPED, "d": J.QUEUED}


def test_skip_early_when_one_need_already_failed() -> None:
    ns = nodes(Node("a"), Node("b"), Node("c", ("a", "b")))
    assert advance(ns, {"a": J.FAILED, "b": J.RUNNING, "c": J.WAITING}) == {"c": J.SKIPPED}


def test_always_job_waits_for_every_need_to_finish() -> None:
    ns = nodes(Node("a"), Node("b"), Node("r", ("a", "b"), When.ALWAYS))
    assert advance(ns, {"a": J.FAILED, "b": J.RUNNING, "r": J.WAITING}) == {}


def test_allow_failure_counts_as_passed() -> None:
    ns = nodes(Node("a", allow_failure=True), Node("b", ("a",)))
    assert advance(ns, {"a": J.FAILED, "b": J.WAITING}) == {"b": J.QUEUED}
    assert pipeline_result(ns, {"a": J.FAILED, "b": J.SUCCEEDED}) is PipelineState.SUCCEEDED


@pytest.mark.parametrize(
    ("states", "result"),
    [
        ({"a": J.SUCCEEDED, "b": J.RUNNING}, PipelineState.RUNNING),
        ({"a": J.SUCCEEDED, "b": J.SUCCEEDED}, PipelineState.SUCCEEDED),
        ({"a": J.SUCCEEDED, "b": J.MANUAL}, PipelineState.SUCCEEDED),
        ({"a": J.FAILED, "b": J.SKIPPED}, PipelineState.FAILED),
        ({"a": J.TIMED_OUT, "b": J.SKIPPED}, PipelineState.FAILED),
        ({"a": J.INTERRUPTED, "b": J.SKIPPED}, PipelineState.FAILED),
        ({"a": J.CANCELLED, "b": J.SKIPPED}, PipelineState.CANCELLED),
        ({"a": J.SKIPPED, "b": J.SKIPPED}, PipelineState.SUCCEEDED),
    ],
)
def test_pipeline_result(states: dict[str, JobState], result: PipelineState) -> None:
    assert pipeline_result(nodes(Node("a"), Node("b", ("a",))), states) is result


def test_with_needs_is_transitive_and_ordered() -> None:
    ns = nodes(Node("a"), Node("b", ("a",)), Node("c", ("b",)), Node("x"))
    assert with_needs(ns, ["c"]) == ["a", "b", "c"]
    assert with_needs(ns, ["x"]) == ["x"]
