"""Self-hosted agents and their pools' registration tokens, as rows (``app.pools`` decides
what they mean). Reads come back as frozen views; writes take the caller's transaction,
so that an audit record can go in the same one.

Only hashes of tokens and credentials are stored. A token is used once: ``use_token``
marks it in a conditional UPDATE, so two agents racing with one token cannot both win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app.core.states import AttemptState
from app.store.db import Database, Tx
from app.store.models import AgentRegistrationToken, Attempt, Job, RegisteredAgent, utcnow

LIVE = (AttemptState.DISPATCHING.value, AttemptState.RUNNING.value)


@dataclass(frozen=True)
class TokenView:
    id: int
    pool: str
    tenants: tuple[str, ...]
    labels: Mapping[str, str]
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class CurrentJob:
    attempt_id: int
    job_id: int
    name: str


@dataclass(frozen=True)
class AgentView:
    id: int
    name: str
    pool: str
    tenants: tuple[str, ...]
    labels: Mapping[str, str]
    hardware: Mapping[str, Any]
    version: str
    state: str  # as it is now: a draining agent with no job left is disabled
    registered_at: datetime
    last_seen: datetime | None
    job: CurrentJob | None  # the attempt it runs now


def token_view(row: AgentRegistrationToken) -> TokenView:
    return TokenView(
        id=row.id,
        pool=row.pool,
        tenants=tuple(row.tenants),
        labels=dict(row.labels),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        used_by=row.used_by,
        revoked_at=row.revoked_at,
    )


def _state(row: RegisteredAgent, job: CurrentJob | None) -> str:
    return "disabled" if row.state == "draining" and job is None else row.state


def agent_view(tx: Tx, row: RegisteredAgent) -> AgentView:
    job = current_job(tx, row.name)
    return AgentView(
        id=row.id,
        name=row.name,
        pool=row.pool,
        tenants=tuple(row.tenants),
        labels=dict(row.labels),
        hardware=dict(row.hardware),
        version=row.version,
        state=_state(row, job),
        registered_at=row.registered_at,
        last_seen=row.last_seen,
        job=job,
    )


# ---- tokens ----------------------------------------------------------------------------


def add_token(
    tx: Tx,
    *,
    pool: str,
    tenants: Sequence[str],
    labels: Mapping[str, str],
    token_hash: str,
    expires_at: datetime,
    created_by: str,
) -> TokenView:
    row = AgentRegistrationToken(
        pool=pool,
        tenants=list(tenants),
        labels=dict(labels),
        token_hash=token_hash,
        expires_at=expires_at,
        created_by=created_by,
        created_at=utcnow(),
    )
    tx.add(row)
    tx.flush()
    return token_view(row)


def token_by_hash(tx: Tx, token_hash: str) -> TokenView | None:
    row = tx.scalar(
        select(AgentRegistrationToken).where(AgentRegistrationToken.token_hash == token_hash)
    )
    return token_view(row) if row is not None else None


def all_tokens(tx: Tx) -> list[TokenView]:
    """Every registration token, newest first."""
    q = select(AgentRegistrationToken).order_by(AgentRegistrationToken.id.desc())
    return [token_view(row) for row in tx.scalars(q)]


def revoke_token(tx: Tx, token_id: int) -> TokenView | None:
    """Mark token ``token_id`` revoked (once: a second revoke changes nothing); None when
    there is no such token."""
    row = tx.get(AgentRegistrationToken, token_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        tx.flush()
    return token_view(row)


def use_token(tx: Tx, token_id: int, agent_name: str) -> bool:
    """Mark the token used by ``agent_name``; False when it was used already."""
    result = tx.execute(
        update(AgentRegistrationToken)
        .where(
            AgentRegistrationToken.id == token_id,
            AgentRegistrationToken.used_at.is_(None),
            AgentRegistrationToken.revoked_at.is_(None),
        )
        .values(used_at=utcnow(), used_by=agent_name)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


# ---- agents ----------------------------------------------------------------------------


def agent_named(tx: Tx, name: str) -> RegisteredAgent | None:
    return tx.scalar(select(RegisteredAgent).where(RegisteredAgent.name == name))


def by_credential(tx: Tx, credential_hash: str) -> RegisteredAgent | None:
    return tx.scalar(
        select(RegisteredAgent).where(RegisteredAgent.credential_hash == credential_hash)
    )


def save_agent(
    tx: Tx,
    *,
    name: str,
    pool: str,
    tenants: Sequence[str],
    labels: Mapping[str, str],
    hardware: Mapping[str, Any],
    version: str,
    credential_hash: str,
    token_id: int | None,
) -> RegisteredAgent:
    """A new agent, or ``name`` registered again (its old credential stops working; its
    state stays what the operator made it)."""
    row = agent_named(tx, name)
    now = utcnow()
    if row is None:
        row = RegisteredAgent(name=name, state="active")
        tx.add(row)
    row.pool = pool
    row.tenants = list(tenants)
    row.labels = dict(labels)
    row.hardware = dict(hardware)
    row.version = version
    row.credential_hash = credential_hash
    row.token_id = token_id
    row.registered_at = now
    row.last_seen = now
    tx.flush()
    return row


def renew(
    tx: Tx,
    row: RegisteredAgent,
    *,
    credential_hash: str,
    hardware: Mapping[str, Any],
    version: str,
) -> None:
    """A restarted agent's new credential (the old one stops working) and what it
    reports now."""
    row.credential_hash = credential_hash
    row.hardware = dict(hardware)
    row.version = version
    row.last_seen = utcnow()
    tx.flush()


def current_job(tx: Tx, name: str) -> CurrentJob | None:
    """The attempt agent ``name`` holds now (claimed or running), if any."""
    found = tx.execute(
        select(Attempt.id, Job.id, Job.name)
        .join(Attempt.job)
        .where(Attempt.agent_id == name, Attempt.state.in_(LIVE))
        .order_by(Attempt.id.desc())
        .limit(1)
    ).first()
    return None if found is None else CurrentJob(int(found[0]), int(found[1]), str(found[2]))


def seen(
    tx: Tx, row: RegisteredAgent, *, version: str = "", hardware: Mapping[str, Any] | None = None
) -> str:
    """Record a claim from this agent (what it says it runs and has, when given); a
    draining agent whose job has ended becomes disabled. Its state now."""
    row.last_seen = utcnow()
    if version and version != row.version:
        row.version = version
    if hardware is not None and dict(hardware) != row.hardware:
        row.hardware = dict(hardware)
    if row.state == "draining" and current_job(tx, row.name) is None:
        row.state = "disabled"
    return row.state


def state_of(tx: Tx, name: str) -> str | None:
    return tx.scalar(select(RegisteredAgent.state).where(RegisteredAgent.name == name))


def set_state(tx: Tx, row: RegisteredAgent, state: str) -> None:
    row.state = state


def all_agents(db: Database) -> list[AgentView]:
    """Every registered agent, by pool then name."""
    with db.session() as s:
        q = select(RegisteredAgent).order_by(RegisteredAgent.pool, RegisteredAgent.name)
        return [agent_view(s, r) for r in s.scalars(q)]
