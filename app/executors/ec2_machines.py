"""The EC2 executor's machines (stored by ``app.store.instances``, moving through the
instance state machine of ``app.core.instances``), and who a registering agent is: a
machine's user-data token registers its agent once; the agent then claims with the
credential it got for it."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from app.core.instances import InstanceState
from app.core.jobspec import StoredJobSpec
from app.engine.engine import AgentIdentity
from app.engine.hooks import Enrolled, FailedMachine, RegistrationRefused
from app.protocol import ClaimRequest, Registration
from app.store import instances
from app.store.db import Database
from app.store.instances import InstanceView, NewInstance
from app.store.models import Job, Pipeline


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Machines:
    """The executor's machines (``app.store.instances``), bound to its database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, new: NewInstance) -> InstanceView:
        return instances.add(self.db, new)

    def live(self) -> list[InstanceView]:
        return instances.live(self.db)

    def get(self, row_id: int) -> InstanceView | None:
        return instances.get(self.db, row_id)

    def by_agent(self, agent_id: str) -> InstanceView | None:
        return instances.by_agent(self.db, agent_id)

    def move(self, row_id: int, target: InstanceState, **fields: object) -> InstanceView | None:
        """Change state (checked by the state machine) and fields; None if the row is gone
        or the move is not legal from where it is now (someone else moved it first)."""
        return instances.move(self.db, row_id, target, **fields)

    def retire_idle(self, row_id: int, why: str) -> InstanceView | None:
        """``terminating`` if still idle with no live attempt (else None: keep it)."""
        return instances.retire_idle(self.db, row_id, why)

    def set(self, row_id: int, **fields: object) -> None:
        instances.update(self.db, row_id, **fields)

    # -- agents ----------------------------------------------------------------------

    def register(self, token: str, registration: Registration) -> Enrolled | None:
        """Exchange a machine's user-data token (its registration token) at its agent's
        first contact for the agent's own credential; the token is refused afterwards
        (it stays readable on the machine, from the instance metadata)."""
        credential = "ployd_agent_" + secrets.token_urlsafe(32)
        found = instances.register(self.db, token_hash(token), token_hash(credential))
        if found is None:
            return None
        row = found.machine
        target = f"instance:{row.instance_id or row.agent_id}"
        if found.outcome == "used":
            raise RegistrationRefused(
                f"machine {row.instance_id or row.agent_id} has registered already: its "
                "registration token works once",
                target=target,
                reason="used",
            )
        if found.outcome == "gone":
            raise RegistrationRefused(
                f"machine {row.instance_id or row.agent_id} is {row.state}",
                target=target,
                reason=row.state,
            )
        return Enrolled(
            row.agent_id,
            credential,
            target=target,
            details={"instance_type": row.instance_type, "pool": row.pool},
        )

    def identity(self, token: str, _claim: ClaimRequest | None = None) -> AgentIdentity | None:
        """The agent of a live machine PloyD started, from the credential it got when it
        registered. A machine moves from requested/booting to idle on its first claim."""
        row = instances.by_credential(self.db, token_hash(token))
        if row is None:
            return None
        taking = row.state == InstanceState.IDLE.value
        fresh = row.tenant_id is None  # has not run a job yet
        accepts = _accepts(row.instance_type, row.tenant_id, fresh) if taking else _nothing
        if taking:  # still idle when a job comes (a long poll waits): not being retired
            accepts = _while_idle(self.db, row.id, accepts)
        return AgentIdentity(
            agent_id=row.agent_id,
            instance_type=row.instance_type,
            spot=row.market == "spot",
            price_hourly=row.price_hourly,
            accepts=accepts,
            prefer_attempt=row.launched_for,
            match_hardware=False,  # its instance type says what it has
        )

    def fail_boot(self, token: str, reason: str) -> FailedMachine | None:
        """A starting machine's bootstrap reports, with its registration token, that it
        could not start the agent: the machine goes (``terminating``); None when the
        token is no starting machine's."""
        row = instances.fail_boot(self.db, token_hash(token), f"failed to start: {reason}")
        if row is None:
            return None
        return FailedMachine(row.agent_id, row.instance_id or row.agent_id, row.launched_for)


def _nothing(_job: Job, _pipeline: Pipeline) -> bool:
    return False


def _while_idle(
    db: Database, row_id: int, accepts: Callable[[Job, Pipeline], bool]
) -> Callable[[Job, Pipeline], bool]:
    """``accepts``, once the machine is checked to be idle still: the pool pass (on the
    leading replica) may have retired it while its agent's claim waited for a job."""

    def check(job: Job, pipeline: Pipeline) -> bool:
        if not accepts(job, pipeline):
            return False
        now = instances.get(db, row_id)
        return now is not None and now.state == InstanceState.IDLE.value

    return check


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
