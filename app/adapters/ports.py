"""The forge operations PloyD's handlers and reporters call, as small Protocols.

Prow's plugins' shape: each feature (a handler module, a reporter) declares the few
operations it uses by combining these, and receives only that; tests give it an in-memory
fake, the service gives it the real client. ``GitHubClient`` and ``GitLabClient`` satisfy
them structurally: each Protocol here is a subset of one client's methods, same names,
same parameters (``tests/handlers/test_ports.py`` holds them to it).

They live here, beside the clients, rather than in ``app.handlers``, because both the
handlers and the reporters use them, and the handlers import the reporters.

A GitHub repository is a ``Repo`` (owner, name, installation); a GitLab project is its
``namespace/path`` (or numeric id).
"""

from __future__ import annotations

from typing import Any, Protocol

from app.adapters.github.client import Repo

# -- GitHub -----------------------------------------------------------------------------


class GitHubFiles(Protocol):
    async def get_file(self, repo: Repo, path: str, ref: str) -> str | None:
        """The text of ``path`` at ``ref``; None when there is no such file."""
        ...


class GitHubChangedFiles(Protocol):
    async def changed_files_pr(self, repo: Repo, number: int) -> list[str]:
        """Paths a pull request touches."""
        ...

    async def changed_files_compare(self, repo: Repo, base: str, head: str) -> list[str]:
        """Paths changed between two commits."""
        ...


class GitHubPermissions(Protocol):
    async def permission(self, repo: Repo, username: str) -> str:
        """admin, maintain, write, triage, read or none."""
        ...


class GitHubCheckRunCreator(Protocol):
    async def create_check_run(self, repo: Repo, **fields: Any) -> int:
        """Create a check run; its id."""
        ...


class GitHubCheckRuns(GitHubCheckRunCreator, Protocol):
    async def update_check_run(self, repo: Repo, check_run_id: int, **fields: Any) -> None: ...


class GitHubReplies(Protocol):
    async def create_comment(self, repo: Repo, issue_number: int, body: str) -> int:
        """Comment on a pull request (or issue); the comment's id."""
        ...


class GitHubComments(GitHubReplies, Protocol):
    async def edit_comment(self, repo: Repo, comment_id: int, body: str) -> None: ...


class GitHubReactions(Protocol):
    async def add_reaction(self, repo: Repo, comment_id: int, content: str) -> None:
        """React to a comment: +1, confused, eyes, ..."""
        ...


# -- GitLab -----------------------------------------------------------------------------


class GitLabFiles(Protocol):
    async def get_file(self, project: str, path: str, ref: str) -> str | None:
        """The text of ``path`` at ``ref``; None when there is no such file."""
        ...


class GitLabChangedFiles(Protocol):
    async def compare_files(self, project: str, base: str, head: str) -> list[str]:
        """Paths changed from the merge base of ``base`` and ``head`` to ``head``."""
        ...

    async def mr_changed_files(self, project: str, iid: int) -> list[str]:
        """Paths a merge request changes."""
        ...


class GitLabMergeRequests(Protocol):
    async def get_mr(self, project: str, iid: int) -> dict[str, Any]:
        """The merge request's facts: ``sha``, ``author``, ``is_fork``, ..."""
        ...


class GitLabMembers(Protocol):
    async def access_level(self, project: str, user: int | str) -> int:
        """The user's effective role number on the project (0: no access)."""
        ...


class GitLabStatuses(Protocol):
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
        """Post commit status ``name`` on ``sha``, for ``ref`` (a branch or tag name, or
        ``refs/merge-requests/N/head``)."""
        ...


class GitLabReplies(Protocol):
    async def create_note(self, project: str, iid: int, body: str) -> int:
        """Comment on a merge request; the note's id."""
        ...


class GitLabNotes(GitLabReplies, Protocol):
    async def edit_note(self, project: str, iid: int, note_id: int, body: str) -> None: ...


class GitLabEmoji(Protocol):
    async def award_emoji(self, project: str, iid: int, note_id: int, name: str) -> None:
        """React to a note: thumbsup, confused, eyes, ..."""
        ...
