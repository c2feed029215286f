"""The user data (a cloud-init bash script) that turns a fresh instance into a PloyD agent.

Pure: text in, text out. The script is ``bootstrap.sh`` beside this module, with this
machine's values above it. Run once as root by cloud-init at first boot, it:

1. checks the system's ``python3`` (3.9 or newer) and installs git from the
   distribution's own repositories when it is missing; no package index is contacted
   for the agent, ever;
2. uses the agent file baked into the image at ``AGENT_PATH`` when its SHA-256 is the
   one in the user data, else downloads it from the server (``agent_url``, this
   server's ``/agent/ployd-agent.pyz``) with curl or python3's urllib and refuses it
   unless its SHA-256 matches;
3. writes the registration token to ``/etc/ployd/agent.env`` (root-only, 0600) for
   systemd's ``EnvironmentFile`` (never to a command line, where ``ps`` would show it);
4. starts ``ployd-agent.service``: ``python3 -I AGENT_PATH --server URL --agent-id ID
   --work-dir DIR --imds-url IMDS [--expect-gpus COUNT:CLASS]`` (the agent reads
   ``PLOYD_AGENT_TOKEN`` from the environment). ``--expect-gpus`` (a GPU instance type:
   ``8:h100`` for a p5.48xlarge): before it registers, the agent checks that
   ``nvidia-smi`` sees that many GPUs of that class, and when it does not reports why
   (as in 5., with its still unused token) and exits ``NOT_READY_EXIT``: the machine
   retires, the server terminates it and the attempt is retried on another;
5. when any of that fails, reports why to the server (``POST
   /api/v1/agent/bootstrap-failed`` with the registration token) so the attempt the
   machine was started for says "machine i-... failed to start: ..." and is retried
   elsewhere, then shuts the machine down (``shutdown -h now``; the instance is
   launched with ``InstanceInitiatedShutdownBehavior=terminate``). The machine also
   retires when the agent exits with a retire code, or keeps crashing (systemd's start
   limit): an instance never outlives its agent.

Tests run the script for real: every path it writes is under ``$PLOYD_ROOT`` (unset on a
machine) and every command is found on ``PATH`` (stub ``systemctl`` and ``shutdown``);
``$PLOYD_IMDS_URL`` replaces the instance metadata service's address.

Nothing here runs ``set -x``: the token would end up in ``/var/log/cloud-init-output.log``.
User data stays readable from the instance metadata service by processes on the machine,
so the token must be single-use (the server exchanges it at registration).

``parse_registration`` reads (server_url, token, agent_id) back from a script.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from app.agentbuild import INSTALL_PATH

IMDS_URL = "http://169.254.169.254"

# Exit codes of the agent after which the machine retires itself:
# 0: the agent finished (``--once``, or told to stop); 2: the server refused its token
# (or its arguments were wrong), which no restart can fix. Other codes: systemd restarts
# the agent, and powers off after START_LIMIT_BURST failures in START_LIMIT_INTERVAL_S.
# 3: the machine is not what it should be (its GPUs: ``--expect-gpus``), said to the server.
NOT_READY_EXIT = 3
RETIRE_EXIT_CODES: tuple[int, ...] = (0, 2, NOT_READY_EXIT)
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 600

# Where the agent file lives on a machine; an AMI may bake it there (``ployd agent
# build``): the bootstrap uses it, without downloading, when its SHA-256 is the server's.
AGENT_PATH = INSTALL_PATH
ENV_FILE = "/etc/ployd/agent.env"
RUNNER = "/usr/local/lib/ployd/run-agent"
UNIT = "ployd-agent.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
MAX_USER_DATA_BYTES = 16384  # EC2's limit, before base64
BODY = Path(__file__).with_name("bootstrap.sh")

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{8,4096}$")
_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?&=%+@-]+$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXPECT_GPUS = re.compile(r"^([1-9][0-9]{0,2}:[a-z0-9][a-z0-9-]{0,39})?$")
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
    agent_url: str,
    agent_sha256: str,
    work_dir: str = "/var/lib/ployd",
    agent_path: str = AGENT_PATH,
    retire_codes: Sequence[int] = RETIRE_EXIT_CODES,
    expect_gpus: str = "",
) -> str:
    """The bootstrap script for one agent; raises ValueError on unusable values.
    ``expect_gpus``: ``COUNT:CLASS`` the machine's ``nvidia-smi`` must show ("" none)."""
    q = shlex.quote
    values = {
        "PLOYD_SERVER_URL": _check(server_url, _URL, "server_url"),
        "PLOYD_AGENT_ID": _check(agent_id, _AGENT_ID, "agent_id"),
        "PLOYD_REGISTRATION_TOKEN": _check(registration_token, _TOKEN, "registration_token"),
        "PLOYD_AGENT_URL": _check(agent_url, _URL, "agent_url"),
        "PLOYD_AGENT_SHA256": _check(agent_sha256, _SHA256, "agent_sha256"),
        "PLOYD_WORK_DIR": _check(work_dir, _PATH, "work_dir"),
        "PLOYD_AGENT_PATH": _check(agent_path, _PATH, "agent_path"),
        "PLOYD_EXPECT_GPUS": _check(expect_gpus, _EXPECT_GPUS, "expect_gpus"),
        "PLOYD_RETIRE_CODES": " ".join(str(int(c)) for c in retire_codes),
        "PLOYD_START_LIMIT_BURST": str(START_LIMIT_BURST),
        "PLOYD_START_LIMIT_INTERVAL": str(START_LIMIT_INTERVAL_S),
    }
    lines = [
        "#!/bin/bash",
        "# PloyD agent bootstrap (cloud-init user data), from app.adapters.ec2.userdata.",
        *(f"{name}={q(value)}" for name, value in values.items()),
    ]
    script = "\n".join(lines) + "\n" + BODY.read_text()
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
