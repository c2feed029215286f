"""``GitHubClient``: the GitHub REST calls PloyD makes, as a GitHub App installation.

Built on gidgethub (``transport.RetryingGitHubAPI``, one per client, sharing the caller's
aiohttp session). Each method authenticates with the installation token of the repository
(``auth.AppAuth``), and turns GitHub's errors into ``GitHubError``. Retries of 5xx,
network errors and rate limits happen below, in the transport; a 401 drops the cached
token and tries once more with a new one.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import gidgethub

from app.adapters.github.auth import AppAuth, Clock
from app.adapters.github.config import DEFAULT_API_URL, GitHubAppConfig
from app.adapters.github.errors import GitHubError
from app.adapters.github.limits import split_check_run
from app.adapters.github.retry import RetryPolicy
from app.adapters.github.transport import ClientMetrics, RetryingGitHubAPI, Sleep

ROLES = ("admin", "maintain", "write", "triage", "read", "none")


@dataclass(frozen=True)
class Repo:
    """A repository, and the installation of the app on it (looked up when None)."""

    owner: str
    name: str
    installation_id: int | None = None

    @classmethod
    def parse(cls, full_name: str, installation_id: int | None = None) -> Repo:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"{full_name!r}: expected owner/name")
        return cls(owner, name, installation_id)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def path(self) -> str:
        """``repos/{owner}/{repo}``, escaped, relative to the API base URL."""
        return f"repos/{quote(self.owner, safe='')}/{quote(self.name, safe='')}"


class GitHubClient:
    """PloyD's GitHub: one per process, sharing one aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: int | str,
        private_key_pem: str,
        api_url: str = DEFAULT_API_URL,
        requester: str = "PloyD",
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
    ) -> None:
        self.metrics = ClientMetrics()
        self._gh = RetryingGitHubAPI(
            session,
            requester,
            base_url=api_url.rstrip("/") + "/",  # relative paths keep a GHES /api/v3 prefix
            policy=policy or RetryPolicy(),
            sleep=sleep,
            clock=clock,
            metrics=self.metrics,
        )
        self.auth = AppAuth(app_id, private_key_pem, self._fetch_token, clock=clock)
        self._installations: dict[str, int] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, config: GitHubAppConfig, **options: Any) -> AsyncIterator[GitHubClient]:
        """A client with its own session, closed on exit."""
        async with aiohttp.ClientSession() as session:
            yield cls(
                session,
                app_id=config.app_id,
                private_key_pem=config.private_key_pem,
                api_url=config.api_url,
                **options,
            )

    # ------------------------------------------------------------------ the calls

    async def get_file(self, repo: Repo, path: str, ref: str) -> str | None:
        """The text of ``path`` at ``ref``; None when there is no such file."""
        url = f"{repo.path}/contents/{quote(path.lstrip('/'), safe='/')}?{urlencode({'ref': ref})}"
        try:
            data = await self._call("GET", url, repo)
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None  # a directory, symlink or submodule
        return base64.b64decode(data.get("content", "")).decode("utf-8")

    async def changed_files_pr(self, repo: Repo, number: int) -> list[str]:
        """Paths a pull request touches (renamed files: both names), all pages."""
        items = await self._iterate(f"{repo.path}/pulls/{number}/files?per_page=100", repo)
        return _paths(items)

    async def changed_files_compare(self, repo: Repo, base: str, head: str) -> list[str]:
        """Paths changed between two commits (GitHub lists at most 300)."""
        basehead = f"{quote(base, safe='/')}...{quote(head, safe='/')}"
        data = await self._call("GET", f"{repo.path}/compare/{basehead}", repo)
        return _paths(data.get("files") or [])

    async def create_check_run(self, repo: Repo, **fields: Any) -> int:
        """Create a check run (``name``, ``head_sha``, ``status``, ``output``...); its id."""
        body, more = split_check_run(fields)
        run = await self._call("POST", f"{repo.path}/check-runs", repo, data=body)
        for update in more:
            await self._call("PATCH", f"{repo.path}/check-runs/{run['id']}", repo, data=update)
        return int(run["id"])

    async def update_check_run(self, repo: Repo, check_run_id: int, **fields: Any) -> None:
        body, more = split_check_run(fields)
        for update in [body, *more]:
            await self._call("PATCH", f"{repo.path}/check-runs/{check_run_id}", repo, data=update)

    async def rerequest_check_suite(self, repo: Repo, check_suite_id: int) -> None:
        await self._call("POST", f"{repo.path}/check-suites/{check_suite_id}/rerequest", repo)

    async def create_comment(self, repo: Repo, issue_number: int, body: str) -> int:
        url = f"{repo.path}/issues/{issue_number}/comments"
        comment = await self._call("POST", url, repo, data={"body": body})
        return int(comment["id"])

    async def edit_comment(self, repo: Repo, comment_id: int, body: str) -> None:
        url = f"{repo.path}/issues/comments/{comment_id}"
        await self._call("PATCH", url, repo, data={"body": body})

    async def add_reaction(self, repo: Repo, comment_id: int, content: str) -> None:
        """React to an issue comment: +1, -1, laugh, confused, heart, hooray, rocket, eyes."""
        url = f"{repo.path}/issues/comments/{comment_id}/reactions"
        await self._call("POST", url, repo, data={"content": content})

    async def permission(self, repo: Repo, username: str) -> str:
        """admin, maintain, write, triage, read or none (no such collaborator: none)."""
        url = f"{repo.path}/collaborators/{quote(username, safe='')}/permission"
        try:
            data = await self._call("GET", url, repo)
        except GitHubError as exc:
            if exc.status == 404:
                return "none"
            raise
        role = data.get("role_name")
        return role if role in ROLES else str(data.get("permission") or "none")

    async def get_pull(self, repo: Repo, number: int) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("GET", f"{repo.path}/pulls/{number}", repo)
        return data

    # ------------------------------------------------------------------ plumbing

    async def installation_id(self, repo: Repo) -> int:
        """The app's installation on ``repo`` (given, or asked of GitHub once)."""
        if repo.installation_id is not None:
            return repo.installation_id
        key = repo.full_name.lower()
        if key not in self._installations:
            data = await self._call("GET", f"{repo.path}/installation", None)
            self._installations[key] = int(data["id"])
        return self._installations[key]

    async def clone_token(self, repo: Repo) -> str:
        """A fresh token that can only read ``repo``'s contents: what an agent gets to
        fetch the code (never the installation's cached, wider token)."""
        installation = await self.installation_id(repo)
        url = f"app/installations/{installation}/access_tokens"
        body = {"repositories": [repo.name], "permissions": {"contents": "read"}}
        self.auth.check_backoff(installation)  # a failed fetch is not retried per claim
        try:
            data = await self._send("POST", url, body, jwt=self.auth.app_jwt())
        except GitHubError as e:
            self.auth.failed(installation, e)
            raise
        self.auth.succeeded(installation)
        return str(data["token"])

    async def _fetch_token(self, installation_id: int, app_jwt: str) -> dict[str, Any]:
        url = f"app/installations/{installation_id}/access_tokens"
        data: dict[str, Any] = await self._send("POST", url, b"", jwt=app_jwt)
        return data

    async def _call(self, method: str, url: str, repo: Repo | None, data: Any = b"") -> Any:
        """``method url`` as the installation of ``repo`` (None: as the app itself)."""
        if repo is None:
            return await self._send(method, url, data, jwt=self.auth.app_jwt())
        installation = await self.installation_id(repo)
        for attempt in (1, 2):
            token = await self.auth.installation_token(installation)
            try:
                return await self._send(method, url, data, oauth_token=token)
            except GitHubError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self.auth.invalidate(installation)  # revoked or expired early: once more

    async def _send(
        self,
        method: str,
        url: str,
        data: Any,
        *,
        jwt: str | None = None,
        oauth_token: str | None = None,
    ) -> Any:
        """One gidgethub call; its exceptions become ``GitHubError``."""
        try:
            if method == "GET":
                return await self._gh.getitem(url, jwt=jwt, oauth_token=oauth_token)
            if method == "POST":
                return await self._gh.post(url, data=data, jwt=jwt, oauth_token=oauth_token)
            if method == "PATCH":
                return await self._gh.patch(url, data=data, jwt=jwt, oauth_token=oauth_token)
            raise ValueError(f"unsupported method {method}")
        except gidgethub.HTTPException as exc:
            raise _error(exc, method, url) from None

    async def _iterate(self, url: str, repo: Repo) -> list[Any]:
        token = await self.auth.installation_token(await self.installation_id(repo))
        try:
            return [item async for item in self._gh.getiter(url, oauth_token=token)]
        except gidgethub.HTTPException as exc:
            raise _error(exc, "GET", url) from None


def _paths(files: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for f in files:
        for key in ("previous_filename", "filename"):
            if f.get(key):
                seen.setdefault(str(f[key]), None)
    return list(seen)


def _error(exc: gidgethub.HTTPException, method: str, url: str) -> GitHubError:
    status = int(exc.status_code)
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    path = urlsplit(url).path
    return GitHubError(status, message, method=method, url=path if path[:1] == "/" else "/" + path)
