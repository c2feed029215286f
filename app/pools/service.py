"""Self-hosted agents, joining pools with one-time registration tokens.

* An operator makes a token for a pool (``ployd agents token create``, or
  ``POST /api/v1/agents/tokens``): the pool's name, the tenants its agents serve (named,
  or ``*`` explicitly), labels and an expiry. The token is shown once; only its hash is
  kept.
* An agent registers with it (``POST /api/v1/agent/register``, the engine's
  ``Registrar`` hook): the token is used up and the agent gets its own credential, bound
  to it (only the hash is kept). A second use of the token is refused; the engine audits
  the refusal.
* The agent claims with its credential (the engine's ``Authenticator`` hook): its
  identity accepts only jobs of the tenants its pool serves, and nothing at all once it
  is draining or disabled, and carries the hardware it reported (the engine matches
  jobs to it). Each claim records when it was last seen, its version and, when it
  reports them, its hardware.
* ``disable`` drains an agent: it finishes the job it runs and takes no other.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.audit.chain import append
from app.core.clock import aware
from app.core.pools import (
    PoolError,
    check_agent_name,
    check_pool,
    hardware_summary,
    parse_expires,
    parse_labels,
    parse_tenants,
    serves,
)
from app.engine.hooks import AgentIdentity, Enrolled, RegistrationRefused
from app.protocol import ClaimRequest, Hardware, ProtocolError, Registration
from app.store import agents as rows
from app.store.agents import AgentView, TokenView
from app.store.db import Database, Tx, session_of
from app.store.models import AuditRecord, Job, Pipeline, utcnow

TOKEN_PREFIX = "ployd_reg_"
CREDENTIAL_PREFIX = "ployd_agent_"
# The local executor's and the EC2 executor's agents' names: attempts and machines are
# found by agent name, so a pool's agent may not take one.
RESERVED_PREFIXES = ("local-", "ec2-")

__all__ = ["AgentNotFound", "NewToken", "PoolError", "Pools", "as_json", "token_json"]


class AgentNotFound(LookupError):
    """No registered agent has this name."""


class TokenNotFound(LookupError):
    """No registration token has this id."""


@dataclass(frozen=True)
class NewToken:
    """A token just made: the token itself (shown once, never stored) and its row."""

    token: str = field(repr=False)
    info: TokenView


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _nothing(_job: Job, _pipeline: Pipeline) -> bool:
    return False


class Pools:
    """Registration tokens and registered agents, in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- operators ---------------------------------------------------------------------

    def create_token(
        self,
        pool: str,
        tenants: Sequence[str],
        *,
        labels: str | Mapping[str, Any] | None = None,
        expires: str | None = None,
        actor: str = "cli",
    ) -> NewToken:
        """A one-time registration token for ``pool``; ``PoolError`` for bad input."""
        pool = check_pool(pool)
        served = parse_tenants(tenants)
        label_map = parse_labels(labels)
        expires_at = utcnow() + timedelta(seconds=parse_expires(expires))
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            info = rows.add_token(
                s,
                pool=pool,
                tenants=served,
                labels=label_map,
                token_hash=_hash(token),
                expires_at=expires_at,
                created_by=actor,
            )
            self._audit(
                s,
                actor,
                "agent.token.create",
                f"pool:{pool}",
                token_id=info.id,
                tenants=list(served),
                labels=label_map,
                expires_at=expires_at.isoformat(),
            )
        return NewToken(token, info)

    def tokens(self) -> list[TokenView]:
        """Every registration token (never the token itself), newest first."""
        with self.db.session() as s:
            return rows.all_tokens(s)

    def revoke_token(self, token_id: int, *, actor: str = "cli") -> TokenView:
        """Revoke a registration token: no agent can register with it from then on (an
        agent that already did keeps running: ``disable`` it). ``TokenNotFound`` when none."""
        with self.db.session() as s:
            info = rows.revoke_token(s, token_id)
            if info is None:
                raise TokenNotFound(f"no registration token {token_id} (ployd agents token list)")
            self._audit(s, actor, "agent.token.revoke", f"pool:{info.pool}", token_id=token_id)
        return info

    def agents(self) -> list[AgentView]:
        """Every registered agent, by pool then name."""
        return rows.all_agents(self.db)

    def disable(self, name: str, *, actor: str = "cli") -> AgentView:
        """Drain ``name``: it finishes the job it runs (``draining``), then takes no new
        one (``disabled``)."""
        return self._set_state(name, "disable", actor)

    def enable(self, name: str, *, actor: str = "cli") -> AgentView:
        """Let a disabled agent take jobs again."""
        return self._set_state(name, "enable", actor)

    def _set_state(self, name: str, verb: str, actor: str) -> AgentView:
        with self.db.session() as s:
            row = rows.agent_named(s, name)
            if row is None:
                raise AgentNotFound(f"no agent named {name!r}; `ployd agents list` shows them")
            if verb == "enable":
                state = "active"
            else:
                state = "draining" if rows.current_job(s, name) is not None else "disabled"
            rows.set_state(s, row, state)
            self._audit(s, actor, f"agent.{verb}", f"agent:{name}", pool=row.pool, state=state)
            return rows.agent_view(s, row)

    @staticmethod
    def _audit(s: Tx, actor: str, action: str, target: str, **details: Any) -> None:
        record = AuditRecord(actor=actor, forge="local", action=action, target=target)
        record.details = dict(details)
        append(s, record)

    # ---- agents (the engine's hooks) ---------------------------------------------------

    def register(self, token: str, registration: Registration) -> Enrolled | None:
        """The engine's ``Registrar``: a pool's token, exchanged once for a credential."""
        if token.startswith(CREDENTIAL_PREFIX):
            return self._renew(token, registration)
        with self.db.session() as s:
            tok = rows.token_by_hash(s, _hash(token))
            if tok is None:
                return None
            target = f"pool:{tok.pool}"
            if tok.revoked_at is not None:
                raise RegistrationRefused(
                    f"this registration token was revoked at "
                    f"{aware(tok.revoked_at):%Y-%m-%d %H:%M} UTC; make a new one: "
                    f"ployd agents token create --pool {tok.pool}",
                    target=target,
                    reason="revoked",
                )
            if tok.used_at is not None:
                raise RegistrationRefused(
                    f"this registration token was used already (by agent {tok.used_by}); "
                    f"make a new one: ployd agents token create --pool {tok.pool}",
                    target=target,
                    reason="used",
                )
            if aware(tok.expires_at) <= utcnow():
                raise RegistrationRefused(
                    f"this registration token expired at {aware(tok.expires_at):%Y-%m-%d %H:%M} "
                    f"UTC; make a new one: ployd agents token create --pool {tok.pool}",
                    target=target,
                    reason="expired",
                )
            try:
                check_agent_name(registration.name)
                labels = parse_labels(dict(registration.labels))
            except PoolError as e:
                raise RegistrationRefused(
                    str(e), target=target, reason="bad_registration", status=400
                ) from None
            name = registration.name
            if name.startswith(RESERVED_PREFIXES):
                raise RegistrationRefused(
                    f"agent names starting with {' or '.join(RESERVED_PREFIXES)} are PloyD's "
                    "own agents': start this one with another --agent-id",
                    target=target,
                    reason="name_reserved",
                    status=409,
                )
            existing = rows.agent_named(s, name)
            if existing is not None and existing.pool != tok.pool:
                raise RegistrationRefused(
                    f"an agent named {name!r} is registered in pool {existing.pool}: start "
                    "this one with another --agent-id",
                    target=target,
                    reason="name_taken",
                    status=409,
                )
            if not rows.use_token(s, tok.id, name):  # another agent won the race
                raise RegistrationRefused(
                    "this registration token was used already", target=target, reason="used"
                )
            credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
            rows.save_agent(
                s,
                name=name,
                pool=tok.pool,
                tenants=tok.tenants,
                labels={**labels, **tok.labels},  # the operator's win
                hardware=registration.hardware.to_json(),
                version=registration.version,
                credential_hash=_hash(credential),
                token_id=tok.id,
            )
        return Enrolled(
            name,
            credential,
            target=target,
            details={
                "token_id": tok.id,
                "again": existing is not None,
                "restarted": existing is not None,
            },
        )

    def _renew(self, credential: str, registration: Registration) -> Enrolled | None:
        """An agent restarting with the credential it saved (``--state-dir``): a new one
        for it, and the old one stops working, so a copy of an older file is refused.
        Its name, pool, tenants, labels and state stay what they are."""
        with self.db.session() as s:
            row = rows.by_credential(s, _hash(credential))
            if row is None:
                return None  # unknown: 401 (the agent was registered again, or removed)
            fresh = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
            rows.renew(
                s,
                row,
                credential_hash=_hash(fresh),
                hardware=registration.hardware.to_json(),
                version=registration.version,
            )
            name, pool = row.name, row.pool
        return Enrolled(
            name, fresh, target=f"pool:{pool}", details={"renewed": True, "restarted": True}
        )

    def identity(self, token: str, claim: ClaimRequest) -> AgentIdentity | None:
        """The engine's ``Authenticator``: a registered agent's credential. Records the
        claim (last seen, version, hardware when reported)."""
        hardware = claim.hardware.to_json() if claim.hardware is not None else None
        with self.db.session() as s:
            row = rows.by_credential(s, _hash(token))
            if row is None:
                return None
            state = rows.seen(s, row, version=claim.version, hardware=hardware)
            name, pool, tenants = row.name, row.pool, tuple(row.tenants)
            stored = dict(row.hardware)
        try:  # what it reported last (at registration, or in an earlier claim)
            reported = claim.hardware or (Hardware.from_json(stored) if stored else None)
        except ProtocolError:
            reported = None
        return AgentIdentity(
            agent_id=name,
            instance_type=f"pool:{pool}",
            accepts=_accepts(name, tenants) if state == "active" else _nothing,
            hardware=reported,
            serves_tenant=lambda t: serves(tenants, t.forge, t.external_id, t.name),
        )


def _accepts(name: str, tenants: tuple[str, ...]) -> Callable[[Job, Pipeline], bool]:
    """A pool's agent runs jobs of the tenants its pool serves, while it is active (read
    again in the claim's own transaction: a disabled agent's long poll gets nothing)."""

    def accepts(job: Job, pipeline: Pipeline) -> bool:
        tenant = pipeline.repository.tenant
        if not serves(tenants, tenant.forge, tenant.external_id, tenant.name):
            return False
        s = session_of(job)
        return s is None or rows.state_of(s, name) == "active"

    return accepts


def as_json(agent: AgentView) -> dict[str, Any]:
    """An agent as the admin API and ``ployd agents list --format json`` show it."""
    job = agent.job
    return {
        "name": agent.name,
        "pool": agent.pool,
        "tenants": list(agent.tenants),
        "labels": dict(agent.labels),
        "hardware": hardware_summary(agent.hardware),
        "hardware_detail": dict(agent.hardware),
        "version": agent.version,
        "state": agent.state,
        "registered_at": aware(agent.registered_at).isoformat(),
        "last_seen": aware(agent.last_seen).isoformat() if agent.last_seen else None,
        "job": None
        if job is None
        else {"attempt_id": job.attempt_id, "job_id": job.job_id, "name": job.name},
    }


def token_json(info: TokenView) -> dict[str, Any]:
    """A token's row (never the token itself)."""
    return {
        "id": info.id,
        "pool": info.pool,
        "tenants": list(info.tenants),
        "labels": dict(info.labels),
        "created_by": info.created_by,
        "expires_at": aware(info.expires_at).isoformat(),
        "used_at": aware(info.used_at).isoformat() if info.used_at else None,
        "used_by": info.used_by,
        "revoked_at": aware(info.revoked_at).isoformat() if info.revoked_at else None,
        "state": token_state(info),
    }


def token_state(info: TokenView, now: datetime | None = None) -> str:
    """``revoked``, ``used`` (by an agent), ``expired`` or ``usable``."""
    if info.revoked_at is not None:
        return "revoked"
    if info.used_at is not None:
        return "used"
    if aware(info.expires_at) <= (now or utcnow()):
        return "expired"
    return "usable"
