"""The agent as one file: ``ployd-agent-VERSION.pyz``, a zipapp of ``app/agent`` and
``app/protocol.py`` that any ``python3`` of 3.9 or newer runs with nothing installed.

Built by ``ployd agent build`` and by ``ployd serve`` (once, at start: milliseconds), which
serves it at ``GET /agent/ployd-agent.pyz``, gives its SHA-256 to EC2 machines' user data
and to ``install.sh``, and tells agents of another version to fetch it.

The archive is deterministic: the same sources give the same bytes (entries sorted, fixed
timestamps and modes, one compression level), so its SHA-256 names a version of the
agent. It holds:

* ``__main__.py``: runs ``app.agent.__main__.main`` and tells it which file it runs
  from (the agent re-executes a newer one in its place when the server says so);
* ``app/__init__.py``: a minimal one that only holds ``__version__``;
* ``app/protocol.py`` and every ``.py`` under ``app/agent``.

The agent itself knows nothing of this packaging (``app/agent`` stays on the standard
library, see tests/test_architecture.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import app

SHEBANG = b"#!/usr/bin/env python3\n"
NAME = "ployd-agent.pyz"  # the name the server serves it under
INSTALL_PATH = "/opt/ployd/ployd-agent.pyz"  # where machines keep it (AMIs may bake it there)
# 1980-01-01, the earliest time a zip entry can hold: the same for every build.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_LEVEL = 9
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

MAIN = '''\
"""PloyD agent {version}, packaged by app.agentbuild: `python3 ployd-agent.pyz --help`."""
import os
import sys

if sys.version_info < (3, 9):
    sys.exit("the PloyD agent needs Python 3.9 or newer; this is " + sys.version.split()[0])

from app.agent.__main__ import main

sys.exit(main(sys.argv[1:], package=os.path.abspath(sys.argv[0])))
'''

INIT = '''\
"""PloyD's agent, as packaged in ployd-agent-{version}.pyz (app.agentbuild)."""

__version__ = "{version}"
'''


def source_root() -> Path:
    """The directory holding the ``app`` package the server runs from."""
    return Path(app.__file__).resolve().parent.parent


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise ValueError(f"not a usable agent version: {version!r}")
    return version


def file_name(version: str) -> str:
    return f"ployd-agent-{check_version(version)}.pyz"


def members(root: Path | None = None) -> list[tuple[str, Path]]:
    """(name in the archive, source file) for ``app/protocol.py`` and ``app/agent/**.py``."""
    root = root or source_root()
    agent = root / "app" / "agent"
    found = [("app/protocol.py", root / "app" / "protocol.py")]
    for path in agent.rglob("*.py"):
        rel = path.relative_to(root)
        if "__pycache__" not in rel.parts:
            found.append((rel.as_posix(), path))
    return sorted(found)


def build(version: str | None = None, root: Path | None = None) -> bytes:
    """The zipapp's bytes: the same for the same sources and version."""
    version = check_version(version or app.__version__)
    entries = [
        ("__main__.py", MAIN.format(version=version).encode()),
        ("app/__init__.py", INIT.format(version=version).encode()),
        *((name, path.read_bytes()) for name, path in members(root)),
    ]
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            info.create_system = 3  # Unix, whatever system builds it
            zf.writestr(info, data, compresslevel=_LEVEL)
    return buf.getvalue()


@dataclass(frozen=True)
class AgentPackage:
    """One built agent: its version, bytes and their SHA-256 (hex)."""

    version: str
    data: bytes
    sha256: str

    @classmethod
    def build(cls, version: str | None = None, root: Path | None = None) -> AgentPackage:
        data = build(version, root)
        return cls(version or app.__version__, data, hashlib.sha256(data).hexdigest())

    @property
    def file_name(self) -> str:
        return file_name(self.version)

    def sha256_line(self) -> str:
        """``sha256sum``'s format: ``HEX  ployd-agent-VERSION.pyz``."""
        return f"{self.sha256}  {self.file_name}\n"

    def write(self, out_dir: Path) -> Path:
        """Write ``ployd-agent-VERSION.pyz`` into ``out_dir`` (atomically, mode 0755)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / self.file_name
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(self.data)
        tmp.chmod(0o755)
        os.replace(tmp, path)
        return path
