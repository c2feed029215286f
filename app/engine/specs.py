"""Conversions between the core's planned jobs and what is stored and sent to agents."""

from __future__ import annotations

from typing import Any

from app.core.config.model import PlannedJob, RetryPolicy, RetryReason
from app.protocol import ArtifactsPayload, CachePayload, JobPayload, StepPayload
from app.store.models import Attempt, Job, Pipeline


def job_spec(job: PlannedJob) -> dict[str, Any]:
    """The JSON stored in ``jobs.spec``: everything needed to run and retry the job."""
    s = job.spec
    return {
        "steps": [
            {
                "title": step.title,
                "run": step.run,
                "env": dict(step.env),
                "timeout_s": step.timeout_s,
                "continue_on_error": step.continue_on_error,
            }
            for step in job.steps
        ],
        "env": dict(job.env),
        "secrets": list(s.secrets),
        "timeout_s": s.timeout_s,
        "retry": {
            "max": s.retry.max,
            "when": sorted(r.value for r in s.retry.when),
            "exit_codes": list(s.retry.exit_codes),
        },
        "workload": s.workload.value,
        "spot": s.spot.value,
        "image": s.image,
        "clean_machine": s.clean_machine,
        "disk_gb": _disk_gb(job),
        "cache": _cache_spec(job),
        "artifacts": (
            {"paths": list(s.artifacts.paths), "expire_in_s": s.artifacts.expire_in_s}
            if s.artifacts is not None and s.artifacts.paths
            else None
        ),
    }


def _cache_spec(job: PlannedJob) -> dict[str, Any] | None:
    """``cache`` with ``${{ matrix.K }}`` expanded; ``hashFiles`` is left to the agent."""
    cache = job.cache if job.cache is not None else job.spec.cache
    if cache is None or not cache.key or not cache.paths:
        return None
    return {"key": cache.key, "paths": list(cache.paths), "restore_keys": list(cache.restore_keys)}


def _disk_gb(job: PlannedJob) -> int | None:
    """The root volume a job asks for (``resources.disk``), in whole GB."""
    resources = job.resources or job.spec.resources
    if resources is None or not resources.disk_gb:
        return None
    return int(-(-resources.disk_gb // 1))


def retry_policy(spec: dict[str, Any]) -> RetryPolicy:
    r = spec.get("retry") or {}
    return RetryPolicy(
        max=int(r.get("max", 2)),
        when=frozenset(
            RetryReason(w) for w in r.get("when", ["spot_interruption", "infrastructure"])
        ),
        exit_codes=tuple(int(c) for c in r.get("exit_codes", [])),
    )


def agent_payload(
    pipeline: Pipeline, job: Job, attempt: Attempt, secrets: dict[str, str]
) -> JobPayload:
    """The ``job`` object of a claim answer (docs/agent-protocol.md)."""
    spec = job.spec
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
        **spec.get("env", {}),
    }
    cache = spec.get("cache")
    artifacts = spec.get("artifacts")
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
        timeout_s=int(spec.get("timeout_s", 1800)),
        env=env,
        secrets=secrets,
        mask=(),  # more values to mask in the log (a forge adapter's clone token)
        steps=tuple(_step(i, step) for i, step in enumerate(spec.get("steps", []))),
        # Forks' pipelines neither read nor write caches (docs/agent-protocol.md).
        cache=(
            CachePayload(
                key=cache["key"],
                paths=tuple(cache["paths"]),
                restore_keys=tuple(cache["restore_keys"]),
                read=not pipeline.fork,
                write=not pipeline.fork,
            )
            if cache
            else None
        ),
        artifacts=(
            ArtifactsPayload(paths=tuple(artifacts["paths"]), expire_in_s=artifacts["expire_in_s"])
            if artifacts is not None
            else None
        ),
    )


def _step(index: int, step: dict[str, Any]) -> StepPayload:
    """A stored step (``job_spec``) as sent to the agent."""
    return StepPayload(
        index=index,
        title=step["title"],
        run=step["run"],
        env=dict(step["env"]),
        timeout_s=step["timeout_s"],
        continue_on_error=step["continue_on_error"],
    )
