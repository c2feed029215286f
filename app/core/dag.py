"""How a pipeline's jobs advance: pure functions over (nodes, states).

A job starts when all its needs succeeded (a need that failed but has
``allow_failure`` counts as passed), is skipped when one did not (unless the job says
``when: always``, which waits for its needs to finish, whatever their result), and the
pipeline's result follows from the final states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.core.config.model import When
from app.core.states import JobState, PipelineState


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    needs: tuple[str, ...] = ()
    when: When = When.ON_SUCCESS
    allow_failure: bool = False


def _passed(node: Node, state: JobState) -> bool:
    if state is JobState.SUCCEEDED:
        return True
    return node.allow_failure and state in (
        JobState.FAILED,
        JobState.TIMED_OUT,
        JobState.INTERRUPTED,
    )


def initial_state(node: Node) -> JobState:
    """The state a job is created in."""
    if node.when is When.MANUAL:
        return JobState.MANUAL
    return JobState.QUEUED if not node.needs else JobState.WAITING


def advance(nodes: Mapping[str, Node], states: Mapping[str, JobState]) -> dict[str, JobState]:
    """The transitions of waiting jobs that follow from the current states.

    Returns ``{job: QUEUED | SKIPPED}`` for waiting jobs whose needs are settled. Apply the
    result and call again until it returns nothing (a skip can settle further jobs);
    ``settle`` does that loop.

    The children of a matrix job share one ``needs`` (a need on a matrix job is every
    one of its children): each distinct ``needs`` is judged once per call, so 5,000 jobs
    that each need a 256-child matrix cost 5,000 look-ups, not 1.3 million.
    """
    out: dict[str, JobState] = {}
    judged: dict[tuple[tuple[str, ...], bool], JobState | None] = {}
    for name, node in nodes.items():
        if states.get(name) is not JobState.WAITING:
            continue
        key = (node.needs, node.when is When.ALWAYS)
        verdict = judged.get(key, JobState.WAITING)  # WAITING: not judged yet
        if verdict is JobState.WAITING:
            verdict = judged[key] = _verdict(nodes, states, *key)
        if verdict is not None:
            out[name] = verdict
    return out


def _verdict(
    nodes: Mapping[str, Node], states: Mapping[str, JobState], needs: tuple[str, ...], always: bool
) -> JobState | None:
    """What a waiting job with these ``needs`` becomes now (None: it keeps waiting).

    ``when: always`` waits until every need is final, then runs; otherwise one need that
    ended without passing skips it at once, and it runs when all of them passed."""
    all_final = True
    for n in needs:
        node = nodes.get(n)
        if node is None:
            continue
        state = states[n]
        if not state.final:
            if always:
                return None
            all_final = False
        elif not always and not _passed(node, state):
            return JobState.SKIPPED
    return JobState.QUEUED if all_final else None


def settle(nodes: Mapping[str, Node], states: Mapping[str, JobState]) -> dict[str, JobState]:
    """All the transitions that follow, repeated to a fixed point."""
    current = dict(states)
    changes: dict[str, JobState] = {}
    while step := advance(nodes, current):
        current.update(step)
        changes.update(step)
    return changes


def pipeline_result(nodes: Mapping[str, Node], states: Mapping[str, JobState]) -> PipelineState:
    """RUNNING while any non-manual job is unfinished; then the result.

    Manual jobs that nobody started do not hold the pipeline open. A failure of a job with
    ``allow_failure`` does not fail the pipeline.
    """
    if any(not s.final and s is not JobState.MANUAL for s in states.values()):
        return PipelineState.RUNNING
    result = PipelineState.SUCCEEDED
    for name, state in states.items():
        node = nodes[name]
        if state is JobState.CANCELLED:
            return PipelineState.CANCELLED
        if state in (JobState.SUCCEEDED, JobState.SKIPPED, JobState.MANUAL):
            continue
        if not _passed(node, state):
            result = PipelineState.FAILED
    return result


def with_needs(nodes: Mapping[str, Node], wanted: list[str]) -> list[str]:
    """``wanted`` and everything it needs, transitively, in the nodes' order."""
    keep: set[str] = set()
    stack = list(wanted)
    while stack:
        n = stack.pop()
        if n in keep or n not in nodes:
            continue
        keep.add(n)
        stack.extend(nodes[n].needs)
    return [n for n in nodes if n in keep]
