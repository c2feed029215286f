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
their maximum lifetime, and retries terminations that failed. Launches are idempotent:
the machine row is written before RunInstances, whose ClientToken is the row's agent
id (also the ``ployd:agent`` tag), so a retried call never starts a second instance,
and the reaper never ends an instance whose row is live, even before the row learned
its instance id (a launch in flight, or a replica that died mid-launch: the reaper
fills the id in). With several replicas, the passes and the reaper run on the leader
only (``services.leader``); a UNIQUE index keeps one starting machine per attempt.

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
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from app.adapters.ec2.client import AGENT_TAG, DEPLOYMENT_TAG, EC2Client
from app.adapters.ec2.config import EC2Config, EC2ConfigError
from app.adapters.ec2.errors import CapacityError, CloudError
from app.adapters.ec2.userdata import user_data
from app.core.clock import aware
from app.core.ec2_policy import EC2Policy
from app.core.hardware import parse_spec
from app.core.instances import InstanceState
from app.core.jobspec import StoredJobSpec
from app.core.scheduler import (
    Candidate,
    Fleet,
    Placement,
    Requirements,
    Scheduler,
    SpotPrices,
    backoff,
    waiting_message,
    why_none,
)
from app.core.states import AttemptState
from app.engine.events import AttemptClaimed, AttemptEnded, MachineFailed, PipelinesChanged
from app.engine.notify import wait_set
from app.executors.ec2_machines import Machines, token_hash
from app.services import Services
from app.store.attempts import attempt_context
from app.store.coord import deployment_id, every
from app.store.instances import AlreadyStarting, InstanceView, NewInstance
from app.store.models import utcnow
from app.store.queue import queued_attempts

log = logging.getLogger("ployd.ec2")
S = InstanceState

Launched = Callable[[InstanceView, str], Awaitable[None]]  # (machine, user data)


@dataclass
class _Waiting:
    rounds: int = 0
    next_try: datetime | None = None
    since: datetime | None = None
    tried: list[Candidate] = field(default_factory=list)
    avoid: set[str] = field(default_factory=set)  # candidates whose machine never came
    note: str = ""  # why the last machine started for it went (said with the next one)


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
    ) -> None:
        self.services = services
        self.engine = services.engine
        self.ec2 = ec2
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
        self._wake = asyncio.Event()
        self._pass = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()  # terminations under way
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[Callable[[], None]] = []
        self.passes = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if not self.deployment:
            self.deployment = await asyncio.to_thread(deployment_id, self.services.db)
        self._check_settings()
        azs = await self.ec2.subnet_azs(self.config.subnets)
        fleet = Fleet(
            tuple(Placement(self.config.region, azs[s], s) for s in self.config.subnets),
            allowed_classes=self.policy.allowed_classes,
        )
        self.scheduler = Scheduler(self.services.catalog, fleet, self.spot_prices)
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
        self._tasks = [
            asyncio.create_task(self._loop(), name="ec2-executor"),
            asyncio.create_task(self._reaper(), name="ec2-reaper"),
        ]

    def _check_settings(self) -> None:
        """What the settings alone cannot check, against the catalog: every GPU class this
        PloyD may start has an AMI/launch template of its own (unless the default is said
        to be GPU-ready), and each boot timeout names a class or an instance family.
        ``EC2ConfigError`` (``ployd serve`` exits saying it)."""
        catalog = self.services.catalog
        allowed = self.policy.allowed_classes
        gpu = [
            c
            for c in catalog.classes()
            if catalog.hardware_class(c).kind in ("gpu", "accelerator")
            and (allowed is None or c in allowed)
        ]
        self.config.check_gpu_images(gpu)
        known = set(catalog.classes()) | {t.family for t in catalog.types()}
        unknown = sorted(set(self.policy.boot_timeouts) - known)
        if unknown:
            raise EC2ConfigError(
                f"PLOYD_EC2_BOOT_TIMEOUTS: {', '.join(unknown)}: neither a hardware class nor "
                "an instance family of the catalog (e.g. h100, p5)"
            )

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

    async def _refresh_prices(self) -> None:
        """Spot prices from `describe_spot_price_history`, cached (refreshed when stale);
        without them the scheduler estimates from on-demand prices."""
        assert self.scheduler is not None
        fleet = self.scheduler.fleet
        names = [t.name for t in self.services.catalog.types() if fleet.allows(t.cls)]
        types, azs = self.spot_prices.needs(names, [p.az for p in fleet.placements])
        if not types:
            return
        try:
            records = await self.ec2.spot_price_history(types, azs)
        except CloudError as e:
            log.warning("spot prices unavailable (%s): estimating from on-demand", e)
            return
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
        assert self.scheduler is not None
        w = self._waiting.setdefault(q.job_id, _Waiting())
        if w.next_try is not None and now < w.next_try:
            return
        options = [
            c
            for c in self.scheduler.candidates(q.req)
            if (not q.candidates or c.instance_type in q.candidates) and c.key not in w.avoid
        ]
        if not options:
            why = why_none(q.req, self.services.catalog, self.scheduler.fleet)
            self.engine.set_waiting(q.job_id, f"no machine can run this job: {why}")
            return
        tried: list[Candidate] = []
        failure: CloudError | None = None
        for c in options:
            try:
                await self._launch(c, q)
            except AlreadyStarting:  # another launcher's machine is on its way
                self._waiting.pop(q.job_id, None)
                return
            except CapacityError as e:  # this candidate has none: the next one, at once
                log.info("no capacity for %s: %s", c.key, e)
                tried.append(c)
                continue
            except CloudError as e:  # not about this candidate (permissions, a bad AMI...)
                log.warning("launching %s failed: %s", c.key, e)
                tried.append(c)
                failure = e
                break
            note = self._waiting.pop(q.job_id, _Waiting()).note
            self.engine.set_waiting(
                q.job_id,
                f"starting a {c.instance_type} ({c.market}, {c.placement.az})"
                + (f"; the last one went: {note}" if note else ""),
            )
            return
        w.rounds += 1
        w.since = w.since or now
        w.tried = tried
        w.next_try = now + timedelta(seconds=backoff(w.rounds))
        message = waiting_message(tried, w.since, now)
        if failure is not None:
            message = f"could not start a machine ({failure}); {message}"
        self.engine.set_waiting(q.job_id, message)

    async def _launch(self, c: Candidate, q: _Queued | None) -> InstanceView:
        token = secrets.token_urlsafe(32)
        agent_id = f"ec2-{uuid.uuid4().hex[:16]}"
        row = self.machines.add(
            NewInstance(
                pool=c.hardware,
                tenant_id=None,
                instance_type=c.instance_type,
                hardware=c.hardware,
                market=c.market,
                az=c.placement.az,
                subnet_id=c.placement.subnet_id,
                price_hourly=c.price_usd_hour,
                state=S.REQUESTED.value,
                agent_id=agent_id,
                token_hash=token_hash(token),
                launched_for=q.attempt_id if q else None,
                clean_after=bool(q and (q.fork or q.clean)),
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
        image = self.config.amis.get(cls) or self.config.amis.get("default")
        template = self.config.launch_templates.get(cls) or self.config.launch_templates.get(
            "default"
        )
        tags = {"ployd:pool": c.hardware, AGENT_TAG: agent_id, DEPLOYMENT_TAG: self.deployment}
        if q is not None:
            tags |= {"ployd:job": str(q.job_id), "ployd:tenant": str(q.tenant_id)}
        try:
            instance_id = await self.ec2.launch(
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
                security_group=self.config.security_group or None,
                key_name=self.config.key_name,
            )
        except Exception as e:
            self.machines.move(row.id, S.TERMINATED, error=str(e)[:2000])
            raise
        self.machines.set(row.id, instance_id=instance_id)
        row = replace(row, instance_id=instance_id)
        for hook in self.on_launched:
            await hook(row, script)
        return row

    def _avoid(self, m: InstanceView) -> None:
        """The retry of the attempt ``m`` was started for tries another candidate."""
        if m.launched_for is None:
            return
        job_id = self._job_of(m.launched_for)
        if job_id is not None:
            key = f"{m.instance_type} {m.market} {m.az}"
            self._waiting.setdefault(job_id, _Waiting()).avoid.add(key)

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
                self._avoid(m)
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
                await self._prewarm(spec)

    async def _prewarm(self, spec: str) -> None:
        assert self.scheduler is not None
        from app.core.config.model import SpotPolicy, Workload

        req = Requirements((parse_spec(spec),), None, Workload.TEST, SpotPolicy.NEVER)
        for c in self.scheduler.candidates(req):
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
        self._avoid(row)
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
            await self.ec2.terminate([m.instance_id])
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
        found = await self.ec2.describe_managed(deployment=self.deployment)
        running = {i.instance_id: i for i in found}
        rows = self.machines.live()
        by_agent = {m.agent_id: m for m in rows}
        live = {m.instance_id: m for m in rows if m.instance_id}
        orphans = []
        for iid, info in running.items():
            if iid in live:
                continue
            owner = by_agent.get(info.tags.get(AGENT_TAG, ""))
            if owner is None:
                orphans.append(iid)
            elif owner.instance_id is None:  # launched, but its launcher never said so
                self.machines.set(owner.id, instance_id=iid)
                live[iid] = replace(owner, instance_id=iid)
        for iid, m in live.items():  # EC2 runs it; its agent has not registered yet
            seen = running.get(iid)
            if m.state == S.REQUESTED and seen is not None and seen.state == "running":
                self.machines.move(m.id, S.BOOTING)
        ended = 0
        if orphans:
            log.warning("terminating %d orphan instance(s): %s", len(orphans), orphans)
            await self.ec2.terminate(orphans)
            ended += len(orphans)
        lifetime = timedelta(seconds=self.policy.max_lifetime_s)
        for iid, m in live.items():
            launched = aware(m.launched_at) or now
            if iid not in running and now - launched > timedelta(minutes=2):
                # gone behind PloyD's back (a reclaimed spot machine, a manual terminate)
                if m.state == S.BUSY:
                    self.engine.agent_lost(m.agent_id, "its EC2 instance is gone")
                self.machines.move(m.id, S.TERMINATED, error="the instance is gone")
            elif m.state == S.TERMINATING or now - launched > lifetime:
                await self.terminate(m, m.error or "past its maximum lifetime")
                ended += 1
        return ended


def _fits(m: InstanceView, q: _Queued) -> bool:
    if q.clean:  # a warm machine never serves a job that asked for a clean one
        return False
    if q.candidates and m.instance_type not in q.candidates:
        return False
    return m.tenant_id is None or m.tenant_id == q.tenant_id
