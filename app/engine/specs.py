"""Conversions between the core's planned jobs and what is stored and sent to agents."""

from __future__ import annotations

from typing import Any

from app.core.config.model import PlannedJob
from app.core.jobspec import StoredJobSpec
from app.store.models import Attempt, Job, Pipeline


def job_spec(job: PlannedJob) -> dict[str, Any]:
    """The JSON stored in ``jobs.spec``: everything needed to run and retry the job."""
    return StoredJobSpec.from_planned(job).to_stored()


def agent_payload(
    pipeline: Pipeline, job: Job, attempt: Attempt, secrets: dict[str, str]
) -> dict[str, Any]:
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
    return {
        "pipeline_id": pipeline.id,
        "job_id": job.id,
        "attempt_id": attempt.id,
        "attempt_number": attempt.number,
        "name": job.name,
        "forge": repo.forge,
        "repo": repo.full_name,
        "clone_url": repo.clone_url,
        "sha": pipeline.sha,
        "ref": pipeline.ref,
        "workspace_key": f"{repo.forge}-{repo.full_name}".replace("/", "-"),
        "timeout_s": spec.timeout_s,
        "env": env,
        "secrets": secrets,
        "mask": [],  # more values to mask in the log (a forge adapter's clone token)
        "steps": [{"index": i, **step.to_stored()} for i, step in enumerate(spec.steps)],
        # Forks' pipelines neither read nor write caches (docs/agent-protocol.md).
        "cache": (
            {
                "key": spec.cache.key,
                "paths": list(spec.cache.paths),
                "restore_keys": list(spec.cache.restore_keys),
                "read": not pipeline.fork,
                "write": not pipeline.fork,
            }
            if spec.cache is not None
            else None
        ),
        "artifacts": (
            {"paths": list(spec.artifacts.paths), "expire_in_s": spec.artifacts.expire_in_s}
            if spec.artifacts is not None
            else None
        ),
    }
