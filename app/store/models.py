"""The tables. Every state column holds a value of an ``app.core.states`` enum."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STARTING = "state IN ('requested', 'booting')"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    """A GitHub installation, a GitLab group or project, or `local`."""

    __tablename__ = "tenants"
    __table_args__ = (UniqueConstraint("forge", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    forge: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("forge", "full_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    forge: Mapped[str] = mapped_column(String(16))
    full_name: Mapped[str] = mapped_column(String(255))
    clone_url: Mapped[str] = mapped_column(Text)
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    tenant: Mapped[Tenant] = relationship()


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (
        Index("ix_pipelines_repo_pr", "repository_id", "pr_number"),
        Index("ix_pipelines_repo_sha", "repository_id", "sha"),
        # one pipeline per triggering delivery, whichever replica handles it (and again)
        UniqueConstraint("event_id", name="uq_pipelines_event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), index=True)
    forge: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(32))  # push, pull_request, api, ...
    actor: Mapped[str] = mapped_column(String(255), default="")
    pr_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fork: Mapped[bool] = mapped_column(Boolean, default=False)
    # A fork's pull request waits for a maintainer's `/ployd ok-to-test` while held.
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    pr_author: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="running", index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    repository: Mapped[Repository] = relationship()
    jobs: Mapped[list[Job]] = relationship(back_populates="pipeline", order_by="Job.position")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "name"),
        Index("ix_jobs_state_queued_at", "state", "queued_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(512))
    base_name: Mapped[str] = mapped_column(String(64))
    matrix: Mapped[dict[str, Any]] = mapped_column(default=dict)
    needs: Mapped[list[Any]] = mapped_column(default=list)
    when: Mapped[str] = mapped_column(String(16), default="on_success")
    allow_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    hardware: Mapped[list[Any]] = mapped_column(default=list)  # ["l4:1", ...] preference order
    candidates: Mapped[list[Any]] = mapped_column(default=list)  # instance type names
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # steps, env, timeout, retry, ...
    state: Mapped[str] = mapped_column(String(16))
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Why a queued job has not started, and since when ("waiting for capacity: tried ...").
    waiting_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    pipeline: Mapped[Pipeline] = relationship(back_populates="jobs")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="job", order_by="Attempt.number")


class Attempt(Base):
    """One try at running a job on one machine. A retry is a new attempt."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("job_id", "number"),
        Index("ix_attempts_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str] = mapped_column(Text, default="")  # why this attempt exists
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    machine: Mapped[str | None] = mapped_column(String(128), nullable=True)
    instance_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spot: Mapped[bool] = mapped_column(Boolean, default=False)
    hardware: Mapped[list[Any]] = mapped_column(default=list)  # what this attempt asked for
    price_hourly: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failed_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    steps: Mapped[list[Any]] = mapped_column(default=list)  # [{index,title,state,exit_code,...}]
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_seq: Mapped[int] = mapped_column(Integer, default=0)  # next chunk expected
    log_size: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    job: Mapped[Job] = relationship(back_populates="attempts")


class InboxEvent(Base):
    """Every event received, stored before it is answered; deliveries are deduplicated."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("forge", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    forge: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Claimed by one replica at a time (``app.store.inbox.claim``): its lease expires
    # unless renewed, and another replica takes the delivery over. A failed handler is
    # retried at ``next_try_at``, ``attempts`` times at most, then dead-lettered.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    next_try_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Deployment(Base):
    """One row: this database's deployment id (``PLOYD_DEPLOYMENT``'s default), made by
    the migration that created the table, so every replica reads the same one."""

    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(64))


class AuditRecord(Base):
    """Who did what, when. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    forge: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The chain (``app.audit.chain``): the previous record's hash, and this one's over
    # its fields and ``prev_hash``; a changed or deleted record breaks it.
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    hash: Mapped[str] = mapped_column(String(64), default="")


class ForgeReport(Base):
    """What PloyD last told a forge about something: a check run per job, a summary
    comment per pull request. ``key`` names the thing (``check_run:job:12``,
    ``comment:repo:3:pr:7``); ``digest`` is the hash of the last payload sent, so an
    unchanged report is not sent again."""

    __tablename__ = "forge_reports"
    __table_args__ = (UniqueConstraint("forge", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    forge: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    remote_id: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobAvoid(Base):
    """A candidate (``instance_type market az``) a job's machine failed on: its later
    launches skip it until ``until`` (``app.store.avoid``)."""

    __tablename__ = "job_avoid"
    __table_args__ = (UniqueConstraint("job_id", "key", name="uq_job_avoid_job_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(160))
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Instance(Base):
    """A cloud machine PloyD started (``app.core.instances`` has its state machine)."""

    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_state", "state"),
        # one machine on its way per attempt, whichever replica launches it
        Index(
            "uq_instances_starting_for",
            "launched_for",
            unique=True,
            sqlite_where=text(STARTING),
            postgresql_where=text(STARTING),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    pool: Mapped[str] = mapped_column(String(128))  # tenant:instance_type
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    instance_type: Mapped[str] = mapped_column(String(64))
    hardware: Mapped[str] = mapped_column(String(64))
    market: Mapped[str] = mapped_column(String(16))  # spot | on-demand
    az: Mapped[str] = mapped_column(String(32), default="")
    subnet_id: Mapped[str] = mapped_column(String(64), default="")
    # the region it was launched in ("": PLOYD_AWS_REGION, rows from before regions)
    region: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # the capacity reservation / Capacity Block id (or resource group ARN) it runs in
    reservation: Mapped[str | None] = mapped_column(String(255), nullable=True)
    price_hourly: Mapped[float] = mapped_column(Float, default=0.0)
    state: Mapped[str] = mapped_column(String(16), default="requested")
    agent_id: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The agent's own credential, given for the registration token at its first contact
    # (null until then; the registration token is refused afterwards).
    credential_hash: Mapped[str | None] = mapped_column(
        String(64), nullable=True, unique=True, index=True
    )
    launched_for: Mapped[int | None] = mapped_column(Integer, nullable=True)  # attempt id
    attempt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # running now
    clean_after: Mapped[bool] = mapped_column(Boolean, default=False)  # never reuse
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    launched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    idle_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The open stretch of its life not yet in ``instance_charges``: since when, and whose
    # it is (boot, run or idle; null once terminated). ``app.store.charges`` closes it.
    meter_kind: Mapped[str | None] = mapped_column(String(8), nullable=True)
    metered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class InstanceCharge(Base):
    """A stretch of a cloud machine's life and who pays for it: ``boot`` (launched until
    its first job, or its whole life when its agent never registered) goes to the attempt
    it was launched for and that attempt's tenant; ``run`` is the attempt it ran (the
    attempt's own ``cost`` is what spend counts); ``idle`` (waiting in its warm pool,
    draining, terminating) goes to the pool, and to the tenant it is bound to, if any."""

    __tablename__ = "instance_charges"
    __table_args__ = (
        Index("ix_instance_charges_tenant_ended", "tenant_id", "ended_at"),
        Index("ix_instance_charges_ended", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_row_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # boot | run | idle
    attempt_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    tenant_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pool: Mapped[str] = mapped_column(String(128))
    instance_type: Mapped[str] = mapped_column(String(64))
    az: Mapped[str] = mapped_column(String(32), default="")
    price_hourly: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    """A file a job kept (``artifacts.paths``), uploaded by the agent after its steps.
    ``storage_key`` names the blob in the artifact store (S3 or the data directory);
    ``state`` is ``pending`` until the upload is confirmed, then ``ready``."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("attempt_id", "path"),
        Index("ix_artifacts_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CacheEntry(Base):
    """A saved cache (``cache.key``) of one repository: never shared across repositories,
    so never across tenants. ``state`` is ``pending`` while it uploads, then ``ready``."""

    __tablename__ = "cache_entries"
    __table_args__ = (UniqueConstraint("repository_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), index=True)
    key: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # who saved it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Secret(Base):
    """A repository's secret: a value encrypted at rest (``app.secrets.crypto``) or a
    reference (``aws-sm:...``, ``aws-ssm:...``) resolved when a job is dispatched.
    ``branch`` is a branch pattern ("" = every branch)."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("repository_id", "name", "branch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    branch: Mapped[str] = mapped_column(String(255), default="")
    kind: Mapped[str] = mapped_column(String(16), default="value")  # value | reference
    reference: Mapped[str | None] = mapped_column(Text, nullable=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_id: Mapped[str] = mapped_column(String(255), default="")  # which key sealed it
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # KMS
    updated_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    repository: Mapped[Repository] = relationship()


class TenantPolicy(Base):
    """A tenant's policy as set through the admin API (it overrides the policy file)."""

    __tablename__ = "tenant_policies"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[str] = mapped_column(String(255), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LogChunk(Base):
    """A running attempt's log chunk, kept here when logs live in S3 (several replicas may
    receive one attempt's chunks); when the attempt ends its chunks become one S3 object
    and these rows are deleted. ``offset`` and ``lines`` (newlines before the chunk) let
    a byte range and a line number be found without reading the log from its start;
    ``received_ms`` when it arrived, kept in S3 beside the log once it ends."""

    __tablename__ = "log_chunks"
    __table_args__ = (UniqueConstraint("attempt_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"))
    seq: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)
    lines: Mapped[int] = mapped_column(BigInteger)
    newlines: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # When it arrived (Unix milliseconds): the page's per-line timestamps. None for
    # chunks stored before PloyD kept it.
    received_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AgentRegistrationToken(Base):
    """A one-time token that lets a self-hosted agent join ``pool`` (``ployd agents token
    create``): only its hash is kept; ``used_at`` is set when an agent exchanged it."""

    __tablename__ = "agent_registration_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    pool: Mapped[str] = mapped_column(String(64), index=True)
    tenants: Mapped[list[Any]] = mapped_column(default=list)  # ["*"] or ["forge:id", ...]
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # agent name
    # `ployd agents token revoke`: refused from then on (a used token's agent stays).
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RegisteredAgent(Base):
    """A self-hosted agent that registered with a pool's token. ``state``: ``active``,
    ``draining`` (finishing its job, taking no new one), ``disabled``. Only the hash of
    its credential is kept. The job it runs now is the live attempt whose ``agent_id`` is
    its name (``app.store.agents.current_job``), not a copy kept here."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    pool: Mapped[str] = mapped_column(String(64), index=True)
    tenants: Mapped[list[Any]] = mapped_column(default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)  # app.protocol.Hardware
    version: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), default="active")
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent_registration_tokens.id"), nullable=True
    )
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MetricValue(Base):
    """One value of an attempt's metrics (``metrics:``): a scalar (``step`` None) or a
    point of a curve; ``position`` keeps the file's order."""

    __tablename__ = "metric_values"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[float | None] = mapped_column(Float, nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class MetricReport(Base):
    """What became of an attempt's metrics file: ``error`` (the file could not be used),
    ``problems`` (values left out), the base run it was compared with and the tripped
    ``fail_if`` gate (``gate_failure``: the message; the attempt then fails)."""

    __tablename__ = "metric_reports"

    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    file: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    problems: Mapped[list[Any]] = mapped_column(default=list)
    base_attempt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    base_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    gate_failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Notification(Base):
    """One message to one channel (Slack, webhook, email) about a pipeline (or a
    tenant's budget), recorded before it is sent: ``pending`` until delivered (``sent``)
    or given up after its tries (``failed``, ``error`` says why). ``dedupe`` keeps one
    per pipeline, event and channel. ``channel`` holds the kind, the target and the
    secret's name, never a secret's value."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_next_at", "state", "next_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    pipeline_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    event: Mapped[str] = mapped_column(String(16))
    channel: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe: Mapped[str] = mapped_column(String(255), unique=True)
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
