"""The notifier: pipelines' changes (``PipelinesChanged``) and budget warnings in,
notifications recorded (``app.store.notifications``) and delivered by a task of their own,
retried with backoff, given up after ``MAX_TRIES`` and recorded either way. The engine's
event handler only notes the pipeline ids, so a slow or failing endpoint never delays a
pipeline.

Channels: the pipeline's ``notify:`` (not for a fork's pull request: its file is not
trusted to pick where PloyD sends requests) and its tenant's defaults (``notify`` in the
operator's policy). Secrets are resolved when a message is sent, never stored in it.

Every HTTP destination, whoever named it (the file, or the operator's policy, whose Slack
channels read their URL from the repository's secrets), goes through one guard
(``app.results.guard``): nothing on loopback, link-local, private, multicast or reserved
networks unless ``PLOYD_NOTIFY_ALLOW_NETS`` holds it. A refused delivery is recorded
with the reason and not retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import aiohttp

from app.core.cause import CauseKind
from app.core.clock import aware
from app.core.config.model import NotifyChannel
from app.core.jobspec import stored_notify
from app.core.netguard import Network
from app.core.results.notify import (
    BACKOFF_BASE_S,
    MAX_TRIES,
    FailingJob,
    Message,
    Outcome,
    cause_line,
    channel_from_json,
    channel_json,
    channel_key,
    pipeline_events,
    scrub,
    wants,
)
from app.core.weblinks import signed_job_url
from app.engine.notify import wait_set
from app.logs.store import LogStore
from app.logs.window import locate_error
from app.results import guard
from app.results.channels import (
    HTTP_TIMEOUT_S,
    SmtpConfig,
    send_email,
    send_slack,
    send_webhook,
)
from app.store import notifications as rows
from app.store.db import Database, Tx
from app.store.metrics import base_branch
from app.store.models import Attempt, Pipeline, utcnow

log = logging.getLogger("ployd.notify")

FAILED_STATES = ("failed", "timed_out", "interrupted")
SecretValue = Callable[[int, str, str], "str | None"]  # (repository id, ref, name) -> value
TenantChannels = Callable[[Tx, int], Sequence[NotifyChannel]]  # (tx, tenant id) -> channels


def _branch(ref: str) -> str | None:
    return ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def _refused(out: Outcome) -> bool:
    """A destination the guard refused: trying again would be refused again."""
    return bool(out.detail.get("refused"))


def pr_url(forge: str, clone_url: str, number: int | None) -> str | None:
    if number is None or not clone_url.startswith(("https://", "http://")):
        return None
    web = clone_url.removesuffix(".git")
    return f"{web}/-/merge_requests/{number}" if forge == "gitlab" else f"{web}/pull/{number}"


class Notifier:
    def __init__(
        self,
        db: Database,
        *,
        base_url: str,
        key: bytes,
        secret_value: SecretValue,
        tenant_channels: TenantChannels,
        smtp: SmtpConfig | None = None,
        backoff_base_s: float = BACKOFF_BASE_S,
        allow_nets: Sequence[Network] = (),
        logs: LogStore | None = None,
    ) -> None:
        self.db = db
        self.base_url = base_url
        self.key = key
        self.secret_value = secret_value
        self.tenant_channels = tenant_channels
        self.smtp = smtp
        self.backoff_base_s = backoff_base_s
        self.allow_nets = tuple(allow_nets)  # PLOYD_NOTIFY_ALLOW_NETS
        self.logs = logs  # the failing jobs' logs, for their cause line
        self.http_timeout_s = HTTP_TIMEOUT_S  # an answer later than this is a failed try
        self._changed: set[int] = set()
        self._lock = threading.Lock()  # publishers may be on other threads
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self.progress = asyncio.Event()  # set after each try (tests wait on it)
        self.delivered = 0  # tries made (sent or not), for tests and metrics

    # -- in -------------------------------------------------------------------------

    def on_change(self, pipeline_ids: frozenset[int] | set[int]) -> None:
        """The engine's event: note the ids (quick), the task does the rest."""
        with self._lock:
            self._changed |= set(pipeline_ids)
        self._poke()

    def _poke(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def budget_crossed(self, s: Tx, attempt: Attempt, note: str) -> None:
        """The policy's budget warning (in its transaction): shown on the pipeline's pull
        request (once per pipeline), and sent once a month to every channel that asks
        for ``budget``. Cheap when both are already recorded (every later job's gate)."""
        pipeline = attempt.job.pipeline
        tenant_id = rows.tenant_of(s, pipeline)
        month = utcnow().strftime("%Y-%m")
        todo: list[tuple[dict[str, object], str, str]] = []  # (channel row, dedupe, state)
        if not rows.exists(s, f"budget:p{pipeline.id}"):
            todo.append(({"kind": rows.PR_KIND}, f"budget:p{pipeline.id}", "sent"))
        channels = self._channels(s, pipeline, tenant_id)
        if any("budget" in c.on for c in channels):
            filtered = any(c.branches is not None for c in channels)
            branch = base_branch(s, pipeline) if filtered else None
            for c in channels:
                dedupe = f"budget:t{tenant_id}:{month}:{channel_key(c)}"
                if wants(c, "budget", branch) and not rows.exists(s, dedupe):
                    todo.append((self._channel_row(c, pipeline), dedupe, "pending"))
        if not todo:
            return
        message = self._plain_message(s, pipeline, "budget", note).to_json()
        for channel, dedupe, state in todo:
            rows.record(
                s,
                tenant_id=tenant_id,
                pipeline_id=pipeline.id,
                event="budget",
                channel=channel,
                dedupe=dedupe,
                message=message,
                state=state,
            )
        self._poke()

    def _plain_message(self, s: Tx, pipeline: Pipeline, event: str, note: str) -> Message:
        """A message about the pipeline without its jobs (a budget warning)."""
        repo = rows.repository_of(s, pipeline)
        return Message(
            event=event,
            repo=repo.full_name,
            pipeline_id=pipeline.id,
            state=pipeline.state,
            ref=pipeline.ref,
            sha=pipeline.sha,
            url=f"{self.base_url}/pipelines/{pipeline.id}",
            pr_number=pipeline.pr_number,
            pr_url=pr_url(pipeline.forge, repo.clone_url, pipeline.pr_number),
            note=note,
        )

    # -- deciding -------------------------------------------------------------------

    def _channels(self, s: Tx, pipeline: Pipeline, tenant_id: int) -> list[NotifyChannel]:
        own: tuple[NotifyChannel, ...] = ()
        if not pipeline.fork:
            own = stored_notify(rows.first_job_spec(s, pipeline.id))
        out: list[NotifyChannel] = []
        seen: set[str] = set()
        for c in (*own, *self.tenant_channels(s, tenant_id)):
            k = channel_key(c)
            if k not in seen:
                seen.add(k)
                out.append(c)
        return out

    @staticmethod
    def _channel_row(channel: NotifyChannel, pipeline: Pipeline) -> dict[str, object]:
        return {
            **channel_json(channel),
            "repository_id": pipeline.repository_id,
            "ref": pipeline.ref,
        }

    def _job_url(self, job_id: int, tenant_id: int, created: datetime) -> str:
        c = aware(created)
        return signed_job_url(
            self.base_url, self.key, job_id, tenant_id, now=c.timestamp() if c else None
        )

    def _log_cause(self, j: rows.JobFacts) -> str | None:
        """The cause finder's line in a failed job's log (``app.core.cause``, on the tail
        of the failing step, as its log page and check run show it; logs are stored
        masked), or None: no log, nothing better than the exit code, or a job that
        ended for another reason (a timeout, a lost machine: its end reason says so)."""
        if self.logs is None or j.state != "failed" or not j.log_path or j.log_size <= 0:
            return None
        try:
            err = locate_error(self.logs, j.log_path, j.log_size, j.steps, j.failed_index)
        except Exception:  # an unreadable log: the step and exit code say enough
            log.warning("notification: the log of job %s could not be read", j.id, exc_info=True)
            return None
        cause = err.cause if err is not None else None
        if cause is None or cause.kind is CauseKind.EXIT:
            return None  # the step and its exit code, said by the fallback
        return cause.text

    def _message_for(self, s: Tx, pipeline: Pipeline, event: str, note: str = "") -> Message:
        f = rows.facts(s, pipeline.id)
        assert f is not None
        failing = tuple(
            FailingJob(
                j.name,
                j.state,
                cause_line(
                    j.failed_step,
                    self._log_cause(j),
                    (f"exit code {j.exit_code}" if j.exit_code not in (None, 0) else None)
                    if not j.error
                    else j.error,
                ),
                self._job_url(j.id, f.tenant_id, j.created_at),
            )
            for j in f.jobs
            if j.state in FAILED_STATES and not j.allow_failure
        )
        return Message(
            event=event,
            repo=f.full_name,
            pipeline_id=f.id,
            state=f.state,
            ref=f.ref,
            sha=f.sha,
            url=f"{self.base_url}/pipelines/{f.id}",
            pr_number=f.pr_number,
            pr_url=pr_url(f.forge, f.clone_url, f.pr_number),
            failing=failing if event != "budget" else (),
            note=note,
        )

    def consider(self, pipeline_ids: set[int]) -> int:
        """Record the notifications these pipelines' states give (blocking); returns how
        many were added."""
        added = 0
        for pid in sorted(pipeline_ids):
            with self.db.session() as s:
                pipeline = rows.pipeline(s, pid)  # one row: cheap for every change
                if pipeline is None:
                    continue
                tenant_id = rows.tenant_of(s, pipeline)
                channels = self._channels(s, pipeline, tenant_id)
                if not channels:
                    continue
                # ``started`` is recorded once (its dedupe), even when the pipeline was
                # already over by the time it is seen.
                previous = (
                    rows.previous_final_state(s, pipeline)
                    if pipeline.state == "succeeded"
                    else None
                )
                events = pipeline_events(pipeline.state, previous, announced_start=False)
                # A request's target branch is read (from its webhook) only when a
                # channel filters on branches.
                filtered = any(c.branches is not None for c in channels)
                branch = (
                    _branch(pipeline.ref)
                    if pipeline.pr_number is None
                    else base_branch(s, pipeline)
                    if filtered
                    else None
                )
                for event in events:
                    chosen = [
                        c
                        for c in channels
                        if wants(c, event, branch)
                        and not rows.exists(s, f"p{pid}:{event}:{channel_key(c)}")
                    ]
                    if not chosen:
                        continue
                    # The jobs are read only for a message to record.
                    message = self._message_for(s, pipeline, event).to_json()
                    for c in chosen:
                        added += rows.record(
                            s,
                            tenant_id=tenant_id,
                            pipeline_id=pid,
                            event=event,
                            channel=self._channel_row(c, pipeline),
                            dedupe=f"p{pid}:{event}:{channel_key(c)}",
                            message=message,
                        )
        return added

    # -- delivering -----------------------------------------------------------------

    async def _send(self, d: rows.Delivery) -> tuple[Outcome, bool]:
        """(the outcome, whether to retry it when it failed)."""
        assert self._http is not None
        channel = channel_from_json(d.channel)
        message = Message.from_json(d.message)
        repo_id = int(str(d.channel.get("repository_id") or 0))
        ref = str(d.channel.get("ref") or "")
        if channel.kind == "slack":
            url = await asyncio.to_thread(self.secret_value, repo_id, ref, channel.target)
            if not url:
                return Outcome(
                    False, f"secret {channel.target} (the Slack webhook) is not set"
                ), False
            out = await send_slack(self._http, url, message, self.http_timeout_s, self.allow_nets)
            return Outcome(out.ok, scrub(out.error, [url]), out.detail), not _refused(out)
        if channel.kind == "webhook":
            key = None
            if channel.secret:
                key = await asyncio.to_thread(self.secret_value, repo_id, ref, channel.secret)
                if not key:
                    return Outcome(
                        False, f"secret {channel.secret} (the HMAC key) is not set"
                    ), False
            out = await send_webhook(
                self._http, channel.target, key, message, d.id, self.http_timeout_s, self.allow_nets
            )
            return out, not _refused(out)
        if channel.kind == "email":
            if self.smtp is None:
                return Outcome(False, "email is not configured (PLOYD_SMTP_HOST)"), False
            return await send_email(self.smtp, channel.target.split(","), message), True
        return Outcome(False, f"unknown channel kind {channel.kind!r}"), False

    async def _deliver(self, d: rows.Delivery) -> None:
        try:
            out, retry = await self._send(d)
        except Exception as e:  # a bug in a sender: recorded, and the loop goes on
            log.exception("notification %s failed", d.id)
            out, retry = Outcome(False, f"internal error ({type(e).__name__})"), True
        tries = d.tries + 1
        wait = None
        if not out.ok and retry and tries < MAX_TRIES:
            wait = min(self.backoff_base_s * 2 ** (tries - 1), 300.0)
        if not out.ok:
            level = logging.WARNING if wait is not None else logging.ERROR
            log.log(
                level,
                "notification %s (%s, %s) failed: %s; %s",
                d.id,
                d.channel.get("kind"),
                d.event,
                out.error,
                f"retrying in {wait:.1f}s" if wait is not None else "given up",
            )
        await asyncio.to_thread(
            rows.finish, self.db, d.id, ok=out.ok, error=out.error or None, retry_in_s=wait
        )
        self.delivered += 1

    async def run_once(self) -> int:
        """Record what changed, start delivering what is due (each delivery in a task of
        its own: a slow endpoint holds up no other); returns the deliveries started."""
        with self._lock:
            changed, self._changed = self._changed, set()
        if changed:
            await asyncio.to_thread(self.consider, changed)
        due = await asyncio.to_thread(rows.due, self.db, utcnow())
        started = 0
        for d in due:
            if d.id in self._inflight:
                continue
            self._inflight[d.id] = asyncio.create_task(self._deliver_then(d))
            started += 1
        return started

    async def _deliver_then(self, d: rows.Delivery) -> None:
        try:
            await self._deliver(d)
        finally:
            self._inflight.pop(d.id, None)
            self._wake.set()
            self.progress.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:  # keep notifying; report it
                log.exception("notifications failed")
            if self._changed:
                continue
            nxt = await asyncio.to_thread(rows.next_due, self.db, set(self._inflight))
            timeout = None
            if nxt is not None:
                timeout = max((aware(nxt) - utcnow()).total_seconds(), 0.0)
            await wait_set(self._wake, timeout)  # the next due one, or news

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._http = guard.session(self.allow_nets)
        self._task = asyncio.create_task(self._run(), name="notifier")
        if self._changed:
            self._wake.set()

    async def stop(self) -> None:
        for task in [*self._inflight.values(), *([self._task] if self._task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()
