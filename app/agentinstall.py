"""``install.sh``: the script that makes any Linux machine with systemd and ``python3``
(3.9 or newer) a self-hosted PloyD agent, served at ``GET /agent/install.sh``::

    curl -fsSL https://PLOYD/agent/install.sh | sudo sh -s -- --token TOKEN

Pure: text in, text out. The script is ``data/install.sh`` (POSIX sh: it is piped to
``sh``) with this server's values above it: where the agent reaches the server, and the
version and SHA-256 of the agent file it downloads (and refuses unless they match).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from app.agentbuild import INSTALL_PATH, AgentPackage

BODY = Path(__file__).with_name("data") / "install.sh"
_URL = re.compile(r"^https?://[A-Za-z0-9._~:/-]+$")


def install_script(server_url: str, agent: AgentPackage) -> str:
    """install.sh for agents of the server at ``server_url``; ValueError when that URL
    cannot go into a systemd unit as it is."""
    server_url = server_url.rstrip("/")
    if not _URL.match(server_url):
        raise ValueError(f"server_url: {server_url[:80]!r} is not usable in install.sh")
    q = shlex.quote
    head = [
        "#!/bin/sh",
        "# PloyD self-hosted agent installer, from app.agentinstall.",
        f"PLOYD_SERVER_URL={q(server_url)}",
        f"PLOYD_AGENT_VERSION={q(agent.version)}",
        f"PLOYD_AGENT_SHA256={q(agent.sha256)}",
        f"PLOYD_AGENT_PATH={q(INSTALL_PATH)}",
    ]
    return "\n".join(head) + "\n" + BODY.read_text()
