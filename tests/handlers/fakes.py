"""In-memory fakes of the forge ports (``app.adapters.ports``), for the handler and reporter
tests: no HTTP, no server. Each fake keeps what it was told in plain dicts and records
every call, in order, in ``calls``.

* ``fail(op, error)``: the next call of ``op`` raises ``error`` (once per error given).
* ``hold()``: every call waits until ``release()``; the tests of report ordering use it.

The HTTP fakes in ``tests/fakes`` (contract-checked, for end-to-end tests) are another
thing and stay as they are.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from app.adapters.github.client import Repo
from app.adapters.github.errors import GitHubError
from app.adapters.gitlab.errors import GitLabError


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeForge:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._failures: dict[str, list[Exception]] = {}
        self._held: asyncio.Event | None = None
        self._ids = itertools.count(1001)
        self.in_flight = 0
        self.most_in_flight = 0

    def fail(self, op: str, *errors: Exception) -> None:
        self._failures.setdefault(op, []).extend(errors)

    def hold(self) -> None:
        self._held = asyncio.Event()

    def release(self) -> None:
        if self._held is not None:
            self._held.set()
            self._held = None

    async def until_in_flight(self, n: int = 1, deadline_s: float = 10.0) -> None:
        """Wait until ``n`` calls are under way (held, say)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while self.in_flight < n:
            if loop.time() > end:
                raise AssertionError(f"{self.in_flight} calls under way, not {n}")
            await asyncio.sleep(0.005)

    def ops(self, *names: str) -> list[str]:
        """The operations called, in order (only ``names`` when given)."""
        return [c.op for c in self.calls if not names or c.op in names]

    def of(self, op: str) -> list[Call]:
        return [c for c in self.calls if c.op == op]

    def clear(self) -> None:
        self.calls.clear()

    async def _call(self, op: str, *args: Any, **kwargs: Any) -> None:
        """Record the call, wait like a real one would (and while held), maybe fail."""
        self.calls.append(Call(op, args, kwargs))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self._held is not None:
                await self._held.wait()
        finally:
            self.in_flight -= 1
        errors = self._failures.get(op)
        if errors:
            raise errors.pop(0)

    def _new_id(self) -> int:
        return next(self._ids)


# -- GitHub -----------------------------------------------------------------------------


@dataclass
class Comment:
    repo: str
    number: int
    body: str


class FakeGitHub(FakeForge):
    """Every GitHub port. Repositories are named by full name (``acme/models``)."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[tuple[str, str, str], str] = {}  # (repo, ref, path) -> text
        self.pr_files: dict[tuple[str, int], list[str]] = {}
        self.compares: dict[tuple[str, str, str], list[str]] = {}  # (repo, base, head)
        self.permissions: dict[tuple[str, str], str] = {}  # (repo, user) -> role
        self.check_runs: dict[int, dict[str, Any]] = {}  # id -> the fields, as updated
        self.comments: dict[int, Comment] = {}
        self.reactions: list[tuple[str, int, str]] = []  # (repo, comment id, content)

    # setting the scene

    def add_file(self, repo: str, ref: str, path: str, text: str) -> None:
        self.files[(repo, ref, path)] = text

    def set_permission(self, repo: str, user: str, role: str) -> None:
        self.permissions[(repo, user)] = role

    def runs_named(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.check_runs.values() if r.get("name") == name]

    # the ports

    async def get_file(self, repo: Repo, path: str, ref: str) -> str | None:
        await self._call("get_file", repo.full_name, path, ref)
        return self.files.get((repo.full_name, ref, path))

    async def changed_files_pr(self, repo: Repo, number: int) -> list[str]:
        await self._call("changed_files_pr", repo.full_name, number)
        return list(self.pr_files.get((repo.full_name, number), []))

    async def changed_files_compare(self, repo: Repo, base: str, head: str) -> list[str]:
        await self._call("changed_files_compare", repo.full_name, base, head)
        found = self.compares.get((repo.full_name, base, head))
        if found is None:
            raise GitHubError(404, "No common ancestor")
        return list(found)

    async def permission(self, repo: Repo, username: str) -> str:
        await self._call("permission", repo.full_name, username)
        return self.permissions.get((repo.full_name, username), "none")

    async def create_check_run(self, repo: Repo, **fields: Any) -> int:
        await self._call("create_check_run", repo.full_name, **fields)
        run_id = self._new_id()
        self.check_runs[run_id] = {"repo": repo.full_name, **fields}
        return run_id

    async def update_check_run(self, repo: Repo, check_run_id: int, **fields: Any) -> None:
        await self._call("update_check_run", repo.full_name, check_run_id, **fields)
        if check_run_id not in self.check_runs:
            raise GitHubError(404, "Not Found")
        self.check_runs[check_run_id].update(fields)

    async def create_comment(self, repo: Repo, issue_number: int, body: str) -> int:
        await self._call("create_comment", repo.full_name, issue_number, body)
        comment_id = self._new_id()
        self.comments[comment_id] = Comment(repo.full_name, issue_number, body)
        return comment_id

    async def edit_comment(self, repo: Repo, comment_id: int, body: str) -> None:
        await self._call("edit_comment", repo.full_name, comment_id, body)
        self.comments[comment_id].body = body

    async def add_reaction(self, repo: Repo, comment_id: int, content: str) -> None:
        await self._call("add_reaction", repo.full_name, comment_id, content)
        self.reactions.append((repo.full_name, comment_id, content))


# -- GitLab -----------------------------------------------------------------------------


@dataclass
class Note:
    project: str
    iid: int
    body: str


class FakeGitLab(FakeForge):
    """Every GitLab port. Projects are named by path (``ml/models``); members by user id
    or username, as the members API is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[tuple[str, str, str], str] = {}  # (project, ref, path) -> text
        self.compares: dict[tuple[str, str, str], list[str]] = {}
        self.mr_files: dict[tuple[str, int], list[str]] = {}
        self.mrs: dict[tuple[str, int], dict[str, Any]] = {}
        self.members: dict[tuple[str, int | str], int] = {}  # (project, id or name) -> level
        self.statuses: dict[tuple[str, str, str], list[dict[str, Any]]] = {}  # every post
        self.notes: dict[int, Note] = {}
        self.emoji: list[tuple[str, int, int, str]] = []  # (project, iid, note id, name)

    # setting the scene

    def add_file(self, project: str, ref: str, path: str, text: str) -> None:
        self.files[(project, ref, path)] = text

    def add_mr(self, project: str, iid: int, *, sha: str, author: str, fork: bool = False) -> None:
        self.mrs[(project, iid)] = {"iid": iid, "sha": sha, "author": author, "is_fork": fork}

    def set_member(self, project: str, user: int | str, level: int) -> None:
        self.members[(project, user)] = level

    def status(self, project: str, sha: str, name: str) -> dict[str, Any] | None:
        """The latest status posted under ``name``."""
        posted = self.statuses.get((project, sha, name))
        return posted[-1] if posted else None

    # the ports

    async def get_file(self, project: str, path: str, ref: str) -> str | None:
        await self._call("get_file", project, path, ref)
        return self.files.get((project, ref, path))

    async def compare_files(self, project: str, base: str, head: str) -> list[str]:
        await self._call("compare_files", project, base, head)
        return list(self.compares.get((project, base, head), []))

    async def mr_changed_files(self, project: str, iid: int) -> list[str]:
        await self._call("mr_changed_files", project, iid)
        return list(self.mr_files.get((project, iid), []))

    async def get_mr(self, project: str, iid: int) -> dict[str, Any]:
        await self._call("get_mr", project, iid)
        if (project, iid) not in self.mrs:
            raise GitLabError(404, "404 Not found")
        return dict(self.mrs[(project, iid)])

    async def access_level(self, project: str, user: int | str) -> int:
        await self._call("access_level", project, user)
        return self.members.get((project, user), 0)

    async def set_status(
        self,
        project: str,
        sha: str,
        state: str,
        name: str,
        target_url: str | None = None,
        description: str | None = None,
        ref: str | None = None,
    ) -> None:
        await self._call(
            "set_status",
            project,
            sha,
            state,
            name,
            target_url=target_url,
            description=description,
            ref=ref,
        )
        self.statuses.setdefault((project, sha, name), []).append(
            {"state": state, "target_url": target_url, "description": description, "ref": ref}
        )

    async def create_note(self, project: str, iid: int, body: str) -> int:
        await self._call("create_note", project, iid, body)
        note_id = self._new_id()
        self.notes[note_id] = Note(project, iid, body)
        return note_id

    async def edit_note(self, project: str, iid: int, note_id: int, body: str) -> None:
        await self._call("edit_note", project, iid, note_id, body)
        self.notes[note_id].body = body

    async def award_emoji(self, project: str, iid: int, note_id: int, name: str) -> None:
        await self._call("award_emoji", project, iid, note_id, name)
        self.emoji.append((project, iid, note_id, name))
