"""Conversions between the core's planned jobs and what is stored and sent to agents."""

from __future__ import annotations

from typing import Any

from app.core.config.model import PlannedJob
from app.core.jobspec import StoredJobSpec, StoredStep
from app.protocol import ArtifactsPayload, CachePayload, JobPayload, StepPayload
from app.store.models import Attempt, Job, Pipeline


def job_spec(job: PlannedJob) -> dict[str, Any]:
    """The JSON stored in ``jobs.spec``: everything needed to run and retry the job."""
    return StoredJobSpec.from_planned(job).to_stored()


def agent_payload(
    pipeline: Pipeline, job: Job, attempt: Attempt, secrets: dict[str, str]
) -> JobPayload:
    """The ``job`` object of a claim answer (docs/agent-protocol.md)."""
    spec = StoredJobSpec.from_stored(job.spec)
    repo = pipeline.repository
    env = {
        "CI": "true",
        "PLOYD": "true",
        "PLOYD_PIPELINE_ID": str(pipeline.id),
        "PLOYD_JOB": job.name,
        "PLOYD_JOB_ID": str(job.id),
        "PLOYD_ATTEMPT": str(attempt.number),
        "PLOYD_SHA": pipeline.sha,
        "PLOYD_REF": pipeline.ref,
        "PLOYD_REPOSITORY": repo.full_name,
        **spec.env,
    }
    return JobPayload(
        pipeline_id=pipeline.id,
        job_id=job.id,
        attempt_id=attempt.id,
        attempt_number=attempt.number,
        name=job.name,
        forge=repo.forge,
        repo=repo.full_name,
        clone_url=repo.clone_url,
        sha=pipeline.sha,
        ref=pipeline.ref,
        workspace_key=f"{repo.forge}-{repo.full_name}".replace("/", "-"),
        fork=pipeline.fork,
        timeout_s=spec.timeout_s,
        env=env,
        secrets=secrets,
        mask=(),  # more values to mask in the log (a forge adapter's clone token)
        steps=tuple(_step(i, step) for i, step in enumerate(spec.steps)),
        # Forks' pipelines neither read nor write caches (docs/agent-protocol.md).
        cache=(
            CachePayload(
                key=spec.cache.key,
                paths=tuple(spec.cache.paths),
                restore_keys=tuple(spec.cache.restore_keys),
                read=not pipeline.fork,
                write=not pipeline.fork,
            )
            if spec.cache is not None
            else None
        ),
        artifacts=(
            ArtifactsPayload(
                paths=tuple(spec.artifacts.paths), expire_in_s=spec.artifacts.expire_in_s
            )
            if spec.artifacts is not None
            else None
        ),
    )


def _step(index: int, step: StoredStep) -> StepPayload:
    """A stored step (``job_spec``) as sent to the agent."""
    return StepPayload(
        index=index,
        title=step.title,
        run=step.run,
        env=dict(step.env),
        timeout_s=step.timeout_s,
        continue_on_error=step.continue_on_error,
    )
