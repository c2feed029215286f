"""Conversions between the core's planned jobs and what is stored and sent to agents."""

from __future__ import annotations

from typing import Any

from app.core.config.model import Image, PlannedJob
from app.core.jobspec import StoredJobSpec, StoredStep
from app.protocol import (
    ArtifactsPayload,
    CachePayload,
    ImagePayload,
    JobPayload,
    MetricsPayload,
    RegistryCredentials,
    StepPayload,
)
from app.store.models import Attempt, Job, Pipeline


def job_spec(job: PlannedJob) -> dict[str, Any]:
    """The JSON stored in ``jobs.spec``: everything needed to run and retry the job."""
    return StoredJobSpec.from_planned(job).to_stored()


def agent_payload(
    pipeline: Pipeline,
    job: Job,
    attempt: Attempt,
    secrets: dict[str, str],
    *,
    gpus: int = 0,
) -> JobPayload:
    """The ``job`` object of a claim answer (docs/agent-protocol.md). ``secrets``: the
    values of the job's ``secret_names``; those of ``secrets:`` go to the steps, the
    image's ``credentials`` only to the pull (a fork's pipeline has neither). Raises
    ``ValueError`` when the image's credentials are not among them."""
    spec = StoredJobSpec.from_stored(job.spec)
    image, mask = _image(spec.image, secrets, fork=pipeline.fork)
    exported = {
        k: v
        for k, v in secrets.items()
        if k in spec.secrets or spec.image is None or k != spec.image.credentials
    }
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
        secrets=exported,
        mask=mask,  # more values to mask in the log (registry credentials; a clone token)
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
        image=image,
        gpus=gpus,
        metrics=MetricsPayload(file=spec.metrics.file) if spec.metrics is not None else None,
    )


def _image(
    image: Image | None, secrets: dict[str, str], *, fork: bool
) -> tuple[ImagePayload | None, tuple[str, ...]]:
    """The image as sent to the agent, and the values to mask (its credentials)."""
    if image is None:
        return None, ()
    o = image.options
    options = {
        k: v
        for k, v in (("user", o.user), ("entrypoint", o.entrypoint), ("shm_size", o.shm_size))
        if v is not None
    }
    creds: RegistryCredentials | None = None
    mask: tuple[str, ...] = ()
    if image.credentials is not None and not fork:
        value = secrets.get(image.credentials)
        if value is None:
            raise ValueError(
                f"the secret {image.credentials} (the credentials of image {image.name}) "
                "was not provided"
            )
        creds = RegistryCredentials.from_secret(value)
        mask = (value, creds.password)
    return ImagePayload(name=image.name, options=options, credentials=creds), mask


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
