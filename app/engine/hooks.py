"""The hooks that change what the engine decides, as typed interfaces.

They are given to ``Engine(...)`` once, by the composition root (``app.wiring``):

* ``Gate``: may a queued attempt run at all? A reason ends it ``failed`` before any
  machine starts (a policy refusal, a missing secret).
* ``Admission``: may it start now? A reason makes it wait (a tenant's quota).
* ``SecretsProvider``: the secret values a claimed job receives (never a fork's).
* ``Registrar``: exchanges an agent's registration token, once, for its own credential
  (a pool's token, an EC2 machine's user-data token).
* ``Authenticator``: who an agent credential belongs to (an EC2 machine's, a pool's).
* ``BootReports``: which starting machine a registration token belongs to, when its
  bootstrap reports that it could not start the agent.
* ``CloneCredentials``: what only a forge adapter can add to a claim (a clone token).

What the engine *reports* is not a hook: it publishes events (``app.engine.events``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

from app.protocol import ClaimRequest, CloneAuth, Hardware, JobPayload, Registration
from app.store.db import Tx
from app.store.models import Attempt, Job, Pipeline, Tenant


class Gate(Protocol):
    def __call__(self, s: Tx, attempt: Attempt, /) -> str | None:
        """Why the queued ``attempt`` may not run at all, or None.

        A gate judges by the attempt's pipeline (and its repository, tenant) and its
        job's ``hardware``, ``candidates`` and ``spec`` other than steps, env, cache and
        artifacts, never by the job's name, matrix values or scripts: of the jobs
        queued together, the engine gates one per distinct such set and applies the
        verdict to all of them (``Engine._gate``)."""


class Admission(Protocol):
    def __call__(self, s: Tx, attempt: Attempt, /) -> str | None:
        """Why the queued ``attempt`` must wait, or None: admitted."""


class SecretsProvider(Protocol):
    def __call__(self, pipeline: Pipeline, job: Job, /) -> dict[str, str]:
        """The secrets ``job`` receives, by name (raises when one cannot be read)."""


@dataclass(frozen=True)
class AgentIdentity:
    """Who claims a job: the agent, the machine it runs on, and which jobs it may run."""

    agent_id: str
    instance_type: str = "local"
    machine: str | None = None  # what attempts record as their machine (None: agent_id)
    spot: bool = False
    price_hourly: float = 0.0
    accepts: Callable[[Job, Pipeline], bool] | None = None
    prefer_attempt: int | None = None  # the attempt this machine was started for
    # What the agent reported in its claim (None: an older agent, which runs anything).
    # The engine gives it only jobs this hardware satisfies (``app.core.agentfit``),
    # beside ``accepts``; unless ``match_hardware`` is off: an EC2 machine is matched by
    # its instance type instead (``accepts``), whatever its agent could detect.
    hardware: Hardware | None = None
    match_hardware: bool = True
    # The tenants whose jobs it may run (None: any): narrows the claim's scan of the
    # queue in SQL, so that other tenants' queued jobs never hide this agent's.
    serves_tenant: Callable[[Tenant], bool] | None = None


class Authenticator(Protocol):
    def __call__(self, token: str, claim: ClaimRequest, /) -> AgentIdentity | None:
        """The identity behind the credential ``token``, or None when it is not this
        authenticator's. ``claim`` is what the agent says: the id it calls itself, and
        the version and hardware it reports (an authenticator may record them)."""


@dataclass(frozen=True)
class Enrolled:
    """A registration a registrar accepted: the agent's id, its new credential (given
    to the agent once; only its hash is kept), and what the audit trail records."""

    agent_id: str
    credential: str = field(repr=False)
    target: str = ""  # audited as the target: "pool:lab", "instance:i-0abc"
    details: Mapping[str, Any] = field(default_factory=dict)


class RegistrationRefused(Exception):
    """A registration token the registrar knows but will not exchange: used already,
    expired, or the machine it was made for is gone. The engine audits the refusal and
    answers ``status`` (401) with the message."""

    def __init__(self, message: str, *, target: str, reason: str, status: int = 401) -> None:
        super().__init__(message)
        self.target = target
        self.reason = reason
        self.status = status


class Registrar(Protocol):
    def __call__(self, token: str, registration: Registration, /) -> Enrolled | None:
        """Exchange the registration ``token`` for the agent's credential; None when the
        token is not this registrar's; ``RegistrationRefused`` when it is but may not
        be used (again)."""


@dataclass(frozen=True)
class FailedMachine:
    """A machine whose bootstrap could not start its agent (see ``BootReports``)."""

    agent_id: str
    name: str  # what people know it by: its cloud instance id (``i-...``), or agent id
    attempt_id: int | None = None  # the attempt it was started for


class BootReports(Protocol):
    def __call__(self, token: str, error: str, /) -> FailedMachine | None:
        """The machine that is still starting and whose registration token is ``token``,
        now marked failed with ``error``; None when the token is no such machine's."""


@dataclass(frozen=True)
class Credentials:
    """How a claimed job fetches its code: the credential the agent hands to git for
    the job's (unchanged, credential-free) clone URL. Its token and ``user:token`` are
    masked in the job's log."""

    auth: CloneAuth

    @property
    def mask(self) -> tuple[str, ...]:
        return self.auth.mask


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def takes_credentials(clone_url: str) -> bool:
    """Whether a clone credential may be sent to ``clone_url``: over HTTPS, or plain
    HTTP to this machine's loopback (a test's, a local mirror's); never to anything else
    (``file://``, ``ssh://``, plain HTTP across a network)."""
    try:
        parts = urlsplit(clone_url)
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS)


class CloneCredentials(Protocol):
    """Asked with a claimed job before it goes to its agent: a forge adapter gives what
    only it can (a short-lived clone token), or None to leave the job as it is. Raising
    ends the attempt as an infrastructure failure with the exception's message."""

    async def __call__(self, job: JobPayload, /) -> Credentials | None: ...


def _no_secrets(_pipeline: Pipeline, _job: Job) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class EngineHooks:
    """Everything that changes the engine's decisions, fixed at construction."""

    gates: tuple[Gate, ...] = ()
    admission: Admission | None = None
    secrets: SecretsProvider = _no_secrets
    # Tried in order before the engine's own (local agent) tokens.
    registrars: tuple[Registrar, ...] = ()
    authenticators: tuple[Authenticator, ...] = ()
    boot_reports: tuple[BootReports, ...] = ()  # machines' bootstrap failures
    payload_hooks: Mapping[str, CloneCredentials] = field(default_factory=dict)  # by forge

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload_hooks", MappingProxyType(dict(self.payload_hooks)))
