"""Attempts' metrics in the store: saved once per attempt (the agent's metrics call),
the base run a job compares with, and frozen views for the job page, the summary
comment and the engine's gate check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from app.core.results.metrics import Metrics, Point
from app.store.db import Database, Tx
from app.store.models import (
    Attempt,
    InboxEvent,
    Job,
    MetricReport,
    MetricValue,
    Pipeline,
    Repository,
)


@dataclass(frozen=True, slots=True)
class BaseRun:
    """The run a job's metrics are compared with."""

    attempt_id: int
    sha: str
    ref: str  # the branch name
    pipeline_id: int

    @property
    def label(self) -> str:
        return f"{self.ref} @ {self.sha[:7]}"


@dataclass(frozen=True, slots=True)
class AttemptMetrics:
    """An attempt's stored metrics and what became of its file."""

    attempt_id: int
    attempt_number: int
    file: str
    error: str | None
    problems: tuple[str, ...]
    scalars: Mapping[str, float]
    series: Mapping[str, tuple[Point, ...]]
    base: BaseRun | None
    base_scalars: Mapping[str, float] | None
    gate_failure: str | None
    spec: dict[str, Any] = field(default_factory=dict)  # the job's stored spec


def _branch_of(ref: str) -> str | None:
    return ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def base_branch(tx: Tx, pipeline: Pipeline) -> str:
    """The branch a pipeline's results compare with: a push's own branch; a pull or
    merge request's target branch (from its webhook), else the default branch."""
    own = _branch_of(pipeline.ref)
    if own is not None and pipeline.pr_number is None:
        return own
    if pipeline.event_id is not None:
        event = tx.get(InboxEvent, pipeline.event_id)
        payload = event.payload if event is not None and isinstance(event.payload, dict) else {}
        pr = payload.get("pull_request")
        if isinstance(pr, dict) and isinstance(pr.get("base"), dict):
            ref = pr["base"].get("ref")
            if isinstance(ref, str) and ref:
                return ref
        attrs = payload.get("object_attributes")
        if isinstance(attrs, dict) and isinstance(attrs.get("target_branch"), str):
            return str(attrs["target_branch"])
    repo = tx.get(Repository, pipeline.repository_id)
    return repo.default_branch if repo is not None else "main"


def find_base(tx: Tx, job: Job) -> BaseRun | None:
    """The latest successful run of the same job on the base branch, with metrics
    (another pipeline's; None when there is none)."""
    pipeline = job.pipeline
    branch = base_branch(tx, pipeline)
    row = tx.execute(
        select(Attempt.id, Pipeline.sha, Pipeline.id)
        .join(Job, Attempt.job_id == Job.id)
        .join(Pipeline, Job.pipeline_id == Pipeline.id)
        .join(MetricReport, MetricReport.attempt_id == Attempt.id)
        .where(
            Pipeline.repository_id == pipeline.repository_id,
            Pipeline.ref == f"refs/heads/{branch}",
            Pipeline.pr_number.is_(None),
            Pipeline.id != pipeline.id,
            Job.name == job.name,
            Job.state == "succeeded",
            Attempt.state == "succeeded",
            MetricReport.error.is_(None),
        )
        .order_by(Attempt.finished_at.desc(), Attempt.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return BaseRun(attempt_id=row[0], sha=row[1], ref=branch, pipeline_id=row[2])


def scalars_of(tx: Tx, attempt_id: int) -> dict[str, float]:
    rows = tx.scalars(
        select(MetricValue)
        .where(MetricValue.attempt_id == attempt_id, MetricValue.step.is_(None))
        .order_by(MetricValue.position)
    )
    return {r.name: r.value for r in rows}


def _series_of(tx: Tx, attempt_id: int) -> dict[str, tuple[Point, ...]]:
    rows = tx.scalars(
        select(MetricValue)
        .where(MetricValue.attempt_id == attempt_id, MetricValue.step.is_not(None))
        .order_by(MetricValue.position)
    )
    out: dict[str, list[Point]] = {}
    for r in rows:
        out.setdefault(r.name, []).append(Point(float(r.step or 0), r.value))
    return {k: tuple(v) for k, v in out.items()}


def save(
    tx: Tx,
    attempt: Attempt,
    file: str,
    metrics: Metrics | None,
    *,
    error: str | None,
    problems: Sequence[str],
    base: BaseRun | None,
    gate_failure: str | None,
) -> None:
    """Record an attempt's metrics (again: replaces what it sent before)."""
    tx.execute(delete(MetricValue).where(MetricValue.attempt_id == attempt.id))
    old = tx.get(MetricReport, attempt.id)
    if old is not None:
        tx.delete(old)
        tx.flush()
    tx.add(
        MetricReport(
            attempt_id=attempt.id,
            job_id=attempt.job_id,
            file=file,
            error=error,
            problems=list(problems),
            base_attempt_id=base.attempt_id if base else None,
            base_sha=base.sha if base else None,
            base_ref=base.ref if base else None,
            gate_failure=gate_failure,
        )
    )
    if metrics is None:
        return
    pos = 0
    rows: list[MetricValue] = []
    for name, value in metrics.scalars.items():
        rows.append(MetricValue(attempt_id=attempt.id, name=name, value=value, position=pos))
        pos += 1
    for name, points in metrics.series.items():
        for p in points:
            rows.append(
                MetricValue(
                    attempt_id=attempt.id, name=name, value=p.value, step=p.step, position=pos
                )
            )
            pos += 1
    tx.add_all(rows)


def gate_failure(tx: Tx, attempt_id: int) -> str | None:
    """The tripped ``fail_if`` gate of an attempt, if any (the engine fails it)."""
    report = tx.get(MetricReport, attempt_id)
    return report.gate_failure if report is not None else None


def _view(tx: Tx, report: MetricReport, attempt: Attempt) -> AttemptMetrics:
    base: BaseRun | None = None
    base_scalars: dict[str, float] | None = None
    if report.base_attempt_id is not None and report.base_sha is not None:
        base_attempt = tx.get(Attempt, report.base_attempt_id)
        base = BaseRun(
            report.base_attempt_id,
            report.base_sha,
            report.base_ref or "",
            base_attempt.job.pipeline_id if base_attempt is not None else 0,
        )
        base_scalars = scalars_of(tx, report.base_attempt_id)
    return AttemptMetrics(
        attempt_id=attempt.id,
        attempt_number=attempt.number,
        file=report.file,
        error=report.error,
        problems=tuple(str(p) for p in report.problems or ()),
        scalars=scalars_of(tx, attempt.id),
        series=_series_of(tx, attempt.id),
        base=base,
        base_scalars=base_scalars,
        gate_failure=report.gate_failure,
        spec=dict(attempt.job.spec or {}),
    )


def of_job(db: Database, job_id: int) -> AttemptMetrics | None:
    """The metrics of the job's latest attempt that sent any."""
    with db.session() as s:
        row = s.execute(
            select(MetricReport, Attempt)
            .join(Attempt, MetricReport.attempt_id == Attempt.id)
            .where(MetricReport.job_id == job_id)
            .order_by(Attempt.number.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return _view(s, row[0], row[1])


def of_pipeline(db: Database, pipeline_id: int) -> dict[int, AttemptMetrics]:
    """Job id -> the metrics of its latest attempt that sent any, for a pipeline."""
    out: dict[int, AttemptMetrics] = {}
    with db.session() as s:
        rows = s.execute(
            select(MetricReport, Attempt)
            .join(Attempt, MetricReport.attempt_id == Attempt.id)
            .join(Job, Attempt.job_id == Job.id)
            .where(Job.pipeline_id == pipeline_id)
            .order_by(Attempt.number)
        ).all()
        for report, attempt in rows:
            out[attempt.job_id] = _view(s, report, attempt)
    return out


def report_files(db: Database, job_globs: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
    """Job id -> the paths of its latest attempt's ready artifacts matching its
    ``report:`` globs, in path order."""
    from fnmatch import fnmatchcase

    from app.store.artifacts import ready_of_job

    out: dict[int, list[str]] = {}
    with db.session() as s:
        for job_id, globs in job_globs.items():
            found = ready_of_job(s, job_id)
            if not found:
                continue
            newest = found[0][1]
            out[job_id] = [
                a.path
                for a, number in found
                if number == newest and any(fnmatchcase(a.path, g) for g in globs)
            ]
    return out


def report_globs(db: Database, pipeline_id: int) -> dict[int, tuple[str, ...]]:
    """Job id -> its ``report:`` globs, for the pipeline's jobs that have any."""
    with db.session() as s:
        rows = s.execute(select(Job.id, Job.spec).where(Job.pipeline_id == pipeline_id)).all()
    out: dict[int, tuple[str, ...]] = {}
    for job_id, spec in rows:
        globs = (spec or {}).get("report") or ()
        if globs:
            out[int(job_id)] = tuple(str(g) for g in globs)
    return out


def report_globs_of_job(db: Database, job_id: int) -> tuple[str, ...]:
    with db.session() as s:
        spec = s.scalar(select(Job.spec).where(Job.id == job_id))
    return tuple(str(g) for g in (spec or {}).get("report") or ())
