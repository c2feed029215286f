"""A throwaway "machine" to run PloyD's shell scripts in for real: the EC2 user data and
install.sh. Both write every path under ``$PLOYD_ROOT`` and find every command on PATH,
so the machine is a directory with a ``bin/`` of stubs put first on PATH:

* ``systemctl``: records each call; ``start``/``restart UNIT`` runs the unit's
  ``ExecStart`` in the background with its ``EnvironmentFile``, as systemd would (in a
  session of its own, output to ``agent.log``, its pid in ``agent.pid``);
* ``shutdown``: records the call (the machine "retires");
* ``useradd``, ``adduser``, ``chown``: record the call (no user is created).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

SYSTEMCTL = r"""#!/bin/sh
echo "$*" >> "$PLOYD_ROOT/calls/systemctl"
case "$1" in
  start|restart) ;;
  *) exit 0 ;;
esac
unit=""
for a in "$@"; do unit="$a"; done
file="$PLOYD_ROOT/etc/systemd/system/$unit"
[ -f "$file" ] || { echo "systemctl stub: no unit $file" >&2; exit 5; }
envfile="$(sed -n 's/^EnvironmentFile=//p' "$file")"
cmd="$(sed -n 's/^ExecStart=//p' "$file")"
if [ -f "$PLOYD_ROOT/agent.pid" ]; then
  kill -TERM -- "-$(cat "$PLOYD_ROOT/agent.pid")" 2>/dev/null || true
fi
# shellcheck disable=SC2086 # ExecStart is split into words, as systemd does
setsid sh -c 'set -a; . "$1"; set +a; shift; exec "$@"' ployd-unit "$envfile" $cmd \
  >> "$PLOYD_ROOT/agent.log" 2>&1 < /dev/null &
echo "$!" > "$PLOYD_ROOT/agent.pid"
"""

RECORD = """#!/bin/sh
echo "$*" >> "$PLOYD_ROOT/calls/{name}"
"""


class Machine:
    """A directory that plays a machine for ``bootstrap``/``install`` scripts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root.parent / f"{root.name}-bin"  # outside the root: not the machine's
        self.root.mkdir(parents=True)
        (self.root / "calls").mkdir()
        self.bin.mkdir()
        stubs = {"systemctl": SYSTEMCTL}
        for name in ("shutdown", "useradd", "adduser", "chown"):
            stubs[name] = RECORD.format(name=name)
        for name, text in stubs.items():
            path = self.bin / name
            path.write_text(text)
            path.chmod(0o755)
        self.output = ""

    def env(self, path_first: Sequence[Path] = (), **extra: str) -> dict[str, str]:
        """The environment scripts run with: this machine's root, the stubs (after
        ``path_first``) first on PATH, no other PLOYD_ variable."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")}
        path = os.pathsep.join([*map(str, path_first), str(self.bin), os.environ["PATH"]])
        env.update(PLOYD_ROOT=str(self.root), PATH=path)
        env.update(extra)
        return env

    async def run(
        self,
        script: str,
        *args: str,
        shell: str = "bash",
        path_first: Sequence[Path] = (),
        **env: str,
    ) -> int:
        """Run ``script`` (its text) like cloud-init or ``curl ... | sh`` would; its exit
        code. Its output is kept in ``self.output``."""
        path = self.root.parent / f"{self.root.name}-script"
        path.write_text(script)
        proc = await asyncio.create_subprocess_exec(
            shell,
            str(path),
            *args,
            env=self.env(path_first, **env),
            cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        self.output = out.decode(errors="replace")
        assert proc.returncode is not None
        return proc.returncode

    def calls(self, command: str) -> list[str]:
        path = self.root / "calls" / command
        return path.read_text().splitlines() if path.exists() else []

    @property
    def agent_pid(self) -> int | None:
        path = self.root / "agent.pid"
        return int(path.read_text()) if path.exists() else None

    def agent_log(self) -> str:
        path = self.root / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def path(self, absolute: str) -> Path:
        """Where ``absolute`` (a path on the machine) is in this root."""
        return self.root / absolute.lstrip("/")

    def stop(self) -> None:
        """SIGTERM the agent's whole session (SIGKILL what remains on the next call)."""
        pid = self.agent_pid
        if pid is not None:
            for sig in (signal.SIGTERM, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)

    def kill(self) -> None:
        pid = self.agent_pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    async def stopped(self, deadline_s: float = 30.0) -> None:
        """Stop the agent and wait until its session is gone (SIGKILL at the deadline)."""
        self.stop()
        await self.exited(deadline_s)

    async def exited(self, deadline_s: float = 30.0) -> None:
        """Wait until the agent's session is gone (SIGKILL at the deadline)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while self.alive():
            if loop.time() > end:
                self.kill()
                break
            await asyncio.sleep(0.05)  # polling a process we do not parent (no wait())

    def alive(self) -> bool:
        pid = self.agent_pid
        if pid is None:
            return False
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return _group_has_live(pid)


def _group_has_live(pgid: int) -> bool:
    """Whether a process of group ``pgid`` runs (zombies waiting for init do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
