"""Every second of a cloud machine's life, and who pays for it.

A machine's life is cut into stretches as its state changes (``instance_charges``):

- ``boot``: from RunInstances until it is ready for work (``requested``, ``booting``),
  and on until it is gone when it never got there (its agent never registered, its
  bootstrap failed). Paid by the attempt it was launched for, and that attempt's tenant;
  a machine started to fill a warm pool (launched for no attempt) boots on the pool.
- ``run``: while it runs an attempt (``busy``): that attempt's and its tenant's. The
  attempt's own ``cost`` (price x claimed to ended) is what spend counts for it.
- ``idle``: waiting in its warm pool for the next job, and after a job draining and
  terminating (``idle``, ``draining``, ``terminating``): the pool's, and the tenant the
  machine is bound to, if any (a warm machine serves one tenant over its life).

The price is the machine row's own (``price_hourly``: what the scheduler chose it at,
for its market, type and region), so a region's price is the one charged.

The open stretch of a live machine is on its row (``meter_kind`` since ``metered_at``);
``meter`` closes it when the state change starts a stretch of another kind, or the
machine is gone. Everything here runs inside the caller's transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from app.core.clock import aware
from app.core.instances import InstanceState, cost_usd
from app.store.db import Tx
from app.store.models import Attempt, Instance, InstanceCharge, Job, Pipeline, Repository

BOOT, RUN, IDLE = "boot", "run", "idle"
KINDS = (RUN, BOOT, IDLE)
S = InstanceState


def kind_after(state: InstanceState, before: str | None) -> str | None:
    """Whose the machine's time is once it is in ``state`` (``before``: whose it was)."""
    if state in (S.REQUESTED, S.BOOTING):
        return BOOT
    if state is S.BUSY:
        return RUN
    if state is S.IDLE:
        return IDLE
    if state is S.TERMINATED:
        return None
    # draining, terminating: a machine that never got to work still boots for its
    # attempt; after a job (or idling in its pool) it is the pool's
    return BOOT if before in (BOOT, None) else IDLE


def attempt_tenant(tx: Tx, attempt_id: int | None) -> int | None:
    """The tenant whose repository the attempt's job belongs to."""
    if attempt_id is None:
        return None
    return tx.scalar(
        select(Repository.tenant_id)
        .select_from(Attempt)
        .join(Attempt.job)
        .join(Job.pipeline)
        .join(Pipeline.repository)
        .where(Attempt.id == attempt_id)
    )


def _payer(tx: Tx, row: Instance, kind: str) -> tuple[int | None, int | None]:
    """(attempt, tenant) who pay for ``row``'s open stretch of ``kind``."""
    if kind == BOOT:
        if row.launched_for is None:  # a warm pool's machine
            return None, row.tenant_id
        return row.launched_for, attempt_tenant(tx, row.launched_for)
    if kind == RUN:
        return row.attempt_id, row.tenant_id or attempt_tenant(tx, row.attempt_id)
    return None, row.tenant_id


def meter(tx: Tx, row: Instance, target: InstanceState, now: datetime) -> None:
    """Before ``row`` moves to ``target``: close its open stretch when ``target`` starts
    one of another kind (or ends its life), and open the next one at ``now``."""
    nxt = kind_after(target, row.meter_kind)
    if nxt == row.meter_kind and target is not S.TERMINATED:
        return
    close(tx, row, now)
    row.meter_kind = nxt
    row.metered_at = now if nxt is not None else None


def close(tx: Tx, row: Instance, now: datetime) -> InstanceCharge | None:
    """Record ``row``'s open stretch up to ``now`` (nothing when none is open)."""
    since = aware(row.metered_at)
    kind = row.meter_kind
    if since is None or kind is None:
        return None
    seconds = max(0.0, (aware(now) - since).total_seconds())
    if seconds == 0.0:  # two moves in the same instant: nothing to charge
        row.metered_at = now
        return None
    attempt_id, tenant_id = _payer(tx, row, kind)
    charge = InstanceCharge(
        instance_row_id=row.id,
        kind=kind,
        attempt_id=attempt_id,
        tenant_id=tenant_id,
        pool=row.pool,
        instance_type=row.instance_type,
        az=row.az,
        price_hourly=row.price_hourly,
        started_at=since,
        ended_at=now,
        seconds=seconds,
        cost=cost_usd(row.price_hourly, seconds),
    )
    tx.add(charge)
    row.metered_at = now
    return charge


# ---- reading -----------------------------------------------------------------------


@dataclass
class Tally:
    seconds: float = 0.0
    usd: float = 0.0

    def add(self, seconds: float, usd: float) -> None:
        self.seconds += seconds
        self.usd += usd


@dataclass
class Breakdown:
    """Machine time by kind, what has ended (``closed``) and what is still accruing on
    live machines (``open``), and idle time by pool."""

    closed: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    open: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    idle_by_pool: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))

    def total(self, kind: str) -> Tally:
        c, o = self.closed[kind], self.open[kind]
        return Tally(c.seconds + o.seconds, c.usd + o.usd)


def _open_stretches(tx: Tx, now: datetime) -> list[tuple[Instance, str, float, float]]:
    """Live machines' open stretches: (row, kind, seconds so far, cost so far)."""
    out = []
    rows = tx.scalars(
        select(Instance).where(
            Instance.state != S.TERMINATED.value,
            Instance.meter_kind.is_not(None),
            Instance.metered_at.is_not(None),
        )
    )
    for row in rows:
        since = aware(row.metered_at)
        assert since is not None and row.meter_kind is not None
        seconds = max(0.0, (aware(now) - since).total_seconds())
        out.append((row, row.meter_kind, seconds, cost_usd(row.price_hourly, seconds)))
    return out


def breakdown(tx: Tx, start: datetime, now: datetime, tenant_id: int | None = None) -> Breakdown:
    """Machine time since ``start`` (stretches that ended then or later, and the open
    ones): a tenant's (``tenant_id``), or everyone's."""
    out = Breakdown()
    q = select(
        InstanceCharge.kind,
        InstanceCharge.pool,
        func.sum(InstanceCharge.seconds),
        func.sum(InstanceCharge.cost),
    ).where(InstanceCharge.ended_at >= start)
    if tenant_id is not None:
        q = q.where(InstanceCharge.tenant_id == tenant_id)
    for kind, pool, seconds, usd in tx.execute(
        q.group_by(InstanceCharge.kind, InstanceCharge.pool)
    ):
        out.closed[kind].add(float(seconds or 0.0), float(usd or 0.0))
        if kind == IDLE:
            out.idle_by_pool[pool].add(float(seconds or 0.0), float(usd or 0.0))
    for row, kind, seconds, usd in _open_stretches(tx, now):
        if tenant_id is not None and _payer(tx, row, kind)[1] != tenant_id:
            continue
        out.open[kind].add(seconds, usd)
        if kind == IDLE:
            out.idle_by_pool[row.pool].add(seconds, usd)
    return out


@dataclass(frozen=True)
class PoolTime:
    """One pool's machine time since a start: (seconds, usd) by kind."""

    pool: str
    run: Tally
    boot: Tally
    idle: Tally


def by_pool(tx: Tx, start: datetime, now: datetime) -> list[PoolTime]:
    """Every pool's machine time since ``start`` (ended stretches and open ones), the
    most expensive first."""
    acc: dict[str, dict[str, Tally]] = defaultdict(lambda: {k: Tally() for k in KINDS})
    q = (
        select(
            InstanceCharge.pool,
            InstanceCharge.kind,
            func.sum(InstanceCharge.seconds),
            func.sum(InstanceCharge.cost),
        )
        .where(InstanceCharge.ended_at >= start)
        .group_by(InstanceCharge.pool, InstanceCharge.kind)
    )
    for pool, kind, seconds, usd in tx.execute(q):
        acc[pool][kind].add(float(seconds or 0.0), float(usd or 0.0))
    for row, kind, seconds, usd in _open_stretches(tx, now):
        acc[row.pool][kind].add(seconds, usd)
    pools = [PoolTime(p, t[RUN], t[BOOT], t[IDLE]) for p, t in acc.items()]
    return sorted(pools, key=lambda p: (-(p.run.usd + p.boot.usd + p.idle.usd), p.pool))


def of_instance(tx: Tx, instance_row_id: int) -> list[InstanceCharge]:
    """A machine's ended stretches, in order."""
    return list(
        tx.scalars(
            select(InstanceCharge)
            .where(InstanceCharge.instance_row_id == instance_row_id)
            .order_by(InstanceCharge.id)
        )
    )
