"""The EC2 executor: the right machine for each queued job, warm pools, and no leaked spend.

Each pass (woken by the engine, or by its own timer):

1. machines that did not register within the boot timeout are terminated, and the attempt
   they were started for ends ``interrupted`` (infrastructure: its retry policy decides,
   and the next launch skips that candidate);
2. every queued attempt without a machine on its way, and without an idle machine of its
   pool to take it, gets one: the scheduler's candidates are tried in order, moving on at
   once on a capacity error; when all fail, the job says "waiting for capacity: tried ..."
   and waits with backoff (its own timeout still applies: the engine's sweep);
3. warm pools: idle machines past their TTL or above the pool's maximum go; pools below
   their minimum get new ones.

A reaper pass (every minute) terminates this deployment's instances (tagged
``ployd:deployment`` = PLOYD_DEPLOYMENT) that no live machine row owns, machines past
their maximum lifetime, and retries terminations that failed; every ``REFRESH_S`` it
asks EC2 again about the capacity reservations (``adapters.ec2.reservations``: states,
free instances, windows; asked first at start, where EC2 contradicting an entry stops
the executor). The scheduler gets each pass's time and the job's tenant, and offers a
reservation only to the jobs that may use it then (``core.scheduler.reserved``).

Launches are idempotent: the machine row is written before RunInstances, whose
ClientToken is the row's agent id (also the ``ployd:agent`` tag), so a retried call
never starts a second instance, and the reaper never ends an instance whose row is live,
even before the row learned its instance id (a launch in flight, or a replica that died
mid-launch: the reaper fills the id in). With several replicas, the passes and the
reaper run on the leader only (``services.leader``); a UNIQUE index keeps one starting
machine per attempt.

Each machine's user data downloads this server's agent file (``/agent/ployd-agent.pyz``,
checked against its SHA-256) and starts it; its agent registers with the one-time token
in the user data. A machine whose bootstrap fails says why (``MachineFailed``): it is
terminated and the retry avoids that candidate. A machine runs one tenant's jobs over
its life, goes back to its pool after a job, and is terminated after a fork's job or a
lost attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from app.adapters.ec2.client import AGENT_TAG, DEPLOYMENT_TAG, EC2Client, InstanceInfo
from app.adapters.ec2.config import EC2Config, EC2ConfigError
from app.adapters.ec2.errors import (
    BadRequestError,
    CapacityError,
    CloudError,
    Quota,
    QuotaError,
    SpotUnavailableError,
    quota_for,
)
from app.adapters.ec2.pricing import PricingClient
from app.adapters.ec2.reservations import REFRESH_S, ReservationMismatch, discover
from app.adapters.ec2.userdata import user_data
from app.core.clock import aware
from app.core.ec2_policy import EC2Policy
from app.core.hardware import Catalog, parse_spec
from app.core.instances import InstanceState
from app.core.jobspec import StoredJobSpec
from app.core.scheduler import (
    Candidate,
    Fleet,
    OnDemandPrices,
    Placement,
    Requirements,
    Reservation,
    Scheduler,
    SpotPrices,
    backoff,
    waiting_message,
    why_none,
)
from app.core.scheduler.reserved import tenant_names
from app.core.states import AttemptState
from app.engine.events import AttemptClaimed, AttemptEnded, MachineFailed, PipelinesChanged
from app.engine.notify import wait_set
from app.executors.ec2_machines import Machines, token_hash
from app.services import Services
from app.store import avoid
from app.store.attempts import attempt_context
from app.store.coord import deployment_id, every
from app.store.instances import AlreadyStarting, InstanceView, NewInstance
from app.store.models import Tenant, utcnow
from app.store.queue import queued_attempts, still_queued

log = logging.getLogger("ployd.ec2")
S = InstanceState

Launched = Callable[[InstanceView, str], Awaitable[None]]  # (machine, user data)

AVOID_S = 6 * 3600  # a candidate a job's machine failed on: skipped by that job this long
MAX_LAUNCH_CALLS = 8  # RunInstances calls per job per round, whatever its candidates
NO_SPOT_S = 3600  # spot refused as impossible here: on-demand only, this long
OFFERINGS_TTL_S = 6 * 3600  # DescribeInstanceTypeOfferings, cached
QUOTA_BACKOFF_S = (60.0, 900.0)  # a used-up quota: first and longest wait (jittered)
THROTTLE_BACKOFF_S = (10.0, 300.0)  # RequestLimitExceeded past the client's retries


@dataclass
class _Waiting:
    rounds: int = 0
    next_try: datetime | None = None
    since: datetime | None = None
    tried: list[Candidate] = field(default_factory=list)
    note: str = ""  # why the last machine started for it went (said with the next one)


@dataclass
class _Blocked:
    """Something refused for the whole account (a quota, spot, the API's rate): until
    when, why (EC2's words), and how many rounds in a row (the backoff's exponent)."""

    until: datetime
    why: str
    rounds: int = 1


def _jittered(rounds: int, bounds: tuple[float, float], rng: random.Random) -> timedelta:
    """first x 2^(rounds-1), at most longest, with 50 % jitter (full jitter's lower half
    kept: waiting jobs and replicas do not retry in the same instant)."""
    first, longest = bounds
    base = min(longest, first * 2 ** max(0, rounds - 1))
    return timedelta(seconds=base * (0.5 + 0.5 * rng.random()))


@dataclass(frozen=True)
class _Queued:
    attempt_id: int
    job_id: int
    tenant_id: int
    fork: bool
    req: Requirements
    candidates: tuple[str, ...]
    disk_gb: int | None
    clean: bool = False  # `clean_machine: true`: a fresh machine, retired after


class EC2Executor:
    def __init__(
        self,
        services: Services,
        ec2: EC2Client,
        config: EC2Config,
        policy: EC2Policy,
        *,
        server_url: str,
        agent_url: str = "",
        tick_s: float = 5.0,
        deployment: str = "",
        clients: Mapping[str, EC2Client] | None = None,
        pricing: PricingClient | None = None,
    ) -> None:
        self.services = services
        self.engine = services.engine
        self.ec2 = ec2  # PLOYD_AWS_REGION's client
        # one client per region with subnets (``ec2`` for the home region)
        self.clients: dict[str, EC2Client] = {**(clients or {}), config.region: ec2}
        missing = [r for r in config.regions if r not in self.clients]
        if missing:
            raise ValueError(f"no EC2 client for region(s) {', '.join(missing)}")
        self.pricing = pricing  # None: the catalog's on-demand prices
        self.od_prices = OnDemandPrices()
        self.config = config
        self.policy = policy
        self.server_url = server_url
        # where machines download the agent: this server's file (checked by SHA-256)
        base = server_url or services.settings.base_url
        self.agent_url = agent_url or f"{base}/agent/ployd-agent.pyz"
        self.tick_s = tick_s
        # whose instances these are (the reaper's scope): PLOYD_DEPLOYMENT, else the
        # database's own id (read at start)
        self.deployment = deployment or services.settings.deployment
        self.machines = Machines(services.db)
        self.spot_prices = SpotPrices()
        self.scheduler: Scheduler | None = None
        self.on_launched: list[Launched] = []  # tests boot a simulated machine here
        self._waiting: dict[int, _Waiting] = {}
        # account-wide refusals: used-up quotas (by quota), spot impossible (by instance
        # type, "*" for every type), EC2 throttling every call
        self._quotas: dict[Quota, _Blocked] = {}
        self._no_spot: dict[str, _Blocked] = {}
        self._throttled: _Blocked | None = None
        self._offered: set[tuple[str, str]] | None = None
        self._offered_at: datetime | None = None
        self._reservations_at: datetime | None = None  # when EC2 was last asked
        self._reservation_warnings: set[str] = set()
        self._tenants: dict[int, tuple[str, ...]] = {}  # tenant id -> the names it goes by
        self.rng = random.Random()
        self._wake = asyncio.Event()
        self._pass = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()  # terminations under way
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[Callable[[], None]] = []
        self.passes = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, *, timer: bool = True) -> None:
        """Start following the engine, and (``timer``) the passes and the reaper on their
        own timers; without, whoever started it calls ``reconcile``/``reap`` (tests)."""
        if not self.deployment:
            self.deployment = await asyncio.to_thread(deployment_id, self.services.db)
        check_settings(self.config, self.policy, self.services.catalog)
        cfg = self.config
        azs: dict[str, str] = {}
        for region in cfg.regions:
            azs |= await self.client(region).subnet_azs(cfg.in_region(region).subnets)
        fleet = Fleet(
            tuple(Placement(cfg.region_of(s), azs[s], s) for s in cfg.subnets),
            allowed_classes=self.policy.allowed_classes,
            reservations=await self._discover(cfg.reservations, utcnow(), strict=True),
        )
        from app.core.scheduler.select import unplaced_reservations

        for r, why in unplaced_reservations(self.services.catalog, fleet):
            log.warning("%s cannot be used: %s", r.label, why)
        self.scheduler = Scheduler(self.services.catalog, fleet, self.spot_prices, self.od_prices)
        # Agents on its machines authenticate through the composition root's
        # ``machine_authenticator`` (the same rows); it follows the engine's events:
        events = self.engine.events
        self._subscriptions = [
            events.subscribe(AttemptClaimed, lambda e: self._claimed(e.agent_id, e.attempt_id)),
            events.subscribe(
                AttemptEnded, lambda e: self._ended(e.agent_id, e.attempt_id, e.state, e.fork)
            ),
            events.subscribe(PipelinesChanged, lambda _e: self.notify_queued(1)),
            events.subscribe(MachineFailed, lambda e: self._failed(e.agent_id, e.error)),
        ]
        if not timer:
            return
        self._tasks = [
            asyncio.create_task(self._loop(), name="ec2-executor"),
            asyncio.create_task(self._reaper(), name="ec2-reaper"),
        ]

    async def _discover(
        self, current: tuple[Reservation, ...], now: datetime, *, strict: bool = False
    ) -> tuple[Reservation, ...]:
        """The configured reservations with what DescribeCapacityReservations says of
        them now (each region's client). ``strict`` (at start): EC2 contradicting an
        entry, or not knowing its id, is an ``EC2ConfigError``."""
        cfg = self.config
        if not any(not r.by_group for r in cfg.reservations):
            return current
        clients = {r: self.client(r) for r in cfg.regions}
        try:
            found = await discover(cfg.reservations, clients, cfg.regions, current, strict=strict)
        except ReservationMismatch as e:
            raise EC2ConfigError(str(e)) from None
        self._reservations_at = now
        if strict and found.missing:
            raise EC2ConfigError(
                "PLOYD_EC2_CAPACITY_RESERVATIONS: EC2 does not know "
                f"{', '.join(found.missing)} in {', '.join(cfg.regions)} "
                "(DescribeCapacityReservations): check the ids and their regions"
            )
        for w in sorted(set(found.warnings) - self._reservation_warnings):
            log.warning("%s", w)
        self._reservation_warnings = set(found.warnings)
        return found.reservations

    async def _refresh_reservations(self, now: datetime) -> None:
        """Ask EC2 again about the reservations (states, free instances) every
        ``REFRESH_S``, and at the first pass after a window's start (a Capacity Block is
        ``scheduled`` until then): the scheduler offers what EC2 says now."""
        if self.scheduler is None or not self.config.reservations:
            return
        at = self._reservations_at
        current = self.scheduler.fleet.reservations
        # a block that started since: EC2 says "active" from its start (not minutes later)
        started = at is not None and any(
            r.starts is not None and at < r.starts <= now for r in current
        )
        if at is not None and now - at < timedelta(seconds=REFRESH_S) and not started:
            return
        self._reservations_at = now  # failed or not: not asked again before REFRESH_S
        try:
            fresh = await self._discover(current, now)
        except CloudError as e:  # discover keeps the last answer per region already
            log.warning("capacity reservations could not be refreshed: %s", e)
            return
        self.scheduler.update_reservations(fresh)

    def _reservation_full(self, r: Reservation) -> None:
        """A launch into ``r`` was refused for capacity: no free instance in it until
        the next refresh says there is (``REFRESH_S``)."""
        assert self.scheduler is not None
        self.scheduler.update_reservations(
            [replace(x, available=0) if x.target == r.target else x
             for x in self.scheduler.fleet.reservations]
        )

    def _tenant(self, tenant_id: int) -> tuple[str, ...]:
        """The names tenant ``tenant_id`` goes by in a reservation's ``tenants``."""
        names = self._tenants.get(tenant_id)
        if names is None:
            with self.services.db.session() as s:
                t = s.get(Tenant, tenant_id)
                names = tenant_names(t.forge, t.external_id, t.name) if t is not None else ()
            self._tenants[tenant_id] = names
        return names

    async def retired(self) -> None:
        """Wait for the terminations under way (machines leaving after their job)."""
        while self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def stop(self) -> None:
        await self.retired()
        for unsubscribe in self._subscriptions:
            unsubscribe()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def notify_queued(self, count: int) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        leader = self.services.leader
        while True:
            await leader.wait()  # one launcher for all replicas
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:  # keep going; the next pass retries
                log.exception("EC2 executor pass failed")
            await wait_set(self._wake, self.tick_s)

    async def _reaper(self) -> None:
        await every(self.services.leader, self.policy.reap_every_s, "reaper pass", self.reap)

    # -- one pass --------------------------------------------------------------------

    async def reconcile(self, now: datetime | None = None) -> None:
        """One pass; passes never overlap (a pass awaits EC2 calls)."""
        async with self._pass:
            await self._reconcile(now or utcnow())

    async def _reconcile(self, now: datetime) -> None:
        self.passes += 1
        await self._refresh_prices()
        live = self.machines.live()
        await self._boot_timeouts(live, now)
        live = self.machines.live()
        coming = {m.launched_for for m in live if m.state in (S.REQUESTED, S.BOOTING)}
        idle = [m for m in live if m.state == S.IDLE]
        for q in self._queued():
            if q.attempt_id in coming:
                continue
            taker = next((m for m in idle if _fits(m, q)), None)
            if taker is not None:  # its agent is long-polling: it takes the job now
                idle.remove(taker)
                continue
            await self._start_machine(q, now)
        await self._tend_pools(self.machines.live(), now)

    def client(self, region: str) -> EC2Client:
        """The EC2 client of ``region`` ("": a row from before regions: the home one)."""
        return self.clients.get(region or self.config.region, self.ec2)

    async def _refresh_prices(self) -> None:
        """Per region: on-demand prices from the Pricing API (cached a day; the catalog's
        when it fails) and spot prices from its `describe_spot_price_history` (cached,
        refreshed when stale; without them the scheduler estimates from on-demand)."""
        assert self.scheduler is not None
        fleet = self.scheduler.fleet
        names = [t.name for t in self.services.catalog.types() if fleet.allows(t.cls)]
        for region in self.config.regions:
            if self.pricing is not None and self.od_prices.stale(region):
                try:
                    self.od_prices.update(region, await self.pricing.prices(names, region))
                except CloudError as e:
                    log.warning("on-demand prices for %s unavailable (%s): catalog", region, e)
                    self.od_prices.failed(region, str(e)[:200])
            region_azs = [p.az for p in fleet.placements if p.region == region]
            types, azs = self.spot_prices.needs(names, region_azs)
            if not types:
                continue
            try:
                records = await self.client(region).spot_price_history(types, azs)
            except CloudError as e:
                log.warning("spot prices unavailable in %s (%s): estimating", region, e)
                continue
            self.spot_prices.update(records, checked=[(t, az) for t in types for az in azs])
        self.scheduler.prepare()

    def _queued(self) -> list[_Queued]:
        out: list[_Queued] = []
        for a in queued_attempts(self.services.db, limit=500):
            if not self.engine.admitted(a.attempt_id):  # over its tenant's quota: it waits
                continue
            try:
                spec = StoredJobSpec.from_stored(a.spec)
                req = Requirements.from_row(spec, a.hardware, a.candidates, a.spot_lost)
            except ValueError:
                continue
            out.append(
                _Queued(
                    attempt_id=a.attempt_id,
                    job_id=a.job_id,
                    tenant_id=a.tenant_id,
                    fork=a.fork,
                    req=req,
                    candidates=a.candidates,
                    disk_gb=spec.disk_gb,
                    clean=spec.clean_machine,
                )
            )
        return out

    async def _start_machine(self, q: _Queued, now: datetime) -> None:
        """Try the job's candidates in order: capacity refusals move on at once, spot
        that is impossible here moves on to on-demand, a used-up quota skips that quota's
        other candidates (and waits with backoff), a bad request fails the job, EC2
        throttling ends the round (backoff); at most ``MAX_LAUNCH_CALLS`` calls."""
        assert self.scheduler is not None
        w = self._waiting.setdefault(q.job_id, _Waiting())
        if w.next_try is not None and now < w.next_try:
            return
        if self._throttled is not None and now < self._throttled.until:
            return  # the job says so already (or will, once the rate recovers)
        options = [
            c
            for c in self.scheduler.candidates(q.req, now=now, tenant=self._tenant(q.tenant_id))
            if not q.candidates or c.instance_type in q.candidates
        ]
        if not options:
            why = why_none(q.req, self.services.catalog, self.scheduler.fleet)
            self.engine.set_waiting(q.job_id, f"no machine can run this job: {why}")
            return
        offered = await self._offerings(now)
        if offered is not None:
            here = [c for c in options if (c.instance_type, c.placement.az) in offered]
            if not here:
                types = ", ".join(dict.fromkeys(c.instance_type for c in options))
                azs = ", ".join(dict.fromkeys(c.placement.az for c in options))
                self.engine.set_waiting(
                    q.job_id,
                    f"no machine can run this job: EC2 offers none of {types} in {azs} "
                    "(DescribeInstanceTypeOfferings)",
                )
                return
            options = here
        avoided = avoid.active(self.services.db, q.job_id, now)
        fresh = [c for c in options if c.key not in avoided]
        if not fresh:
            until = min(u for _, u in avoided.values())
            w.next_try = until
            said = "; ".join(f"{k}: {why}" for k, (why, _) in avoided.items())
            self.engine.set_waiting(
                q.job_id,
                f"every machine this job can use failed it recently ({said[:600]}); "
                f"trying again after {until:%H:%M} UTC",
            )
            return
        tried: list[Candidate] = []
        failure: CloudError | None = None
        throttled: CloudError | None = None
        quotas: list[Quota] = []
        spot_refused: str | None = None
        calls = 0
        for c in fresh:
            quota = quota_for(c.instance_type, c.market)
            if quota in quotas or self._blocked(self._quotas.get(quota), now):
                if quota not in quotas:
                    quotas.append(quota)
                continue
            no_spot = self._no_spot.get("*") or self._no_spot.get(c.instance_type)
            if c.market == "spot" and self._blocked(no_spot, now):
                assert no_spot is not None
                spot_refused = no_spot.why
                continue
            if calls >= MAX_LAUNCH_CALLS:
                break
            if not still_queued(self.services.db, q.attempt_id):
                self._waiting.pop(q.job_id, None)  # taken meanwhile (by an idle machine)
                return
            calls += 1
            try:
                await self._launch(c, q)
            except AlreadyStarting:  # another launcher's machine is on its way
                self._waiting.pop(q.job_id, None)
                return
            except CapacityError as e:  # this candidate has none: the next one, at once
                log.info("no capacity for %s: %s", c.key, e)
                if c.reservation is not None:  # full: not offered until EC2 says otherwise
                    self._reservation_full(c.reservation)
                tried.append(c)
                continue
            except SpotUnavailableError as e:  # on-demand next
                log.warning("spot is not possible for %s: %s", c.key, e)
                scope = "*" if e.code.startswith("AuthFailure") else c.instance_type
                self._no_spot[scope] = _Blocked(now + timedelta(seconds=NO_SPOT_S), str(e))
                spot_refused = str(e)
                tried.append(c)
                continue
            except QuotaError as e:  # this quota's other candidates: not this round
                old = self._quotas.get(quota)
                rounds = old.rounds + 1 if old is not None else 1
                until = now + _jittered(rounds, QUOTA_BACKOFF_S, self.rng)
                self._quotas[quota] = _Blocked(until, f"{e.code}: {e.message}", rounds)
                log.warning("EC2 quota %s (%s) refused %s: %s", quota.name, quota.code, c.key, e)
                quotas.append(quota)
                tried.append(c)
                continue
            except BadRequestError as e:  # the operator's setting: no retry can help
                self._refused(q, c, e)
                return
            except CloudError as e:
                tried.append(c)
                if e.transient:  # throttled or unavailable past the client's retries
                    rounds = self._throttled.rounds + 1 if self._throttled else 1
                    until = now + _jittered(rounds, THROTTLE_BACKOFF_S, self.rng)
                    self._throttled = _Blocked(until, str(e), rounds)
                    throttled = e
                else:  # not about this candidate (an unknown refusal)
                    log.warning("launching %s failed: %s", c.key, e)
                    failure = e
                break
            note = self._waiting.pop(q.job_id, _Waiting()).note
            self._quotas.pop(quota, None)
            if self._throttled is not None and now >= self._throttled.until:
                self._throttled = None
            where = f"{c.launch_market}, {c.placement.az}"
            if c.reservation is not None:
                where += f", {c.reservation.label}"
            starting = f"starting a {c.instance_type} ({where})"
            if spot_refused is not None and c.market != "spot":
                starting += f"; spot is not possible here ({spot_refused}): on-demand"
            if note:
                starting += f"; the last one went: {note}"
            self.engine.set_waiting(q.job_id, starting)
            return
        w.rounds += 1
        w.since = w.since or now
        w.tried = tried
        w.next_try = now + timedelta(seconds=backoff(w.rounds, jitter=self.rng.random()))
        parts: list[str] = []
        if throttled is not None and self._throttled is not None:
            w.next_try = self._throttled.until
            parts.append(
                f"EC2 is throttling PloyD's API calls ({throttled.code or 'unreachable'}: "
                f"{throttled.message}); launches resume after {w.next_try:%H:%M:%S} UTC"
            )
        for quota in quotas:
            b = self._quotas.get(quota)
            if b is None:
                continue
            region = self.config.region
            code = f" ({quota.code})" if quota.code else ""
            parts.append(
                f"waiting for an EC2 quota: {quota.name}{code} in {region} is used up "
                f"({b.why}); {quota.where(region)}, or wait for running machines to end; "
                f"next try after {b.until:%H:%M:%S} UTC"
            )
        if quotas and not [c for c in tried if quota_for(c.instance_type, c.market) not in quotas]:
            w.next_try = max(
                w.next_try, min(self._quotas[x].until for x in quotas if x in self._quotas)
            )
        if spot_refused is not None:
            parts.append(f"spot is not possible here ({spot_refused}): on-demand only")
        capacity = [c for c in tried if quota_for(c.instance_type, c.market) not in quotas]
        if capacity or not parts:
            message = waiting_message(capacity, w.since, now)
            if failure is not None:
                message = f"could not start a machine ({failure}); {message}"
            parts.append(message)
        self.engine.set_waiting(q.job_id, "; ".join(parts))

    @staticmethod
    def _blocked(b: _Blocked | None, now: datetime) -> bool:
        return b is not None and now < b.until

    def _refused(self, q: _Queued, c: Candidate, e: BadRequestError) -> None:
        why = (
            f"EC2 refused to start a {c.instance_type} ({c.market}, {c.placement.az}): "
            f"{e.code}: {e.message}. Check {e.setting}; retrying cannot help"
        )
        log.error("job %d: %s", q.job_id, why)
        self._waiting.pop(q.job_id, None)
        self.engine.launch_refused(q.attempt_id, why)

    async def _offerings(self, now: datetime) -> set[tuple[str, str]] | None:
        """The (type, AZ) pairs EC2 offers here, cached; None (no filter) when EC2 will
        not say (a policy without ec2:DescribeInstanceTypeOfferings): retried later."""
        assert self.scheduler is not None
        fresh = self._offered_at is not None and now - self._offered_at < timedelta(
            seconds=OFFERINGS_TTL_S
        )
        if fresh:
            return self._offered
        by_region: dict[str, set[str]] = {}
        for p in self.scheduler.fleet.placements:
            by_region.setdefault(p.region or self.config.region, set()).add(p.az)
        azs = sorted(az for zones in by_region.values() for az in zones)
        self._offered_at = now  # failed or not: not asked again before the TTL
        pairs: set[tuple[str, str]] = set()
        try:
            for region, zones in sorted(by_region.items()):  # each region's own client
                pairs |= await self.client(region).offered(sorted(zones))
        except CloudError as e:
            log.warning("instance type offerings unavailable (%s): trying every type", e)
            self._offered_at = now - timedelta(seconds=OFFERINGS_TTL_S - 600)  # in 10 min
            return self._offered
        if not pairs:
            log.warning("EC2 lists no instance type offerings in %s: trying every type", azs)
            return self._offered
        self._offered = pairs
        return pairs

    async def _launch(self, c: Candidate, q: _Queued | None) -> InstanceView:
        token = secrets.token_urlsafe(32)
        agent_id = f"ec2-{uuid.uuid4().hex[:16]}"
        row = self.machines.add(
            NewInstance(
                pool=c.hardware,
                tenant_id=None,
                instance_type=c.instance_type,
                hardware=c.hardware,
                market=c.launch_market,
                az=c.placement.az,
                subnet_id=c.placement.subnet_id,
                region=c.placement.region,
                reservation=c.reservation.target if c.reservation else None,
                price_hourly=c.price_usd_hour,
                state=S.REQUESTED.value,
                agent_id=agent_id,
                token_hash=token_hash(token),
                launched_for=q.attempt_id if q else None,
                clean_after=bool(q and (q.fork or q.clean)) or _single_use(c.reservation),
            )
        )
        script = user_data(
            self.server_url or self.services.settings.base_url,
            token,
            agent_id,
            agent_url=self.agent_url,
            agent_sha256=self.services.agent.sha256,
            expect_gpus=self._expected_gpus(c.instance_type),
        )
        cls = parse_spec(c.hardware).cls
        amis, templates = self.config.images_in(c.placement.region)
        image = amis.get(cls) or amis.get("default")
        template = templates.get(cls) or templates.get("default")
        tags = {"ployd:pool": c.hardware, AGENT_TAG: agent_id, DEPLOYMENT_TAG: self.deployment}
        if q is not None:
            tags |= {"ployd:job": str(q.job_id), "ployd:tenant": str(q.tenant_id)}
        try:
            instance_id = await self.client(c.placement.region).launch(
                c.instance_type,
                c.placement.subnet_id,
                c.market,
                user_data=script,
                tags=tags,
                root_gb=self.config.root_gb,
                disk_gb=q.disk_gb if q else None,
                kms_key_id=self.config.kms_key_id,
                client_token=agent_id,
                ami=None if template else image,
                launch_template=template,
                instance_profile=self.config.instance_profile or None,
                security_group=self.config.security_group_in(c.placement.region) or None,
                key_name=self.config.key_name,
                reservation=c.reservation,
            )
        except Exception as e:
            self.machines.move(row.id, S.TERMINATED, error=str(e)[:2000])
            raise
        self.machines.set(row.id, instance_id=instance_id)
        row = replace(row, instance_id=instance_id)
        for hook in self.on_launched:
            await hook(row, script)
        return row

    def _avoid(self, m: InstanceView, why: str, attempt_id: int | None = None) -> None:
        """The job whose machine ``m`` failed (started for it, or running its attempt
        ``attempt_id``) avoids ``m``'s candidate from now on (``AVOID_S``, stored)."""
        attempt = attempt_id or m.launched_for
        if attempt is None:
            return
        job_id = self._job_of(attempt)
        if job_id is not None:
            key = f"{m.instance_type} {m.market} {m.az}"
            until = utcnow() + timedelta(seconds=AVOID_S)
            avoid.add(self.services.db, job_id, key, why, until)

    def _expected_gpus(self, instance_type: str) -> str:
        """``COUNT:CLASS`` the agent of an ``instance_type`` machine checks nvidia-smi
        shows before its first job (``8:h100``); "" for types without NVIDIA GPUs."""
        catalog = self.services.catalog
        try:
            t = catalog.get(instance_type)
        except KeyError:
            return ""
        if catalog.hardware_class(t.cls).kind != "gpu" or t.accelerators < 1:
            return ""
        return f"{t.accelerators}:{t.cls}"

    def boot_timeout(self, m: InstanceView) -> timedelta:
        """How long machine ``m`` has to register: per instance family or hardware class
        (``PLOYD_EC2_BOOT_TIMEOUTS``), else ``PLOYD_EC2_BOOT_TIMEOUT``."""
        try:
            family = self.services.catalog.get(m.instance_type).family
        except KeyError:
            family = m.instance_type.split(".", 1)[0]
        cls = parse_spec(m.hardware).cls if m.hardware else ""
        return timedelta(seconds=self.policy.boot_timeout_for(family, cls))

    async def _boot_timeouts(self, live: list[InstanceView], now: datetime) -> None:
        for m in live:
            launched = aware(m.launched_at)
            if m.state not in (S.REQUESTED, S.BOOTING) or launched is None:
                continue
            limit = self.boot_timeout(m)
            if now - launched <= limit:
                continue
            await self.terminate(m, f"its agent did not register within {limit}")
            if m.launched_for is not None:
                self._avoid(m, f"did not register within {limit}")
                self.engine.machine_never_came(
                    m.launched_for,
                    f"the {m.instance_type} machine did not register within {limit}",
                )

    def _job_of(self, attempt_id: int) -> int | None:
        a = attempt_context(self.services.db, attempt_id)
        return a.job_id if a is not None else None

    async def _tend_pools(self, live: list[InstanceView], now: datetime) -> None:
        """Idle machines past their TTL or above the pool's maximum go; pools below their
        minimum get new machines."""
        by_pool: dict[str, list[InstanceView]] = {}
        for m in live:
            by_pool.setdefault(m.hardware, []).append(m)
        for spec in set(by_pool) | set(self.policy.pools):
            machines = by_pool.get(spec, [])
            pool = self.policy.pool(spec)
            idle = sorted(
                (m for m in machines if m.state == S.IDLE),
                key=lambda m: aware(m.idle_since) or now,
            )
            keep = len(idle)
            for m in idle:  # the longest idle first
                since = aware(m.idle_since) or now
                expired = now - since > timedelta(seconds=pool.idle_ttl_s)
                if keep > pool.max_idle or (expired and keep > pool.min_idle):
                    # only if still idle: a claim may have given it a job since ``live``
                    # was read (another replica's, or during an await of this pass)
                    why = "idle machine retired from its pool"
                    retiring = self.machines.retire_idle(m.id, why)
                    if retiring is None:
                        continue
                    await self.terminate(retiring, why)
                    keep -= 1
            starting = sum(
                1 for m in machines if m.state in (S.REQUESTED, S.BOOTING) and not m.launched_for
            )
            for _ in range(pool.min_idle - keep - starting):
                await self._prewarm(spec, now)

    async def _prewarm(self, spec: str, now: datetime) -> None:
        """One warm machine for pool ``spec``: reservations open to every tenant and
        workload only (``pool=True``)."""
        assert self.scheduler is not None
        from app.core.config.model import SpotPolicy, Workload

        req = Requirements((parse_spec(spec),), None, Workload.TEST, SpotPolicy.NEVER)
        for c in self.scheduler.candidates(req, now=now, pool=True):
            with contextlib.suppress(CapacityError, CloudError):
                await self._launch(c, None)
                return

    # -- engine events (sync: called from the engine) ----------------------------------

    def _claimed(self, agent_id: str, attempt_id: int) -> None:
        row = self.machines.by_agent(agent_id)
        if row is None:
            return
        a = attempt_context(self.services.db, attempt_id)
        tenant = a.tenant_id if a else None
        fork = bool(a and (a.fork or StoredJobSpec.from_stored(a.job_spec).clean_machine))
        self.machines.move(
            row.id,
            S.BUSY,
            attempt_id=attempt_id,
            tenant_id=tenant,
            clean_after=row.clean_after or fork,
        )

    def _ended(self, agent_id: str, attempt_id: int, state: str, fork: bool) -> None:
        row = self.machines.by_agent(agent_id)
        if row is None or row.state != S.BUSY:
            return
        if fork or row.clean_after or state == AttemptState.INTERRUPTED.value:
            self.machines.move(row.id, S.DRAINING, attempt_id=None)
            why = "a fork's job ran on it" if fork or row.clean_after else f"its job {state}"
            task = asyncio.get_running_loop().create_task(self.terminate(row, why))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        else:
            self.machines.move(row.id, S.IDLE, attempt_id=None, idle_since=utcnow())
        self._wake.set()

    def _failed(self, agent_id: str, error: str) -> None:
        """A machine's bootstrap failed (it reported why; the engine ended its attempt):
        terminate it now, and retry elsewhere."""
        row = self.machines.by_agent(agent_id)
        if row is None:
            return
        self._avoid(row, error)
        job_id = self._job_of(row.launched_for) if row.launched_for is not None else None
        if job_id is not None:  # its retry's "starting a ..." says why (a GPU check...)
            self._waiting.setdefault(job_id, _Waiting()).note = error
        task = asyncio.get_running_loop().create_task(self.terminate(row, error))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        self._wake.set()

    # -- ending machines ---------------------------------------------------------------

    async def terminate(self, m: InstanceView, why: str) -> None:
        """Terminate a machine. A failed call leaves it ``terminating``: leaked money that
        the reaper retries until EC2 confirms."""
        if self.machines.move(m.id, S.TERMINATING, error=why) is None:
            return
        if m.instance_id is None:
            self.machines.move(m.id, S.TERMINATED)
            return
        try:
            await self.client(m.region).terminate([m.instance_id])
        except CloudError as e:
            log.warning("terminating %s failed (%s): the reaper retries", m.instance_id, e)
            return
        self.machines.move(m.id, S.TERMINATED)
        log.info("terminated %s: %s", m.instance_id, why)

    async def retire_all(self, why: str) -> int:
        """Terminate every machine PloyD runs (operator's drain, tests' clean-up)."""
        live = self.machines.live()
        for m in live:
            await self.terminate(m, why)
        return len(live)

    async def reap(self, now: datetime | None = None) -> int:
        """Terminate what this deployment started and nobody owns; returns how many went.

        EC2 is asked first, the rows read after: a launch's row is written before its
        RunInstances, so an instance listed has its row by then (a live row, unless
        that machine has ended)."""
        now = now or utcnow()
        await self._refresh_reservations(now)
        running: dict[str, InstanceInfo] = {}
        region_of: dict[str, str] = {}
        for region in self.config.regions:  # every region's, or none: a gap is no "gone"
            for i in await self.client(region).describe_managed(deployment=self.deployment):
                running[i.instance_id] = i
                region_of[i.instance_id] = region
        rows = self.machines.live()
        by_agent = {m.agent_id: m for m in rows}
        live = {m.instance_id: m for m in rows if m.instance_id}
        orphans: dict[str, list[str]] = {}
        for iid, info in running.items():
            if iid in live:
                continue
            owner = by_agent.get(info.tags.get(AGENT_TAG, ""))
            if owner is None:
                orphans.setdefault(region_of[iid], []).append(iid)
            elif owner.instance_id is None:  # launched, but its launcher never said so
                self.machines.set(owner.id, instance_id=iid)
                live[iid] = replace(owner, instance_id=iid)
        for iid, m in live.items():  # EC2 runs it; its agent has not registered yet
            seen = running.get(iid)
            if m.state == S.REQUESTED and seen is not None and seen.state == "running":
                self.machines.move(m.id, S.BOOTING)
        ended = 0
        for region, ids in orphans.items():
            log.warning("terminating %d orphan instance(s) in %s: %s", len(ids), region, ids)
            await self.client(region).terminate(ids)
            ended += len(ids)
        lifetime = timedelta(seconds=self.policy.max_lifetime_s)
        gone = [
            iid
            for iid, m in live.items()
            if iid not in running and now - (aware(m.launched_at) or now) > timedelta(minutes=2)
        ]
        said: dict[str, str] = {}
        gone_in: dict[str, list[str]] = {}
        for iid in gone:
            gone_in.setdefault(live[iid].region or self.config.region, []).append(iid)
        for region, ids in gone_in.items():  # each region's own client knows its own
            try:
                said |= await self.client(region).why_gone(ids)
            except CloudError as e:
                log.warning("could not ask EC2 why %s ended: %s", ids, e)
        for iid, m in live.items():
            launched = aware(m.launched_at) or now
            if iid in gone:
                self._vanished(m, said.get(iid, "EC2 no longer lists it"))
            elif m.state == S.TERMINATING or now - launched > lifetime:
                await self.terminate(m, m.error or "past its maximum lifetime")
                ended += 1
        return ended

    def _vanished(self, m: InstanceView, said: str) -> None:
        """``m``'s instance ended behind PloyD's back (a person, AWS, a spot reclaim, a
        bootstrap that shut it down): the attempt it ran, or was started for, ends
        ``interrupted`` with EC2's reason (its retry policy decides; never a relaunch for
        the same attempt), and that job avoids ``m``'s candidate from now on."""
        why = (
            f"its EC2 instance {m.instance_id} ({m.instance_type}, {m.market}, {m.az}) "
            f"is gone: {said}"
        )
        if self.machines.move(m.id, S.TERMINATED, error=why[:2000]) is None:
            return  # moved by someone else first
        if m.state == S.BUSY:
            self._avoid(m, said, m.attempt_id)
            self.engine.agent_lost(m.agent_id, why)
        elif m.launched_for is not None and m.state != S.DRAINING:
            self._avoid(m, said)
            self.engine.machine_never_came(m.launched_for, why)
        log.warning("machine %s: %s", m.agent_id, why)


def _single_use(r: Reservation | None) -> bool:
    """A machine in a Capacity Block, or in a reservation only some workloads may use,
    runs the job it was started for and goes: kept warm, it could be given a job the
    block's end would cut short, or of another workload. (One reserved for some tenants
    serves one tenant over its life anyway.)"""
    return r is not None and (r.kind == "capacity-block" or bool(r.workloads))


def _fits(m: InstanceView, q: _Queued) -> bool:
    if q.clean:  # a warm machine never serves a job that asked for a clean one
        return False
    if q.candidates and m.instance_type not in q.candidates:
        return False
    return m.tenant_id is None or m.tenant_id == q.tenant_id


def check_settings(config: EC2Config, policy: EC2Policy, catalog: Catalog) -> None:
    """What the settings alone cannot check, against the catalog: every GPU class this
    PloyD may start has an AMI/launch template of its own (unless the default is said
    to be GPU-ready), and each boot timeout names a class or an instance family.
    ``EC2ConfigError`` (``ployd serve`` exits saying it, before it listens)."""
    allowed = policy.allowed_classes
    gpu = [
        c
        for c in catalog.classes()
        if catalog.hardware_class(c).kind in ("gpu", "accelerator")
        and (allowed is None or c in allowed)
    ]
    config.check_gpu_images(gpu)
    known = set(catalog.classes()) | {t.family for t in catalog.types()}
    unknown = sorted(set(policy.boot_timeouts) - known)
    if unknown:
        raise EC2ConfigError(
            f"PLOYD_EC2_BOOT_TIMEOUTS: {', '.join(unknown)}: neither a hardware class nor "
            "an instance family of the catalog (e.g. h100, p5)"
        )
