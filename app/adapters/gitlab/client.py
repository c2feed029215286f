"""``GitLabClient``: the GitLab REST calls PloyD makes, on python-gitlab.

Every method is a coroutine; the python-gitlab call itself runs in a worker thread
(``runner.CallRunner``), which also retries transient failures and counts calls. Projects
are named by numeric id or ``namespace/path`` (python-gitlab URL-encodes it). The token
is handed to python-gitlab only; it is never logged and not part of ``repr``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import requests
from gitlab.utils import EncodedId
from gitlab.v4.objects import Project

from app.adapters.backoff import Backoff
from app.adapters.gitlab.config import DEFAULT_URL, GitLabConfig
from app.adapters.gitlab.errors import GitLabError
from app.adapters.gitlab.runner import (
    CallRunner,
    CallStats,
    NoRetryGitlab,
    Sleep,
    remember_headers,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
ProjectId = int | str
STATES = ("pending", "running", "success", "failed", "canceled", "skipped")
MAX_STATUS_TEXT = 255  # description, target_url (contract section 1)
MAX_NOTE_BODY = 1_000_000  # contract section 2
NO_ACCESS = 0
_TRANSITION = re.compile(r"Cannot transition status via :\w+ from :(\w+)")


def status_ref(ref: str) -> str:
    """A pipeline's full ref as a GitLab commit status names it: a branch or tag by its
    name (``refs/heads/main`` -> ``main``), any other ref whole
    (``refs/merge-requests/7/head``, as GitLab's own merge request pipelines)."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GitLabClient:
    """PloyD's GitLab, one per process. Use ``async with`` or call ``close()``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str = "",
        *,
        backoff: Backoff | None = None,
        sleep: Sleep | None = None,
        timeout: float = 30.0,
        user_agent: str = "PloyD",
    ) -> None:
        session = requests.Session()
        session.hooks["response"].append(remember_headers)
        self.url = url.rstrip("/")
        self._gl = NoRetryGitlab(
            self.url,
            private_token=token,
            timeout=timeout,
            user_agent=user_agent,
            retry_transient_errors=False,
            session=session,
        )
        options: dict[str, Any] = {"backoff": backoff}
        if sleep is not None:
            options["sleep"] = sleep
        self._runner = CallRunner(**options)

    @classmethod
    def from_config(cls, config: GitLabConfig, **options: Any) -> GitLabClient:
        return cls(config.url, config.token, **options)

    def __repr__(self) -> str:
        return f"GitLabClient(url={self.url!r})"

    @property
    def stats(self) -> CallStats:
        """Calls per operation, errors per status, retries: for metrics."""
        return self._runner.stats

    async def __aenter__(self) -> GitLabClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._runner.close()
        self._gl.session.close()

    # ------------------------------------------------------------------ repository

    async def get_file(self, project: ProjectId, path: str, ref: str) -> str | None:
        """The text of ``path`` at ``ref`` (branch, tag or SHA); None when there is none."""

        def call() -> str:
            data = self._project(project).files.raw(file_path=path.lstrip("/"), ref=ref)
            assert isinstance(data, bytes)
            return data.decode("utf-8")

        return await self._unless_missing("get_file", call, None)

    async def compare_files(self, project: ProjectId, base: str, head: str) -> list[str]:
        """Paths changed from the merge base of ``base`` and ``head`` to ``head``
        (renames: both names)."""

        def call() -> list[str]:
            data = self._project(project).repository_compare(base, head)
            assert isinstance(data, dict)
            return _paths(data.get("diffs") or [])

        return await self._runner.run("compare_files", call)

    # ------------------------------------------------------------------ merge requests

    async def get_mr(self, project: ProjectId, iid: int) -> dict[str, Any]:
        """The MR's facts PloyD uses, plus ``raw`` (GitLab's whole answer).

        ``is_fork`` is true when the source project differs from the target project.
        """

        def call() -> dict[str, Any]:
            raw: dict[str, Any] = self._project(project).mergerequests.get(iid).asdict()
            author = raw.get("author") or {}
            return {
                "iid": raw["iid"],
                "id": raw["id"],
                "sha": raw.get("sha"),
                "title": raw.get("title", ""),
                "state": raw.get("state"),
                "source_branch": raw["source_branch"],
                "target_branch": raw["target_branch"],
                "source_project_id": raw["source_project_id"],
                "target_project_id": raw["target_project_id"],
                "is_fork": raw["source_project_id"] != raw["target_project_id"],
                "author": author.get("username"),
                "author_id": author.get("id"),
                "diff_refs": raw.get("diff_refs"),
                "web_url": raw.get("web_url"),
                "raw": raw,
            }

        return await self._runner.run("get_mr", call)

    async def mr_changed_files(self, project: ProjectId, iid: int) -> list[str]:
        """Paths the MR changes, old and new names, from ``/diffs`` (all pages)."""

        def call() -> list[str]:
            url = f"/projects/{EncodedId(project)}/merge_requests/{int(iid)}/diffs"
            items = self._gl.http_list(url, query_data={"per_page": 100}, get_all=True)
            return _paths(items if isinstance(items, list) else list(items))

        return await self._runner.run("mr_changed_files", call)

    async def create_note(self, project: ProjectId, iid: int, body: str) -> int:
        """Comment on the MR; the note's id."""

        def call() -> int:
            mr = self._project(project).mergerequests.get(iid, lazy=True)
            note = mr.notes.create({"body": fit(body, MAX_NOTE_BODY)})
            return int(note.id)

        return await self._runner.run("create_note", call)

    async def edit_note(self, project: ProjectId, iid: int, note_id: int, body: str) -> None:
        def call() -> None:
            mr = self._project(project).mergerequests.get(iid, lazy=True)
            mr.notes.update(note_id, {"body": fit(body, MAX_NOTE_BODY)})

        await self._runner.run("edit_note", call)

    async def award_emoji(self, project: ProjectId, iid: int, note_id: int, name: str) -> None:
        """React to a note (``eyes``, ``thumbsup``, ``rocket`` ...); already there is fine."""

        def call() -> None:
            mr = self._project(project).mergerequests.get(iid, lazy=True)
            note = mr.notes.get(note_id, lazy=True)
            note.awardemojis.create({"name": name.strip(":")})

        try:
            await self._runner.run("award_emoji", call)
        except GitLabError as err:
            if err.status != 404 or "already been taken" not in err.message:
                raise

    # ------------------------------------------------------------------ statuses, members

    async def set_status(
        self,
        project: ProjectId,
        sha: str,
        state: str,
        name: str,
        target_url: str | None = None,
        description: str | None = None,
        ref: str | None = None,
    ) -> None:
        """Post commit status ``name`` on ``sha``: pending, running, success, failed,
        canceled or skipped. Re-posting the state a status already has is a no-op (GitLab
        answers it with a 400 "Cannot transition status").

        ``ref`` is the branch, tag or ref the status belongs to (``status_ref``): without
        it GitLab takes the ref of a pipeline of ``sha``, else a branch containing it, and
        answers 404 "References for commit" when there is neither, as for a fork's merge
        request, whose head is only ``refs/merge-requests/N/head``."""
        if state not in STATES:
            raise ValueError(f"state {state!r}: expected one of {', '.join(STATES)}")
        data: dict[str, Any] = {"state": state, "name": name}
        if ref:
            data["ref"] = fit(ref, MAX_STATUS_TEXT)
        if description is not None:
            data["description"] = fit(description, MAX_STATUS_TEXT)
        if target_url is not None:
            if len(target_url) <= MAX_STATUS_TEXT:
                data["target_url"] = target_url
            else:
                log.warning("status %s: target_url over %d characters, left out", name, 255)

        def call() -> None:
            commit = self._project(project).commits.get(sha, lazy=True)
            commit.statuses.create(data)

        try:
            await self._runner.run("set_status", call)
        except GitLabError as err:
            found = _TRANSITION.search(err.message) if err.status == 400 else None
            if found is None or found.group(1) != state:
                raise

    async def access_level(self, project: ProjectId, user: int | str) -> int:
        """The user's effective role on the project (inherited included): 0 no access,
        10 guest, 15 planner, 20 reporter, 30 developer, 40 maintainer, 50 owner.
        ``user`` is a user id or a username; not a member (or no such user) is 0."""
        user_id = user if isinstance(user, int) else await self._user_id(user)
        if user_id is None:
            return NO_ACCESS

        def call() -> int:
            member = self._project(project).members_all.get(user_id)
            return int(member.access_level)

        return await self._unless_missing("access_level", call, NO_ACCESS)

    async def _user_id(self, username: str) -> int | None:
        def call() -> int | None:
            users = self._gl.users.list(username=username.lstrip("@"), get_all=False)
            return int(users[0].id) if users else None

        return await self._runner.run("find_user", call)

    # ------------------------------------------------------------------ tokens

    async def token_self(self) -> dict[str, Any]:
        """What GitLab knows of the token this client calls with: ``scopes``,
        ``active``, ``revoked``, ``expires_at`` (``GET /personal_access_tokens/self``;
        personal, project and group access tokens)."""

        def call() -> dict[str, Any]:
            data = self._gl.http_get("/personal_access_tokens/self")
            assert isinstance(data, dict)
            return data

        return await self._runner.run("token_self", call)

    async def create_deploy_token(
        self, project: ProjectId, name: str, scopes: list[str], expires_at: str
    ) -> dict[str, Any]:
        """A new deploy token of the project (``username``, ``token``, ``expires_at``);
        needs the Maintainer role. ``expires_at``: ISO 8601."""

        def call() -> dict[str, Any]:
            data = self._gl.http_post(
                f"/projects/{EncodedId(project)}/deploy_tokens",
                post_data={"name": name, "scopes": scopes, "expires_at": expires_at},
            )
            assert isinstance(data, dict)
            return data

        return await self._runner.run("create_deploy_token", call)

    async def delete_deploy_token(self, project: ProjectId, token_id: int) -> None:
        """Remove deploy token ``token_id`` of the project (Maintainer role)."""

        def call() -> None:
            self._gl.http_delete(f"/projects/{EncodedId(project)}/deploy_tokens/{int(token_id)}")

        await self._runner.run("delete_deploy_token", call)

    # ------------------------------------------------------------------ plumbing

    def _project(self, project: ProjectId) -> Project:
        return self._gl.projects.get(project, lazy=True)

    async def _unless_missing(self, operation: str, fn: Callable[[], T], missing: T) -> T:
        try:
            return await self._runner.run(operation, fn)
        except GitLabError as err:
            if err.status == 404:
                return missing
            raise


def _paths(diffs: list[Any]) -> list[str]:
    """New and old paths of GitLab diff entries, each once, in order."""
    seen: dict[str, None] = {}
    for entry in diffs:
        item = entry if isinstance(entry, dict) else getattr(entry, "attributes", {})
        for key in ("new_path", "old_path"):
            if item.get(key):
                seen.setdefault(item[key], None)
    return list(seen)
