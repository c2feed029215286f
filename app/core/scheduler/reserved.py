"""Whether a reservation may be used, now, by this job (pure: ``now`` is given).

A reservation (``model.Reservation``) is offered to a job only when

* its instance type and AZ are known (given, or said by DescribeCapacityReservations);
* EC2 says it is ``active`` (``pending``, ``expired``, ``cancelled``, ``payment-failed``
  ... are not used) and has a free instance (``AvailableInstanceCount`` above 0, or not
  known);
* ``now`` is inside its window: at or after ``starts``, before ``ends`` (a Capacity
  Block: before ``ends`` minus ``BLOCK_END_MARGIN``, when EC2 ends its instances);
* a Capacity Block with an end outlasts the job: what is left of it (to ``ends`` minus
  the margin) is at least the job's timeout;
* the job's tenant and workload are among those it serves (``tenants``, ``workloads``;
  empty: everyone). A warm pool has no tenant and no workload: it gets only
  reservations open to everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from app.core.config.model import Workload
from app.core.scheduler.model import Reservation

# EC2 ends a Capacity Block's instances this long before its end time.
BLOCK_END_MARGIN = timedelta(minutes=30)
ALL_TENANTS = "*"

# A tenant as reservations name it: every name it goes by ("github:12345", "github:acme").
TenantNames = Sequence[str]


def tenant_names(forge: str, external_id: str, name: str) -> tuple[str, ...]:
    """The names a tenant matches in ``tenants``: ``forge:id`` and ``forge:name``."""
    return tuple(dict.fromkeys((f"{forge}:{external_id}", f"{forge}:{name}")))


def usable_until(r: Reservation) -> datetime | None:
    """The last moment its instances run: ``ends`` (a Capacity Block: minus
    ``BLOCK_END_MARGIN``); None: no end."""
    if r.ends is None:
        return None
    return r.ends - BLOCK_END_MARGIN if r.kind == "capacity-block" else r.ends


def span(d: timedelta) -> str:
    """``2d 3h``, ``3h 20m``, ``45m``, ``30s``: a duration as people read it."""
    s = max(0, int(d.total_seconds()))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


def state_problem(r: Reservation) -> str | None:
    """Why it cannot be used whoever asks (EC2's state, no free instance, not known)."""
    if not r.known:
        return "its instance type and AZ are not known yet (DescribeCapacityReservations)"
    if r.state != "active":
        return f"EC2 says it is {r.state}"
    if r.available == 0:
        return "no instance free in it (AvailableInstanceCount 0)"
    return None


def window_problem(r: Reservation, now: datetime, timeout_s: int = 0) -> str | None:
    """Why it cannot be used at ``now`` (by a job of ``timeout_s``; 0: any length)."""
    if r.starts is not None and now < r.starts:
        return f"starts in {span(r.starts - now)} ({r.starts:%Y-%m-%d %H:%M} UTC)"
    until = usable_until(r)
    if until is None:
        return None
    if now >= until:
        if r.kind == "capacity-block" and now < until + BLOCK_END_MARGIN:
            return f"ended (EC2 ends its instances 30 min before its end, {r.ends:%H:%M} UTC)"
        return "ended"
    if r.kind == "capacity-block" and timeout_s > 0 and now + timedelta(seconds=timeout_s) > until:
        return (
            f"ends in {span(until - now)} (its instances end at {until:%Y-%m-%d %H:%M} UTC), "
            f"before the job's timeout of {span(timedelta(seconds=timeout_s))}"
        )
    return None


def who_problem(
    r: Reservation, workload: Workload | None, tenant: TenantNames | None
) -> str | None:
    """Why this workload/tenant may not use it (None for either: a warm pool's, which
    gets only what is open to every tenant/workload)."""
    open_to_all = not r.tenants or ALL_TENANTS in r.tenants
    if not open_to_all and (tenant is None or not any(t in r.tenants for t in tenant)):
        return f"reserved for tenants {', '.join(r.tenants)}"
    if r.workloads and (workload is None or workload not in r.workloads):
        return f"reserved for workloads {', '.join(w.value for w in r.workloads)}"
    return None


def why_not(
    r: Reservation,
    now: datetime | None,
    *,
    workload: Workload | None = None,
    tenant: TenantNames | None = None,
    timeout_s: int = 0,
) -> str | None:
    """Why ``r`` may not be used now by this job (None: it may). ``now`` None (not
    known): a reservation with a window is not used."""
    problem = state_problem(r) or who_problem(r, workload, tenant)
    if problem is not None:
        return problem
    if now is None:
        return "has a window, and the time was not given" if r.starts or r.ends else None
    return window_problem(r, now, timeout_s)
