"""Storing a new pipeline: its jobs and their first attempts, in bulk.

A pipeline of 10,000 jobs is a few multi-row INSERTs (the jobs, then the first attempts
of the ready ones), not one session flush per job: the rows are built before the
transaction opens (``prepare``), and the jobs' first states and the pipeline's come
from the core (``settle``, ``pipeline_result``) rather than from loading the jobs back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from app.core.dag import pipeline_result, settle
from app.core.planner import JobPlan, node_of
from app.core.states import JobState, PipelineState
from app.engine.specs import job_spec
from app.store.models import Attempt, Job, Pipeline, utcnow

STARTED = "pipeline started"
JOBS = cast(Table, Job.__table__)
ATTEMPTS = cast(Table, Attempt.__table__)


_gc_lock = threading.Lock()
_gc_pausers = 0  # threads inside collector_paused()
_gc_state = {"enabled": True}  # whether the collector ran before the first of them


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a big pipeline's rows are built and
    inserted: tens of thousands of fresh dicts and lists would trigger collections over
    the whole heap again and again (a third of the CPU of storing 5,000 jobs on Python
    3.11). Reference counting frees them meanwhile; the collector resumes when the last
    of the threads that paused it is done (several pipelines may be stored at once)."""
    global _gc_pausers
    with _gc_lock:
        _gc_pausers += 1
        if _gc_pausers == 1:
            was_enabled = gc.isenabled()
            gc.disable()
            _gc_state["enabled"] = was_enabled
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_state["enabled"]:
                gc.enable()


class TooManyJobs(ValueError):
    """A pipeline with more jobs than PLOYD_MAX_JOBS_PER_PIPELINE (validation refuses
    such a file first, naming the matrix; this guards callers that plan themselves)."""


@dataclass(frozen=True)
class Prepared:
    """A pipeline's rows, ready to insert: ``jobs`` (without ``pipeline_id``), the
    positions of those queued at once with the reason of their first attempt, and the
    pipeline's state."""

    jobs: list[dict[str, Any]]
    queued: list[tuple[int, str]]
    state: PipelineState
    at: datetime


def prepare(plans: Sequence[JobPlan], max_jobs: int | None = None) -> Prepared:
    """The rows of a pipeline of ``plans`` (in their order). The waiting jobs that the
    plans' states already settle are queued or skipped here, as ``progress.advance``
    would after the insert. ``TooManyJobs`` over ``max_jobs``."""
    if max_jobs is not None and len(plans) > max_jobs:
        raise TooManyJobs(
            f"a pipeline of {len(plans):,} jobs is over the limit of {max_jobs:,} "
            "(PLOYD_MAX_JOBS_PER_PIPELINE)"
        )
    nodes = {p.job.name: node_of(p.job) for p in plans}
    states = {p.job.name: p.state for p in plans}
    reasons = {p.job.name: p.skip_reason for p in plans}
    why_queued: dict[str, str] = {}
    for name, target in settle(nodes, states).items():
        states[name] = target
        if target is JobState.QUEUED:
            reasons[name] = None
            why_queued[name] = "needs succeeded"
        else:
            reasons[name] = "a job it needs did not succeed"
    now = utcnow()
    rows: list[dict[str, Any]] = []
    queued: list[tuple[int, str]] = []
    for position, plan in enumerate(plans):
        j = plan.job
        state = states[j.name]
        if state is JobState.QUEUED:
            queued.append((position, why_queued.get(j.name, STARTED)))
        rows.append(
            {
                "position": position,
                "name": j.name,
                "base_name": j.base,
                "matrix": dict(j.matrix),
                "needs": list(j.needs),
                "when": j.spec.when.value,
                "allow_failure": j.spec.allow_failure,
                "hardware": [str(h) for h in j.hardware],
                "candidates": list(j.candidates),
                "spec": job_spec(j),
                "state": state.value,
                "skip_reason": reasons[j.name],
                "created_at": now,
                "queued_at": now if state is JobState.QUEUED else None,
                "finished_at": now if state.final else None,
            }
        )
    return Prepared(rows, queued, pipeline_result(nodes, states), now)


def insert_jobs(s: Session, pipeline: Pipeline, prepared: Prepared) -> list[int]:
    """Insert ``prepared``'s jobs under ``pipeline`` (flushed here for its id) and the
    first attempts of the queued ones; returns the jobs' ids, in position order."""
    pipeline.state = prepared.state.value
    pipeline.finished_at = prepared.at if prepared.state.final else None
    s.add(pipeline)
    s.flush()
    for row in prepared.jobs:
        row["pipeline_id"] = pipeline.id
    job_ids: list[int] = []
    if prepared.jobs:
        # Core executemany (not the ORM's bulk insert, which costs per row), without
        # RETURNING (SQLite runs that row by row): the ids are read back in one query.
        s.execute(insert(JOBS), prepared.jobs)
        job_ids = list(
            s.scalars(select(Job.id).where(Job.pipeline_id == pipeline.id).order_by(Job.position))
        )
    if prepared.queued:
        s.execute(
            insert(ATTEMPTS),
            [
                {
                    "job_id": job_ids[position],
                    "number": 1,
                    "state": "queued",
                    "reason": reason,
                    "created_at": prepared.at,
                }
                for position, reason in prepared.queued
            ],
        )
    return job_ids
