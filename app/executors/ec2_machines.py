"""The EC2 executor's machines as stored rows: moves through the instance state machine
(``app.core.instances``), and who a registering agent is."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from app.core.instances import InstanceState, instance_transition
from app.core.jobspec import StoredJobSpec
from app.engine.engine import AgentIdentity
from app.store.db import Database
from app.store.models import Instance, Job, Pipeline, utcnow

LIVE = [s.value for s in InstanceState if s.live]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def aware(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


class Machines:
    """Instance rows: reads and state changes, one short transaction each."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, row: Instance) -> int:
        with self.db.session() as s:
            s.add(row)
            s.flush()
            return row.id

    def live(self) -> list[Instance]:
        with self.db.session() as s:
            return list(s.scalars(select(Instance).where(Instance.state.in_(LIVE))))

    def get(self, row_id: int) -> Instance | None:
        with self.db.session() as s:
            return s.get(Instance, row_id)

    def by_agent(self, agent_id: str) -> Instance | None:
        with self.db.session() as s:
            return s.scalar(select(Instance).where(Instance.agent_id == agent_id))

    def move(self, row_id: int, target: InstanceState, **fields: object) -> Instance | None:
        """Change state (checked by the state machine) and fields; None if the row is gone
        or the move is not legal from where it is now (someone else moved it first)."""
        with self.db.session() as s:
            row = s.get(Instance, row_id)
            if row is None:
                return None
            if row.state != target.value:
                try:
                    instance_transition(row.state, target)
                except ValueError:
                    return None
            row.state = target.value
            for k, v in fields.items():
                setattr(row, k, v)
            if target is InstanceState.TERMINATED:
                row.terminated_at = utcnow()
            return row

    def set(self, row_id: int, **fields: object) -> None:
        with self.db.session() as s:
            row = s.get(Instance, row_id)
            if row is not None:
                for k, v in fields.items():
                    setattr(row, k, v)

    # -- agents ----------------------------------------------------------------------

    def identity(self, token: str) -> AgentIdentity | None:
        """The agent of a machine PloyD started, from its registration token. A machine
        registers on its first claim (requested/booting -> idle)."""
        with self.db.session() as s:
            row = s.scalar(select(Instance).where(Instance.token_hash == token_hash(token)))
            if row is None or not InstanceState(row.state).live:
                return None
            if row.state in (InstanceState.REQUESTED.value, InstanceState.BOOTING.value):
                instance_transition(row.state, InstanceState.IDLE)
                row.state = InstanceState.IDLE.value
                row.registered_at = row.idle_since = utcnow()
            taking = row.state == InstanceState.IDLE.value
            fresh = row.tenant_id is None  # has not run a job yet
            accepts = _accepts(row.instance_type, row.tenant_id, fresh) if taking else _nothing
            return AgentIdentity(
                agent_id=row.agent_id,
                instance_type=row.instance_type,
                spot=row.market == "spot",
                price_hourly=row.price_hourly,
                accepts=accepts,
                prefer_attempt=row.launched_for,
            )


def _nothing(_job: Job, _pipeline: Pipeline) -> bool:
    return False


def _accepts(
    instance_type: str, tenant_id: int | None, fresh: bool
) -> Callable[[Job, Pipeline], bool]:
    """A machine runs jobs that list its instance type among their candidates, and only
    one tenant's jobs over its life (workspaces and caches stay on the disk); a job that
    asked for a clean machine only a machine that has run nothing yet."""

    def accepts(job: Job, pipeline: Pipeline) -> bool:
        if instance_type not in (job.candidates or []):
            return False
        if StoredJobSpec.from_stored(job.spec).clean_machine and not fresh:
            return False
        return tenant_id is None or pipeline.repository.tenant_id == tenant_id

    return accepts
