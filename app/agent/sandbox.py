"""Host steps in a box: what a step (without ``image:``) can reach on the agent's machine.

Three layers, each used when the machine allows it:

* **its own user**: an agent running as root runs steps as an unprivileged user
  (``--step-user``, ``ployd-job`` by default, created by the install and by the local
  executor), so nothing of root's (the agent's memory and ``/proc/<pid>/environ``, the
  server's data directory, ``/root``) is readable;
* **a sandbox** (bubblewrap, ``bwrap``): a mount namespace that holds, read-only, the
  machine's system directories (``/usr``, ``/etc``, ``/opt``...) and the directories on
  PATH that are not private, and, writable, the job's workspace and home: nothing else
  (not the agent's work directory with the other workspaces, not ``/root``, ``/home``,
  ``/run`` and its container sockets, nor the server's data directory, which ``--hide``
  also covers where it would be visible); a PID namespace (a step sees only its own
  processes), fresh ``/tmp`` and ``/dev/shm``; it dies with the agent
  (``--die-with-parent``), and its background processes end with its step;
* **its own environment**: built from nothing (``base_environment``), never the agent's.

Without bubblewrap (``--isolation none``, or ``auto`` on a machine without it) steps still
get their own user and environment, but see the machine's files as that user would.

``StepRecords`` keep the process group of each running host step in the work directory,
so that whoever comes after an agent that died (its restart, the local executor) kills
what it left running before the work directory is used again (``reap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.agent.runner import Launch, Launcher, StepSpec, base_environment

__all__ = ["base_environment"]  # re-exported: the steps' environment, from nothing

# The machine's directories a sandboxed step sees (read-only), when they exist.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Device nodes GPU jobs need inside the sandbox (bound when they exist).
DEVICE_GLOBS = ("nvidia*", "dri", "infiniband", "fuse", "kfd")
DEFAULT_STEP_USER = "ployd-job"
ISOLATION_MODES = ("auto", "sandbox", "none")
STEPS_DIR = ".steps"  # under the agent's work directory: one record per running step


class SandboxError(Exception):
    """This machine cannot confine steps as asked (no bubblewrap, unknown user...)."""


@dataclass(frozen=True)
class StepUser:
    """The unprivileged user host steps run as (only when the agent is root)."""

    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> StepUser:
        import pwd

        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SandboxError(
                f"no user {name!r} to run steps as: create it (useradd --system {name}) or "
                "pass another --step-user"
            ) from None
        if entry.pw_uid == 0:
            raise SandboxError(f"--step-user {name} is root: steps must run unprivileged")
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def popen_options(self) -> dict[str, object]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def ensure_step_user(name: str) -> StepUser:
    """The step user ``name``, created (a system user: no login, no home) when it does
    not exist yet and this process is root, as the agent's install does."""
    import subprocess

    try:
        return StepUser.lookup(name)
    except SandboxError:
        if os.geteuid() != 0:
            raise
    nologin = next(
        (p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)), "/bin/false"
    )
    for cmd in (
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", nologin, name],
        ["adduser", "-S", "-D", "-H", "-s", nologin, name],
    ):
        if shutil.which(cmd[0]) is None:
            continue
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise SandboxError(f"could not create the step user {name}: {done.stderr.strip()}")
        return StepUser.lookup(name)
    raise SandboxError(f"no user {name!r} to run steps as, and no useradd to create it")


def find_bwrap() -> str | None:
    """bubblewrap's path, if it is installed and can make namespaces here."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    import subprocess

    try:
        probe = subprocess.run(
            [path, "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


def _check_reachable(work_dir: Path, user: StepUser) -> None:
    """Without a sandbox, steps start in their workspace as the step user: every
    directory above the work dir must let that user through."""
    for d in [work_dir, *work_dir.parents]:
        try:
            st = d.stat()
        except FileNotFoundError:
            continue
        through = (
            st.st_mode & 0o001
            or (st.st_uid == user.uid and st.st_mode & 0o100)
            or (st.st_gid == user.gid and st.st_mode & 0o010)
        )
        if not through:
            raise SandboxError(
                f"the step user {user.name} cannot reach the work dir {work_dir}: {d} is "
                f"closed to it (mode {stat.filemode(st.st_mode)}); use a work dir such as "
                "/var/lib/ployd-agent/work, or install bubblewrap"
            )


def _under(path: str, dirs: Iterable[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


def _bind_if(flag: str, path: str) -> list[str]:
    return [flag, path, path] if os.path.exists(path) else []


@dataclass
class Confinement:
    """How this agent confines host steps (from its options; ``describe()`` for the log)."""

    bwrap: str | None = None
    user: StepUser | None = None
    hide: tuple[str, ...] = ()
    work_dir: Path = Path(".")
    setpriv: str | None = None

    @classmethod
    def configure(
        cls,
        isolation: str,
        work_dir: Path,
        *,
        step_user: str | None = None,
        hide: Sequence[str] = (),
    ) -> Confinement:
        """The confinement ``--isolation`` asks for, or SandboxError saying why not."""
        if isolation not in ISOLATION_MODES:
            raise SandboxError(f"--isolation must be one of {', '.join(ISOLATION_MODES)}")
        user = None
        if os.geteuid() == 0:
            user = ensure_step_user(step_user or DEFAULT_STEP_USER)
        elif step_user:
            raise SandboxError("--step-user needs the agent to run as root")
        bwrap = None
        if isolation != "none":
            bwrap = find_bwrap()
            if bwrap is None and isolation == "sandbox":
                raise SandboxError(
                    "--isolation sandbox: bubblewrap (bwrap) is not installed or cannot "
                    "create namespaces here (apt-get install bubblewrap)"
                )
        hidden = [str(Path(p).resolve()) for p in hide]
        work = Path(work_dir).resolve()
        if user is not None and bwrap is None:
            _check_reachable(work, user)
        return cls(
            bwrap=bwrap,
            user=user,
            hide=tuple(hidden),
            work_dir=work,
            setpriv=shutil.which("setpriv"),
        )

    def protects(self, path: Path) -> bool:
        """Whether host steps cannot read ``path``, a 0700 directory of the agent's user
        (where ``--state-dir`` keeps its credential): sandboxed steps see it empty (it is
        hidden), and steps of a root agent run as another user, who cannot enter it."""
        p = str(Path(path).resolve())
        if self.bwrap is not None and _under(p, self.hide):
            return True
        return self.user is not None

    def describe(self) -> str:
        who = f"as {self.user.name}" if self.user else f"as the agent's user (uid {os.geteuid()})"
        box = "in a bubblewrap sandbox" if self.bwrap else "without a sandbox (no bubblewrap)"
        return f"host steps run {who}, {box}"

    def path_dirs(self, path: str) -> list[str]:
        """The directories on the steps' PATH outside the system ones, bound read-only
        (a CUDA toolkit's, a tool's ``bin``), unless private: the agent's own home, its
        work dir, a hidden path, or a directory holding one of them."""
        # (Hidden files are masked where they are; hidden directories keep theirs out.)
        hidden_dirs = [p for p in self.hide if not os.path.isfile(p)]
        private = [str(self.work_dir), os.path.expanduser("~"), *hidden_dirs]
        dirs: list[str] = []
        for entry in path.split(":"):
            if not entry.startswith("/") or not os.path.isdir(entry):
                continue
            d = os.path.realpath(entry)
            if d in dirs or d == "/" or _under(d, SYSTEM_DIRS):
                continue
            if any(_under(d, [p]) or _under(p, [d]) for p in private):
                continue
            dirs.append(d)
        return dirs

    def wrap(self, argv: Sequence[str], workspace: str, home: str, path: str = "") -> list[str]:
        """``argv`` inside the sandbox: system dirs read-only, the job's workspace and home
        writable, the rest of the work dir, /run, /root, /home and the hidden paths empty."""
        if self.bwrap is None:
            return list(argv)
        cmd = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
        cmd += ["--unshare-uts", "--hostname", "ployd-step"]
        for d in SYSTEM_DIRS:
            cmd += _bind_if("--ro-bind", d)
        cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        dev = Path("/dev")
        for pattern in DEVICE_GLOBS:
            for node in sorted(dev.glob(pattern)):
                cmd += ["--dev-bind", str(node), str(node)]
        tools = self.path_dirs(path)
        # resolv.conf is often a link into /run: its target, read-only, and nothing else there.
        resolv = os.path.realpath("/etc/resolv.conf")
        if not resolv.startswith("/etc/"):
            cmd += _bind_if("--ro-bind", resolv)
        # The directories above the workspace and home: empty, and passable by the step
        # user (bwrap would make them root's, 0700), so that absolute paths work.
        made: set[str] = set()
        for top in (workspace, home, *tools):
            for parent in reversed(Path(top).parents):
                a = str(parent)
                if a == "/" or a in made or _under(a, SYSTEM_DIRS) or a in ("/tmp", "/dev"):
                    continue
                made.add(a)
                cmd += ["--perms", "0755", "--dir", a]
        for d in tools:
            cmd += ["--ro-bind", d, d]
        cmd += ["--bind", workspace, workspace, "--bind", home, home]
        # Last, over whatever mount would show them: hidden directories empty, hidden
        # files (a key file) empty too.
        for p in self.hide:
            if os.path.isdir(p):
                cmd += ["--tmpfs", p]
            elif os.path.isfile(p):
                cmd += ["--dev-bind", "/dev/null", p]  # (nodev binds refuse a device)
        cmd += ["--chdir", workspace, "--", *self._drop(argv)]
        return cmd

    def _drop(self, argv: Sequence[str]) -> list[str]:
        """Inside the sandbox (made by root, which can mount any workspace): become the
        step user, with no groups, no capabilities and no way to gain any."""
        if self.user is None:
            return list(argv)
        u = self.user
        if self.setpriv is not None:
            return [
                self.setpriv, f"--reuid={u.uid}", f"--regid={u.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv,
            ]  # fmt: skip
        drop = (
            f"import os,sys;os.setgroups([]);os.setresgid({u.gid},{u.gid},{u.gid});"
            f"os.setresuid({u.uid},{u.uid},{u.uid});os.execvp(sys.argv[1],sys.argv[1:])"
        )
        return [sys.executable, "-I", "-c", drop, *argv]

    def popen_options(self) -> dict[str, object]:
        """Without a sandbox, the step's process itself drops to the step user."""
        if self.user is None or self.bwrap is not None:
            return {}
        return self.user.popen_options()


class HostLauncher(Launcher):
    """Host steps as ``Confinement`` says, each recorded in ``StepRecords`` while it runs."""

    def __init__(
        self, confinement: Confinement, workspace: Path, home: Path, records: StepRecords
    ) -> None:
        super().__init__()
        self.confinement = confinement
        self.workspace = str(workspace)
        self.home = str(home)
        self.records = records

    def launch(self, step: StepSpec, env: Mapping[str, str], cwd: str) -> Launch:
        argv = self.confinement.wrap(
            (*self.shell, step.run), self.workspace, self.home, env.get("PATH", "")
        )
        return Launch(argv=argv, env=env, cwd=cwd, options=self.confinement.popen_options())

    def started(self, pid: int) -> None:
        self.records.add(pid)

    def ended(self, pid: int, *, lingering: bool) -> None:
        super().ended(pid, lingering=lingering)
        if not lingering:
            self.records.remove(pid)

    async def close(self) -> None:
        leftovers = list(self.leftovers)
        await super().close()
        for pid in leftovers:
            self.records.remove(pid)


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a process from a later one with the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()[19]


class StepRecords:
    """One file per running host step under ``WORK_DIR/.steps``: its process group and
    start time, removed when it ends; what is left after a crash is killed by ``reap``."""

    def __init__(self, work_dir: Path) -> None:
        self.dir = Path(work_dir) / STEPS_DIR

    def add(self, pgid: int) -> None:
        started = _start_time(pgid)
        if started is None:
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / str(pgid)).write_text(started)

    def remove(self, pgid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / str(pgid)).unlink()

    def reap(self) -> list[int]:
        """SIGKILL the process groups of steps an earlier agent left running here; the
        pids killed (only those whose leader is still the recorded process)."""
        killed: list[int] = []
        if not self.dir.is_dir():
            return killed
        for record in self.dir.iterdir():
            try:
                pgid = int(record.name)
                started = record.read_text().strip()
            except (ValueError, OSError):
                record.unlink(missing_ok=True)
                continue
            if _start_time(pgid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                    killed.append(pgid)
            record.unlink(missing_ok=True)
        return killed


def hand_over(paths: Iterable[Path], user: StepUser | None) -> None:
    """Make ``paths`` (the workspace and home, after git and the cache wrote them as the
    agent) the step user's, and private to it."""
    if user is None:
        return
    for top in paths:
        if not top.exists():
            continue
        os.chmod(top, 0o700)
        for root, dirs, files in os.walk(top):
            for name in [*dirs, *files, None]:
                p = os.path.join(root, name) if name is not None else root
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                if st.st_uid != user.uid or st.st_gid != user.gid:
                    os.lchown(p, user.uid, user.gid)


async def hand_over_async(paths: Iterable[Path], user: StepUser | None) -> None:
    if user is not None:
        await asyncio.to_thread(hand_over, list(paths), user)


def private_dir(path: Path, mode: int = 0o711) -> None:
    """Create ``path``; traversable but not listable by others (0711) by default."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform.startswith("linux"):
        os.chmod(path, mode)
