"""Fixtures shared by the whole suite: databases (SQLite and PostgreSQL) and git repos."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_ENV = "PLOYD_TEST_POSTGRES_URL"


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        if os.environ.get("PLOYD_REQUIRE_POSTGRES"):
            pytest.fail(f"PLOYD_REQUIRE_POSTGRES is set but {POSTGRES_ENV} is not")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ployd.db'}"
        return
    from sqlalchemy import create_engine, text

    url = _postgres_url()
    schema = "t_" + uuid.uuid4().hex[:16]
    admin = create_engine(url)
    try:
        with admin.begin() as c:
            c.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as e:
        admin.dispose()
        if os.environ.get("PLOYD_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL at {url} is not reachable: {e}")
        pytest.skip(f"PostgreSQL at {url} is not reachable: {e}")
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    out = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)
    return out.stdout.decode().strip()


MakeRepo = Callable[[dict[str, str]], tuple[Path, str]]


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., tuple[Path, str]]:
    """``make_repo(files, path=None)`` -> (repo path, sha): a real git repository with
    ``files`` committed on branch main; calling it again with the same path adds a commit."""

    def make(files: dict[str, str], path: Path | None = None) -> tuple[Path, str]:
        repo = path or tmp_path / f"repo-{uuid.uuid4().hex[:8]}"
        if not (repo / ".git").exists():
            repo.mkdir(parents=True, exist_ok=True)
            git(repo, "init", "-q", "-b", "main")
        for name, text in files.items():
            f = repo / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "commit", "--allow-empty")
        return repo, git(repo, "rev-parse", "HEAD")

    return make


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, deadline_s: float = 5.0) -> bool:
    """A SIGKILLed orphan is reaped by init a moment later: poll with a deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if pid_gone(pid):
            return True
        time.sleep(0.01)
    return pid_gone(pid)


def bwrap_or_skip() -> None:
    """Skip a test of the sandbox where bubblewrap is not installed; fail instead where
    PLOYD_REQUIRE_SANDBOX is set (CI installs it)."""
    from app.agent.sandbox import find_bwrap

    if find_bwrap() is None:
        if os.environ.get("PLOYD_REQUIRE_SANDBOX"):
            pytest.fail("bubblewrap (bwrap) is required here (PLOYD_REQUIRE_SANDBOX)")
        pytest.skip("bubblewrap is not installed here")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A fresh directory every user can pass through (0711, under /tmp): a work dir that a
    step user can reach without a sandbox (pytest's tmp_path is closed to other users)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ployd-open-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def host_pids(marker: str) -> list[int]:
    """Live processes (not zombies) whose command line contains ``marker``: how a test
    finds a sandboxed step's processes, whose own ``$!`` is a pid of their namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_no_process(marker: str, deadline_s: float = 5.0) -> bool:
    """True once no live process's command line holds ``marker`` (SIGKILLed processes are
    reaped a moment later: polled, with a deadline)."""
    end = time.monotonic() + deadline_s
    while host_pids(marker) and time.monotonic() < end:
        time.sleep(0.01)
    return not host_pids(marker)


@pytest.fixture
def wait_gone() -> Callable[..., bool]:
    """``wait_gone(pid, deadline_s=5.0)``: True once the process is gone (by the deadline)."""
    return _wait_gone


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto in server mode on 127.0.0.1 (a random free port), for the whole session: its
    endpoint URL. Clients reach it through ``endpoint_url`` like a real AWS endpoint, with
    dummy keys, so nothing can talk to real AWS. State is shared by every test of the
    session: use your own VPC, region or tags, and terminate what you launch."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


# --- containers (podman) --------------------------------------------------------------

REQUIRE_CONTAINERS = "PLOYD_REQUIRE_CONTAINERS"
TEST_IMAGE = "localhost/ployd-test:1"  # busybox and a marker file
TEST_BASH_IMAGE = "localhost/ployd-test-bash:1"  # the same, with bash
IMAGE_MARKER = "marker-only-in-image"
# This sandbox refuses crun's rlimit and cgroup setup: runc, with no default ulimits.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n'


@dataclass(frozen=True)
class Podman:
    """Images made here for the container tests, and podman set up to run them."""

    exe: str
    conf_dir: Path
    rootfs_tar: Path  # the busybox image's root file system, for a registry to serve

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def exists(self, container: str) -> bool:
        return self.run("container", "exists", container, check=False).returncode == 0


def _no_containers(why: str) -> None:
    if os.environ.get(REQUIRE_CONTAINERS):
        pytest.fail(f"{REQUIRE_CONTAINERS} is set but {why}")
    pytest.skip(why)


def _rootfs(root: Path, busybox: str, *, bash: bool) -> None:
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for cmd in ("sh", "echo", "cat", "ls", "env", "id", "kill", "sleep", "ps", "pwd", "grep",
                "mkdir", "rm", "touch", "true", "false", "wc", "head", "tr", "date"):
        (root / "bin" / cmd).symlink_to("busybox")
    (root / "tmp").mkdir()
    (root / "IMAGE_MARKER").write_text(IMAGE_MARKER + "\n")
    if bash:  # /bin/bash and the libraries it links
        real = Path(os.path.realpath(shutil.which("bash") or "/bin/bash"))
        (root / "bin" / "bash").unlink(missing_ok=True)
        shutil.copy2(real, root / "bin" / "bash")
        out = subprocess.run(["ldd", str(real)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
            if lib.startswith("/"):
                dest = root / lib.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(lib, dest)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman, set up as this sandbox needs (``CONTAINERS_CONF`` in the environment for
    the session: agents started as processes inherit it), with ``TEST_IMAGE`` and
    ``TEST_BASH_IMAGE`` imported from root file systems made of Debian's busybox-static.
    Skips when podman is not installed (fails instead under ``PLOYD_REQUIRE_CONTAINERS``)."""
    exe = shutil.which("podman")
    if exe is None:
        _no_containers("podman is not installed (Debian: apt-get install podman runc)")
    busybox = shutil.which("busybox")
    if busybox is None:
        _no_containers("busybox is not installed (Debian: apt-get install busybox-static)")
    assert exe is not None and busybox is not None
    base = tmp_path_factory.mktemp("podman")
    conf = base / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    saved = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)
    try:
        tars: dict[str, Path] = {}
        for image, bash in ((TEST_IMAGE, False), (TEST_BASH_IMAGE, True)):
            root = base / f"root-{bash}"
            _rootfs(root, busybox, bash=bash)
            tar = base / f"rootfs-{bash}.tar"
            subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
            done = subprocess.run(
                [exe, "import", "-q", str(tar), image], capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0:
                _no_containers(f"podman cannot import an image here: {done.stderr.strip()}")
            tars[image] = tar
        world = Podman(exe=exe, conf_dir=base, rootfs_tar=tars[TEST_IMAGE])
        check = world.run("run", "--rm", TEST_IMAGE, "cat", "/IMAGE_MARKER", check=False)
        if IMAGE_MARKER not in check.stdout:
            pytest.fail(f"podman cannot run a container here: {check.stderr.strip()}")
        yield world
    finally:
        if saved is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = saved
