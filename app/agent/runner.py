"""Run a job's steps in a directory: the part shared by the agent and `ployd run`.

No HTTP here. Each step runs as ``bash --noprofile --norc -eo pipefail -c SCRIPT`` in its
own session (so its own process group), under its own timeout and the job's remaining
time. Output (stdout and stderr merged) goes through one ``LogStream`` per job: secrets
masked, flushed to an async sink at least every ``flush_interval`` seconds, at once when
the buffer is large, and at the end of every step. Step state changes go to a second
callback. A timeout or a cancellation kills the step's whole process group (SIGTERM, then
SIGKILL after a short grace).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.agent.compat import ASYNC_TIMEOUT
from app.agent.masking import MIN_SECRET_LEN as MIN_SECRET_LEN  # re-exported: masking moved
from app.agent.masking import Masker as Masker
from app.agent.masking import secret_forms as secret_forms
from app.protocol import (
    CANCELLED,
    FAILED,
    REASON_CANCELLED,
    RUNNING,
    SCRIPT_FAILURE,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    TIMEOUT,
)

LogSink = Callable[[str], Awaitable[None]]
StepSink = Callable[[int, str, "int | None"], Awaitable[None]]

# Never in a step's environment, whatever the agent was started with: its token.
PRIVATE_ENV = ("PLOYD_AGENT_TOKEN",)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class StepSpec:
    """One step as the runner needs it."""

    index: int
    title: str
    run: str
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    continue_on_error: bool = False


@dataclass(frozen=True)
class StepResult:
    index: int
    title: str
    state: str  # succeeded | failed | timed_out | cancelled | skipped
    exit_code: int | None
    duration_s: float


@dataclass(frozen=True)
class JobResult:
    result: str  # succeeded | failed | timed_out | cancelled
    reason: str | None  # script_failure | timeout | cancelled; None when succeeded
    failed_step: int | None
    exit_code: int | None
    steps: tuple[StepResult, ...]
    duration_s: float

    @property
    def succeeded(self) -> bool:
        return self.result == SUCCEEDED


def base_environment(
    machine: Mapping[str, str],
    *,
    home: str,
    user: str | None = None,
    passed: Iterable[str] = (),
) -> dict[str, str]:
    """A step's environment before the job's own: PATH (the machine's), HOME (the job's
    home), USER/LOGNAME, LANG, CI=true, and the variables named in ``passed`` (``--pass-env``:
    e.g. LD_LIBRARY_PATH on a CUDA machine, HTTPS_PROXY); nothing else of the agent's."""
    env = {
        "PATH": machine.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "LANG": machine.get("LANG") or "C.UTF-8",
        "CI": "true",
    }
    if user:
        env["USER"] = env["LOGNAME"] = user
    for name in passed:
        if name in machine and not name.startswith("PLOYD_"):
            env[name] = machine[name]
    return env



class LogStream:
    """A job's output: decoded, masked, buffered, flushed to ``sink`` in chunks."""

    def __init__(
        self,
        sink: LogSink,
        secrets: Iterable[str] = (),
        *,
        flush_interval: float = 0.25,
        max_buffer: int = 32 * 1024,
    ) -> None:
        self._sink = sink
        self._masker = Masker(secrets)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf: list[str] = []
        self._size = 0
        self._first_at: float | None = None  # when the oldest unflushed text came in
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._lock = asyncio.Lock()

    def due_in(self) -> float | None:
        """Seconds until the buffer must be flushed; None when empty."""
        if self._first_at is None:
            return None
        return max(0.0, self._first_at + self.flush_interval - time.monotonic())

    def write_bytes(self, data: bytes) -> None:
        self.write(self._decoder.decode(data))

    def write(self, text: str) -> None:
        text = self._masker.feed(text)
        if not text:
            return
        self._buf.append(text)
        self._size += len(text)
        if self._first_at is None:
            self._first_at = time.monotonic()

    @property
    def full(self) -> bool:
        return self._size >= self.max_buffer

    async def flush(self, *, final: bool = False) -> None:
        if final:
            self.write(self._decoder.decode(b"", final=True))
            rest = self._masker.finish()
            if rest:
                self._buf.append(rest)
        if not self._buf:
            return
        data = "".join(self._buf)
        self._buf, self._size, self._first_at = [], 0, None
        # Shielded: a cancelled caller must not lose a chunk half sent. Sends run in
        # the order they were started (tasks start FIFO, the lock is FIFO).
        await asyncio.shield(self._send(data))

    async def _send(self, data: str) -> None:
        async with self._lock:
            await self._sink(data)


# --- processes ------------------------------------------------------------------------


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _StepProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process itself exits. (``Process.wait()`` also waits for its pipes
    to close, which a backgrounded child can keep open forever.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def kill_group(pid: int, exited: asyncio.Future[None], grace_s: float) -> None:
    """SIGTERM process group ``pid``; SIGKILL it once its leader exited or ``grace_s``
    passed (members that ignored SIGTERM or outlived the leader go too)."""
    _killpg(pid, signal.SIGTERM)
    with contextlib.suppress(*ASYNC_TIMEOUT):
        await asyncio.wait_for(asyncio.shield(exited), grace_s)
    _killpg(pid, signal.SIGKILL)
    await exited


async def _pump(stream: asyncio.StreamReader, out: LogStream) -> None:
    """Copy ``stream`` into ``out`` until EOF, flushing when due or full."""
    while True:
        try:
            data = await asyncio.wait_for(stream.read(READ_SIZE), out.due_in())
        except ASYNC_TIMEOUT:
            await out.flush()
            continue
        if not data:
            return
        out.write_bytes(data)
        due = out.due_in()
        if out.full or (due is not None and due <= 0):
            await out.flush()


@dataclass(frozen=True)
class Launch:
    """The process that runs one step: what to exec, with which environment, where, and
    further ``subprocess`` arguments (``user``/``group`` to drop privileges)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    options: Mapping[str, Any] = field(default_factory=dict)


class Launcher:
    """How a job's steps become processes. This one runs each step with bash on the
    host, in its own process group; subclasses confine it (``app.agent.sandbox``) or run
    it in the job's container (``app.agent.container``).

    ``start`` runs once before the first step (an error message returned fails that step
    with it, e.g. an image that cannot be pulled); ``launch`` says how to start a step;
    ``stop`` ends a running step on timeout or cancellation; ``close`` runs at the end of
    the job and must leave nothing of it running.
    """

    shell = ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")

    def __init__(self) -> None:
        self.leftovers: list[int] = []  # process groups still alive after their step

    async def start(self, out: LogStream) -> str | None:
        return None

    def launch(self, step: StepSpec, env: Mapping[str, str], cwd: str) -> Launch:
        return Launch(argv=(*self.shell, step.run), env=env, cwd=cwd)

    def started(self, pid: int) -> None:
        """The step's process group ``pid`` is running."""

    def ended(self, pid: int, *, lingering: bool) -> None:
        """The step's leader exited; ``lingering``: members may still hold its output."""
        if lingering:
            self.leftovers.append(pid)

    async def stop(self, pid: int, exited: asyncio.Future[None], grace_s: float) -> None:
        await kill_group(pid, exited, grace_s)

    async def close(self) -> None:
        for pgid in self.leftovers:  # background processes do not outlive the job
            _killpg(pgid, signal.SIGKILL)
        self.leftovers.clear()


def _fmt_s(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m{s:02d}s"


def exit_code_of(returncode: int | None) -> int | None:
    """The shell's convention: killed by signal N -> 128 + N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


async def run_steps(
    steps: Sequence[StepSpec],
    *,
    cwd: str | os.PathLike[str],
    on_log: LogSink,
    on_step: StepSink | None = None,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    mask: Iterable[str] = (),
    timeout_s: float | None = None,
    cancel: asyncio.Event | None = None,
    launcher: Launcher | None = None,
    flush_interval: float = 0.25,
    kill_grace_s: float = 3.0,
    drain_s: float = 0.5,
) -> JobResult:
    """Run ``steps`` in order in ``cwd`` and say how the job went.

    ``env`` (the job's) and each step's env are laid over ``base_env`` (default:
    ``base_environment(os.environ)``: PATH, HOME, LANG, CI; nothing else of the caller's),
    less ``PRIVATE_ENV``; ``secrets`` are added as variables and masked
    in the output, and so are the values in ``mask`` (not exported: e.g. the token in
    the clone URL).
    ``timeout_s`` bounds the whole job; a step's own ``timeout_s`` bounds that step.
    Setting ``cancel`` kills the running step's process group and ends the job
    ``cancelled``. After a failure the remaining steps are reported ``skipped``.
    ``launcher`` turns steps into processes (default: bash on the host).
    """
    launcher = launcher or Launcher()
    secrets = dict(secrets or {})
    out = LogStream(on_log, [*secrets.values(), *mask], flush_interval=flush_interval)
    if base_env is None:
        base_env = base_environment(os.environ, home=os.environ.get("HOME") or os.fspath(cwd))
    job_env = dict(base_env)
    for name in PRIVATE_ENV:
        job_env.pop(name, None)
    job_env.update(env or {})
    job_env.update(secrets)
    cancel = cancel or asyncio.Event()
    started = time.monotonic()
    deadline = None if timeout_s is None else started + timeout_s

    async def report(index: int, state: str, code: int | None = None) -> None:
        if on_step is not None:
            await on_step(index, state, code)

    results: list[StepResult] = []
    result, reason, failed_step, failed_code = SUCCEEDED, None, None, None
    stop = False
    try:
        setup_error = await launcher.start(out)
    except Exception as e:  # the launcher's own trouble: a clear failed step, not a crash
        setup_error = f"{type(e).__name__}: {e}"
    for step in steps:
        if stop:
            results.append(StepResult(step.index, step.title, SKIPPED, None, 0.0))
            await report(step.index, SKIPPED)
            continue
        if cancel.is_set():
            state, code, dur, job_timeout = CANCELLED, None, 0.0, False
        elif setup_error is not None:
            await report(step.index, RUNNING)
            out.write(f"▶ {step.title}\n{setup_error.rstrip()}\n")
            state, code, dur, job_timeout = FAILED, None, 0.0, False
            setup_error = None
            out.write(_footer(step, state, code, dur, job_timeout))
            await out.flush(final=True)
        else:
            await report(step.index, RUNNING)
            out.write(f"▶ {step.title}\n")
            await out.flush()
            state, code, dur, job_timeout = await _run_one(
                step, cwd, job_env, out, deadline, cancel, kill_grace_s, drain_s, launcher
            )
            out.write(_footer(step, state, code, dur, job_timeout))
            await out.flush(final=True)
        results.append(StepResult(step.index, step.title, state, code, dur))
        await report(step.index, state, code)
        if state == SUCCEEDED:
            continue
        if state == CANCELLED:
            result, reason = CANCELLED, REASON_CANCELLED
        elif state == TIMED_OUT and (job_timeout or not step.continue_on_error):
            result, reason = TIMED_OUT, TIMEOUT
        elif state == FAILED and not step.continue_on_error:
            result, reason = FAILED, SCRIPT_FAILURE
        else:
            continue  # continue-on-error
        failed_step, failed_code, stop = step.index, code, True
    await launcher.close()
    await out.flush(final=True)
    return JobResult(
        result=result,
        reason=reason,
        failed_step=failed_step,
        exit_code=0 if result == SUCCEEDED else failed_code,
        steps=tuple(results),
        duration_s=time.monotonic() - started,
    )


def _footer(step: StepSpec, state: str, code: int | None, dur: float, job_timeout: bool) -> str:
    d = _fmt_s(dur)
    if state == SUCCEEDED:
        return f"✓ {step.title} ({d})\n"
    if state == FAILED:
        tail = " (continue-on-error)" if step.continue_on_error else ""
        return f"✗ {step.title} (exit {code}, {d}){tail}\n"
    if state == TIMED_OUT:
        what = "job timeout" if job_timeout else "step timeout"
        return f"✗ {step.title} (timed out: {what}, {d})\n"
    return f"✗ {step.title} (cancelled, {d})\n"


async def _run_one(
    step: StepSpec,
    cwd: str | os.PathLike[str],
    job_env: Mapping[str, str],
    out: LogStream,
    deadline: float | None,
    cancel: asyncio.Event,
    kill_grace_s: float,
    drain_s: float,
    launcher: Launcher,
) -> tuple[str, int | None, float, bool]:
    """Run one step; (state, exit code, duration, whether the job's timeout hit)."""
    t0 = time.monotonic()
    limit = step.timeout_s
    job_timeout = False
    if deadline is not None:
        left = deadline - t0
        if limit is None or left < limit:
            limit, job_timeout = max(0.0, left), True
    env = dict(job_env)
    env.update(step.env)
    loop = asyncio.get_running_loop()
    try:
        spec = launcher.launch(step, env, os.fspath(cwd))
        transport, protocol = await loop.subprocess_exec(
            lambda: _StepProtocol(loop),
            *spec.argv,
            cwd=spec.cwd,
            env=dict(spec.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            **spec.options,
        )
    except (OSError, ValueError) as e:
        out.write(f"could not start the step: {e}\n")
        return FAILED, None, time.monotonic() - t0, False
    pid = transport.get_pid()
    launcher.started(pid)
    assert protocol.stdout is not None
    reader = asyncio.create_task(_pump(protocol.stdout, out))
    cancelled = asyncio.create_task(cancel.wait())
    try:
        waitables: set[asyncio.Future[Any]] = {protocol.exited, cancelled}
        done, _ = await asyncio.wait(waitables, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if protocol.exited in done:
            code = exit_code_of(transport.get_returncode())
            state = SUCCEEDED if code == 0 else FAILED
        else:
            state = CANCELLED if cancelled in done else TIMED_OUT
            await launcher.stop(pid, protocol.exited, kill_grace_s)
            code = exit_code_of(transport.get_returncode())
    finally:
        cancelled.cancel()
        if not protocol.exited.done():  # we are being cancelled ourselves
            _killpg(pid, signal.SIGKILL)
    # Background children may keep the pipe open after the step ended: read what comes
    # within `drain_s`, then let go of the pipe (and kill them when the job ends).
    lingering = False
    try:
        await asyncio.wait_for(asyncio.shield(reader), drain_s)
    except ASYNC_TIMEOUT:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        out.write("(background processes of this step still hold its output; not captured)\n")
        lingering = True
    launcher.ended(pid, lingering=lingering)
    transport.close()
    return state, code, time.monotonic() - t0, job_timeout and state == TIMED_OUT
