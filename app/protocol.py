"""The agent protocol's messages (docs/agent-protocol.md), one frozen dataclass each.

Both sides use these: the server (``app.web.agent_api``, ``app.engine``) and the agent
(``app.agent``). ``to_json()`` gives the JSON object sent on the wire; ``from_json(obj)``
reads one back, checking every field's type, and raises one ``ProtocolError`` naming the
field (``job.steps[2].run must be a string``) for anything else.

Standard library only, and Python 3.9 syntax: this module ships with the agent, which
runs on whatever Python a machine has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The largest integer a field may hold: ids, counts and exit codes are stored in the
# database's INTEGER columns (32 bits).
INT_MAX = 2**31 - 1
INT_MIN = -(2**31)
MAX_AGENT_ID = 128

# Step states, and the results a job ends with (the finish report's ``result``).
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
SKIPPED = "skipped"
INTERRUPTED = "interrupted"
STEP_STATES = (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, SKIPPED)
RESULTS = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, INTERRUPTED)

# Why a job did not succeed (the finish report's ``reason``).
SPOT_INTERRUPTION = "spot_interruption"
SCRIPT_FAILURE = "script_failure"
TIMEOUT = "timeout"
INFRASTRUCTURE = "infrastructure"
REASON_CANCELLED = "cancelled"
REASONS = (SPOT_INTERRUPTION, SCRIPT_FAILURE, TIMEOUT, INFRASTRUCTURE, REASON_CANCELLED)


class ProtocolError(ValueError):
    """A message that is not what the protocol says; the text names the field."""


# ---- reading JSON --------------------------------------------------------------------

_MISSING: Any = object()


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _object(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be an object")
    return obj


def _get(obj: Mapping[str, Any], where: str, key: str, default: Any = _MISSING) -> Any:
    """``obj[key]``; ``default`` when it is absent or null (required when no default)."""
    value = obj.get(key)
    if value is None and default is not _MISSING:
        return default
    if key not in obj:
        raise ProtocolError(f"{_at(where, key)} is missing")
    return value


def _int(value: object, path: str, lo: int = 0, hi: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(f"{path} must be an integer from {lo} to {hi}")
    return value


def _opt_int(value: object, path: str, lo: int = 0, hi: int = INT_MAX) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(f"{path} must be an integer from {lo} to {hi}, or null")
    return value


def _number(value: object, path: str) -> float:
    """A finite JSON number, kept as it came (an int stays an int)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            if math.isfinite(value):
                return value
        except OverflowError:  # an int too large for a float
            pass
    raise ProtocolError(f"{path} must be a finite number")


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{path} must be a string")
    return value


def _opt_str(value: object, path: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"{path} must be a string or null")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{path} must be true or false")
    return value


def _strings(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ProtocolError(f"{path} must be a list of strings")
    return tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _str_map(value: object, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{path} must be an object of strings")
    return {_str(k, f"{path} keys"): _str(v, f"{path}.{k}") for k, v in value.items()}


def _one_of(value: object, path: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ProtocolError(f"{path} must be one of {', '.join(allowed)}")
    return value


# ---- the claim -----------------------------------------------------------------------


MAX_GPUS = 64
MAX_LABELS = 64
# The container runtimes an agent may report ("": none).
CONTAINER_RUNTIMES = ("", "podman", "docker")


def _agent_id(value: object, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_AGENT_ID:
        raise ProtocolError(
            f"{path} must be a non-empty string of at most {MAX_AGENT_ID} characters"
        )
    return value


@dataclass(frozen=True)
class Gpu:
    """One GPU as the agent found it: ``model`` is the catalog's class (``h100``,
    ``a100``, ``l4``...; empty when unknown), ``name`` what ``nvidia-smi`` printed."""

    name: str
    model: str
    memory_mb: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "memory_mb": self.memory_mb}

    @classmethod
    def from_json(cls, obj: object, where: str = "gpu") -> Gpu:
        d = _object(obj, where)
        return cls(
            name=_str(_get(d, where, "name"), _at(where, "name")),
            model=_str(_get(d, where, "model", ""), _at(where, "model")),
            memory_mb=_int(_get(d, where, "memory_mb", 0), _at(where, "memory_mb")),
        )


def _runtime(value: object, path: str) -> str:
    if not isinstance(value, str) or value not in CONTAINER_RUNTIMES:
        known = ", ".join(r for r in CONTAINER_RUNTIMES if r)
        raise ProtocolError(f"{path} must be one of {known}, or empty")
    return value


@dataclass(frozen=True)
class Hardware:
    """What the agent's machine has (``app.agent.hardware`` detects it at start), and
    the container runtime it can run jobs' images with (``podman``, ``docker``; empty:
    none, and it gets no job with an ``image``)."""

    cpus: int
    memory_mb: int
    disk_gb: int
    gpus: tuple[Gpu, ...] = ()
    containers: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "disk_gb": self.disk_gb,
            "gpus": [g.to_json() for g in self.gpus],
        }
        if self.containers:
            out["containers"] = self.containers
        return out

    @classmethod
    def from_json(cls, obj: object, where: str = "hardware") -> Hardware:
        d = _object(obj, where)
        gpus = _get(d, where, "gpus", [])
        if not isinstance(gpus, list) or len(gpus) > MAX_GPUS:
            raise ProtocolError(f"{_at(where, 'gpus')} must be a list of at most {MAX_GPUS}")
        return cls(
            cpus=_int(_get(d, where, "cpus"), _at(where, "cpus")),
            memory_mb=_int(_get(d, where, "memory_mb", 0), _at(where, "memory_mb")),
            disk_gb=_int(_get(d, where, "disk_gb", 0), _at(where, "disk_gb")),
            gpus=tuple(Gpu.from_json(g, f"{_at(where, 'gpus')}[{i}]") for i, g in enumerate(gpus)),
            containers=_runtime(_get(d, where, "containers", ""), _at(where, "containers")),
        )


@dataclass(frozen=True)
class ClaimRequest:
    """``POST /claim``: an agent asks for a job, waiting up to ``wait`` seconds. It says
    which version it runs and what hardware it has (both optional on the wire: older
    agents send neither)."""

    agent_id: str
    wait: float = 0
    version: str = ""
    hardware: Hardware | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agent_id": self.agent_id, "wait": self.wait}
        if self.version:
            out["version"] = self.version
        if self.hardware is not None:
            out["hardware"] = self.hardware.to_json()
        return out

    @classmethod
    def from_json(cls, obj: object) -> ClaimRequest:
        d = _object(obj, "a claim request")
        hardware = d.get("hardware")
        return cls(
            agent_id=_agent_id(_get(d, "", "agent_id"), "agent_id"),
            wait=_number(_get(d, "", "wait", 0), "wait"),
            version=_str(_get(d, "", "version", ""), "version"),
            hardware=None if hardware is None else Hardware.from_json(hardware),
        )


@dataclass(frozen=True)
class Registration:
    """``POST /register`` (``Authorization: Bearer <registration token>``): a new agent
    introduces itself; the token is exchanged, once, for its own credential."""

    name: str
    version: str
    hardware: Hardware
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "hardware": self.hardware.to_json(),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, obj: object) -> Registration:
        d = _object(obj, "a registration")
        labels = _str_map(_get(d, "", "labels", {}), "labels")
        if len(labels) > MAX_LABELS:
            raise ProtocolError(f"labels: at most {MAX_LABELS}")
        return cls(
            name=_agent_id(_get(d, "", "name"), "name"),
            version=_str(_get(d, "", "version", ""), "version"),
            hardware=Hardware.from_json(_get(d, "", "hardware")),
            labels=labels,
        )


@dataclass(frozen=True)
class Registered:
    """The answer to a registration: the agent's id and its own credential (a bearer
    token for every later call; the agent keeps it in memory only)."""

    agent_id: str
    credential: str

    def to_json(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "credential": self.credential}

    @classmethod
    def from_json(cls, obj: object) -> Registered:
        d = _object(obj, "a registration answer")
        return cls(
            agent_id=_agent_id(_get(d, "", "agent_id"), "agent_id"),
            credential=_str(_get(d, "", "credential"), "credential"),
        )


@dataclass(frozen=True)
class UpdateRequired:
    """The answer to a claim (HTTP 426) from an agent of another version than the
    server's: fetch the server's agent from ``url`` (a path on the server, or an absolute
    http(s) URL), check that its SHA-256 is ``sha256``, and run it instead."""

    version: str
    url: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "url": self.url, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: object) -> UpdateRequired:
        d = _object(obj, "an update instruction")
        sha = _str(_get(d, "", "sha256"), "sha256").lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ProtocolError("sha256 must be 64 hexadecimal digits")
        version = _str(_get(d, "", "version"), "version")
        if not version:
            raise ProtocolError("version must be a non-empty string")
        url = _str(_get(d, "", "url"), "url")
        if not (url.startswith("/") or url.startswith(("http://", "https://"))):
            raise ProtocolError("url must be a path on the server or an http(s) URL")
        return cls(version=version, url=url, sha256=sha)


MAX_BOOT_REASON = 2000


@dataclass(frozen=True)
class BootFailure:
    """``POST /bootstrap-failed`` (``Authorization: Bearer <registration token>``): a
    machine's bootstrap could not start the agent, and says why before it shuts down."""

    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_json(cls, obj: object) -> BootFailure:
        d = _object(obj, "a bootstrap failure")
        text = _str(_get(d, "", "reason"), "reason")
        reason = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        if not reason:
            raise ProtocolError("reason must be a non-empty string")
        return cls(reason=reason[:MAX_BOOT_REASON])


@dataclass(frozen=True)
class StepPayload:
    """One step of a claimed job."""

    index: int
    title: str
    run: str
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: int | None = None
    continue_on_error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "title": self.title,
            "run": self.run,
            "env": dict(self.env),
            "timeout_s": self.timeout_s,
            "continue_on_error": self.continue_on_error,
        }

    @classmethod
    def from_json(cls, obj: object, where: str = "step") -> StepPayload:
        d = _object(obj, where)
        return cls(
            index=_int(_get(d, where, "index"), _at(where, "index")),
            title=_str(_get(d, where, "title", ""), _at(where, "title")),
            run=_str(_get(d, where, "run"), _at(where, "run")),
            env=_str_map(_get(d, where, "env", {}), _at(where, "env")),
            timeout_s=_opt_int(_get(d, where, "timeout_s", None), _at(where, "timeout_s")),
            continue_on_error=_bool(
                _get(d, where, "continue_on_error", False), _at(where, "continue_on_error")
            ),
        )


@dataclass(frozen=True)
class CachePayload:
    """A job's cache: ``key`` still holds its ``${{ hashFiles(...) }}`` (the agent
    evaluates it); ``read``/``write`` are both false for forks' pipelines."""

    key: str
    paths: tuple[str, ...] = ()
    restore_keys: tuple[str, ...] = ()
    read: bool = True
    write: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "paths": list(self.paths),
            "restore_keys": list(self.restore_keys),
            "read": self.read,
            "write": self.write,
        }

    @classmethod
    def from_json(cls, obj: object, where: str = "cache") -> CachePayload:
        d = _object(obj, where)
        return cls(
            key=_str(_get(d, where, "key"), _at(where, "key")),
            paths=_strings(_get(d, where, "paths", []), _at(where, "paths")),
            restore_keys=_strings(_get(d, where, "restore_keys", []), _at(where, "restore_keys")),
            read=_bool(_get(d, where, "read", True), _at(where, "read")),
            write=_bool(_get(d, where, "write", True), _at(where, "write")),
        )


@dataclass(frozen=True)
class ArtifactsPayload:
    """The workspace files a job keeps, and for how long (None: the server's default)."""

    paths: tuple[str, ...] = ()
    expire_in_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"paths": list(self.paths), "expire_in_s": self.expire_in_s}

    @classmethod
    def from_json(cls, obj: object, where: str = "artifacts") -> ArtifactsPayload:
        d = _object(obj, where)
        return cls(
            paths=_strings(_get(d, where, "paths", []), _at(where, "paths")),
            expire_in_s=_opt_int(_get(d, where, "expire_in_s", None), _at(where, "expire_in_s")),
        )


@dataclass(frozen=True)
class MetricsPayload:
    """The job's metrics file (relative to the workspace), sent to the server after the
    steps, at most ``max_bytes`` of it (the server parses it)."""

    file: str
    max_bytes: int = 1 << 20

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "max_bytes": self.max_bytes}

    @classmethod
    def from_json(cls, obj: object, where: str = "metrics") -> MetricsPayload:
        d = _object(obj, where)
        return cls(
            file=_str(_get(d, where, "file"), _at(where, "file")),
            max_bytes=_int(_get(d, where, "max_bytes", 1 << 20), _at(where, "max_bytes")),
        )


# What ``image.options`` may set (``app.agent.container`` applies them).
IMAGE_OPTIONS = ("user", "entrypoint", "shm_size")
# The user name sent with a registry credentials secret that is a bare token.
TOKEN_USER = "ployd"


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login, from the secret an ``image`` names (its value, too, is in the
    job's ``mask``)."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def from_secret(cls, value: str) -> RegistryCredentials:
        """A credentials secret's value: ``username:password``, or a bare token (sent
        with the user name ``TOKEN_USER``)."""
        user, sep, password = value.strip().partition(":")
        if not sep:
            return cls(username=TOKEN_USER, password=value.strip())
        return cls(username=user, password=password)

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}

    @classmethod
    def from_json(cls, obj: object, where: str = "credentials") -> RegistryCredentials:
        d = _object(obj, where)
        return cls(
            username=_str(_get(d, where, "username"), _at(where, "username")),
            password=_str(_get(d, where, "password"), _at(where, "password")),
        )


@dataclass(frozen=True)
class ImagePayload:
    """The container image a job's steps run in: its name, how its container starts
    (``IMAGE_OPTIONS``), and the login for its registry (None: none given; an ECR
    image then uses the machine's instance role)."""

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    credentials: RegistryCredentials | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": dict(self.options),
            "credentials": self.credentials.to_json() if self.credentials is not None else None,
        }

    @classmethod
    def from_json(cls, obj: object, where: str = "image") -> ImagePayload:
        d = _object(obj, where)
        name = _str(_get(d, where, "name"), _at(where, "name"))
        if not name:
            raise ProtocolError(f"{_at(where, 'name')} must be a non-empty string")
        options = _str_map(_get(d, where, "options", {}), _at(where, "options"))
        for key in options:
            if key not in IMAGE_OPTIONS:
                raise ProtocolError(
                    f"{_at(where, 'options')}: unknown option {key!r}; "
                    f"known: {', '.join(IMAGE_OPTIONS)}"
                )
        creds = _get(d, where, "credentials", None)
        return cls(
            name=name,
            options=options,
            credentials=(
                RegistryCredentials.from_json(creds, _at(where, "credentials"))
                if creds is not None
                else None
            ),
        )


@dataclass(frozen=True)
class CloneAuth:
    """The credential a job fetches its code with, for HTTP Basic: a forge's user name
    (GitHub ``x-access-token``, GitLab ``oauth2`` or a deploy token's) and its short-lived
    token. The agent hands it to git per command in an ``Authorization`` header, never in
    the remote URL or a file; it is masked in the log (the token and ``user:token``, so
    also the header's base64)."""

    username: str
    token: str = field(repr=False)

    @property
    def mask(self) -> tuple[str, ...]:
        """The values to mask in the log: the token, and ``user:token`` (whose base64 is
        what the ``Authorization`` header carries)."""
        return (self.token, f"{self.username}:{self.token}")

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "token": self.token}

    @classmethod
    def from_json(cls, obj: object, where: str = "clone_auth") -> CloneAuth:
        d = _object(obj, where)
        username = _str(_get(d, where, "username"), _at(where, "username"))
        token = _str(_get(d, where, "token"), _at(where, "token"))
        if not username or ":" in username or not username.isprintable():
            raise ProtocolError(
                f"{_at(where, 'username')} must be a non-empty printable string without ':'"
            )
        if not token or not token.isprintable():
            raise ProtocolError(f"{_at(where, 'token')} must be a non-empty printable string")
        return cls(username=username, token=token)


@dataclass(frozen=True)
class JobPayload:
    """The ``job`` object of a claim answer: everything the agent needs to run it."""

    pipeline_id: int
    job_id: int
    attempt_id: int
    attempt_number: int
    name: str
    forge: str
    repo: str
    clone_url: str
    sha: str
    ref: str
    workspace_key: str
    timeout_s: int
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    # More values to mask in the log, not exported to the steps.
    mask: tuple[str, ...] = ()
    # What the agent fetches ``clone_url`` with (a forge's clone token); None: nothing.
    clone_auth: CloneAuth | None = None
    steps: tuple[StepPayload, ...] = ()
    cache: CachePayload | None = None
    artifacts: ArtifactsPayload | None = None
    # The container image the steps run in (None: on the machine itself), and how many
    # of the machine's GPUs the job gets (0: none asked for).
    image: ImagePayload | None = None
    gpus: int = 0
    # A fork's pull request: the agent gives it a workspace of its own, removed after.
    fork: bool = False
    metrics: MetricsPayload | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fork": self.fork,
            "pipeline_id": self.pipeline_id,
            "job_id": self.job_id,
            "attempt_id": self.attempt_id,
            "attempt_number": self.attempt_number,
            "name": self.name,
            "forge": self.forge,
            "repo": self.repo,
            "clone_url": self.clone_url,
            "sha": self.sha,
            "ref": self.ref,
            "workspace_key": self.workspace_key,
            "timeout_s": self.timeout_s,
            "env": dict(self.env),
            "secrets": dict(self.secrets),
            "mask": list(self.mask),
            "clone_auth": self.clone_auth.to_json() if self.clone_auth is not None else None,
            "steps": [s.to_json() for s in self.steps],
            "cache": self.cache.to_json() if self.cache is not None else None,
            "artifacts": self.artifacts.to_json() if self.artifacts is not None else None,
            "image": self.image.to_json() if self.image is not None else None,
            "gpus": self.gpus,
            # Only when the job has ``metrics:`` (older agents never see the key).
            **({"metrics": self.metrics.to_json()} if self.metrics is not None else {}),
        }

    @classmethod
    def from_json(cls, obj: object, where: str = "job") -> JobPayload:
        d = _object(obj, where)

        def get(key: str, default: Any = _MISSING) -> Any:
            return _get(d, where, key, default)

        def i(key: str) -> int:
            return _int(get(key), _at(where, key))

        def s(key: str) -> str:
            return _str(get(key), _at(where, key))

        steps = get("steps")
        if not isinstance(steps, list):
            raise ProtocolError(f"{_at(where, 'steps')} must be a list")
        cache, artifacts = get("cache", None), get("artifacts", None)
        image = get("image", None)
        clone_auth = get("clone_auth", None)
        metrics = get("metrics", None)
        return cls(
            fork=_bool(get("fork", False), _at(where, "fork")),
            pipeline_id=i("pipeline_id"),
            job_id=i("job_id"),
            attempt_id=i("attempt_id"),
            attempt_number=i("attempt_number"),
            name=s("name"),
            forge=s("forge"),
            repo=s("repo"),
            clone_url=s("clone_url"),
            sha=s("sha"),
            ref=s("ref"),
            workspace_key=s("workspace_key"),
            timeout_s=i("timeout_s"),
            env=_str_map(get("env"), _at(where, "env")),
            secrets=_str_map(get("secrets"), _at(where, "secrets")),
            mask=_strings(get("mask", []), _at(where, "mask")),
            clone_auth=(
                CloneAuth.from_json(clone_auth, _at(where, "clone_auth"))
                if clone_auth is not None
                else None
            ),
            steps=tuple(
                StepPayload.from_json(step, f"{_at(where, 'steps')}[{n}]")
                for n, step in enumerate(steps)
            ),
            cache=(
                CachePayload.from_json(cache, _at(where, "cache")) if cache is not None else None
            ),
            artifacts=(
                ArtifactsPayload.from_json(artifacts, _at(where, "artifacts"))
                if artifacts is not None
                else None
            ),
            image=ImagePayload.from_json(image, _at(where, "image")) if image is not None else None,
            gpus=_int(get("gpus", 0), _at(where, "gpus"), 0, MAX_GPUS),
            metrics=(
                MetricsPayload.from_json(metrics, _at(where, "metrics"))
                if metrics is not None
                else None
            ),
        )


@dataclass(frozen=True)
class Claim:
    """The claim answer: the attempt, its job token, and the job."""

    attempt_id: int
    job_token: str
    job: JobPayload

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "job_token": self.job_token,
            "job": self.job.to_json(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Claim:
        d = _object(obj, "a claim answer")
        token = _str(_get(d, "", "job_token"), "job_token")
        if not token:
            raise ProtocolError("job_token must be a non-empty string")
        return cls(
            attempt_id=_int(_get(d, "", "attempt_id"), "attempt_id"),
            job_token=token,
            job=JobPayload.from_json(_get(d, "", "job")),
        )


# ---- one attempt ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogChunk:
    """``POST .../log``: chunk ``seq`` (from 0) of the job's masked output."""

    seq: int
    data: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "data": self.data}

    @classmethod
    def from_json(cls, obj: object) -> LogChunk:
        d = _object(obj, "a log chunk")
        return cls(seq=_int(_get(d, "", "seq"), "seq"), data=_str(_get(d, "", "data"), "data"))


@dataclass(frozen=True)
class StepReport:
    """``POST .../steps``: a step's new state (and its exit code once it ended)."""

    index: int
    state: str
    exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "state": self.state}
        if self.exit_code is not None:
            body["exit_code"] = self.exit_code
        return body

    @classmethod
    def from_json(cls, obj: object) -> StepReport:
        d = _object(obj, "a step report")
        return cls(
            index=_int(_get(d, "", "index"), "index"),
            state=_one_of(_get(d, "", "state"), "state", STEP_STATES),
            exit_code=_opt_int(_get(d, "", "exit_code", None), "exit_code", INT_MIN),
        )


@dataclass(frozen=True)
class Heartbeat:
    """``POST .../heartbeat``: held by the server up to ``wait`` seconds."""

    wait: float = 0

    def to_json(self) -> dict[str, Any]:
        return {"wait": self.wait}

    @classmethod
    def from_json(cls, obj: object) -> Heartbeat:
        d = _object(obj, "a heartbeat")
        return cls(wait=_number(_get(d, "", "wait", 0), "wait"))


@dataclass(frozen=True)
class Answer:
    """The answer to a log chunk, a step report or a heartbeat: whether to cancel."""

    cancel: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"cancel": self.cancel}

    @classmethod
    def from_json(cls, obj: object) -> Answer:
        d = _object(obj, "an answer")
        return cls(cancel=_bool(_get(d, "", "cancel", False), "cancel"))


@dataclass(frozen=True)
class FinishReport:
    """``POST .../finish``: how the attempt ended. ``reason`` says why it did not
    succeed (one of ``REASONS``); ``error`` what went wrong, for ``infrastructure``."""

    result: str
    exit_code: int | None = None
    failed_step: int | None = None
    reason: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "exit_code": self.exit_code,
            "failed_step": self.failed_step,
            "reason": self.reason,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, obj: object) -> FinishReport:
        d = _object(obj, "a finish report")
        return cls(
            result=_one_of(_get(d, "", "result"), "result", RESULTS),
            exit_code=_opt_int(_get(d, "", "exit_code", None), "exit_code", INT_MIN),
            failed_step=_opt_int(_get(d, "", "failed_step", None), "failed_step"),
            reason=_opt_str(_get(d, "", "reason", None), "reason"),
            error=_opt_str(_get(d, "", "error", None), "error"),
        )


@dataclass(frozen=True)
class FinishAnswer:
    """The answer to a finish report."""

    ok: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok}

    @classmethod
    def from_json(cls, obj: object) -> FinishAnswer:
        d = _object(obj, "a finish answer")
        return cls(ok=_bool(_get(d, "", "ok", True), "ok"))
