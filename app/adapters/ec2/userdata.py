"""The user data (a cloud-init bash script) that turns a fresh instance into a PloyD agent.

Pure: text in, text out. The script, run once as root by cloud-init at first boot:

1. installs git and python3 when missing (apt or dnf);
2. uses the agent baked into the AMI at ``/opt/ployd/venv`` when it imports, else creates
   that venv and ``pip install``\\ s ``package``;
3. writes the registration token to ``/etc/ployd/agent.env`` (root-only, 0600) for
   systemd's ``EnvironmentFile`` (never to a command line, where ``ps`` would show it);
4. starts ``ployd-agent.service``: ``python -m app.agent --server URL --agent-id ID
   --work-dir DIR`` (the agent reads ``PLOYD_AGENT_TOKEN`` from the environment);
5. shuts the machine down (``shutdown -h now``; the instance is launched with
   ``InstanceInitiatedShutdownBehavior=terminate``, so that terminates it) when the agent
   exits with a retire code, when it keeps crashing (systemd's start limit), or when this
   bootstrap fails: an instance never outlives its agent.

Nothing here runs ``set -x``: the token would end up in ``/var/log/cloud-init-output.log``.
User data stays readable from the instance metadata service by processes on the machine,
so the token must be single-use (the server exchanges it at registration).

``parse_registration`` reads (server_url, token, agent_id) back from a script: tests use it
to "boot" an instance moto launched, by running the real agent locally with those values.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

IMDS_URL = "http://169.254.169.254"

# Exit codes of ``python -m app.agent`` after which the machine retires itself:
# 0: the agent finished (``--once``, or told to stop); 2: the server refused its token
# (or its arguments were wrong), which no restart can fix. Other codes: systemd restarts
# the agent, and powers off after START_LIMIT_BURST failures in START_LIMIT_INTERVAL_S.
RETIRE_EXIT_CODES: tuple[int, ...] = (0, 2)
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 600

AGENT_VENV = "/opt/ployd/venv"
ENV_FILE = "/etc/ployd/agent.env"
RUNNER = "/usr/local/lib/ployd/run-agent"
UNIT = "ployd-agent.service"
MAX_USER_DATA_BYTES = 16384  # EC2's limit, before base64

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{8,4096}$")
_URL = re.compile(r"^https?://[^\s'\"\\]+$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_VARS = ("PLOYD_SERVER_URL", "PLOYD_AGENT_ID", "PLOYD_REGISTRATION_TOKEN")


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"{what}: {value[:80]!r} is not usable in user data")
    return value


def user_data(
    server_url: str,
    registration_token: str,
    agent_id: str,
    *,
    package: str = "ployd",
    work_dir: str = "/var/lib/ployd",
    retire_codes: Sequence[int] = RETIRE_EXIT_CODES,
) -> str:
    """The bootstrap script for one agent; raises ValueError on unusable values."""
    q = shlex.quote
    server_url = _check(server_url, _URL, "server_url")
    token = _check(registration_token, _TOKEN, "registration_token")
    agent_id = _check(agent_id, _AGENT_ID, "agent_id")
    work_dir = _check(work_dir, _PATH, "work_dir")
    if not package.strip() or any(c in package for c in "\n\r\0"):
        raise ValueError(f"package: {package!r} is not a pip requirement")
    codes = " ".join(str(int(c)) for c in retire_codes)
    agent_cmd = " ".join(
        [
            f"{AGENT_VENV}/bin/python",
            "-m",
            "app.agent",
            "--server",
            q(server_url),
            "--agent-id",
            q(agent_id),
            "--work-dir",
            q(work_dir),
            "--imds-url",  # watch for spot interruption notices
            IMDS_URL,
        ]
    )
    script = f"""#!/bin/bash
# PloyD agent bootstrap (cloud-init user data), from app.adapters.ec2.userdata.
PLOYD_SERVER_URL={q(server_url)}
PLOYD_AGENT_ID={q(agent_id)}
PLOYD_REGISTRATION_TOKEN={q(token)}
PLOYD_PACKAGE={q(package)}
PLOYD_WORK_DIR={q(work_dir)}
set -Eeuo pipefail
umask 077

log() {{ echo "ployd-bootstrap: $*" >&2; }}
retire() {{ log "$1; shutting down"; shutdown -h now; exit 1; }}
trap 'retire "bootstrap failed at line $LINENO"' ERR

install_packages() {{
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -yq "$@"
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -yq "$@"
  else
    retire "no apt-get or dnf to install $*"
  fi
}}

need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if command -v apt-get >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' 2>/dev/null
then
  need+=(python3-venv)
fi
if [ "${{#need[@]}}" -gt 0 ]; then install_packages "${{need[@]}}"; fi

if {AGENT_VENV}/bin/python -c 'import app.agent.agent' 2>/dev/null; then
  log "using the agent baked into the image at {AGENT_VENV}"
else
  log "installing $PLOYD_PACKAGE into {AGENT_VENV}"
  python3 -m venv {AGENT_VENV}
  {AGENT_VENV}/bin/pip install --quiet --disable-pip-version-check "$PLOYD_PACKAGE"
fi

install -d -m 0700 -o root -g root /etc/ployd
printf 'PLOYD_AGENT_TOKEN=%s\\n' "$PLOYD_REGISTRATION_TOKEN" > {ENV_FILE}
chmod 0600 {ENV_FILE}
unset PLOYD_REGISTRATION_TOKEN
install -d -m 0755 "$PLOYD_WORK_DIR"
install -d -m 0755 {RUNNER.rsplit("/", 1)[0]}

umask 022
cat > {RUNNER} <<'PLOYD_RUNNER'
#!/bin/bash
# Started by {UNIT}: the agent, then the machine retires when the agent says so.
{agent_cmd}
code=$?
for retire in {codes}; do
  if [ "$code" -eq "$retire" ]; then
    echo "ployd: agent exited $code: retiring this machine" >&2
    shutdown -h now
  fi
done
exit "$code"
PLOYD_RUNNER
chmod 0755 {RUNNER}

cat > /etc/systemd/system/{UNIT} <<'PLOYD_UNIT'
[Unit]
Description=PloyD agent
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec={START_LIMIT_INTERVAL_S}
StartLimitBurst={START_LIMIT_BURST}
StartLimitAction=poweroff

[Service]
Type=simple
EnvironmentFile={ENV_FILE}
ExecStart={RUNNER}
Restart=on-failure
RestartSec=10
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
PLOYD_UNIT

systemctl daemon-reload
systemctl enable {UNIT}
systemctl start --no-block {UNIT}
log "agent $PLOYD_AGENT_ID started"
"""
    if len(script.encode()) > MAX_USER_DATA_BYTES:
        raise ValueError(f"user data is {len(script.encode())} bytes; EC2 allows 16 KiB")
    return script


def parse_registration(user_data: str) -> tuple[str, str, str]:
    """(server_url, registration_token, agent_id) from a script ``user_data`` made.

    Accepts the script as text; raises ValueError when it is not one of ours.
    """
    found: dict[str, str] = {}
    for line in user_data.splitlines():
        name, eq, value = line.partition("=")
        if eq and name in _VARS and name not in found:
            words = shlex.split(value)
            if len(words) != 1:
                raise ValueError(f"user data: {name} is not a single word")
            found[name] = words[0]
    missing = [v for v in _VARS if v not in found]
    if missing:
        raise ValueError(f"not PloyD user data (no {', '.join(missing)})")
    return found["PLOYD_SERVER_URL"], found["PLOYD_REGISTRATION_TOKEN"], found["PLOYD_AGENT_ID"]
