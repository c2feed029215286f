"""The agent updates itself when the server says so (docs/agent-protocol.md, "Updates").

An agent that runs from a package file (``python3 ployd-agent.pyz ...``) knows that file;
when a claim is answered with an update instruction (``UpdateRequired``: the server's
version, where to fetch it, its SHA-256), ``SelfUpdate``:

1. downloads the file (streamed to a temporary file beside where it will live: the
   directory of the running file when the agent may write there, else its work dir);
2. refuses it unless its SHA-256 is the one the server gave (nothing is kept, the old
   version keeps running, and the agent tries again later);
3. moves it into place atomically as ``ployd-agent-VERSION.pyz`` (the running file is
   never touched: a restart by systemd runs the old one, which updates again, reusing
   the file already there when its SHA-256 matches);
4. re-executes the interpreter with the new file and the same arguments and flags
   (``os.execv``: the same process, so systemd keeps tracking it), less the registration
   token (used up) and with the agent's credential on an inherited pipe instead
   (``handover``).

An agent run from source (``python -m app.agent``) has no file to replace: it never
updates (it is the server's own version: the local executor starts it).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.agent.httpclient import Http
from app.protocol import UpdateRequired

log = logging.getLogger("ployd.agent")

MAX_BYTES = 64 << 20  # an agent is a few hundred kilobytes; refuse anything absurd
DOWNLOAD_TIMEOUT_S = 300.0
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


class UpdateFailed(Exception):
    """The update could not be applied; the running version carries on."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def interpreter_flags() -> list[str]:
    """The command-line flags this interpreter runs with that matter to the agent
    (``-I``, ``-E``, ``-s``, ``-O``), to run the new version the same way."""
    flags = sys.flags
    out: list[str] = []
    if flags.isolated:
        out.append("-I")
    else:
        if flags.ignore_environment:
            out.append("-E")
        if flags.no_user_site:
            out.append("-s")
    if flags.optimize:
        out.append("-" + "O" * flags.optimize)
    return out


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


class SelfUpdate:
    """Replace the running agent with the server's version (see the module's text)."""

    def __init__(
        self,
        package: Path,
        argv: Sequence[str],
        server: str,
        http: Http,
        *,
        version: str,
        fallback_dir: Path,
        python: str = sys.executable,
        execv: Callable[[str, list[str]], Any] = os.execv,
        handover: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.package = Path(package)
        self.argv = list(argv)
        self.server = server.rstrip("/")
        self.http = http
        self.version = version
        self.fallback_dir = Path(fallback_dir)
        self.python = python
        self.execv = execv
        # More arguments for the new version, made just before it starts: how it gets
        # this agent's credential (a pipe), since its registration token is used up.
        self.handover = handover

    def url_of(self, update: UpdateRequired) -> str:
        return (
            update.url
            if update.url.startswith(("http://", "https://"))
            else (self.server + update.url)
        )

    def target(self, update: UpdateRequired) -> Path:
        """Where the new version goes: beside the running file, else in the work dir."""
        folder = self.package.parent
        if not _writable_dir(folder):
            folder = self.fallback_dir
            folder.mkdir(parents=True, exist_ok=True)
        return folder / f"ployd-agent-{_SAFE.sub('_', update.version)}.pyz"

    async def __call__(self, update: UpdateRequired) -> None:
        """Fetch, verify, and re-execute into ``update``; returns only when the new
        version could not be run (``UpdateFailed`` when it could not be had)."""
        if update.version == self.version:
            raise UpdateFailed(f"the server asks for version {update.version}, which this is")
        dest = self.target(update)
        if dest.is_file() and file_sha256(dest) == update.sha256:
            log.info("agent %s is already at %s", update.version, dest)
        else:
            await self._download(self.url_of(update), dest, update.sha256)
            log.info("agent %s downloaded to %s (SHA-256 verified)", update.version, dest)
        self._restart(dest)

    async def _download(self, url: str, dest: Path, sha256: str) -> None:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            try:
                status, got, size = await self.http.call(
                    "GET", url, _save_to(tmp), timeout=DOWNLOAD_TIMEOUT_S
                )
            except UpdateFailed:
                raise
            except Exception as e:  # network trouble, the server away
                raise UpdateFailed(f"could not download {url}: {e!r}") from e
            if status != 200:
                raise UpdateFailed(f"could not download {url}: HTTP {status}")
            if got != sha256:
                raise UpdateFailed(
                    f"the agent downloaded from {url} ({size} bytes) has SHA-256 {got}, "
                    f"not {sha256} as the server said: refused"
                )
            tmp.chmod(0o755)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _restart(self, dest: Path) -> None:
        extra = list(self.handover()) if self.handover is not None else []
        args = [self.python, *interpreter_flags(), str(dest), *self.argv, *extra]
        log.warning("restarting as agent %s", dest.name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self.execv(self.python, args)
        except OSError as e:
            raise UpdateFailed(f"could not run {dest}: {e}") from e


def _save_to(path: Path) -> Callable[[http.client.HTTPResponse], tuple[int, str, int]]:
    """A ``read`` for ``Http.call``: stream a 200 answer into ``path``; (status, SHA-256
    of what was written, its size)."""

    def read(resp: http.client.HTTPResponse) -> tuple[int, str, int]:
        if resp.status != 200:
            resp.read()
            return resp.status, "", 0
        h = hashlib.sha256()
        size = 0
        with open(path, "wb") as f:
            for block in iter(lambda: resp.read(1 << 16), b""):
                size += len(block)
                if size > MAX_BYTES:
                    raise UpdateFailed(f"the download is larger than {MAX_BYTES} bytes")
                h.update(block)
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        return resp.status, h.hexdigest(), size

    return read
