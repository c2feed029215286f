"""What agents fetch GitLab projects with (the engine's clone credentials hook).

* With ``PLOYD_GITLAB_CLONE_TOKEN``: that token, user name ``oauth2``. At start-up
  ``check()`` asks GitLab what it is (``GET /personal_access_tokens/self``) and refuses to
  start unless it has ``read_repository`` and none of ``api``, ``write_repository``,
  ``sudo``, and is active.
* Without it: a deploy token of the job's project, minted with the bot's token
  (``POST /projects/:id/deploy_tokens``: ``read_repository`` only, expiring in an hour,
  which needs the Maintainer role), kept per project until ten minutes before it expires,
  and used with the user name GitLab gave it. When GitLab refuses, the job fails as an
  infrastructure error that names the project and the fix.

The bot's own ``api`` token never reaches an agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.adapters.gitlab.client import GitLabClient
from app.adapters.gitlab.errors import GitLabError
from app.engine.hooks import Credentials, takes_credentials
from app.protocol import CloneAuth, JobPayload
from app.settings import SettingsError

log = logging.getLogger("ployd.gitlab.clone")

TOKEN_USER = "oauth2"  # GitLab's user name for an access token over git's HTTP
DEPLOY_TOKEN_NAME = "ployd-clone"
DEPLOY_TOKEN_TTL_S = 3600.0
RENEW_BEFORE_S = 600.0  # a cached deploy token is replaced this long before it expires
REQUIRED_SCOPE = "read_repository"
FORBIDDEN_SCOPES = ("api", "write_repository", "sudo")


class CloneTokenError(Exception):
    """GitLab would not give a clone credential for a project (the job fails with it)."""


@dataclass
class _Minted:
    auth: CloneAuth
    renew_at: float  # time.time() after which a new one is minted
    token_id: int | None = None
    expires_at: float = 0.0  # after this, GitLab refuses it: deleted at a renewal


@dataclass
class GitLabCloneCredentials:
    """The GitLab bot's clone credentials hook; ``clone_token`` is
    PLOYD_GITLAB_CLONE_TOKEN ("": mint deploy tokens with ``client``, the bot's)."""

    client: GitLabClient
    clone_token: str = field(default="", repr=False)
    clock: Callable[[], float] = time.time
    _cache: dict[str, _Minted] = field(default_factory=dict, repr=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    # Tokens replaced by a newer one, deleted once expired (no clone can still use them).
    _retired: dict[str, list[_Minted]] = field(default_factory=dict, repr=False)

    async def check(self) -> None:
        """Refuse to start (SettingsError) with a clone token that is not read-only."""
        if not self.clone_token:
            return
        probe = GitLabClient(self.client.url, self.clone_token)
        try:
            info = await probe.token_self()
        except GitLabError as e:
            raise SettingsError(
                f"PLOYD_GITLAB_CLONE_TOKEN: GitLab could not tell what this token is "
                f"(GET /personal_access_tokens/self: {e.status} {e.message}); give a "
                "personal, project or group access token with only the read_repository scope"
            ) from None
        finally:
            probe.close()
        scopes = [str(s) for s in info.get("scopes") or []]
        wide = [s for s in FORBIDDEN_SCOPES if s in scopes]
        if REQUIRED_SCOPE not in scopes or wide:
            problem = f"has {', '.join(wide)}" if wide else f"lacks {REQUIRED_SCOPE}"
            raise SettingsError(
                f"PLOYD_GITLAB_CLONE_TOKEN {problem} (its scopes: {', '.join(scopes) or 'none'})"
                ": agents must get a token with read_repository and none of "
                f"{', '.join(FORBIDDEN_SCOPES)}; or unset it, and PloyD mints a read-only "
                "deploy token per project (the bot then needs the Maintainer role)"
            )
        if info.get("active") is False or info.get("revoked") is True:
            raise SettingsError("PLOYD_GITLAB_CLONE_TOKEN is revoked or expired")

    async def __call__(self, job: JobPayload) -> Credentials | None:
        if not takes_credentials(job.clone_url):
            return None
        if self.clone_token:
            return Credentials(CloneAuth(TOKEN_USER, self.clone_token))
        project = job.repo
        lock = self._locks.setdefault(project, asyncio.Lock())
        async with lock:
            cached = self._cache.get(project)
            if cached is None or self.clock() >= cached.renew_at:
                old = cached
                cached = await self._mint(project)
                self._cache[project] = cached
                if old is not None:
                    self._retired.setdefault(project, []).append(old)
                await self._delete_expired(project)
        return Credentials(cached.auth)

    async def _delete_expired(self, project: str) -> None:
        """Delete this project's replaced deploy tokens that have expired, so that they do
        not pile up in its settings; best effort (a failure is retried next renewal)."""
        now, keep = self.clock(), []
        for old in self._retired.get(project, []):
            if old.token_id is None or now < old.expires_at:
                keep.append(old)
                continue
            try:
                await self.client.delete_deploy_token(project, old.token_id)
            except GitLabError as e:
                if e.status != 404:  # gone already: nothing to keep
                    log.warning(
                        "could not delete deploy token %s of %s: %s %s",
                        old.token_id,
                        project,
                        e.status,
                        e.message,
                    )
                    keep.append(old)
        self._retired[project] = keep

    async def _mint(self, project: str) -> _Minted:
        now = self.clock()
        expires = datetime.fromtimestamp(now + DEPLOY_TOKEN_TTL_S, UTC)
        try:
            made = await self.client.create_deploy_token(
                project,
                DEPLOY_TOKEN_NAME,
                [REQUIRED_SCOPE],
                expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        except GitLabError as e:
            raise CloneTokenError(
                f"GitLab refused a read-only deploy token for {project} ({e.status} "
                f"{e.message}): give the PloyD bot the Maintainer role on {project}, or set "
                "PLOYD_GITLAB_CLONE_TOKEN to a token with only the read_repository scope"
            ) from None
        username, token = str(made.get("username") or ""), str(made.get("token") or "")
        if not username or not token:
            raise CloneTokenError(f"GitLab's deploy token for {project} came without a token")
        given = _parse_time(made.get("expires_at"))
        until = now + DEPLOY_TOKEN_TTL_S if given is None else min(given, now + DEPLOY_TOKEN_TTL_S)
        token_id = made.get("id")
        return _Minted(
            CloneAuth(username, token),
            renew_at=until - RENEW_BEFORE_S,
            token_id=token_id if isinstance(token_id, int) else None,
            expires_at=until,
        )


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
