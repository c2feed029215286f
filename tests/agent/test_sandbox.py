"""app.agent.sandbox: the steps' environment from nothing, the bubblewrap sandbox (run for
real), the step user, and the records that let a dead agent's steps be killed."""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest

from app.agent import runner, sandbox
from app.agent.sandbox import Confinement, SandboxError, StepRecords
from tests.conftest import bwrap_or_skip


def test_the_base_environment_is_built_from_nothing() -> None:
    machine = {
        "PATH": "/opt/cuda/bin:/usr/bin", "LANG": "en_US.UTF-8", "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "x" * 40, "PLOYD_ADMIN_TOKEN": "t", "LD_LIBRARY_PATH": "/l",
        "PLOYD_SECRET_KEY": "k",
    }
    env = runner.base_environment(machine, home="/w/.homes/r", user="ployd-job",
                                  passed=("LD_LIBRARY_PATH", "PLOYD_SECRET_KEY", "UNSET"))
    assert env == {"PATH": "/opt/cuda/bin:/usr/bin", "HOME": "/w/.homes/r",
                   "LANG": "en_US.UTF-8", "CI": "true", "USER": "ployd-job",
                   "LOGNAME": "ployd-job", "LD_LIBRARY_PATH": "/l"}
    assert runner.base_environment({}, home="/h")["PATH"] == runner.DEFAULT_PATH


def test_configure_refuses_what_the_machine_cannot_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SandboxError, match="one of auto, sandbox, none"):
        Confinement.configure("strict", tmp_path)
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        Confinement.configure("sandbox", tmp_path)
    if os.geteuid() == 0:  # pytest's tmp_path is closed to other users (0700 above it)
        with pytest.raises(SandboxError, match="cannot reach the work dir"):
            Confinement.configure("none", tmp_path / "w")
    else:
        with pytest.raises(SandboxError, match="needs the agent to run as root"):
            Confinement.configure("none", tmp_path, step_user="nobody")


def test_the_sandbox_command_line(tmp_path: Path) -> None:
    work = tmp_path / "work"
    c = Confinement(bwrap="/usr/bin/bwrap", hide=(str(tmp_path / "data"),), work_dir=work)
    (tmp_path / "data").mkdir()
    tools = tmp_path / "tools-bin"
    tools.mkdir()
    ws, home = str(work / "repo"), str(work / ".homes" / "repo")
    path = f"{tools}:{work}/bin:{Path.home()}/bin:/usr/bin"
    argv = c.wrap(["bash", "-c", "true"], ws, home, path)
    assert argv[0] == "/usr/bin/bwrap" and argv[-3:] == ["bash", "-c", "true"]
    pairs = list(itertools.pairwise(argv))
    assert ("--bind", ws) in pairs and ("--bind", home) in pairs
    assert ("--ro-bind", str(tools)) in pairs  # PATH's tool dir, read-only
    assert not any(a == "--bind" and b.startswith(str(work)) and b not in (ws, home)
                   for a, b in pairs)
    assert not [b for a, b in pairs if a == "--ro-bind" and b.startswith(str(Path.home()))]
    assert ("--tmpfs", str(tmp_path / "data")) in pairs
    for flag in ("--unshare-pid", "--die-with-parent", "--unshare-ipc"):
        assert flag in argv
    assert ("--chdir", ws) in pairs


def _sh(cmd: str) -> runner.StepSpec:
    return runner.StepSpec(0, "step", cmd)


async def _run(c: Confinement, work: Path, key: str, script: str) -> tuple[str, str]:
    ws, home = work / key, work / ".homes" / key
    sandbox.private_dir(work)
    sandbox.private_dir(home.parent)
    ws.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    await sandbox.hand_over_async((ws, home), c.user)
    out: list[str] = []

    async def log(text: str) -> None:
        out.append(text)

    env = runner.base_environment(os.environ, home=str(home),
                                  user=c.user.name if c.user else None)
    launcher = sandbox.HostLauncher(c, ws, home, StepRecords(work))
    result = await runner.run_steps([_sh(script)], cwd=ws, on_log=log, base_env=env,
                                    launcher=launcher)
    return result.result, "".join(out)


async def test_a_sandboxed_step_sees_its_workspace_and_home_only(
    tmp_path: Path,
) -> None:
    bwrap_or_skip()
    work = tmp_path / "work"
    c = Confinement.configure("sandbox", work, hide=[str(tmp_path / "data")])
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "data" / "secret_key").write_text("server-key")
    state, text = await _run(c, work, "other", "echo other-secret > mine.txt")
    assert state == "succeeded", text
    script = (
        f"echo made > here.txt && cat here.txt; echo home=$HOME; touch $HOME/h && echo home-ok;"
        f" cat {work}/other/mine.txt || echo no-other;"
        f" cat {tmp_path}/data/secret_key || echo no-data;"
        f" touch /etc/x 2>/dev/null || echo ro-etc; ls /proc | grep -c '^[0-9]' ; id -u"
    )
    state, text = await _run(c, work, "repo", script)
    assert state == "succeeded", text
    lines = text.splitlines()
    assert "made" in lines and f"home={work}/.homes/repo" in lines and "home-ok" in lines
    assert "no-other" in lines and "no-data" in lines and "ro-etc" in lines
    assert "other-secret" not in text and "server-key" not in text
    procs = int(lines[lines.index("ro-etc") + 1])
    assert procs < 8  # its own few processes, not the machine's
    uid = int(lines[lines.index("ro-etc") + 2])
    if os.geteuid() == 0:
        assert uid == pwd.getpwnam("ployd-job").pw_uid
        assert (work / "repo" / "here.txt").stat().st_uid == uid
    else:
        assert uid == os.geteuid()


async def test_a_step_user_without_a_sandbox(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    work = open_dir / "work"
    c = Confinement.configure("none", work)
    assert c.bwrap is None and c.user is not None
    state, text = await _run(c, work, "repo", "id -u; cat /proc/1/environ || echo no-init")
    assert state == "succeeded", text
    assert str(c.user.uid) in text.splitlines() and "no-init" in text


def test_records_kill_what_a_dead_agent_left_and_nothing_else(tmp_path: Path) -> None:
    records = StepRecords(tmp_path)
    live = subprocess.Popen(["sleep", "300"], start_new_session=True)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        records.add(live.pid)
        records.add(other.pid)
        (records.dir / str(other.pid)).write_text("1")  # a recycled pid: another start time
        (records.dir / "junk").write_text("x")
        assert records.reap() == [live.pid]
        assert live.wait(10) == -signal.SIGKILL
        assert other.poll() is None  # not the process that was recorded: left alone
        assert list(records.dir.iterdir()) == []
    finally:
        for p in (live, other):
            p.kill()
            p.wait()


async def test_the_host_launcher_records_a_running_step(tmp_path: Path) -> None:
    records = StepRecords(tmp_path / "w")
    launcher = sandbox.HostLauncher(Confinement(work_dir=tmp_path), tmp_path, tmp_path, records)
    seen: list[list[str]] = []
    cancel = asyncio.Event()

    async def log(text: str) -> None:
        if "ready" in text and not seen:  # the step is running: recorded, then stopped
            seen.append(sorted(p.name for p in records.dir.iterdir()))
            cancel.set()

    result = await runner.run_steps([_sh("echo ready; exec sleep 300")], cwd=tmp_path,
                                    on_log=log, launcher=launcher, flush_interval=0,
                                    cancel=cancel, kill_grace_s=1)
    assert result.result == "cancelled"
    assert seen and len(seen[0]) == 1
    assert list(records.dir.iterdir()) == []  # and gone after


async def test_a_hidden_file_in_a_visible_directory_reads_empty(tmp_path: Path) -> None:
    """A key file beside the tools a step may use (a directory on its PATH, bound
    read-only) is hidden: the step sees an empty file, the other tools stay."""
    bwrap_or_skip()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "tool").write_text("#!/bin/sh\necho tool-ran\n")
    (tools / "tool").chmod(0o755)
    key = tools / "app-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nsecret-key-body\n")
    key.chmod(0o644)
    work = tmp_path / "work"
    c = Confinement.configure("sandbox", work, hide=[str(key)])
    argv = c.wrap(["true"], "/w", "/h")
    assert ("--dev-bind", "/dev/null", str(key)) in zip(argv, argv[1:], argv[2:], strict=False)
    ws, home = work / "repo", work / ".homes" / "repo"
    for d in (ws, home):
        d.mkdir(parents=True)
    await sandbox.hand_over_async((ws, home), c.user)
    out: list[str] = []

    async def log(text: str) -> None:
        out.append(text)

    env = runner.base_environment({"PATH": f"{tools}:/usr/bin:/bin"}, home=str(home))
    result = await runner.run_steps(
        [_sh(f"tool; wc -c < {key}; cat {key}")], cwd=ws, on_log=log, base_env=env,
        launcher=sandbox.HostLauncher(c, ws, home, StepRecords(work)))
    text = "".join(out)
    assert result.succeeded, text
    assert "tool-ran" in text and "\n0\n" in text and "secret-key-body" not in text
