"""The stored job spec (``jobs.spec``): one typed, immutable view of that JSON.

``StoredJobSpec.from_planned`` makes it from a planned job, ``to_stored`` gives the JSON
that is stored, and ``from_stored`` reads it back, applying the defaults a missing key
has always had (``DEFAULT_TIMEOUT_S``, ``DEFAULT_RETRY``, workload ``test``, spot
``auto``), so nothing outside this module reads the JSON's keys.

Not to be confused with ``app.core.config.model.JobSpec``, a job as the user wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.config.model import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT_S,
    Artifacts,
    Cache,
    GpuRequest,
    Image,
    ImageOptions,
    MetricsSpec,
    NotifyChannel,
    PlannedJob,
    Resources,
    RetryPolicy,
    RetryReason,
    SpotPolicy,
    Step,
    Workload,
    frozen_map,
)
from app.core.results.notify import channel_from_json, channel_json


@dataclass(frozen=True, slots=True)
class StoredStep:
    """One step as stored: ``title`` is what a person sees (``Step.title``)."""

    title: str
    run: str
    env: Mapping[str, str] = field(default_factory=frozen_map)
    timeout_s: int | None = None
    continue_on_error: bool = False

    @classmethod
    def from_step(cls, step: Step) -> StoredStep:
        return cls(
            title=step.title,
            run=step.run,
            env=frozen_map(step.env),
            timeout_s=step.timeout_s,
            continue_on_error=step.continue_on_error,
        )

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> StoredStep:
        timeout = d.get("timeout_s")
        return cls(
            title=str(d.get("title") or ""),
            run=str(d.get("run") or ""),
            env=_str_map(d.get("env")),
            timeout_s=int(timeout) if timeout is not None else None,
            continue_on_error=bool(d.get("continue_on_error", False)),
        )

    def to_stored(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "run": self.run,
            "env": dict(self.env),
            "timeout_s": self.timeout_s,
            "continue_on_error": self.continue_on_error,
        }


@dataclass(frozen=True, slots=True)
class StoredJobSpec:
    """Everything needed to run and retry a job, as stored with it."""

    steps: tuple[StoredStep, ...] = ()
    env: Mapping[str, str] = field(default_factory=frozen_map)
    secrets: tuple[str, ...] = ()
    timeout_s: int = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = DEFAULT_RETRY
    workload: Workload = Workload.TEST
    spot: SpotPolicy = SpotPolicy.AUTO
    image: Image | None = None  # ``${{ matrix.K }}`` expanded in its name
    clean_machine: bool = False
    disk_gb: int | None = None  # the root volume asked for (``resources.disk``), whole GB
    cache: Cache | None = None  # ``${{ matrix.K }}`` expanded; ``hashFiles`` left to the agent
    artifacts: Artifacts | None = None
    # What the job asked with ``resources`` (None when it named ``hardware``): agents are
    # matched to it (``app.core.agentfit``).
    resources: Resources | None = None
    # ``metrics:`` (read by the server after the steps) and ``report:`` (globs of files
    # shown with the results; also in ``artifacts``, which uploads them).
    metrics: MetricsSpec | None = None
    report: tuple[str, ...] = ()
    notify: tuple[NotifyChannel, ...] = ()  # the pipeline's ``notify:`` (every job has it)

    @classmethod
    def from_planned(cls, job: PlannedJob) -> StoredJobSpec:
        s = job.spec
        return cls(
            steps=tuple(StoredStep.from_step(step) for step in job.steps),
            env=frozen_map(job.env),
            secrets=tuple(s.secrets),
            timeout_s=s.timeout_s,
            retry=s.retry,
            workload=s.workload,
            spot=s.spot,
            image=job.image if job.image is not None else s.image,
            clean_machine=s.clean_machine,
            disk_gb=_disk_gb(job),
            cache=_cache(job),
            artifacts=_with_report(s.artifacts, s.report),
            resources=_resources(job),
            metrics=s.metrics,
            report=tuple(s.report),
            notify=tuple(s.notify),
        )

    @classmethod
    def from_stored(cls, d: Mapping[str, Any] | None) -> StoredJobSpec:
        """Read ``jobs.spec``; a missing key has its default. Raises ``ValueError`` on a
        value that is not one of its enum's (workload, spot, a retry reason)."""
        d = d or {}
        timeout = d.get("timeout_s")
        disk = d.get("disk_gb")
        return cls(
            steps=tuple(StoredStep.from_stored(step) for step in d.get("steps") or ()),
            env=_str_map(d.get("env")),
            secrets=tuple(str(n) for n in d.get("secrets") or ()),
            timeout_s=int(timeout) if timeout is not None else DEFAULT_TIMEOUT_S,
            retry=_retry(d.get("retry") or {}),
            workload=Workload(str(d.get("workload") or Workload.TEST.value)),
            spot=SpotPolicy(str(d.get("spot") or SpotPolicy.AUTO.value)),
            image=stored_image(d),
            clean_machine=bool(d.get("clean_machine")),
            disk_gb=int(disk) if disk is not None else None,
            cache=_stored_cache(d.get("cache")),
            artifacts=_stored_artifacts(d.get("artifacts")),
            resources=stored_resources(d),
            metrics=stored_metrics(d),
            report=tuple(str(p) for p in d.get("report") or ()),
            notify=stored_notify(d),
        )

    @property
    def secret_names(self) -> tuple[str, ...]:
        """Every secret the job reads: its ``secrets`` (exported to the steps) and its
        image's registry ``credentials`` (used for the pull only)."""
        names = list(self.secrets)
        creds = self.image.credentials if self.image is not None else None
        if creds is not None and creds not in names:
            names.append(creds)
        return tuple(names)

    def to_stored(self) -> dict[str, Any]:
        """The JSON stored in ``jobs.spec``."""
        r = self.retry
        return {
            "steps": [step.to_stored() for step in self.steps],
            "env": dict(self.env),
            "secrets": list(self.secrets),
            "timeout_s": self.timeout_s,
            "retry": {
                "max": r.max,
                "when": sorted(w.value for w in r.when),
                "exit_codes": list(r.exit_codes),
                "capacity_wait_s": r.capacity_wait_s,
            },
            "workload": self.workload.value,
            "spot": self.spot.value,
            "image": _image_json(self.image),
            "clean_machine": self.clean_machine,
            "disk_gb": self.disk_gb,
            "cache": (
                {
                    "key": self.cache.key,
                    "paths": list(self.cache.paths),
                    "restore_keys": list(self.cache.restore_keys),
                }
                if self.cache is not None
                else None
            ),
            "artifacts": (
                {"paths": list(self.artifacts.paths), "expire_in_s": self.artifacts.expire_in_s}
                if self.artifacts is not None
                else None
            ),
            "resources": _resources_json(self.resources),
            # Only when set: a job without them is stored as it always was.
            **({"metrics": _metrics_json(self.metrics)} if self.metrics is not None else {}),
            **({"report": list(self.report)} if self.report else {}),
            **({"notify": [channel_json(c) for c in self.notify]} if self.notify else {}),
        }


def _with_report(artifacts: Artifacts | None, report: tuple[str, ...]) -> Artifacts | None:
    """The job's artifacts with its ``report`` files added (they are uploaded as artifacts)."""
    paths = list(artifacts.paths) if artifacts is not None else []
    paths += [p for p in report if p not in paths]
    if not paths:
        return None
    return Artifacts(paths=tuple(paths), expire_in_s=artifacts.expire_in_s if artifacts else None)


def _metrics_json(m: MetricsSpec | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "file": m.file,
        "keys": list(m.keys) if m.keys is not None else None,
        "higher_is_better": dict(m.higher_is_better),
        "fail_if": dict(m.fail_if),
    }


def stored_metrics(d: Mapping[str, Any] | None) -> MetricsSpec | None:
    """The ``metrics`` of a stored spec alone (None: the job has none)."""
    m = (d or {}).get("metrics")
    if not m:
        return None
    from types import MappingProxyType

    keys = m.get("keys")
    return MetricsSpec(
        file=str(m.get("file") or ""),
        keys=tuple(str(k) for k in keys) if keys is not None else None,
        higher_is_better=MappingProxyType(
            {str(k): bool(v) for k, v in (m.get("higher_is_better") or {}).items()}
        ),
        fail_if=frozen_map({str(k): str(v) for k, v in (m.get("fail_if") or {}).items()}),
    )


def stored_notify(d: Mapping[str, Any] | None) -> tuple[NotifyChannel, ...]:
    """The ``notify`` channels of a stored spec alone."""
    return tuple(channel_from_json(c) for c in (d or {}).get("notify") or ())


def _str_map(value: Any) -> Mapping[str, str]:
    return frozen_map({str(k): str(v) for k, v in (value or {}).items()})


def _retry(r: Mapping[str, Any]) -> RetryPolicy:
    when = r.get("when")
    return RetryPolicy(
        max=int(r.get("max", DEFAULT_RETRY.max)),
        when=frozenset(RetryReason(w) for w in when) if when is not None else DEFAULT_RETRY.when,
        exit_codes=tuple(int(c) for c in r.get("exit_codes") or ()),
        capacity_wait_s=int(r["capacity_wait_s"]) if r.get("capacity_wait_s") else None,
    )


def _stored_cache(c: Any) -> Cache | None:
    if not c:
        return None
    return Cache(
        key=str(c["key"]),
        paths=tuple(str(p) for p in c.get("paths") or ()),
        restore_keys=tuple(str(k) for k in c.get("restore_keys") or ()),
    )


def _stored_artifacts(a: Any) -> Artifacts | None:
    if not a:
        return None
    expire = a.get("expire_in_s")
    return Artifacts(
        paths=tuple(str(p) for p in a.get("paths") or ()),
        expire_in_s=int(expire) if expire is not None else None,
    )


def _cache(job: PlannedJob) -> Cache | None:
    cache = job.cache if job.cache is not None else job.spec.cache
    if cache is None or not cache.key or not cache.paths:
        return None
    return cache


def _resources(job: PlannedJob) -> Resources | None:
    if job.resources is not None:
        return job.resources
    return job.spec.resources if not job.hardware else None


def _resources_json(r: Resources | None) -> dict[str, Any] | None:
    if r is None:
        return None
    gpu = r.gpu
    return {
        "gpu": (
            {"type": gpu.type, "count": gpu.count, "memory_gb": gpu.memory_gb}
            if gpu is not None
            else None
        ),
        "cpu": r.cpu,
        "memory_gb": r.memory_gb,
        "disk_gb": r.disk_gb,
    }


def stored_image(d: Mapping[str, Any] | None) -> Image | None:
    """The ``image`` of a stored spec alone: a name (as older specs store it, and as one
    without credentials or options is stored) or ``{name, credentials, options}``."""
    raw = (d or {}).get("image")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, Mapping):
        return Image(name=str(raw))
    opts = raw.get("options") or {}

    def opt(key: str) -> str | None:
        v = opts.get(key)
        return str(v) if v is not None else None

    creds = raw.get("credentials")
    return Image(
        name=str(raw.get("name") or ""),
        credentials=str(creds) if creds else None,
        options=ImageOptions(
            user=opt("user"), entrypoint=opt("entrypoint"), shm_size=opt("shm_size")
        ),
    )


def _image_json(image: Image | None) -> str | dict[str, Any] | None:
    if image is None:
        return None
    o = image.options
    options = {
        k: v
        for k, v in (("user", o.user), ("entrypoint", o.entrypoint), ("shm_size", o.shm_size))
        if v is not None
    }
    if image.credentials is None and not options:
        return image.name
    return {"name": image.name, "credentials": image.credentials, "options": options}


def _opt_float(value: Any) -> float | None:
    return float(value) if value is not None else None


def stored_resources(d: Mapping[str, Any] | None) -> Resources | None:
    """The ``resources`` of a stored spec alone (the engine reads it for each queued job
    an agent looks at, without the rest); None when the job named ``hardware``."""
    r = (d or {}).get("resources")
    if not r:
        return None
    g = r.get("gpu")
    gpu = None
    if g:
        gtype = g.get("type")
        gpu = GpuRequest(
            type=str(gtype) if gtype is not None else None,
            count=int(g.get("count") or 1),
            memory_gb=_opt_float(g.get("memory_gb")),
        )
    cpu = r.get("cpu")
    return Resources(
        gpu=gpu,
        cpu=int(cpu) if cpu is not None else None,
        memory_gb=_opt_float(r.get("memory_gb")),
        disk_gb=_opt_float(r.get("disk_gb")),
    )


def _disk_gb(job: PlannedJob) -> int | None:
    resources = job.resources or job.spec.resources
    if resources is None or not resources.disk_gb:
        return None
    return int(-(-resources.disk_gb // 1))
