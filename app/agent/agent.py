"""The agent loop: claim a job, fetch the code, run the steps, report, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from app.agent import container, metricsfile, runner, sandbox, transfer, workspace
from app.agent import hardware as machine
from app.agent.client import AgentClient, AttemptGone, BadAnswer, MustUpdate, Unavailable
from app.agent.compat import ASYNC_TIMEOUT
from app.agent.state import Keeper
from app.agent.update import UpdateFailed
from app.protocol import (
    CANCELLED,
    FAILED,
    INFRASTRUCTURE,
    INTERRUPTED,
    SPOT_INTERRUPTION,
    SUCCEEDED,
    Claim,
    FinishReport,
    Hardware,
    JobPayload,
    LogChunk,
    Registration,
    StepPayload,
    StepReport,
    UpdateRequired,
)

log = logging.getLogger("ployd.agent")

# Replaces the running agent with the server's version (``app.agent.update``): returns
# only if it could not, raising ``UpdateFailed`` to say why.
Updater = Callable[[UpdateRequired], Awaitable[None]]
UPDATE_RETRY_MAX_S = 300.0
# A claim answered empty long before its wait (a server shutting down): pause, doubling.
EMPTY_CLAIM_PAUSE_S = 0.5
EMPTY_CLAIM_PAUSE_MAX_S = 10.0


class Agent:
    def __init__(
        self,
        client: AgentClient,
        agent_id: str,
        work_dir: Path,
        *,
        claim_wait: float = 25,
        heartbeat_wait: float = 10,
        kill_grace_s: float = 3.0,
        imds_url: str | None = None,
        imds_interval: float = 2.0,
        registration: Registration | None = None,
        grace_s: float = 600.0,
        updater: Updater | None = None,
        update_retry_s: float = 5.0,
        hardware: Hardware | None = None,
        runtime: container.Runtime | bool | None = True,
        confinement: sandbox.Confinement | None = None,
        pass_env: tuple[str, ...] = (),
        keeper: Keeper | None = None,
    ) -> None:
        self.client = client
        # --state-dir: the credential kept across restarts (None: memory only).
        self.keeper = keeper
        # The container runtime jobs with an image run in: True, found at start;
        # None/False: none.
        self.runtime: container.Runtime | bool | None = runtime
        # How host steps are confined (their user, the sandbox); None: as the agent, on
        # the host (tests of the loop itself).
        self.confinement = confinement
        self.pass_env = pass_env  # the machine's variables steps also get (--pass-env)
        self.updater = updater  # None: run from source, never updates
        self.update_retry_s = update_retry_s
        # What this machine has, sent with every claim; detected at start when not given.
        self.hardware = hardware
        self.imds_url = imds_url  # set on EC2: watch for the spot interruption notice
        self.imds_interval = imds_interval
        self.agent_id = agent_id
        self.work_dir = Path(work_dir)
        self.claim_wait = claim_wait
        self.heartbeat_wait = heartbeat_wait
        self.kill_grace_s = kill_grace_s
        # Registered at start when given (the client holds a registration token), else
        # the client's token is already a credential.
        self.registration = registration
        self.grace_s = grace_s  # SIGTERM: how long the running job may still take
        self.stopping = False
        self._stop_job: str | None = None  # why the running job is being stopped
        self._grace: asyncio.TimerHandle | None = None
        self._claim: asyncio.Task[Claim | None] | None = None
        self._job_cancel: asyncio.Event | None = None
        self._job_run: _JobRun | None = None
        self._notes: set[asyncio.Future[None]] = set()
        self._stop: asyncio.Event | None = None

    def terminate(self) -> None:
        """SIGTERM: take no new job and let the running one finish, for up to
        ``grace_s``; a second call (or the grace running out) stops its steps, and it is
        reported interrupted. ``run`` then returns 0."""
        if self.stopping:
            self._stop_running("stopped (SIGTERM again)")
            return
        self.stopping = True
        if self._stop is not None:
            self._stop.set()
        if self._claim is not None:
            self._claim.cancel()
        if self._job_cancel is not None:
            self._start_grace()

    def _start_grace(self) -> None:
        if self.grace_s <= 0:
            self._stop_running("stopped (SIGTERM)")
            return
        if self._grace is None:
            note = f"the running job may finish for {self.grace_s:g}s (SIGTERM again stops it now)"
            log.warning("stopping: %s", note)
            if self._job_run is not None:  # the job's log says so too
                self._notes.add(
                    asyncio.ensure_future(
                        self._job_run.send_log(f"\n⚠ the agent is stopping: {note}\n")
                    )
                )
            self._grace = asyncio.get_running_loop().call_later(
                self.grace_s,
                self._stop_running,
                f"stopped (SIGTERM, and its {self.grace_s:g}s grace period ended)",
            )

    def _stop_running(self, why: str) -> None:
        if self._stop_job is None:
            self._stop_job = why
        if self._job_cancel is not None:
            self._job_cancel.set()

    async def register(self) -> bool:
        """Exchange the registration token (or the credential saved by an earlier start,
        which the server replaces) for this agent's credential, retried while the server
        cannot be reached; False when the server refuses it (and the token, if any)."""
        registration = self.registration
        backoff = 0.5
        while registration is not None and not self.stopping:
            try:
                registered = await self.client.register(registration)
            except (AttemptGone, BadAnswer) as e:
                token = self.keeper.refused(str(e)) if self.keeper is not None else None
                if token is not None:  # the saved credential is gone: the token, then
                    self.client.agent_token = token
                    continue
                log.error("the server refused to register this agent: %s", e)
                return False
            except Exception as e:  # network trouble, a server starting
                log.warning("registration failed (%r); retrying in %.1fs", e, backoff)
                await self._pause(backoff)  # backoff while the server is away
                backoff = min(backoff * 2, 10.0)
                continue
            self.agent_id = registered.agent_id
            self.registration = None
            log.info("registered as %s", registered.agent_id)
            if self.keeper is not None:
                keeper = self.keeper
                await asyncio.get_running_loop().run_in_executor(
                    None, keeper.registered, registered.agent_id, registered.credential
                )
            break
        return True

    async def run(self, *, once: bool = False) -> int:
        """Register (when asked to), then claim and run jobs until terminated (or after
        one job with ``once``)."""
        sandbox.private_dir(self.work_dir)
        killed = sandbox.StepRecords(self.work_dir).reap()
        if killed:
            log.warning("killed the steps an earlier agent left running here: %s", killed)
        if self.confinement is not None:
            log.info("%s", self.confinement.describe())
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self.runtime is True:
            self.runtime = await loop.run_in_executor(None, container.detect_runtime)
        runtime = self.runtime if isinstance(self.runtime, container.Runtime) else None
        if self.hardware is None:
            name = runtime.name if runtime is not None else ""
            self.hardware = await loop.run_in_executor(
                None, lambda: machine.detect(self.work_dir, containers=name)
            )
        if not await self.register():
            return 2
        if runtime is not None:  # what a killed agent of this name left running
            await container.cleanup(runtime, self.agent_id)
        backoff = 0.5
        update_backoff = self.update_retry_s
        idle = EMPTY_CLAIM_PAUSE_S
        while not self.stopping:
            asked = loop.time()
            self._claim = asyncio.create_task(
                self.client.claim(self.agent_id, self.claim_wait, self.hardware)
            )
            try:
                claim = await self._claim
            except asyncio.CancelledError:
                if self.stopping:
                    break
                raise
            except AttemptGone as e:
                log.error("the server refused the agent token: %s", e)
                return 2
            except MustUpdate as e:
                await self._update(e.update, update_backoff)
                update_backoff = min(update_backoff * 2, UPDATE_RETRY_MAX_S)
                continue
            except Exception as e:  # network trouble, a server restarting
                log.warning("claim failed (%r); retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)  # backoff while the server is away
                backoff = min(backoff * 2, 10.0)
                continue
            finally:
                self._claim = None
            backoff = 0.5
            update_backoff = self.update_retry_s
            if claim is None:
                if loop.time() - asked < self.claim_wait / 2:
                    # Nothing, and long before the wait asked for: a server shutting
                    # down (or a proxy) answers at once; do not ask again in a tight loop.
                    await self._pause(idle)
                    idle = min(idle * 2, EMPTY_CLAIM_PAUSE_MAX_S)
                else:
                    idle = EMPTY_CLAIM_PAUSE_S
                continue
            idle = EMPTY_CLAIM_PAUSE_S
            await self.run_job(claim)
            if once:
                break
        return 0

    async def _update(self, update: UpdateRequired, retry_s: float) -> None:
        """Run the server's version instead of this one (the updater does not return
        when it can); else say why and wait ``retry_s`` before claiming again."""
        if self.updater is None:
            log.error(
                "the server runs agent %s and this agent, run from source, cannot update "
                "itself: run the server's ployd-agent.pyz",
                update.version,
            )
        else:
            log.warning("the server runs agent %s: updating", update.version)
            try:
                await self.updater(update)
            except UpdateFailed as e:
                log.error("update to agent %s failed: %s", update.version, e)
        log.warning("still running this version; trying again in %.0fs", retry_s)
        await self._pause(retry_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless terminated first."""
        assert self._stop is not None
        with contextlib.suppress(*ASYNC_TIMEOUT):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def run_job(self, claim: Claim) -> None:
        job = claim.job
        attempt_id = claim.attempt_id
        token = claim.job_token
        cancel = self._job_cancel = asyncio.Event()
        job_run = self._job_run = _JobRun(self.client, attempt_id, token, cancel)
        if self._stop_job is not None:
            cancel.set()
        elif self.stopping:  # claimed as SIGTERM came: it runs, within the grace
            self._start_grace()
        heartbeat = asyncio.create_task(job_run.heartbeats(self.heartbeat_wait))
        interrupted = asyncio.Event()
        watcher = self._watch_spot(job_run, cancel, interrupted)
        try:
            finish = await self._run(job, job_run, cancel)
            if interrupted.is_set():
                finish = replace(
                    finish,
                    result=INTERRUPTED,
                    reason=SPOT_INTERRUPTION,
                    error="spot instance interruption notice",
                )
            elif self._stop_job is not None and finish.result == CANCELLED:
                # Not the job's fault: the agent is going away (its policy retries it).
                why = f"the agent was {self._stop_job} before the job finished"
                await job_run.send_log(f"\n⚠ {why}\n")
                finish = replace(finish, result=INTERRUPTED, reason=INFRASTRUCTURE, error=why)
            if job_run.gone:
                log.warning("attempt %s is no longer ours; not finishing it", attempt_id)
            else:
                await self.client.finish(attempt_id, token, finish)
        except (AttemptGone, Unavailable) as e:
            log.error("attempt %s: could not report: %s", attempt_id, e)
        finally:
            for task in (heartbeat, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for note in list(self._notes):
                with contextlib.suppress(Exception):
                    await note
            self._notes.clear()
            self._job_cancel = None
            self._job_run = None
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None

    def _watch_spot(
        self, job_run: _JobRun, cancel: asyncio.Event, interrupted: asyncio.Event
    ) -> asyncio.Task[None] | None:
        """On EC2, a spot interruption notice stops the steps and ends the attempt
        `interrupted`: the machine is going away, it is not the job's fault."""
        if self.imds_url is None:
            return None
        from app.agent.imds import SpotWatcher

        async def notice(text: str) -> None:
            await job_run.send_log(f"\n⚠ spot interruption notice: {text.strip()}\n")
            interrupted.set()
            cancel.set()

        async def rebalance(text: str) -> None:
            await job_run.send_log(f"\n⚠ EC2 rebalance recommendation: {text.strip()}\n")

        watcher = SpotWatcher(
            self.client.http,
            self.imds_url,
            interval=self.imds_interval,
            on_notice=notice,
            on_rebalance=rebalance,
        )
        return asyncio.create_task(watcher.run())

    async def _run(self, job: JobPayload, job_run: _JobRun, cancel: asyncio.Event) -> FinishReport:
        """Fetch and run; the body of the finish call."""
        secrets = dict(job.secrets)
        mask = [*job.mask, *(job.clone_auth.mask if job.clone_auth is not None else ())]
        masker = runner.Masker([*secrets.values(), *mask])

        async def send_masked(text: str) -> None:  # git's messages can hold the clone URL
            await job_run.send_log(masker.feed(text) + masker.finish())

        await job_run.send_log(f"ployd agent {self.agent_id}: {job.name or '?'}\n")
        # A fork's job gets a workspace of its own, removed afterwards: nothing it leaves
        # (a poisoned build directory, a git hook) reaches a later job.
        key = f"fork-{job.attempt_id}" if job.fork else (job.workspace_key or job.repo)
        key = key or "workspace"
        try:
            path, _ = await workspace.prepare(
                self.work_dir, key, job.clone_url, job.sha, auth=job.clone_auth, log=send_masked
            )
        except (workspace.WorkspaceError, OSError) as e:
            error = masker.feed(str(e)) + masker.finish()
            await job_run.send_log(f"error: {error}\n")
            return FinishReport(result=FAILED, reason=INFRASTRUCTURE, error=error)
        try:
            return await self._run_in(job, job_run, cancel, path, key, secrets, mask)
        finally:
            if job.fork:
                await asyncio.to_thread(_remove, path, self._home(key))

    def _home(self, key: str) -> Path:
        """The job's HOME: one per workspace, beside it (kept, like the workspace)."""
        return workspace.workspace_dir(self.work_dir / HOMES_DIR, key)

    async def _run_in(
        self,
        job: JobPayload,
        job_run: _JobRun,
        cancel: asyncio.Event,
        path: Path,
        key: str,
        secrets: dict[str, str],
        mask: list[str],
    ) -> FinishReport:
        confinement = self.confinement
        user = confinement.user if confinement is not None else None
        home = self._home(key)
        sandbox.private_dir(home.parent)
        home.mkdir(exist_ok=True)
        xfer = transfer.JobTransfers(
            self.client,
            job_run.attempt_id,
            job_run.token,
            job_run.send_log,
            workspace=path,
            scratch=self.work_dir,
            home=home,
        )
        cached = await xfer.restore_cache(job.cache)
        await sandbox.hand_over_async((path, home), user)
        steps = [_step_spec(s) for s in job.steps]
        env = dict(job.env)
        boxed = self._launcher(job, job_run, path, home, cancel)
        launcher: runner.Launcher = runner.Launcher()
        if boxed is not None:  # the job's image: its steps run in its container
            launcher = boxed
        elif confinement is not None:
            records = sandbox.StepRecords(self.work_dir)
            launcher = sandbox.HostLauncher(confinement, path, home, records)
        gpus = self._gpus(job.gpus)
        if boxed is None and gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        base_env = runner.base_environment(
            os.environ,
            home=str(home),
            user=user.name if user is not None else None,
            passed=self.pass_env,
        )
        try:
            result = await runner.run_steps(
                steps,
                cwd=path,
                on_log=job_run.send_log,
                on_step=job_run.send_step,
                env=env,
                base_env=base_env,
                secrets=secrets,
                mask=mask,
                timeout_s=job.timeout_s,
                cancel=cancel,
                kill_grace_s=self.kill_grace_s,
                launcher=launcher,
            )
        finally:
            if boxed is not None:  # also when this is cancelled: no container stays
                await boxed.close()
        if result.result != CANCELLED and not job_run.gone:  # also after a failure
            await xfer.upload_artifacts(job.artifacts)
            await metricsfile.send_metrics(xfer, job.metrics)
            await xfer.save_cache(job.cache, cached, result.result == SUCCEEDED)
        return FinishReport(
            result=result.result,
            exit_code=result.exit_code,
            failed_step=result.failed_step,
            reason=result.reason,
        )

    def _gpus(self, count: int) -> list[int]:
        """The indices of the GPUs a job needing ``count`` gets here."""
        have = len(self.hardware.gpus) if self.hardware is not None else 0
        return container.gpu_indices(count, have, os.environ.get("CUDA_VISIBLE_DEVICES"))

    def _launcher(
        self,
        job: JobPayload,
        job_run: _JobRun,
        path: Path,
        home: Path,
        cancel: asyncio.Event,
    ) -> container.ContainerLauncher | None:
        """The job's container, when it has an image (None: steps run on the host)."""
        if job.image is None:
            return None
        return container.ContainerLauncher(
            self.runtime if isinstance(self.runtime, container.Runtime) else None,
            job.image,
            name=container.container_name(self.agent_id, job_run.attempt_id),
            workspace=path,
            forward=[*job.env, *job.secrets],
            agent_id=self.agent_id,
            attempt=str(job_run.attempt_id),
            home=home,
            cache_paths=job.cache.paths if job.cache is not None else (),
            gpus=self._gpus(job.gpus),
            imds_url=self.imds_url,
            cancel=cancel,
        )


HOMES_DIR = ".homes"  # under the work dir: each workspace's HOME, by the same name


def _remove(*paths: Path) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


def _step_spec(step: StepPayload) -> runner.StepSpec:
    """A claimed job's step as the runner runs it."""
    return runner.StepSpec(
        index=step.index,
        title=step.title,
        run=step.run,
        env=dict(step.env),
        timeout_s=step.timeout_s,
        continue_on_error=step.continue_on_error,
    )


class _JobRun:
    """One attempt's reporting: log chunks with increasing seq, step states, heartbeats.
    Any answer with ``cancel: true`` (or a 401/403/409) sets the cancel event."""

    def __init__(
        self, client: AgentClient, attempt_id: int, token: str, cancel: asyncio.Event
    ) -> None:
        self.client = client
        self.attempt_id = attempt_id
        self.token = token
        self.cancel = cancel
        self.seq = 0
        self.gone = False
        self._log_lock = asyncio.Lock()  # chunks go one at a time, in seq order

    def _answer(self, cancel: bool) -> None:
        if cancel:
            self.cancel.set()

    def _lost(self, e: Exception) -> None:
        log.error("attempt %s: %s", self.attempt_id, e)
        if isinstance(e, AttemptGone):
            self.gone = True
            self.cancel.set()

    async def send_log(self, data: str) -> None:
        if self.gone or not data:
            return
        async with self._log_lock:  # the runner's output and the agent's own notes
            seq, self.seq = self.seq, self.seq + 1  # a lost chunk still uses its seq
            try:
                chunk = LogChunk(seq, data)
                self._answer(await self.client.log(self.attempt_id, self.token, chunk))
            except (AttemptGone, Unavailable, BadAnswer) as e:
                self._lost(e)

    async def send_step(self, index: int, state: str, exit_code: int | None) -> None:
        if self.gone:
            return
        try:
            report = StepReport(index=index, state=state, exit_code=exit_code)
            self._answer(await self.client.step(self.attempt_id, self.token, report))
        except (AttemptGone, Unavailable, BadAnswer) as e:
            self._lost(e)

    async def heartbeats(self, wait: float) -> None:
        """Keep one heartbeat in flight until cancelled (or the job is)."""
        backoff = 0.5
        while not self.gone:
            try:
                if await self.client.heartbeat(self.attempt_id, self.token, wait):
                    self.cancel.set()
                    return
                backoff = 0.5
            except AttemptGone as e:
                self._lost(e)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # network trouble: keep trying
                log.warning("heartbeat failed (%r); retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
