"""Running a job's steps in its container image, with podman or docker.

``ContainerLauncher`` is the runner's ``Launcher`` for a job with ``image:``:

* ``start``: the image is pulled once per machine (none when it is there already; the
  log says which, with its size and the pull's time); a private registry is logged in
  to with the job's credentials, or for ECR with a token got through the machine's
  instance role (``app.agent.ecr``), into an auth file of the job's own in a private
  temporary directory, removed after the pull (never the machine's default auth file).
  Then one container is started for the whole job (what step 1 installs is there in
  step 2): the workspace mounted at the same path and as the working directory, the
  job's home mounted and ``HOME`` (its ``~/`` cache paths restored there),
  ``--shm-size``, ``--user`` and ``--entrypoint`` from the image's options, exactly the
  job's GPUs, a label naming the agent and the attempt. It is kept alive by
  ``sh -c 'read _'`` reading a pipe the agent holds: when the agent dies, however it
  dies, the pipe closes, the container's init exits and the kernel ends every process
  in it (``--rm`` removes it). Any trouble is a message: the first step fails with it.
* ``launch``: each step is ``exec``'d in the container, with bash (``--noprofile --norc
  -eo pipefail``) when the image has it, else ``sh -e``. The job's env and secrets
  travel by name only: the runtime client gets each value in its environment under a
  name of its own (``PLOYD_CTR_E_NAME``, which no runtime reads: a job's ``LD_PRELOAD``
  or ``CONTAINERS_CONF`` cannot change how podman runs) and the command line says
  ``-e PLOYD_CTR_E_NAME``; a small ``sh`` prelude in the container gives each its own
  name back. No value is on a command line or in the image.
* ``stop`` (timeout, cancellation): every process of the container but its init gets
  SIGTERM, then SIGKILL after the grace; if even that does not end the step, the
  container is removed and a fresh one serves any later step (the log says so).
* ``close``: the container is removed.

``cleanup`` removes the containers a killed agent left (by their label), at start.
GPU flags are data (``gpu_args``): docker ``--gpus '"device=0,1"'``, podman CDI
``--device nvidia.com/gpu=0 --device nvidia.com/gpu=1``.

Standard library only, Python 3.9 syntax: this module ships with the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.agent import runner
from app.agent.compat import ASYNC_TIMEOUT
from app.protocol import CONTAINER_RUNTIMES, ImagePayload, RegistryCredentials

log = logging.getLogger("ployd.agent.container")

RUNTIMES = tuple(r for r in CONTAINER_RUNTIMES if r)  # in the order they are looked for
RUNTIME_ENV = "PLOYD_CONTAINER_RUNTIME"  # podman, docker, or none
LABEL_AGENT = "ployd.agent"
LABEL_ATTEMPT = "ployd.attempt"
INFO_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 60.0  # an inspect, a login, a removal
START_TIMEOUT_S = 120.0  # from `run` to the container's first word
PULL_TIMEOUT_S = 3600.0
READY = "ployd-ready:"
# Keeps the container alive until its stdin (a pipe the agent holds) closes; first says
# which shell the steps get.
KEEPALIVE = (
    "if command -v bash >/dev/null 2>&1; then echo " + READY + "bash; "
    "else echo " + READY + "sh; fi; read _"
)
BASH = ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")
SH = ("sh", "-e", "-c")
ENV_PREFIX = "PLOYD_CTR_E_"
ENV_NAMES = "PLOYD_CTR_NAMES"
# In the container: give each passed variable its own name back, then run the step.
PRELUDE = (
    "for _n in $" + ENV_NAMES + '; do eval "export $_n=\\"\\$' + ENV_PREFIX + '$_n\\""; '
    'unset "' + ENV_PREFIX + '$_n"; done; unset _n ' + ENV_NAMES + '; exec "$@"'
)
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTAINER_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


# --- the runtime ----------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """A container runtime's client: ``name`` (podman or docker) and its executable.
    Each ``*_argv`` builds one command line, as data."""

    name: str
    exe: str

    def _global(self, auth_dir: str | None) -> list[str]:
        return ["--config", auth_dir] if auth_dir and self.name == "docker" else []

    def _authfile(self, auth_dir: str | None) -> list[str]:
        if auth_dir and self.name == "podman":
            return ["--authfile", os.path.join(auth_dir, "auth.json")]
        return []

    def size_argv(self, image: str) -> list[str]:
        return [self.exe, "image", "inspect", "--format", "{{.Size}}", image]

    def login_argv(self, registry: str, username: str, auth_dir: str) -> list[str]:
        return [
            self.exe,
            *self._global(auth_dir),
            "login",
            *self._authfile(auth_dir),
            "--username",
            username,
            "--password-stdin",
            registry,
        ]

    def pull_argv(self, image: str, auth_dir: str | None = None) -> list[str]:
        return [self.exe, *self._global(auth_dir), "pull", *self._authfile(auth_dir), image]

    def run_argv(self, spec: ContainerSpec) -> list[str]:
        argv = [self.exe, "run", "-i", "--rm", "--pull", "never", "--name", spec.name]
        for key, value in spec.labels.items():
            argv += ["--label", f"{key}={value}"]
        for src, dst in spec.mounts:
            argv += ["--mount", f"type=bind,source={src},destination={dst}"]
        argv += ["--workdir", spec.workdir]
        if spec.user is not None:
            argv += ["--user", spec.user]
        if spec.shm_size is not None:
            argv += ["--shm-size", spec.shm_size]
        if spec.entrypoint is not None:
            argv += ["--entrypoint", spec.entrypoint]
        argv += gpu_args(self.name, spec.gpus)
        return [*argv, spec.image, "sh", "-c", KEEPALIVE]

    def exec_argv(
        self, container: str, cwd: str, names: Sequence[str], shell: Sequence[str], script: str
    ) -> list[str]:
        argv = [self.exe, "exec", "--workdir", cwd, "-e", ENV_NAMES]
        for n in names:
            argv += ["-e", ENV_PREFIX + n]
        return [*argv, container, "sh", "-c", PRELUDE, "ployd-step", *shell, script]

    def signal_argv(self, container: str, sig: str) -> list[str]:
        """Signal every process in the container but its init (and the signaller)."""
        return [self.exe, "exec", container, "sh", "-c", f"kill -{sig} -1"]

    def list_argv(self, agent_id: str) -> list[str]:
        return [self.exe, "ps", "-a", "-q", "--filter", f"label={LABEL_AGENT}={agent_id}"]

    def remove_argv(self, containers: Sequence[str]) -> list[str]:
        return [self.exe, "rm", "-f", *containers]


def gpu_args(runtime: str, indices: Sequence[int]) -> list[str]:
    """The flags that give a container exactly these GPUs (none: no flag)."""
    if not indices:
        return []
    if runtime == "docker":
        return ["--gpus", '"device=' + ",".join(str(i) for i in indices) + '"']
    out: list[str] = []
    for i in indices:
        out += ["--device", f"nvidia.com/gpu={i}"]
    return out


def gpu_indices(count: int, machine_gpus: int, assigned: str | None = None) -> list[int]:
    """The GPUs a job that needs ``count`` gets: the first ``count`` of this agent's
    (``assigned``: the agent's own CUDA_VISIBLE_DEVICES, when it was given a subset;
    else all ``machine_gpus``). Fewer when there are fewer."""
    if count <= 0:
        return []
    pool = list(range(machine_gpus))
    if assigned is not None:
        parts = [p.strip() for p in assigned.split(",") if p.strip()]
        if all(p.isdigit() for p in parts):  # "" too: CUDA's "no GPUs"
            pool = [int(p) for p in parts]
    return pool[:count]


def detect_runtime(
    environ: Mapping[str, str] | None = None,
    *,
    timeout_s: float = INFO_TIMEOUT_S,
) -> Runtime | None:
    """The runtime this machine can run containers with: ``PLOYD_CONTAINER_RUNTIME``
    (podman, docker, or none), else podman, else docker; on the PATH and answering
    ``info`` (a docker client with no daemon does not). None when there is none."""
    env = os.environ if environ is None else environ
    choice = env.get(RUNTIME_ENV, "").strip().lower()
    if choice in ("none", "off", "no"):
        log.info("containers: off (%s=%s)", RUNTIME_ENV, choice)
        return None
    if choice and choice not in RUNTIMES:
        log.warning("%s=%s: not one of %s; no containers", RUNTIME_ENV, choice, ", ".join(RUNTIMES))
        return None
    for name in (choice,) if choice else RUNTIMES:
        exe = shutil.which(name, path=env.get("PATH"))
        if exe is None:
            continue
        try:
            proc = subprocess.run(
                [exe, "info", "--format", "{{.Host.Arch}}" if name == "podman" else "{{.ID}}"],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("containers: %s does not answer (%s)", name, e)
            continue
        if proc.returncode == 0:
            log.info("containers: %s (%s)", name, exe)
            return Runtime(name, exe)
        why = (proc.stderr or proc.stdout or "").strip().splitlines()
        log.info("containers: %s cannot run containers here (%s)", name, why[-1] if why else "?")
    return None


async def cleanup(runtime: Runtime, agent_id: str) -> list[str]:
    """Remove the containers labelled for ``agent_id`` (a killed agent's); their ids."""
    code, out, _ = await _command(runtime.list_argv(agent_id))
    ids = [line.strip() for line in out.splitlines() if line.strip()] if code == 0 else []
    if ids:
        log.warning("removing %d container(s) a previous agent %s left", len(ids), agent_id)
        await _command(runtime.remove_argv(ids))
    return ids


# --- images ---------------------------------------------------------------------------


def registry_of(image: str) -> str:
    """The registry an image name is pulled from (``docker.io`` when it names none)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def qualified(image: str) -> str:
    """``python:3.12`` -> ``docker.io/library/python:3.12`` (what docker does itself;
    podman asks a terminal which registry a short name means)."""
    if registry_of(image) != "docker.io" or image.startswith("docker.io/"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def ecr_region(registry: str) -> str | None:
    """The region of an ECR registry host (``123456789012.dkr.ecr.eu-west-1.amazonaws.com``)."""
    m = _ECR_HOST.match(registry)
    return m.group(2) if m else None


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(kept[-lines:]) or "no output"


async def _command(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    timeout_s: float = COMMAND_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run a runtime command; (exit code, stdout, stderr). 127: could not start, 124:
    timed out (killed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except OSError as e:
        return 127, "", str(e)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
    except ASYNC_TIMEOUT:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return 124, "", f"no answer within {timeout_s:.0f}s"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# --- the launcher ---------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerSpec:
    """What the job's container is started with (``Runtime.run_argv``)."""

    name: str
    image: str
    workdir: str
    mounts: tuple[tuple[str, str], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: str | None = None
    shm_size: str | None = None
    gpus: tuple[int, ...] = ()


class ImageError(Exception):
    """The image cannot be had or its container not started; the text says why."""


def container_name(*parts: object) -> str:
    """``ployd-<agent>-<attempt>``, in the characters a container name may hold."""
    text = "-".join(str(p) for p in ("ployd", *parts))
    return _CONTAINER_NAME_BAD.sub("_", text)[:200]


class ContainerLauncher(runner.Launcher):
    """Runs a job's steps in one container of its image (the module's docstring says
    how). ``forward``: the names of the job's env and secrets, passed into the
    container (each step's own env too); ``home``: where ``~/`` cache paths live."""

    def __init__(
        self,
        runtime: Runtime | None,
        image: ImagePayload,
        *,
        name: str,
        workspace: Path | str,
        forward: Iterable[str] = (),
        agent_id: str = "",
        attempt: str = "",
        home: Path | str | None = None,
        cache_paths: Sequence[str] = (),
        gpus: Sequence[int] = (),
        imds_url: str | None = None,
        ecr_endpoint: str | None = None,
        cancel: asyncio.Event | None = None,
        pull_timeout_s: float = PULL_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.image = image
        self.ref = (
            qualified(image.name)
            if runtime is not None and runtime.name == "podman"
            else image.name
        )
        self.name = name
        self.workspace = str(Path(workspace).absolute())
        self.forward = list(dict.fromkeys(forward))
        self.agent_id = agent_id
        self.attempt = attempt
        self.home = Path(home) if home is not None else Path(os.path.expanduser("~"))
        self.cache_paths = list(cache_paths)
        self.gpus = tuple(gpus)
        self.imds_url = imds_url
        self.ecr_endpoint = ecr_endpoint
        self.cancel = cancel
        self.pull_timeout_s = pull_timeout_s
        self.step_shell: tuple[str, ...] = BASH
        self.pulled = False  # whether start() pulled (False: the image was there)
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: list[str] = []
        self._drain: asyncio.Task[None] | None = None
        self._out: runner.LogStream | None = None
        self._set_home = False
        self._closed = False

    # -- start ---------------------------------------------------------------------------

    async def start(self, out: runner.LogStream) -> str | None:
        self._out = out
        if self.runtime is None:
            return (
                f"image: {self.image.name}: this machine has no container runtime "
                f"(podman or docker answering; {RUNTIME_ENV} chooses one)"
            )
        try:
            await self._ensure_image(out)
            await self._start_container(out)
        except ImageError as e:
            return f"image: {e}"
        return None

    def _say(self, text: str) -> None:
        if self._out is not None:
            self._out.write(text)

    async def _ensure_image(self, out: runner.LogStream) -> None:
        assert self.runtime is not None
        code, size, _ = await _command(self.runtime.size_argv(self.ref))
        if code == 0:
            out.write(f"image: {self.image.name} present ({human_size(_int(size))})\n")
            await out.flush()
            return
        out.write(f"image: pulling {self.image.name}\n")
        await out.flush()
        t0 = time.monotonic()
        creds = await self._credentials(out)
        auth_dir = tempfile.mkdtemp(prefix="ployd-auth-") if creds is not None else None
        try:
            if creds is not None and auth_dir is not None:
                registry = registry_of(self.ref)
                code, _, err = await _command(
                    self.runtime.login_argv(registry, creds.username, auth_dir),
                    stdin=creds.password.encode(),
                )
                if code != 0:
                    raise ImageError(f"could not log in to {registry}: {_tail(err)}")
            code, _, err = await self._cancellable(
                _command(self.runtime.pull_argv(self.ref, auth_dir), timeout_s=self.pull_timeout_s)
            )
        finally:
            if auth_dir is not None:
                shutil.rmtree(auth_dir, ignore_errors=True)
        if code != 0:
            raise ImageError(f"could not pull {self.image.name}: {_tail(err)}")
        self.pulled = True
        code, size, _ = await _command(self.runtime.size_argv(self.ref))
        took = time.monotonic() - t0
        out.write(f"image: pulled {self.image.name} ({human_size(_int(size))} in {took:.1f}s)\n")
        await out.flush()

    async def _cancellable(self, work: Awaitable[tuple[int, str, str]]) -> tuple[int, str, str]:
        """``work``, unless the job is cancelled first."""
        task = asyncio.ensure_future(work)
        if self.cancel is None:
            return await task
        stop = asyncio.ensure_future(self.cancel.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ImageError(f"{self.image.name}: cancelled while pulling")
        return task.result()

    async def _credentials(self, out: runner.LogStream) -> RegistryCredentials | None:
        if self.image.credentials is not None:
            return self.image.credentials
        region = ecr_region(registry_of(self.ref))
        if region is None:
            return None
        from app.agent import ecr

        try:
            creds = await ecr.login(region, imds_url=self.imds_url, endpoint=self.ecr_endpoint)
        except ecr.EcrError as e:
            raise ImageError(f"{self.image.name}: no ECR login: {e}") from None
        # Never printed: it goes to `login` on stdin, and no step gets it.
        out.write(f"image: ECR login for {registry_of(self.ref)} from the instance role\n")
        return creds

    def _mounts(self) -> tuple[tuple[str, str], ...]:
        # The workspace, and the job's home (HOME, as for host steps: kept beside the
        # workspace, where ``~/`` caches are restored), as GitHub's container jobs do.
        mounts = [(self.workspace, self.workspace)]
        if self.home.is_dir():
            mounts.append((str(self.home), str(self.home)))
            self._set_home = True
        for raw in self.cache_paths:
            if raw == "~" or raw.startswith("~/"):
                path = self.home / raw[2:] if raw != "~" else self.home
                self._set_home = True
            elif os.path.isabs(raw):
                path = Path(raw)
            else:
                continue  # in the workspace
            path = Path(os.path.normpath(path))
            if str(path).startswith(self.workspace + os.sep) or str(path) == self.workspace:
                continue
            path.mkdir(parents=True, exist_ok=True)
            mounts.append((str(path), str(path)))
        for src, _ in mounts:
            if "," in src:
                raise ImageError(f"cannot mount {src}: a path with a comma")
        return tuple(dict.fromkeys(mounts))

    def spec(self) -> ContainerSpec:
        o = self.image.options
        return ContainerSpec(
            name=self.name,
            image=self.ref,
            workdir=self.workspace,
            mounts=self._mounts(),
            labels={LABEL_AGENT: self.agent_id or "-", LABEL_ATTEMPT: self.attempt or "-"},
            user=o.get("user"),
            entrypoint=o.get("entrypoint"),
            shm_size=o.get("shm_size"),
            gpus=self.gpus,
        )

    async def _start_container(self, out: runner.LogStream) -> None:
        assert self.runtime is not None
        spec = self.spec()
        await _command(self.runtime.remove_argv([self.name]))  # a leftover of the same name
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.runtime.run_argv(spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise ImageError(f"could not start {self.runtime.exe}: {e}") from None
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self._drain = asyncio.ensure_future(self._keep_stderr(proc.stderr))
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except ASYNC_TIMEOUT:
            line = b""
        word = line.decode(errors="replace").strip()
        if not word.startswith(READY):
            with contextlib.suppress(*ASYNC_TIMEOUT):
                await asyncio.wait_for(asyncio.shield(self._drain), 5)
            await self._remove()
            raise ImageError(
                f"the container of {self.image.name} did not start: {_tail(''.join(self._stderr))}"
            )
        self.step_shell = BASH if word == READY + "bash" else SH
        gpus = f", GPUs {','.join(map(str, self.gpus))}" if self.gpus else ""
        out.write(
            f"image: container {self.name} started in {time.monotonic() - t0:.1f}s "
            f"({self.runtime.name}, {'bash' if self.step_shell is BASH else 'sh'}{gpus})\n"
        )
        await out.flush()

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            data = await stream.read(4096)
            if not data:
                return
            self._stderr.append(data.decode(errors="replace"))
            while sum(len(s) for s in self._stderr) > 8192:
                self._stderr.pop(0)

    # -- steps ---------------------------------------------------------------------------

    def launch(self, step: runner.StepSpec, env: Mapping[str, str], cwd: str) -> runner.Launch:
        assert self.runtime is not None
        names = [n for n in dict.fromkeys([*self.forward, *step.env]) if n in env]
        bad = [n for n in names if not _NAME_OK.match(n)]
        names = [n for n in names if _NAME_OK.match(n)]
        values = {n: env[n] for n in names}
        if self._set_home:
            values["HOME"] = str(self.home)
            names = [*dict.fromkeys([*names, "HOME"])]
        if bad:
            self._say(f"(not passed into the container, not a variable name: {', '.join(bad)})\n")
        client = {k: v for k, v in os.environ.items() if k not in runner.PRIVATE_ENV}
        client.update({ENV_PREFIX + n: v for n, v in values.items()})
        client[ENV_NAMES] = " ".join(names)
        argv = self.runtime.exec_argv(self.name, cwd, names, self.step_shell, step.run)
        return runner.Launch(argv=argv, env=client, cwd=cwd)

    async def stop(self, pid: int, exited: asyncio.Future[None], grace_s: float) -> None:
        """End the running step: SIGTERM to everything in the container but its init,
        SIGKILL after ``grace_s``; if the step still runs, the container is replaced."""
        assert self.runtime is not None
        for sig in ("TERM", "KILL"):
            await _command(self.runtime.signal_argv(self.name, sig))
            with contextlib.suppress(*ASYNC_TIMEOUT):
                await asyncio.wait_for(asyncio.shield(exited), grace_s)
            if exited.done():
                return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self._say(f"image: the step did not end; removing container {self.name}\n")
        await self._remove()
        await exited
        if self._out is None:
            return
        try:
            await self._start_container(self._out)
            self._say("image: a fresh container serves the later steps\n")
        except ImageError as e:
            self._say(f"image: {e}\n")

    async def _remove(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # the container's init reads EOF and exits
        if self.runtime is not None:
            await _command(self.runtime.remove_argv([self.name]))
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except ASYNC_TIMEOUT:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None

    async def close(self) -> None:
        await super().close()
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            await self._remove()


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0
