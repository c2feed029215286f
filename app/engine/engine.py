"""The engine: pipelines in, attempts out to agents, results back.

Everything here is storage plus waiting; decisions are the core's (planner, DAG, state
machines, retry policy). Agents reach it through ``app.web.agent_api``; people through
the API, the CLI and (later) forge commands.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets as pysecrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Text, cast, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.agentfit import (
    WAITING_PREFIX,
    Need,
    fits_hardware,
    gpus_for,
    runs_containers,
    satisfies,
    waiting_message,
)
from app.core.clock import aware
from app.core.config.model import RetryReason
from app.core.deadlines import Interrupt, TimeOut, overdue
from app.core.jobspec import StoredJobSpec, stored_image, stored_resources
from app.core.planner import JobPlan
from app.core.states import AttemptState, JobState
from app.engine import creation, progress
from app.engine.connected import ConnectedAgents
from app.engine.events import (
    AgentRegistered,
    AttemptClaimed,
    AttemptEnded,
    EventBus,
    MachineFailed,
    PipelinesChanged,
)
from app.engine.hooks import (
    AgentIdentity,
    Authenticator,
    EngineHooks,
    Enrolled,
    FailedMachine,
    Registrar,
    RegistrationRefused,
)
from app.engine.notify import Broadcast
from app.engine.progress import Changes
from app.engine.specs import agent_payload
from app.logs.store import LogStore
from app.protocol import (
    CANCELLED,
    FAILED,
    INFRASTRUCTURE,
    INTERRUPTED,
    SCRIPT_FAILURE,
    SPOT_INTERRUPTION,
    SUCCEEDED,
    TIMED_OUT,
    TIMEOUT,
    Claim,
    ClaimRequest,
    FinishReport,
    Hardware,
    LogChunk,
    Registered,
    Registration,
    StepReport,
)
from app.store import metrics as metric_rows
from app.store.db import Database
from app.store.models import Attempt, AuditRecord, Job, Pipeline, Repository, Tenant, utcnow
from app.store.queue import claimable

T = TypeVar("T")

MAX_CLAIM_WAIT = 30.0
MAX_HEARTBEAT_WAIT = 30.0
# At a restart on a shared database: an attempt whose agent has not called for this long
# has no replica serving it (live agents call about every second).
RECOVERY_SILENCE_S = 15.0


class AgentAuthError(Exception):
    """A bad agent or job token. ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotAllowed(Exception):
    """A request the current state does not allow (retrying a running job...)."""


class OutOfOrder(Exception):
    def __init__(self, expected: int) -> None:
        super().__init__(f"log chunk out of order: expected seq {expected}")
        self.expected = expected


@dataclass(frozen=True)
class RepoRef:
    """Where a pipeline's code lives."""

    forge: str
    full_name: str
    clone_url: str
    default_branch: str = "main"
    tenant_external_id: str = "local"
    tenant_name: str = "local"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


AGENT_RESULTS: dict[str, tuple[AttemptState, RetryReason | None]] = {
    SUCCEEDED: (AttemptState.SUCCEEDED, None),
    INTERRUPTED: (AttemptState.INTERRUPTED, RetryReason.INFRASTRUCTURE),
    FAILED: (AttemptState.FAILED, RetryReason.SCRIPT_FAILURE),
    TIMED_OUT: (AttemptState.TIMED_OUT, RetryReason.TIMEOUT),
    CANCELLED: (AttemptState.CANCELLED, None),
}
AGENT_REASONS = {
    SPOT_INTERRUPTION: RetryReason.SPOT_INTERRUPTION,
    SCRIPT_FAILURE: RetryReason.SCRIPT_FAILURE,
    TIMEOUT: RetryReason.TIMEOUT,
    INFRASTRUCTURE: RetryReason.INFRASTRUCTURE,
}


__all__ = ["AgentAuthError", "AgentIdentity", "Engine", "NotAllowed", "OutOfOrder", "RepoRef"]

CLAIM_SCAN = 50  # queued attempts looked at per claim, oldest first
GATE_CHUNK = 2000  # attempts loaded per query by the gates (bound on IN lists)


class Engine:
    """Pipelines in, attempts out to agents, results back.

    ``hooks`` change its decisions (``app.engine.hooks``); what happened is published on
    ``events`` (``app.engine.events``) after each transaction commits."""

    def __init__(
        self,
        db: Database,
        logs: LogStore,
        *,
        hooks: EngineHooks | None = None,
        events: EventBus | None = None,
        heartbeat_timeout_s: float = 60.0,
        max_jobs_per_pipeline: int | None = None,
        instance: str = "",
    ) -> None:
        self.db = db
        # This server among the replicas, the same across its restarts (``recover``):
        # its local agents' attempts are marked ``machine`` = ``local-N@<instance>``.
        self.instance = instance
        # PLOYD_MAX_JOBS_PER_PIPELINE: planning refuses a bigger file (naming its
        # matrix); ``create_pipeline`` refuses bigger plans (``creation.TooManyJobs``).
        self.max_jobs_per_pipeline = max_jobs_per_pipeline
        self.logs = logs
        self.hooks = hooks or EngineHooks()
        self.events = events or EventBus()
        self.heartbeat_timeout = timedelta(seconds=heartbeat_timeout_s)
        self.queued = Broadcast()
        self.cancels = Broadcast()
        self.log_appended = Broadcast()
        self._authenticators: tuple[Authenticator, ...] = (
            *self.hooks.authenticators,
            self._local_agent,
        )
        self._registrars: tuple[Registrar, ...] = (*self.hooks.registrars, self._register_local)
        self._agent_tokens: set[str] = set()  # new_agent_token's credentials (hashes)
        self._local_registrations: set[str] = set()  # new_registration_token's, unused
        self._used_registrations: set[str] = set()
        self._local_agents: dict[str, str] = {}  # credential hash -> agent name
        self._local_hardware: dict[str, dict[str, Any]] = {}  # agent name -> Hardware JSON
        # The agents that called lately, for "no agent with h100:8 is connected" (per
        # process: see app/engine/connected.py).
        self.connected = ConnectedAgents(heartbeat_timeout_s)
        self._postgres = db.engine.dialect.name == "postgresql"
        self.closing = False

    def close(self) -> None:
        """Shutting down: waiting claims and heartbeats answer at once."""
        self.closing = True
        self.queued.notify()
        self.cancels.notify()
        self.log_appended.notify()  # live log tails (SSE) end too

    # ---- bookkeeping ------------------------------------------------------------------

    @contextmanager
    def _work(self) -> Iterator[tuple[Session, Changes]]:
        """A transaction, then the wake-ups and reports for what it changed."""
        changes = Changes()
        with self.db.session() as s:
            yield s, changes
            if changes.queued and self.hooks.gates:
                self._gate(s, changes)
        self._after(changes)

    def _gate(self, s: Session, changes: Changes) -> None:
        """Jobs queued in this unit of work that may not run end ``failed`` now, before
        any machine is started or claims them (a refusal can queue other jobs: again).

        Gates judge a job by what ``hooks.Gate`` says they read (its pipeline, hardware,
        candidates and its spec but for steps, env, cache and artifacts), so the jobs
        queued together are grouped by those (``_gate_key``, read with one query and no
        ORM objects) and each group's first attempt is gated for all of it: the 5,120
        children of 20 matrices are 20 gate calls, not 5,120."""
        seen: set[int] = set()
        while True:
            s.flush()
            rows = s.execute(
                select(
                    Attempt.id,
                    Job.pipeline_id,
                    cast(Job.hardware, Text),  # as stored: only compared, never read
                    cast(Job.candidates, Text),
                    Job.spec,
                )
                .join(Attempt.job)
                .where(
                    Attempt.state == AttemptState.QUEUED.value,
                    Job.pipeline_id.in_(changes.pipelines),
                )
                .order_by(Attempt.id)
            ).all()
            groups: dict[str, list[int]] = {}
            for attempt_id, pipeline_id, hardware, candidates, spec in rows:
                if attempt_id not in seen:
                    seen.add(attempt_id)
                    key = _gate_key(pipeline_id, hardware, candidates, spec)
                    groups.setdefault(key, []).append(attempt_id)
            refused = False
            for ids in groups.values():
                first = s.get(Attempt, ids[0])
                assert first is not None
                gates = self.hooks.gates
                why = next((w for g in gates if (w := g(s, first)) is not None), None)
                if why is None:
                    continue
                refused = True
                for start in range(0, len(ids), GATE_CHUNK):
                    chunk = ids[start : start + GATE_CHUNK]
                    for attempt in s.scalars(select(Attempt).where(Attempt.id.in_(chunk))):
                        if attempt.state == AttemptState.QUEUED.value:
                            self._refuse(s, attempt, why, changes)
            if not refused:  # only a refusal can queue more (``when: always`` jobs)
                return

    def _refuse(self, s: Session, attempt: Attempt, why: str, changes: Changes) -> None:
        """End a queued attempt (and its job) ``failed`` without running it: refused by
        policy, budget or a missing secret, before any machine starts."""
        job = attempt.job
        job.waiting_reason = None
        job.waiting_since = None
        progress.end_attempt(s, attempt, AttemptState.FAILED, None, changes, error=why)
        attempt.end_reason = "refused"

    def _after(self, changes: Changes) -> None:
        if changes.queued:
            self.queued.notify()
        if changes.cancelled_attempts:
            self.cancels.notify()
        for agent_id, attempt_id, state, fork in changes.ended:
            self.events.publish(AttemptEnded(agent_id, attempt_id, state, fork))
        if changes.pipelines:
            self.events.publish(PipelinesChanged(frozenset(changes.pipelines)))

    def audit(
        self, s: Session, actor: str, action: str, target: str, forge: str = "local", **details: Any
    ) -> None:
        from app.audit.chain import append

        append(
            s, AuditRecord(actor=actor, forge=forge, action=action, target=target, details=details)
        )

    def record(
        self, actor: str, action: str, target: str, forge: str = "local", **details: Any
    ) -> None:
        """Audit what someone did (on a forge, in the API), in a transaction of its own."""
        with self.db.session() as s:
            self.audit(s, actor, action, target, forge=forge, **details)

    def add_repositories(self, refs: Iterable[RepoRef]) -> None:
        """Know these repositories (and their tenants) before any pipeline runs there."""
        with self.db.session() as s:
            for ref in refs:
                self.ensure_repository(s, ref)

    # ---- pipelines --------------------------------------------------------------------

    def ensure_repository(self, s: Session, ref: RepoRef) -> Repository:
        tenant = s.scalar(
            select(Tenant).where(
                Tenant.forge == ref.forge, Tenant.external_id == ref.tenant_external_id
            )
        )
        if tenant is None:
            tenant = Tenant(
                forge=ref.forge, external_id=ref.tenant_external_id, name=ref.tenant_name
            )
            s.add(tenant)
            s.flush()
        repo = s.scalar(
            select(Repository).where(
                Repository.forge == ref.forge, Repository.full_name == ref.full_name
            )
        )
        if repo is None:
            repo = Repository(
                tenant_id=tenant.id,
                forge=ref.forge,
                full_name=ref.full_name,
                clone_url=ref.clone_url,
                default_branch=ref.default_branch,
            )
            s.add(repo)
            s.flush()
        else:
            repo.clone_url = ref.clone_url
            repo.default_branch = ref.default_branch
        return repo

    def create_pipeline(
        self,
        repo: RepoRef,
        plans: Iterable[JobPlan],
        *,
        ref: str,
        sha: str,
        trigger: str,
        actor: str = "",
        pr_number: int | None = None,
        fork: bool = False,
        held: bool = False,
        pr_author: str | None = None,
        event_id: int | None = None,
    ) -> int:
        """Store a pipeline and its jobs; the ready ones are queued at once. Blocks
        for as long as the insert takes: on the event loop, ``create_pipeline_async``."""
        changes = Changes()
        pipeline_id = self._create_pipeline(
            changes,
            repo,
            tuple(plans),
            Pipeline(
                forge=repo.forge,
                ref=ref,
                sha=sha,
                trigger=trigger,
                actor=actor,
                pr_number=pr_number,
                fork=fork,
                held=held,
                pr_author=pr_author,
                event_id=event_id,
            ),
        )
        self._after(changes)
        return pipeline_id

    async def create_pipeline_async(
        self,
        repo: RepoRef,
        plans: Iterable[JobPlan],
        *,
        ref: str,
        sha: str,
        trigger: str,
        actor: str = "",
        pr_number: int | None = None,
        fork: bool = False,
        held: bool = False,
        pr_author: str | None = None,
        event_id: int | None = None,
    ) -> int:
        """``create_pipeline`` with its rows built and its transaction run in a worker
        thread, so that the event loop keeps answering (``/healthz``, agents) while
        thousands of jobs are stored; the wake-ups and events follow on the loop, after
        the commit."""
        changes = Changes()
        pipeline = Pipeline(
            forge=repo.forge,
            ref=ref,
            sha=sha,
            trigger=trigger,
            actor=actor,
            pr_number=pr_number,
            fork=fork,
            held=held,
            pr_author=pr_author,
            event_id=event_id,
        )
        pipeline_id = await asyncio.to_thread(
            self._create_pipeline, changes, repo, tuple(plans), pipeline
        )
        self._after(changes)
        return pipeline_id

    def _create_pipeline(
        self, changes: Changes, repo: RepoRef, plans: tuple[JobPlan, ...], pipeline: Pipeline
    ) -> int:
        """Insert ``pipeline`` (not yet added to a session) with the jobs of ``plans``
        in bulk (``app.engine.creation``), gate the queued ones, audit; ``changes`` says
        what to wake once committed (the caller's ``_after``)."""
        with creation.collector_paused():
            return self._store_pipeline(changes, repo, plans, pipeline)

    def _store_pipeline(
        self, changes: Changes, repo: RepoRef, plans: tuple[JobPlan, ...], pipeline: Pipeline
    ) -> int:
        prepared = creation.prepare(plans, self.max_jobs_per_pipeline)  # before the tx
        with self.db.session() as s:
            pipeline.repository = self.ensure_repository(s, repo)
            creation.insert_jobs(s, pipeline, prepared)
            changes.pipelines.add(pipeline.id)
            if prepared.queued:
                changes.queued += len(prepared.queued)
                if self.hooks.gates:
                    self._gate(s, changes)
            # Last: the audit chain's lock is held from here to the commit.
            self.audit(
                s,
                pipeline.actor or "ployd",
                "pipeline.trigger",
                f"pipeline:{pipeline.id}",
                forge=repo.forge,
                trigger=pipeline.trigger,
                ref=pipeline.ref,
                sha=pipeline.sha,
                repo=repo.full_name,
                event_id=pipeline.event_id,
            )
            pipeline_id = pipeline.id
        return pipeline_id

    def pipeline_of_event(self, event_id: int) -> int | None:
        """The pipeline a delivery (an inbox row) started, if any."""
        with self.db.session() as s:
            return s.scalar(select(Pipeline.id).where(Pipeline.event_id == event_id))

    def create_pipeline_once(
        self, repo: RepoRef, plans: Iterable[JobPlan], *, event_id: int, **fields: Any
    ) -> int:
        """``create_pipeline`` for a delivery, at most once: a delivery handled again (by
        another replica after this one's lease expired, or a retry) gets the pipeline it
        started; two replicas racing: the UNIQUE constraint on ``event_id`` keeps one
        pipeline, and the other replica gets it back."""
        existing = self.pipeline_of_event(event_id)
        if existing is not None:
            return existing
        try:
            return self.create_pipeline(repo, plans, event_id=event_id, **fields)
        except IntegrityError:
            existing = self.pipeline_of_event(event_id)
            if existing is None:  # another constraint: the caller's retry decides
                raise
            return existing

    async def create_pipeline_once_async(
        self, repo: RepoRef, plans: Iterable[JobPlan], *, event_id: int, **fields: Any
    ) -> int:
        """``create_pipeline_once`` with the insert off the event loop
        (``create_pipeline_async``)."""
        existing = self.pipeline_of_event(event_id)
        if existing is not None:
            return existing
        try:
            return await self.create_pipeline_async(repo, plans, event_id=event_id, **fields)
        except IntegrityError:
            existing = self.pipeline_of_event(event_id)
            if existing is None:
                raise
            return existing

    # ---- agents: registration ---------------------------------------------------------

    def new_registration_token(self) -> str:
        """A one-time registration token for an agent this server starts itself (the
        local executor's, one per process start), kept in memory: the agent exchanges
        it at its first contact for a credential that claims any tenant's job."""
        token = "ployd_local_" + pysecrets.token_urlsafe(32)  # never starts with "-"
        self._local_registrations.add(_hash(token))
        return token

    def local_agents(self) -> list[tuple[str, dict[str, Any]]]:
        """The agents this process started that registered: (name, Hardware JSON), by
        name (the dashboard lists them with the self-hosted ones)."""
        return sorted((n, dict(h)) for n, h in self._local_hardware.items())

    def new_agent_token(self) -> str:
        """A credential, in memory, for an agent of this very process (tests, benchmarks,
        an embedder's): it claims any tenant's job. Never hand it to a process that runs
        steps: agents that run steps register (``new_registration_token``)."""
        token = "ployd_self_" + pysecrets.token_urlsafe(32)
        self._agent_tokens.add(_hash(token))
        return token

    def _register_local(self, token: str, registration: Registration) -> Enrolled | None:
        digest = _hash(token)
        if digest in self._used_registrations:
            raise RegistrationRefused(
                "this registration token has been used already: an agent gets a new one "
                "each time it starts",
                target="local",
                reason="used",
            )
        if digest not in self._local_registrations:
            return None
        self._local_registrations.discard(digest)
        self._used_registrations.add(digest)
        name = registration.name
        for old in [h for h, n in self._local_agents.items() if n == name]:
            del self._local_agents[old]  # its previous process's credential dies
        credential = "ployd_agent_" + pysecrets.token_urlsafe(32)
        self._local_agents[_hash(credential)] = name
        self._local_hardware[name] = registration.hardware.to_json()
        return Enrolled(name, credential, target="local")

    def register(self, token: str, registration: Registration) -> Registered:
        """Exchange a registration token, once, for the agent's own credential. A token
        a registrar knows but refuses (used already, expired) is audited; every refusal
        is ``AgentAuthError`` (401 unless the registrar says otherwise)."""
        actor = f"agent:{registration.name}"
        for registrar in self._registrars:
            try:
                enrolled = registrar(token, registration)
            except RegistrationRefused as e:
                self.record(
                    actor,
                    "agent.register.refused",
                    e.target,
                    reason=e.reason,
                    error=str(e),
                    version=registration.version,
                )
                raise AgentAuthError(e.status, str(e)) from None
            if enrolled is not None:
                if enrolled.details.get("restarted"):
                    # Registering is what an agent does at start: whatever this name was
                    # running died with its previous process (its steps are reaped).
                    self.agent_lost(
                        enrolled.agent_id,
                        f"agent {enrolled.agent_id} restarted: the job's processes ended",
                    )
                self.record(
                    f"agent:{enrolled.agent_id}",
                    "agent.register",
                    enrolled.target,
                    version=registration.version,
                    **dict(enrolled.details),
                )
                self.events.publish(AgentRegistered(enrolled.agent_id, enrolled.target))
                return Registered(agent_id=enrolled.agent_id, credential=enrolled.credential)
        raise AgentAuthError(401, "unknown registration token")

    # ---- agents: claim ----------------------------------------------------------------

    def _local_agent(self, token: str, claim: ClaimRequest) -> AgentIdentity | None:
        digest = _hash(token)
        name = self._local_agents.get(digest)
        if name is not None:
            machine = f"{name}@{self.instance}" if self.instance else None
            return AgentIdentity(agent_id=name, machine=machine)
        if digest in self._agent_tokens:
            return AgentIdentity(agent_id=claim.agent_id)
        return None

    def authenticate(self, token: str, claim: ClaimRequest | str) -> AgentIdentity:
        """The identity behind an agent credential (``claim``: what the agent says, or
        just the id it calls itself); ``AgentAuthError`` (401) when none."""
        if isinstance(claim, str):
            claim = ClaimRequest(agent_id=claim)
        for authenticator in self._authenticators:
            identity = authenticator(token, claim)
            if identity is not None:
                return identity
        raise AgentAuthError(401, "unknown agent token")

    def check_agent_token(self, token: str) -> None:
        self.authenticate(token, "-")

    def _pick(
        self, s: Session, who: AgentIdentity, changes: Changes | None = None
    ) -> Attempt | None:
        """The oldest queued attempt this agent may run (its own first, if it has one),
        that its hardware satisfies (and its container runtime, for a job with an image)
        and that its tenant's quotas admit (one that waits says why)."""
        q = claimable()
        if who.serves_tenant is not None:  # a tenant-scoped pool: only its tenants' jobs
            ids = [t.id for t in s.scalars(select(Tenant)) if who.serves_tenant(t)]
            repos = select(Repository.id).where(Repository.tenant_id.in_(ids))
            q = q.where(Pipeline.repository_id.in_(repos))
        q = q.limit(CLAIM_SCAN)
        if self._postgres:
            q = q.with_for_update(skip_locked=True, of=Attempt)
        queued = list(s.scalars(q))
        queued.sort(key=lambda a: a.id != who.prefer_attempt)
        connected: list[tuple[str, Hardware | None]] | None = None
        for attempt in queued:
            job = attempt.job
            if who.accepts is not None and not who.accepts(job, job.pipeline):
                continue
            need = _need(job)
            if (need.containers and not runs_containers(who.hardware)) or (
                who.hardware is not None
                and who.match_hardware
                and not fits_hardware(who.hardware, need)
            ):
                if connected is None:
                    connected = self.connected.now()
                self._no_agent_fits(job, need, connected, changes)
                continue
            if self._admit(s, attempt, changes) is None:
                return attempt
        return None

    def _no_agent_fits(
        self,
        job: Job,
        need: Need,
        connected: list[tuple[str, Hardware | None]],
        changes: Changes | None,
    ) -> None:
        """Say on a job this agent cannot run whether any connected agent could: none
        does -> "waiting: no agent with h100:8 is connected (connected: ...)"; one does
        (busy now) -> no such message. A reason another part set (capacity, a quota)
        stays: it is theirs to change."""
        if any(satisfies(hw, need) for _, hw in connected):
            reason = None
        else:
            reason = waiting_message(need, connected)
        current = job.waiting_reason
        if current == reason or (current is not None and not current.startswith(WAITING_PREFIX)):
            return
        job.waiting_reason = reason
        job.waiting_since = (job.waiting_since or utcnow()) if reason else None
        if changes is not None:
            changes.pipelines.add(job.pipeline_id)

    def _admit(self, s: Session, attempt: Attempt, changes: Changes | None) -> str | None:
        """Why a queued attempt must wait (recorded on its job), or None: admitted."""
        if self.hooks.admission is None:
            return None
        why = self.hooks.admission(s, attempt)
        job = attempt.job
        if why is not None and job.waiting_reason != why:
            job.waiting_reason = why
            job.waiting_since = job.waiting_since or utcnow()
            if changes is not None:
                changes.pipelines.add(job.pipeline_id)
        return why

    def admitted(self, attempt_id: int) -> bool:
        """Whether a queued attempt may start now under its tenant's quotas: executors
        ask before starting a machine for it (a waiting one says why on its job)."""
        if self.hooks.admission is None:
            return True
        with self._work() as (s, changes):
            attempt = s.get(Attempt, attempt_id)
            if attempt is None or attempt.state != AttemptState.QUEUED:
                return False
            return self._admit(s, attempt, changes) is None

    def _claim_now(self, who: AgentIdentity) -> Claim | None:
        agent_id = who.agent_id
        with self._work() as (s, changes):
            attempt = self._pick(s, who, changes)
            if attempt is None:
                return None
            job = attempt.job
            pipeline = job.pipeline
            # A fork's pull request never receives secrets.
            try:
                secrets = {} if pipeline.fork else self.hooks.secrets(pipeline, job)
            except Exception as e:  # a reference that cannot be resolved: the job fails
                self._refuse(s, attempt, f"its secrets could not be read: {e}", changes)
                return None
            try:
                payload = agent_payload(
                    pipeline, job, attempt, secrets, gpus=gpus_for(who.hardware, _need(job))
                )
            except ValueError as e:  # the image's credentials secret was not provided
                self._refuse(s, attempt, f"its image could not be prepared: {e}", changes)
                return None
            if secrets:  # names only, never values
                self.audit(
                    s,
                    agent_id,
                    "secret.read",
                    f"job:{job.id}",
                    forge=pipeline.forge,
                    names=sorted(secrets),
                    attempt=attempt.id,
                    repo=pipeline.repository.full_name,
                )
            now = utcnow()
            progress.set_attempt_state(attempt, AttemptState.DISPATCHING, now)
            progress.set_job_state(job, JobState.DISPATCHING, now)
            job.waiting_reason = None  # it waits no more
            job.waiting_since = None
            token = pysecrets.token_urlsafe(32)
            attempt.token_hash = _hash(token)
            attempt.agent_id = agent_id
            attempt.machine = who.machine or agent_id
            attempt.instance_type = who.instance_type
            attempt.spot = who.spot
            attempt.price_hourly = who.price_hourly
            attempt.claimed_at = now
            attempt.heartbeat_at = now
            attempt.log_path = self.logs.path_for(pipeline.id, job.id, attempt.id)
            attempt.hardware = list(job.hardware)
            changes.pipelines.add(pipeline.id)
            attempt_id = attempt.id
            result = Claim(attempt_id=attempt_id, job_token=token, job=payload)
        self.events.publish(AttemptClaimed(agent_id, attempt_id))
        return result

    async def claim(self, who: AgentIdentity | str, wait: float) -> Claim | None:
        """A queued attempt for this agent, waiting up to ``wait`` seconds for one."""
        if isinstance(who, str):
            who = AgentIdentity(agent_id=who)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_CLAIM_WAIT)
        while True:
            self.connected.claimed(who.agent_id, who.hardware)
            found = self._claim_now(who)
            if found is not None:
                hook = self.hooks.payload_hooks.get(found.job.forge)
                if hook is not None:
                    try:
                        credentials = await hook(found.job)
                    except Exception as e:  # the agent must not get a job it cannot fetch
                        self.finish_infrastructure(found, f"could not prepare the job: {e}")
                        continue
                    if credentials is not None:
                        job = replace(
                            found.job,
                            clone_auth=credentials.auth,
                            mask=(*found.job.mask, *credentials.mask),
                        )
                        found = replace(found, job=job)
                return found
            left = deadline - loop.time()
            if left <= 0 or self.closing:
                return None
            # Woken at once when a job is queued here; re-checked every second for
            # jobs queued by another replica sharing the database.
            await self.queued.wait(min(left, 1.0))

    # ---- agents: one attempt ----------------------------------------------------------

    def _attempt(
        self, s: Session, attempt_id: int, token: str, changes: Changes | None = None
    ) -> Attempt:
        attempt = s.scalar(select(Attempt).where(Attempt.token_hash == _hash(token)))
        if attempt is None:
            raise AgentAuthError(401, "unknown job token")
        if attempt.id != attempt_id:
            raise AgentAuthError(403, "this job token is for another attempt")
        if AttemptState(attempt.state).final:
            raise AgentAuthError(409, f"attempt {attempt_id} has already ended ({attempt.state})")
        now = utcnow()
        attempt.heartbeat_at = now
        self.connected.called(attempt.agent_id)
        if attempt.state == AttemptState.DISPATCHING:
            progress.set_attempt_state(attempt, AttemptState.RUNNING, now)
            progress.set_job_state(attempt.job, JobState.RUNNING, now)
            if changes is not None:
                changes.pipelines.add(attempt.job.pipeline_id)
        return attempt

    def check_job_token(self, attempt_id: int, token: str) -> None:
        """``AgentAuthError`` unless ``token`` is the job token of ``attempt_id`` (read
        only: the API checks it before it reads a request's body)."""
        if not token:
            raise AgentAuthError(401, "this endpoint needs Authorization: Bearer <job token>")
        with self.db.session() as s:
            owner = s.scalar(select(Attempt.id).where(Attempt.token_hash == _hash(token)))
        if owner is None:
            raise AgentAuthError(401, "unknown job token")
        if owner != attempt_id:
            raise AgentAuthError(403, "this job token is for another attempt")

    def record_log(self, attempt_id: int, token: str, chunk: LogChunk) -> bool:
        """Append a chunk; a chunk already stored is ignored. Returns the cancel flag."""
        seq, data = chunk.seq, chunk.data
        with self._work() as (s, changes):
            attempt = self._attempt(s, attempt_id, token, changes)
            if seq > attempt.log_seq:
                raise OutOfOrder(attempt.log_seq)
            if seq == attempt.log_seq and attempt.log_path:
                attempt.log_size = self.logs.append(
                    attempt.log_path, data.encode(), seq=seq, session=s
                )
                attempt.log_seq = seq + 1
            cancel = attempt.cancel_requested
        self.log_appended.notify()
        return cancel

    def record_step(self, attempt_id: int, token: str, report: StepReport) -> bool:
        index, state, exit_code = report.index, report.state, report.exit_code
        with self._work() as (s, changes):
            attempt = self._attempt(s, attempt_id, token, changes)
            steps = [dict(x) for x in attempt.steps]
            while len(steps) <= index:
                steps.append({"index": len(steps), "state": "pending"})
            entry = steps[index]
            now = utcnow().isoformat()
            entry["state"] = state
            if state == "running":
                entry["started_at"] = now
                entry["log_offset"] = attempt.log_size
            else:
                entry["finished_at"] = now
                entry["exit_code"] = exit_code
            attempt.steps = steps
            return attempt.cancel_requested

    async def heartbeat(self, attempt_id: int, token: str, wait: float) -> bool:
        """Hold until the attempt is cancelled or ``wait`` passes. Returns the cancel flag."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_HEARTBEAT_WAIT)
        while True:
            with self._work() as (s, changes):
                cancel = self._attempt(s, attempt_id, token, changes).cancel_requested
            left = deadline - loop.time()
            if cancel or left <= 0 or self.closing:
                return cancel
            await self.cancels.wait(min(left, 1.0))

    def finish(self, attempt_id: int, token: str, report: FinishReport) -> None:
        result, reason, error = report.result, report.reason, report.error
        exit_code, failed_step = report.exit_code, report.failed_step
        if result not in AGENT_RESULTS:
            raise ValueError(f"unknown result {result!r}; known: {', '.join(AGENT_RESULTS)}")
        final, retry_reason = AGENT_RESULTS[result]
        if reason in AGENT_REASONS and final is not AttemptState.SUCCEEDED:
            retry_reason = AGENT_REASONS[reason]
        with self._work() as (s, changes):
            attempt = self._attempt(s, attempt_id, token)
            attempt.failed_step = failed_step
            succeeded = final is AttemptState.SUCCEEDED
            gate = metric_rows.gate_failure(s, attempt.id) if succeeded else None
            if gate is not None:  # a tripped ``fail_if``: the job fails, the gate says why
                final, retry_reason, error = AttemptState.FAILED, RetryReason.SCRIPT_FAILURE, gate
            progress.end_attempt(
                s, attempt, final, retry_reason, changes, exit_code=exit_code, error=error
            )

    def finish_infrastructure(self, claim: Claim | int, error: str) -> None:
        """End a claimed attempt (a claim or its attempt id) that never reached its
        agent (retried by policy)."""
        attempt_id = claim.attempt_id if isinstance(claim, Claim) else claim
        with self._work() as (s, changes):
            attempt = s.get(Attempt, attempt_id)
            if attempt is not None and not AttemptState(attempt.state).final:
                progress.end_attempt(
                    s,
                    attempt,
                    AttemptState.INTERRUPTED,
                    RetryReason.INFRASTRUCTURE,
                    changes,
                    error=error,
                )

    def agent_lost(self, agent_id: str, why: str) -> int:
        """The machine or agent ``agent_id`` is gone: its attempts end interrupted."""
        with self._work() as (s, changes):
            live = _live_attempts(s, agent_id)
            for attempt in live:
                self._interrupt(s, attempt, why, changes)
        return len(live)

    def _interrupt(self, s: Session, attempt: Attempt, why: str, changes: Changes) -> None:
        if attempt.cancel_requested:
            progress.end_attempt(s, attempt, AttemptState.CANCELLED, None, changes, error=why)
            return
        # A spot machine that vanishes was most likely reclaimed by EC2.
        reason = RetryReason.SPOT_INTERRUPTION if attempt.spot else RetryReason.INFRASTRUCTURE
        progress.end_attempt(s, attempt, AttemptState.INTERRUPTED, reason, changes, error=why)

    def machine_never_came(self, attempt_id: int, why: str) -> None:
        """The machine started for a queued attempt did not register in time: the attempt
        ends `interrupted` (infrastructure) and its job's retry policy decides."""
        with self._work() as (s, changes):
            attempt = s.get(Attempt, attempt_id)
            if attempt is not None and attempt.state == AttemptState.QUEUED:
                progress.end_attempt(
                    s,
                    attempt,
                    AttemptState.INTERRUPTED,
                    RetryReason.INFRASTRUCTURE,
                    changes,
                    error=why,
                )

    def launch_refused(self, attempt_id: int, why: str) -> None:
        """The cloud refused to start a machine for a queued attempt for a reason no retry
        changes (the operator's configuration: a bad AMI, subnet, permissions): the
        attempt fails with ``why`` and its job ends failed, without a retry loop."""
        with self._work() as (s, changes):
            attempt = s.get(Attempt, attempt_id)
            if attempt is not None and attempt.state == AttemptState.QUEUED:
                attempt.job.waiting_reason = None
                progress.end_attempt(s, attempt, AttemptState.FAILED, None, changes, error=why)

    def machine_failed_to_start(self, token: str, reason: str) -> FailedMachine:
        """A machine's bootstrap, with its registration token, reports that it could not
        start the agent: the attempt it was started for ends `interrupted`
        (infrastructure) with "machine i-... failed to start: REASON", so its job's
        retry policy decides and its check run says why; executors hear
        ``MachineFailed``. ``AgentAuthError`` (401) when the token is no starting
        machine's."""
        for report in self.hooks.boot_reports:
            failed = report(token, reason)
            if failed is not None:
                break
        else:
            raise AgentAuthError(401, "no machine that is starting has this token")
        why = f"machine {failed.name} failed to start: {reason}"
        if failed.attempt_id is not None:
            self.machine_never_came(failed.attempt_id, why)
        self.events.publish(MachineFailed(failed.agent_id, failed.attempt_id, why))
        return failed

    def set_waiting(self, job_id: int, reason: str | None) -> None:
        """Say why a queued job has not started (shown on its check run or status)."""
        with self._work() as (s, changes):
            job = s.get(Job, job_id)
            if job is None or job.waiting_reason == reason:
                return
            job.waiting_reason = reason
            job.waiting_since = (job.waiting_since or utcnow()) if reason else None
            changes.pipelines.add(job.pipeline_id)

    # ---- people -----------------------------------------------------------------------

    def cancel_pipeline(self, pipeline_id: int, actor: str) -> int:
        with self._work() as (s, changes):
            pipeline = _get(s, Pipeline, pipeline_id)
            n = sum(progress.cancel_job(s, j, changes) for j in pipeline.jobs)
            progress.advance(s, pipeline, changes)
            self.audit(s, actor, "pipeline.cancel", f"pipeline:{pipeline_id}", forge=pipeline.forge)
        return n

    def cancel_job(self, job_id: int, actor: str) -> bool:
        with self._work() as (s, changes):
            job = _get(s, Job, job_id)
            done = progress.cancel_job(s, job, changes)
            progress.advance(s, job.pipeline, changes)
            self.audit(s, actor, "job.cancel", f"job:{job_id}", forge=job.pipeline.forge)
        return done

    def retry_job(
        self,
        job_id: int,
        actor: str,
        *,
        hardware: str | None = None,
        candidates: list[str] | None = None,
    ) -> int:
        """Run a finished job again (a manual job: run it), optionally on other hardware
        (``hardware`` like ``h100:1`` with its instance type ``candidates``). Returns the
        new attempt's id."""
        with self._work() as (s, changes):
            job = _get(s, Job, job_id)
            state = JobState(job.state)
            if not (state.final or state is JobState.MANUAL):
                raise NotAllowed(f"job '{job.name}' is {job.state}: only a finished job is retried")
            verb = "run" if state is JobState.MANUAL else "retried"
            reason = f"{verb} by {actor}"
            if hardware is not None:
                job.hardware = [hardware]
                job.candidates = list(candidates or [])
                reason += f" on {hardware}"
            attempt = progress.queue_job(s, job, reason, changes)
            progress.reset_dependents(job.pipeline, job.name)
            progress.advance(s, job.pipeline, changes)
            action = "job.run" if state is JobState.MANUAL else "job.retry"
            self.audit(s, actor, action, f"job:{job_id}", forge=job.pipeline.forge)
            s.flush()
            attempt_id = attempt.id
        return attempt_id

    def approve(self, pipeline_id: int, actor: str) -> bool:
        """`/ployd ok-to-test`: let a held pipeline (a fork's pull request) run."""
        with self._work() as (s, changes):
            pipeline = _get(s, Pipeline, pipeline_id)
            if not pipeline.held:
                return False
            pipeline.held = False
            now = utcnow()
            for job in pipeline.jobs:  # they wait for a machine from now, not since held
                if job.state == JobState.QUEUED.value:
                    job.queued_at = now
            changes.queued += 1
            changes.pipelines.add(pipeline_id)
            self.audit(
                s, actor, "pipeline.approve", f"pipeline:{pipeline_id}", forge=pipeline.forge
            )
        return True

    # ---- upkeep -----------------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> int:
        """End attempts whose agent went silent or which overran their timeout."""
        with self._work() as (s, changes):
            return self._sweep(s, changes, now or utcnow())

    async def sweep_off_loop(self, now: datetime | None = None) -> int:
        """``sweep`` with its transaction on a thread (it reads every live and queued
        attempt, and may wait on SQLite's write lock while webhooks are recorded): the
        event loop only runs the wake-ups after the commit."""
        changes = Changes()
        ended = await asyncio.to_thread(self._sweep_tx, changes, now or utcnow())
        self._after(changes)
        return ended

    def _sweep_tx(self, changes: Changes, now: datetime) -> int:
        with self.db.session() as s:
            ended = self._sweep(s, changes, now)
            if changes.queued and self.hooks.gates:
                self._gate(s, changes)
        return ended

    def _sweep(self, s: Session, changes: Changes, now: datetime) -> int:
        ended = 0
        live = _live_attempts(s)
        for a in live:
            action = overdue(
                AttemptState(a.state),
                now=now,
                timeout_s=StoredJobSpec.from_stored(a.job.spec).timeout_s,
                heartbeat_timeout=self.heartbeat_timeout,
                started=aware(a.started_at or a.claimed_at or a.created_at),
                heartbeat=aware(a.heartbeat_at or a.claimed_at or a.created_at),
            )
            ended += self._apply_deadline(s, a, action, changes)
        # A job that cannot get a machine does not wait forever: its own timeout. Read as
        # plain columns in one query (not an object and two lazy loads per attempt: the
        # sweep runs every few seconds, and a big pipeline queues thousands); only the
        # attempts that are overdue are loaded.
        waiting = s.execute(
            select(
                Attempt.id,
                Attempt.created_at,
                Job.queued_at,
                Job.spec,
                Job.waiting_reason,
            )
            .join(Attempt.job)
            .join(Job.pipeline)
            .where(Attempt.state == AttemptState.QUEUED.value, Pipeline.held.is_(False))
        ).all()
        for attempt_id, created_at, queued_at, stored, waiting_reason in waiting:
            spec = StoredJobSpec.from_stored(stored)
            # Since when this attempt waits: a retry for no capacity waits afresh
            # (its job keeps its place in the queue, queued_at).
            since = [t for t in (aware(queued_at), aware(created_at)) if t]
            action = overdue(
                AttemptState.QUEUED,
                now=now,
                timeout_s=spec.timeout_s,
                heartbeat_timeout=self.heartbeat_timeout,
                queued=max(since) if since else None,
                waiting_reason=waiting_reason,
                capacity_wait_s=spec.retry.capacity_wait_s,
            )  # held pipelines (awaiting approval) do not count down: not selected
            if action is not None:
                ended += self._apply_deadline(s, _get(s, Attempt, attempt_id), action, changes)
        return ended

    def _apply_deadline(
        self, s: Session, a: Attempt, action: TimeOut | Interrupt | None, changes: Changes
    ) -> int:
        """End ``a`` as ``overdue`` said; 1 if it ended."""
        match action:
            case TimeOut(error=error, reason=reason):
                progress.end_attempt(s, a, AttemptState.TIMED_OUT, reason, changes, error=error)
            case Interrupt(error=error):
                self._interrupt(s, a, error, changes)
            case None:
                return 0
        return 1

    def recover(self, *, shared: bool = False, silent_s: float = RECOVERY_SILENCE_S) -> int:
        """At start: end ``interrupted`` (retried by their policy) the attempts that no
        agent can still be running; returns how many.

        ``shared`` False (SQLite: one process has the file): no agent of a previous run
        is alive, so every claimed or running attempt, and queued ones forget the agent
        they were started for. ``shared`` True (PostgreSQL, where other replicas serve
        their own agents): only attempts held by this server's own local agents
        (``machine`` ends ``@<instance>``: their credentials died with the previous
        process, so they can never report again), and attempts whose heartbeat is older
        than ``silent_s`` (a live agent's is refreshed about every second by whichever
        replica it talks to: an agent heartbeating to another replica is never one)."""
        now = utcnow()
        with self._work() as (s, changes):
            q = select(Attempt).where(
                Attempt.state.in_([AttemptState.DISPATCHING.value, AttemptState.RUNNING.value])
            )
            if shared:
                silent = now - timedelta(seconds=silent_s)
                mine = (
                    Attempt.machine.endswith(f"@{self.instance}", autoescape=True)
                    if self.instance
                    else false()
                )
                q = q.where(
                    or_(
                        mine,
                        func.coalesce(Attempt.heartbeat_at, Attempt.claimed_at) < silent,
                    )
                )
            live = list(s.scalars(q))
            for a in live:
                self._interrupt(s, a, "the server restarted while the job ran", changes)
            if not shared:
                s.execute(update(Attempt).where(Attempt.state == "queued").values(agent_id=None))
        return len(live)


GATE_BLIND = frozenset({"steps", "env", "cache", "artifacts"})  # what no gate reads


def _gate_key(pipeline_id: int, hardware: str, candidates: str, spec: dict[str, Any]) -> str:
    """What a gate's verdict on a queued job depends on (``hooks.Gate``), as a key: the
    ``repr`` of JSON values (equal reprs, equal values; two equal specs whose keys were
    stored in another order only make two groups)."""
    seen = {k: v for k, v in (spec or {}).items() if k not in GATE_BLIND}
    return repr((pipeline_id, hardware, candidates, seen))


def _need(job: Job) -> Need:
    """What a queued job asks of an agent's machine, from its stored spec."""
    return Need.of(
        job.hardware or (),
        stored_resources(job.spec),
        containers=stored_image(job.spec) is not None,
    )


def _live_attempts(s: Session, agent_id: str | None = None) -> list[Attempt]:
    """Attempts that hold a machine (claimed or running), of one agent or of all."""
    live = [AttemptState.DISPATCHING.value, AttemptState.RUNNING.value]
    q = select(Attempt).where(Attempt.state.in_(live))
    if agent_id is not None:
        q = q.where(Attempt.agent_id == agent_id)
    return list(s.scalars(q))


def _get(s: Session, model: type[T], ident: int) -> T:
    obj = s.get(model, ident)
    if obj is None:
        raise KeyError(ident)
    return obj
