"""The cloud machines PloyD started, as stored rows: each read or change is one short
transaction, and what comes back is a frozen ``InstanceView``, never a row. States move
through ``app.core.instances``'s state machine.

Timestamps are as the database gives them back (naive UTC on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from app.core.instances import InstanceState, instance_transition
from app.store import charges
from app.store.db import Database
from app.store.models import Attempt, Instance, utcnow

LIVE = [s.value for s in InstanceState if s.live]


@dataclass(frozen=True)
class NewInstance:
    """A machine about to be requested from the cloud."""

    pool: str
    instance_type: str
    hardware: str
    market: str
    az: str
    subnet_id: str
    price_hourly: float
    agent_id: str
    token_hash: str
    launched_for: int | None = None
    clean_after: bool = False
    tenant_id: int | None = None
    state: str = InstanceState.REQUESTED.value
    region: str = ""  # "": the home region (PLOYD_AWS_REGION)
    reservation: str | None = None  # capacity reservation / block id or group ARN


@dataclass(frozen=True)
class InstanceView:
    id: int
    instance_id: str | None
    pool: str
    tenant_id: int | None
    instance_type: str
    hardware: str
    market: str
    az: str
    subnet_id: str
    price_hourly: float
    state: str
    agent_id: str
    launched_for: int | None
    attempt_id: int | None
    clean_after: bool
    error: str | None
    launched_at: datetime | None
    registered_at: datetime | None
    idle_since: datetime | None
    terminated_at: datetime | None
    region: str = ""
    reservation: str | None = None


def view(row: Instance) -> InstanceView:
    """The row as a frozen value (for the store's other query modules)."""
    return InstanceView(
        id=row.id,
        instance_id=row.instance_id,
        pool=row.pool,
        tenant_id=row.tenant_id,
        instance_type=row.instance_type,
        hardware=row.hardware,
        market=row.market,
        az=row.az,
        subnet_id=row.subnet_id,
        price_hourly=row.price_hourly,
        state=row.state,
        agent_id=row.agent_id,
        launched_for=row.launched_for,
        attempt_id=row.attempt_id,
        clean_after=row.clean_after,
        error=row.error,
        launched_at=row.launched_at,
        registered_at=row.registered_at,
        idle_since=row.idle_since,
        terminated_at=row.terminated_at,
        region=row.region or "",
        reservation=row.reservation,
    )


class AlreadyStarting(ValueError):
    """Another machine is on its way for that attempt (the UNIQUE index on starting
    machines' ``launched_for``: one launch per attempt, whichever replica tries)."""


def add(db: Database, new: NewInstance, now: datetime | None = None) -> InstanceView:
    """Store a machine about to be requested (before RunInstances: its ``agent_id`` is
    the launch's ClientToken), its meter running (``boot``). Raises ``AlreadyStarting``."""
    now = now or utcnow()
    row = Instance(
        pool=new.pool,
        tenant_id=new.tenant_id,
        instance_type=new.instance_type,
        hardware=new.hardware,
        market=new.market,
        az=new.az,
        subnet_id=new.subnet_id,
        price_hourly=new.price_hourly,
        state=new.state,
        agent_id=new.agent_id,
        token_hash=new.token_hash,
        launched_for=new.launched_for,
        clean_after=new.clean_after,
        region=new.region,
        reservation=new.reservation,
        launched_at=now,
        meter_kind=charges.kind_after(InstanceState(new.state), None),
        metered_at=now,
    )
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            s.refresh(row)  # the defaults as stored (launched_at as it is given back)
            return view(row)
    except IntegrityError:
        if new.launched_for is not None and starting_for(db, new.launched_for) is not None:
            raise AlreadyStarting(
                f"a machine is on its way for attempt {new.launched_for}"
            ) from None
        raise


def starting_for(db: Database, attempt_id: int) -> InstanceView | None:
    """The machine on its way (requested, booting) for ``attempt_id``, if any."""
    with db.session() as s:
        row = s.scalar(
            select(Instance).where(
                Instance.launched_for == attempt_id,
                Instance.state.in_([InstanceState.REQUESTED.value, InstanceState.BOOTING.value]),
            )
        )
        return view(row) if row is not None else None


def live(db: Database) -> list[InstanceView]:
    """Every machine not terminated (costing money, or about to)."""
    with db.session() as s:
        return [view(r) for r in s.scalars(select(Instance).where(Instance.state.in_(LIVE)))]


def get(db: Database, row_id: int) -> InstanceView | None:
    with db.session() as s:
        row = s.get(Instance, row_id)
        return view(row) if row is not None else None


def by_agent(db: Database, agent_id: str) -> InstanceView | None:
    with db.session() as s:
        row = s.scalar(select(Instance).where(Instance.agent_id == agent_id))
        return view(row) if row is not None else None


def _set(row: Instance, fields: dict[str, Any]) -> None:
    for k, v in fields.items():
        if k not in Instance.__table__.columns or k in ("id", "state"):
            raise TypeError(f"not a field that can be set on an instance: {k}")
        setattr(row, k, v)


def move(db: Database, row_id: int, target: InstanceState, **fields: Any) -> InstanceView | None:
    """Change state (checked by the state machine) and fields; None if the row is gone
    or the move is not legal from where it is now (someone else moved it first). The
    machine's time so far is charged (``app.store.charges``) as its state changes, up to
    ``now=`` (a datetime; default: the present)."""
    when = fields.pop("now", None)
    now: datetime = when if isinstance(when, datetime) else utcnow()
    with db.session() as s:
        row = s.get(Instance, row_id)
        if row is None:
            return None
        if row.state != target.value:
            try:
                instance_transition(row.state, target)
            except ValueError:
                return None
            charges.meter(s, row, target, now)  # before the fields: whose it was
        row.state = target.value
        _set(row, fields)
        if target is InstanceState.TERMINATED:
            row.terminated_at = now
        return view(row)


def retire_idle(db: Database, row_id: int, why: str) -> InstanceView | None:
    """Move an idle machine to ``terminating`` only if it is still idle and no live
    attempt is its agent's (a claim by another replica, or on this one while the pool
    pass awaited EC2, may have just given it a job); None when it is not retired."""
    busy = (
        select(Attempt.id)
        .where(
            Attempt.agent_id == Instance.agent_id,
            Attempt.state.in_(["dispatching", "running"]),
        )
        .exists()
    )
    with db.engine.begin() as conn:
        done = conn.execute(
            sql_update(Instance)
            .where(
                Instance.id == row_id,
                Instance.state == InstanceState.IDLE.value,
                ~busy,
            )
            .values(state=InstanceState.TERMINATING.value, error=why)
        ).rowcount
    return get(db, row_id) if done else None


def update(db: Database, row_id: int, **fields: Any) -> None:
    """Change fields other than the state; nothing when the row is gone."""
    with db.session() as s:
        row = s.get(Instance, row_id)
        if row is not None:
            _set(row, fields)


@dataclass(frozen=True)
class Exchange:
    """What became of a machine's registration: ``ok`` (its credential is set now),
    ``used`` (an agent registered with this token before), ``gone`` (the machine is no
    longer live)."""

    outcome: str
    machine: InstanceView


def register(db: Database, token_hash: str, credential_hash: str) -> Exchange | None:
    """Exchange the registration token of a live machine (its hash) for its agent's
    credential (a hash too), once. None when no machine has this token. A ``requested``
    machine is ``booting`` from then (it evidently runs) until its agent's first claim
    (``by_credential``); its boot time goes on until that claim."""
    with db.session() as s:
        row = s.scalar(select(Instance).where(Instance.token_hash == token_hash))
        if row is None:
            return None
        if not InstanceState(row.state).live:
            return Exchange("gone", view(row))
        taken = s.execute(  # once, even when two agents race with one token
            sql_update(Instance)
            .where(Instance.id == row.id, Instance.credential_hash.is_(None))
            .values(credential_hash=credential_hash, registered_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(taken, "rowcount", 0) != 1:
            return Exchange("used", view(row))
        s.refresh(row)  # as the database gives it back
        if row.state == InstanceState.REQUESTED.value:  # it runs: its agent is here
            instance_transition(row.state, InstanceState.BOOTING)
            row.state = InstanceState.BOOTING.value
        return Exchange("ok", view(row))


def by_credential(
    db: Database, credential_hash: str, now: datetime | None = None
) -> InstanceView | None:
    """The live machine whose agent holds this credential (its hash), moved to ``idle``
    on its agent's first claim (``requested``/``booting`` -> ``idle``): the claim that
    takes the job it was started for, in the same moment. Its boot ends there."""
    now = now or utcnow()
    with db.session() as s:
        row = s.scalar(select(Instance).where(Instance.credential_hash == credential_hash))
        if row is None or not InstanceState(row.state).live:
            return None
        if row.state in (InstanceState.REQUESTED.value, InstanceState.BOOTING.value):
            instance_transition(row.state, InstanceState.IDLE)
            charges.meter(s, row, InstanceState.IDLE, now)
            row.state = InstanceState.IDLE.value
            row.idle_since = now
            s.flush()
            s.refresh(row)
        return view(row)


STARTING = (InstanceState.REQUESTED.value, InstanceState.BOOTING.value)


def fail_boot(db: Database, token_hash: str, error: str) -> InstanceView | None:
    """The machine whose agent has not registered yet and whose bootstrap reports, with
    this token (its hash), that it could not start: moved to ``terminating`` (it shuts
    itself down; the executor confirms), ``error`` kept. None when no starting machine
    has the token (unknown, or its agent registered already)."""
    with db.session() as s:
        row = s.scalar(select(Instance).where(Instance.token_hash == token_hash))
        if row is None or row.state not in STARTING or row.credential_hash is not None:
            return None
        instance_transition(row.state, InstanceState.TERMINATING)
        charges.meter(s, row, InstanceState.TERMINATING, utcnow())  # still its boot
        row.state = InstanceState.TERMINATING.value
        row.error = error[:2000]
        return view(row)


def count_by_state(db: Database) -> list[tuple[str, int]]:
    """(state, how many machines are in it), for the states that have any."""
    with db.session() as s:
        rows = s.execute(select(Instance.state, func.count()).group_by(Instance.state))
        return [(state, int(n)) for state, n in rows]
