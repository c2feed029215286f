"""install.sh executed for real, as `curl -fsSL URL/agent/install.sh | sh -s -- ...`, in a
throwaway root with ``useradd``, ``chown`` and ``systemctl`` stubbed: it installs the
agent file it verified, the user, a root-only token file and the unit, and the agent it
starts claims and runs a job."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Harness
from tests.e2e.machine import Machine

JOB = "version: 1\njobs:\n  t:\n    steps: [{run: 'echo self-hosted-$((6*7))'}]\n"
AGENT = "/opt/ployd/ployd-agent.pyz"
ENV_FILE = "/etc/ployd/agent.env"
UNIT = "/etc/systemd/system/ployd-agent.service"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_install_sh_installs_and_starts_a_self_hosted_agent(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    async with serve(agents=0) as h:
        h: Harness
        agent = h.server.services.agent
        token = h.server.services.pools.create_token("lab", ["local:local"]).token
        m = Machine(tmp_path / "lab-box")
        pipe = (
            f"curl -fsSL {h.url}/agent/install.sh | "
            f"sh -s -- --token {token} --name lab-1 --labels rack=3,gpu=none\n"
        )
        try:
            assert await m.run(pipe, shell="sh") == 0, m.output
            assert f"agent {agent.version} installed at {AGENT} (SHA-256 verified)" in m.output
            installed = m.path(AGENT)
            assert hashlib.sha256(installed.read_bytes()).hexdigest() == agent.sha256
            assert mode(installed) == 0o644
            assert m.calls("useradd") == [
                "--system --user-group --home-dir /var/lib/ployd --shell "
                f"{_nologin()} --comment PloyD agent ployd"
            ]
            assert m.calls("chown") == [f"-R ployd: {m.path('/var/lib/ployd')}"]
            env_file = m.path(ENV_FILE)
            assert mode(env_file) == 0o600 and mode(env_file.parent) == 0o700
            assert env_file.read_text() == (
                f"PLOYD_AGENT_TOKEN={token}\nPLOYD_AGENT_LABELS=rack=3,gpu=none\n"
            )
            unit = m.path(UNIT).read_text()
            assert mode(m.path(UNIT)) == 0o644
            assert "\nUser=ployd\nGroup=ployd\n" in unit
            # a refused token is not retried forever; a stop waits for the job's grace
            assert "\nRestartPreventExitStatus=2\n" in unit and "\nTimeoutStopSec=630\n" in unit
            assert f"\nEnvironmentFile={env_file}\n" in unit
            exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
            python, *args = exec_start.removeprefix("ExecStart=").split()
            assert Path(python).is_absolute()
            assert args == [
                "-I", str(installed), "--server", h.url, "--agent-id", "lab-1",
                "--work-dir", str(m.path("/var/lib/ployd/work")),
                "--state-dir", str(m.path("/var/lib/ployd/state")),
            ]
            assert mode(m.path("/var/lib/ployd/state")) == 0o700
            assert token not in unit  # the token is only in the root-only file
            assert m.calls("systemctl") == [
                "daemon-reload", "enable ployd-agent.service", "restart ployd-agent.service"
            ]
            repo, _ = make_repo({".ployd.yml": JOB})
            pid = await h.start(repo)
            assert (await h.finished(pid)).state == "succeeded", m.agent_log()
            assert "self-hosted-42" in h.log(pid, "t")
            assert h.job(pid, "t").attempts[0].agent_id == "lab-1"
            saved = m.path("/var/lib/ployd/state/credential")
            assert mode(saved) == 0o600 and token not in saved.read_text()

            # A reboot: the agent dies, systemd starts it again with the used-up token in
            # its environment file; it comes back with its saved credential.
            m.kill()
            await m.exited()
            assert await m.run("systemctl restart ployd-agent.service\n", shell="sh") == 0
            again = await h.start(repo)
            assert (await h.finished(again)).state == "succeeded", m.agent_log()
            assert h.job(again, "t").attempts[0].agent_id == "lab-1"
            assert "refused" not in m.agent_log()
        finally:
            await m.stopped()


def _nologin() -> str:
    for path in ("/usr/sbin/nologin", "/sbin/nologin"):
        if Path(path).exists():
            return path
    return "/bin/false"


async def test_install_sh_refuses_an_agent_whose_sha256_differs(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    async with serve(agents=0) as h:
        h: Harness
        agent = h.server.services.agent
        status, script = await h.get("/agent/install.sh")
        assert status == 200
        wrong = "0" * 64
        script = script.replace(f"PLOYD_AGENT_SHA256={agent.sha256}", f"PLOYD_AGENT_SHA256={wrong}")
        m = Machine(tmp_path / "box")
        assert await m.run(script, "--token", "some-token-123", shell="sh") == 1
        assert (
            f"the agent downloaded from {h.url}/agent/ployd-agent.pyz has SHA-256 "
            f"{agent.sha256}, not {wrong}: refused"
        ) in m.output
        assert not m.path(AGENT).exists() and not m.path(AGENT + ".part").exists()
        assert m.calls("useradd") == [] and m.calls("systemctl") == []
        assert not m.path(ENV_FILE).exists()


async def test_install_sh_needs_a_token_and_says_how(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    async with serve(agents=0) as h:
        h: Harness
        _, script = await h.get("/agent/install.sh")
        m = Machine(tmp_path / "box")
        assert await m.run(script, shell="sh") == 1
        assert "--token is required" in m.output and "usage:" in m.output
        assert await m.run(script, "--token", "x y", shell="sh") == 1
        assert "the token has characters no PloyD token has" in m.output
