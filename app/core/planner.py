"""(event, config) -> the jobs of a pipeline, each with the state it starts in.

The first half (matrix expansion, defaults, hardware candidates) is ``app.core.expand``;
this module adds the event: trigger matching, path filters and ``when: manual``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config.model import Config, PlannedJob
from app.core.dag import Node, initial_state, settle
from app.core.states import JobState
from app.core.triggers import Event, job_paths_skip_reason, pipeline_matches


@dataclass(frozen=True, slots=True)
class JobPlan:
    job: PlannedJob
    state: JobState
    skip_reason: str | None = None


def node_of(job: PlannedJob) -> Node:
    return Node(
        name=job.name,
        needs=job.needs,
        when=job.spec.when,
        allow_failure=job.spec.allow_failure,
    )


def plan_jobs(
    config: Config, jobs: tuple[PlannedJob, ...], event: Event
) -> tuple[JobPlan, ...] | None:
    """The jobs to create for ``event``, or None when the event starts no pipeline.

    Jobs whose own path filter excludes the change start ``skipped`` (and so do the jobs
    that need them); manual jobs start ``manual``; the others ``queued`` or ``waiting``.
    """
    if not pipeline_matches(config, event):
        return None
    nodes = {j.name: node_of(j) for j in jobs}
    states: dict[str, JobState] = {}
    reasons: dict[str, str] = {}
    for j in jobs:
        reason = job_paths_skip_reason(j.spec, event)
        if reason is not None:
            states[j.name] = JobState.SKIPPED
            reasons[j.name] = reason
        else:
            states[j.name] = initial_state(nodes[j.name])
    # A job that needs a skipped job is skipped at once (`when: always` ones run).
    for name, st in settle(nodes, states).items():
        states[name] = st
        if st is JobState.SKIPPED:
            reasons.setdefault(name, "a job it needs did not run")
    return tuple(JobPlan(j, states[j.name], reasons.get(j.name)) for j in jobs)
