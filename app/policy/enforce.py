"""Where tenants' policy is enforced.

- At queue time (the engine's gates, ``PolicyBook.gate``): a job asking for a hardware
  class the tenant may not use, a timeout above its maximum, or whose estimated cost
  (the hourly price of its first candidate x its timeout) would take the month's spend
  past the budget, fails before any machine starts, with the figures.
- At claim time and before an executor starts a machine (the engine's admission hook,
  ``PolicyBook.admission``): a job over a concurrency quota waits, first come first
  served, and its check run or status says which limit and how many jobs are ahead.

The effective policy of a tenant is the admin API's (``tenant_policies``) over the
file's entry for it, over the file's defaults; a field unset everywhere is no limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.audit.chain import append
from app.core.clock import aware
from app.core.config.model import NotifyChannel
from app.core.durations import format_duration
from app.core.hardware import Catalog, parse_spec
from app.core.jobspec import StoredJobSpec
from app.policy.model import Policy, PolicyError, PolicyFile, load_file, parse_policy
from app.store import charges
from app.store import policy as policy_rows
from app.store.db import Database, Tx
from app.store.models import Attempt, AuditRecord, Job, Tenant, utcnow
from app.store.tenants import TenantView

log = logging.getLogger("ployd.policy")
# policy_for's memo in the transaction's ``info`` (tenant id -> policy, source)
_POLICY_MEMO = "ployd.policy_for"


def job_class(hardware: list[Any] | None) -> str:
    """The hardware class a job counts against: that of its first preference."""
    if not hardware:
        return "cpu"
    try:
        return parse_spec(str(hardware[0])).cls
    except ValueError:
        return "cpu"


def month_start(now: datetime | None = None) -> datetime:
    now = (now or utcnow()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Spend:
    """A tenant's month: ``spent_usd`` (its ended attempts' run time and the boot time of
    machines started for them, ended) and ``running_usd`` (what is still accruing: live
    attempts and machines booting for them) count against its budget; ``machine_time``
    splits them by kind (seconds, usd) and adds the idle time of warm machines bound to
    the tenant, which is their pool's (``idle_by_pool``) and not in the budget."""

    tenant_id: int
    month: str  # 2026-11
    spent_usd: float  # ended: attempts' run time + the boot time of their machines
    running_usd: float  # accruing: attempts still running + machines still booting
    budget: float | None
    warn_at: float | None
    machine_time: dict[str, tuple[float, float]] = field(default_factory=dict)
    idle_by_pool: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def warning(self) -> bool:
        if self.budget is None or self.warn_at is None:
            return False
        return self.spent_usd + self.running_usd >= self.budget * self.warn_at

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "month": self.month,
            "spent_usd": round(self.spent_usd, 4),
            "running_usd": round(self.running_usd, 4),
            "budget_usd": self.budget,
            "warn_at": self.warn_at,
            "warning": self.warning,
            "over_budget": self.budget is not None and self.spent_usd >= self.budget,
            "machine_time": {
                kind: {"seconds": round(sec, 3), "usd": round(usd, 4)}
                for kind, (sec, usd) in self.machine_time.items()
            },
            "idle_by_pool": {
                pool: {"seconds": round(sec, 3), "usd": round(usd, 4)}
                for pool, (sec, usd) in sorted(self.idle_by_pool.items())
            },
        }


@dataclass(frozen=True)
class TenantPolicyView:
    """A tenant's policy as the admin API shows it."""

    tenant: TenantView
    effective: Policy
    source: str  # where it comes from: the file's section, or the API over it
    stored: dict[str, Any] | None  # what the admin API stored, if anything


class PolicyBook:
    """The policies in force: the operator's file, and the admin API's overrides."""

    def __init__(self, catalog: Catalog, path: str = "", file: PolicyFile | None = None) -> None:
        self.catalog = catalog
        self.path = path
        self.file = file or (load_file(path, catalog.classes()) if path else PolicyFile())
        # Told of each budget warning, in the gate's transaction (the notifier records it).
        self.budget_listeners: list[Callable[[Tx, Attempt, str], None]] = []

    def reload(self) -> bool:
        """Read the policy file again (SIGHUP); a bad file is reported, the old one kept."""
        if not self.path:
            return False
        try:
            self.file = load_file(self.path, self.catalog.classes())
        except PolicyError as e:
            log.error("policy file not reloaded, the previous one stays in force: %s", e)
            return False
        log.info("policy file %s reloaded", self.path)
        return True

    # ---- by tenant id, each in its own transaction (the admin API, the dashboard) -----

    def view(self, db: Database, tenant_id: int) -> TenantPolicyView | None:
        """A tenant's effective policy, its source and what the API stored; None when
        there is no such tenant."""
        with db.session() as s:
            tenant = policy_rows.tenant(s, tenant_id)
            return None if tenant is None else self._view(s, tenant)

    def put(self, db: Database, tenant_id: int, data: Any, actor: str) -> TenantPolicyView | None:
        """Store a tenant's policy (``PolicyError`` when invalid); None: no such tenant."""
        with db.session() as s:
            tenant = policy_rows.tenant(s, tenant_id)
            if tenant is None:
                return None
            self.set_policy(s, tenant, data, actor)
            return self._view(s, tenant)

    def spend_of(self, db: Database, tenant_id: int, now: datetime | None = None) -> Spend | None:
        """A tenant's spend this month against its budget; None: no such tenant."""
        with db.session() as s:
            tenant = policy_rows.tenant(s, tenant_id)
            return None if tenant is None else self.spend(s, tenant, now)

    def _view(self, s: Tx, tenant: Tenant) -> TenantPolicyView:
        policy, source = self.policy_for(s, tenant)
        row = policy_rows.tenant_policy(s, tenant.id)
        return TenantPolicyView(
            tenant=TenantView(tenant.id, tenant.forge, tenant.external_id, tenant.name),
            effective=policy,
            source=source,
            stored=row.policy if row is not None else None,
        )

    # ---- policies ---------------------------------------------------------------------

    def policy_for(self, s: Tx, tenant: Tenant) -> tuple[Policy, str]:
        """The tenant's effective policy and where it comes from; read once per
        transaction (a 5,000-job pipeline's gates ask 5,000 times)."""
        memo: dict[int, tuple[Policy, str]] = s.info.setdefault(_POLICY_MEMO, {})
        known = memo.get(tenant.id)
        if known is not None:
            return known
        base, source = self.file.for_tenant(tenant.forge, tenant.external_id, tenant.name)
        row = policy_rows.tenant_policy(s, tenant.id)
        if row is None:
            found = base, source
        else:
            stored = parse_policy(row.policy, f"tenant {tenant.id}", self.catalog.classes())
            found = stored.over(base), f"api (over {source})"
        memo[tenant.id] = found
        return found

    def notify_channels(self, s: Tx, tenant_id: int) -> tuple[NotifyChannel, ...]:
        """The tenant's default notification channels (``notify`` in its policy)."""
        tenant = policy_rows.tenant(s, tenant_id)
        if tenant is None:
            return ()
        return self.policy_for(s, tenant)[0].notify or ()

    def set_policy(self, s: Tx, tenant: Tenant, data: Any, actor: str) -> Policy:
        """Store a tenant's policy (the admin API); PolicyError when invalid. Audited."""
        policy = parse_policy(data, "policy", self.catalog.classes())
        s.info.get(_POLICY_MEMO, {}).pop(tenant.id, None)
        after = policy.as_json()
        before = policy_rows.put_tenant_policy(s, tenant.id, after, actor)
        append(
            s,
            AuditRecord(
                actor=actor,
                forge=tenant.forge,
                action="policy.set",
                target=f"tenant:{tenant.id}",
                details={"before": before, "after": after},
            ),
        )
        return policy

    # ---- spend ------------------------------------------------------------------------

    def spend(self, s: Tx, tenant: Tenant, now: datetime | None = None) -> Spend:
        now = now or utcnow()
        start = month_start(now)
        ran = policy_rows.spent_since(s, tenant.id, start)
        running = 0.0
        for a in policy_rows.live_since(s, tenant.id, start):
            if a.price_hourly and a.claimed_at is not None:
                claimed = aware(a.claimed_at)
                running += a.price_hourly * max(0.0, (now - claimed).total_seconds()) / 3600
        machines = charges.breakdown(s, start, now, tenant.id)
        run, boot, idle = (machines.total(k) for k in (charges.RUN, charges.BOOT, charges.IDLE))
        policy, _ = self.policy_for(s, tenant)
        return Spend(
            tenant_id=tenant.id,
            month=start.strftime("%Y-%m"),
            spent_usd=ran + machines.closed[charges.BOOT].usd,
            running_usd=running + machines.open[charges.BOOT].usd,
            budget=policy.budget.monthly_usd if policy.budget else None,
            warn_at=policy.budget.warn_at if policy.budget else None,
            # run: the machines' busy seconds; its dollars are the attempts' own costs
            machine_time={
                charges.RUN: (run.seconds, ran + running),
                charges.BOOT: (boot.seconds, boot.usd),
                charges.IDLE: (idle.seconds, idle.usd),
            },
            idle_by_pool={p: (t.seconds, t.usd) for p, t in machines.idle_by_pool.items()},
        )

    def estimate(self, job: Job) -> tuple[float, str]:
        """A job's estimated cost: its first candidate's hourly price x its timeout."""
        timeout = StoredJobSpec.from_stored(job.spec).timeout_s
        name = str(job.candidates[0]) if job.candidates else ""
        try:
            price = self.catalog.get(name).price_usd_hour if name else 0.0
        except (KeyError, ValueError):
            price = 0.0
        what = (
            f"{name} at ${price:.4f}/h x {format_duration(timeout)} timeout"
            if name
            else f"no priced machine x {format_duration(timeout)} timeout"
        )
        return price * timeout / 3600, what

    # ---- the engine's hooks -----------------------------------------------------------

    def gate(self, s: Tx, attempt: Attempt) -> str | None:
        """Refusals at queue time: disallowed hardware, a timeout above the maximum, a
        job that would pass the month's budget."""
        job = attempt.job
        tenant = job.pipeline.repository.tenant
        policy, source = self.policy_for(s, tenant)
        who = f"tenant {tenant.name} ({tenant.forge}:{tenant.external_id})"
        if policy.allowed_hardware is not None:
            for h in job.hardware or ["cpu"]:
                cls = job_class([h])
                if cls not in policy.allowed_hardware:
                    allowed = ", ".join(sorted(policy.allowed_hardware)) or "none"
                    return (
                        f"refused: hardware class {cls} is not allowed for {who} "
                        f"(allowed: {allowed}; policy from {source})"
                    )
        timeout = StoredJobSpec.from_stored(job.spec).timeout_s
        if policy.max_timeout_s is not None and timeout > policy.max_timeout_s:
            return (
                f"refused: the job's timeout {format_duration(timeout)} is above the maximum "
                f"of {format_duration(policy.max_timeout_s)} for {who} (policy from {source})"
            )
        if policy.budget is not None:
            spend = self.spend(s, tenant)
            cost, what = self.estimate(job)
            budget = policy.budget.monthly_usd
            if spend.spent_usd + cost > budget:
                return (
                    f"refused: the monthly budget of {who} would be passed: "
                    f"${spend.spent_usd:.2f} spent so far in {spend.month} + this job's "
                    f"estimated ${cost:.2f} ({what}) > budget ${budget:.2f}"
                )
            if spend.spent_usd + cost >= budget * policy.budget.warn_at:
                share = 100 * (spend.spent_usd + cost) / budget if budget else 100
                log.warning(
                    "%s is at %.0f%% of its monthly budget ($%.2f + $%.2f of $%.2f)",
                    who,
                    share,
                    spend.spent_usd,
                    cost,
                    budget,
                )
                note = (
                    f"budget: {who} is at {share:.3g}% of its monthly budget "
                    f"(${spend.spent_usd:.2f} spent in {spend.month} + this job's estimated "
                    f"${cost:.2f} of ${budget:.2f}; warn_at {policy.budget.warn_at:.0%}), "
                    f"crossed by job {job.name}"
                )
                for listener in self.budget_listeners:
                    listener(s, attempt, note)
        return None

    def admission(self, s: Tx, attempt: Attempt) -> str | None:
        """Quotas at claim time: a job beyond its tenant's concurrency limit for its
        hardware class waits (first come, first served), saying why."""
        job = attempt.job
        tenant = job.pipeline.repository.tenant
        policy, source = self.policy_for(s, tenant)
        cls = job_class(job.hardware)
        limit = (policy.max_concurrent or {}).get(cls)
        if limit is None:
            return None
        policy_rows.lock_quota(s, tenant.id)  # one admission per tenant at a time
        rows = policy_rows.quota_usage(s, tenant.id, attempt.id)
        same = [r for r in rows if job_class(r.hardware) == cls]
        running = sum(1 for r in same if r.state in policy_rows.LIVE)
        ahead = len(same) - running
        if running + ahead < limit:
            return None
        return (
            f"waiting for the {cls} quota: {tenant.name} may run "
            f"{_plural(limit, f'{cls} job')} at once (max_concurrent.{cls}, policy from "
            f"{source}); {_plural(running + ahead, 'job')} ahead ({running} running, "
            f"{ahead} queued before it)"
        )
