"""The agent's saved credential (``--state-dir``): how a self-hosted agent survives its own
restarts (a crash, a reboot, ``systemctl restart``) without a new registration token.

The registration token is used once; the credential the server gives for it is what the
agent claims with. Kept only in memory, a restarted agent would need a new token. Kept
here, in ``STATE_DIR/credential`` (directory 0700, file 0600, owned by the agent's user),
it is read at start and exchanged at once for a new one (the server rotates it at every
start: a copy of an older file is refused), which is written back before the agent claims.

Only kept where steps cannot read it (``Confinement.protects``): steps in the bubblewrap
sandbox see the state directory empty; steps of a root agent run as another user, who
cannot enter a 0700 directory; container steps see only their workspace. An agent whose
steps would run as its own user, unconfined, keeps the credential in memory and says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("ployd.agent")

FILE_NAME = "credential"


@dataclass(frozen=True)
class Saved:
    """What the state directory remembers: for which server, as whom, with what."""

    server: str
    agent_id: str
    credential: str = field(repr=False)


class CredentialFile:
    """``DIR/credential``, written atomically with mode 0600 in a 0700 directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME

    def prepare(self) -> None:
        """Create the directory (0700), or tighten an existing one to 0700."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.directory.stat()
        if info.st_uid != os.geteuid():
            raise PermissionError(
                f"{self.directory} belongs to uid {info.st_uid}, not this agent's "
                f"({os.geteuid()}): it cannot keep the credential there"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    def load(self, server: str) -> Saved | None:
        """The credential saved for ``server``, or None (none saved, another server's, or
        a file this agent must not trust: said in the log)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read the saved credential %s: %s", self.path, e)
            return None
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
                log.warning(
                    "ignoring %s: it must belong to this agent's user and be readable by "
                    "it alone (mode 0600)",
                    self.path,
                )
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read(64 * 1024)
        finally:
            os.close(fd)
        try:
            data = json.loads(raw)
            saved = Saved(str(data["server"]), str(data["agent_id"]), str(data["credential"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring %s: not a credential this agent wrote", self.path)
            return None
        if saved.server.rstrip("/") != server.rstrip("/"):
            log.warning(
                "ignoring the credential saved for %s: this agent now serves %s",
                saved.server,
                server,
            )
            return None
        if not (saved.agent_id and saved.credential):
            return None
        return saved

    def save(self, saved: Saved) -> None:
        """Replace the saved credential atomically (a crash leaves the old or the new)."""
        self.prepare()
        body = json.dumps(
            {"server": saved.server, "agent_id": saved.agent_id, "credential": saved.credential}
        ).encode()
        part = self.directory / f".{FILE_NAME}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)  # left by a crashed agent of the same pid
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def forget(self) -> None:
        """Remove the saved credential (the server refused it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Keeper:
    """The agent's side of ``--state-dir``: which credential to start with (the saved one,
    else the registration token), what to fall back to when the server refuses the saved
    one, and where the new credential goes once registered."""

    def __init__(
        self, file: CredentialFile, server: str, token: str | None, saved: Saved | None
    ) -> None:
        self.file = file
        self.server = server
        self.saved = saved
        self._token = token  # held only while the saved credential is not yet accepted

    def first(self) -> str | None:
        """What the agent registers with first: the saved credential, else the token."""
        if self.saved is not None:
            return self.saved.credential
        token, self._token = self._token, None
        return token

    def refused(self, why: str) -> str | None:
        """The server refused what the agent registered with: the token to try next (the
        saved credential was refused and a token was given too), else None."""
        if self.saved is None:
            return None  # it was the token
        log.warning("the server refused the credential saved in %s: %s", self.file.path, why)
        self.file.forget()
        self.saved = None
        token, self._token = self._token, None
        if token is None:
            log.error(
                "this agent must be registered again: make a token (ployd agents token "
                "create --pool POOL) and start it with --token (or install.sh --token)"
            )
        return token

    def registered(self, agent_id: str, credential: str) -> None:
        """Keep the credential the server just gave (the previous one no longer works)."""
        self._token = None
        saved = Saved(self.server, agent_id, credential)
        try:
            self.file.save(saved)
        except OSError as e:
            log.error(
                "could not save the credential in %s (%s): it is kept in memory only, and "
                "a restart will need a new token",
                self.file.path,
                e,
            )
            return
        self.saved = saved
