"""The fake GitHub's in-memory state: installations, repositories at commits, pulls.

Plain data with a few helpers; the HTTP side lives in ``tests/fakes/github.py`` and the
endpoints in ``tests/fakes/github_handlers.py``.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Roles GitHub knows, and the legacy ``permission`` each maps to (see the collaborator
# permission endpoint: maintain -> write, triage -> read).
ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}


def blob_sha(content: bytes) -> str:
    """The git blob id of ``content``, as git computes it."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def fake_sha(*parts: str) -> str:
    """A deterministic 40-hex id for a commit or tree made up by the fake."""
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


def as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitHubRejection(Exception):
    """Raised inside the fake to answer with an error (and maybe record a violation)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        violation: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.violation = violation
        self.errors = errors
        self.detail = detail or message


@dataclass
class Violation:
    """A request the OpenAPI description (or GitHub) would not accept."""

    kind: str  # "undescribed" | "params" | "body" | "auth" | "semantic" | "response"
    method: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.method} {self.path}: {self.message}"


@dataclass
class RecordedRequest:
    method: str
    path: str  # decoded, without the API prefix
    query: dict[str, str]
    json: Any
    headers: dict[str, str]  # lower-case names
    operation: str | None = None  # "POST /repos/{owner}/{repo}/check-runs"
    status: int = 0


@dataclass
class Fault:
    method: str  # "*" for any
    pattern: str  # an OpenAPI template ("/repos/{owner}/{repo}/check-runs") or a glob
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def matches(self, method: str, path: str, template: str | None) -> bool:
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        return self.pattern == template or fnmatch.fnmatchcase(path, self.pattern)


@dataclass
class FakeInstallation:
    id: int
    account: str
    account_id: int
    account_type: str = "Organization"  # or "User"
    suspended: bool = False
    permissions: dict[str, str] = field(
        default_factory=lambda: {
            "checks": "write",
            "contents": "read",
            "issues": "write",
            "metadata": "read",
            "pull_requests": "write",
            "statuses": "write",
        }
    )


@dataclass
class FakePull:
    number: int
    head_sha: str
    base_sha: str
    head_ref: str
    base_ref: str
    user: str = "octocat"
    title: str = "A change"
    body: str | None = None
    state: str = "open"
    draft: bool = False
    files: list[dict[str, Any]] | None = None  # None: computed from the two commits
    head_repo: str | None = None  # "owner/name" of a fork; None: the same repository


@dataclass
class FakeRepo:
    owner: str
    name: str
    id: int
    installation_id: int
    default_branch: str = "main"
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # username -> role
    pulls: dict[int, FakePull] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def add_commit(
        self,
        files: dict[str, str | bytes | None] | None = None,
        *,
        sha: str | None = None,
        branch: str | None = None,
        base: str | None = None,
    ) -> str:
        """A commit whose tree is ``base``'s files updated by ``files`` (None deletes).

        Moves ``branch`` (default: the default branch when ``base`` is None) to it.
        """
        snapshot = dict(self.commits[self.resolve_or_raise(base)]) if base else {}
        for path, content in (files or {}).items():
            if content is None:
                snapshot.pop(path, None)
            else:
                snapshot[path.lstrip("/")] = as_bytes(content)
        if sha is None:
            listing = "".join(f"{p}:{blob_sha(c)}" for p, c in sorted(snapshot.items()))
            sha = fake_sha(self.full_name, base or "", listing, str(len(self.commits)))
        self.commits[sha] = snapshot
        target = branch or (self.default_branch if base is None else None)
        if target:
            self.branches[target] = sha
        return sha

    def resolve(self, ref: str | None) -> str | None:
        """The commit a sha, short sha, branch or ``refs/heads/...`` names."""
        if ref is None:
            ref = self.default_branch
        for prefix in ("refs/heads/", "heads/"):
            if ref.startswith(prefix):
                ref = ref[len(prefix) :]
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.commits:
            return ref
        if len(ref) >= 7:
            found = [sha for sha in self.commits if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        return None

    def resolve_or_raise(self, ref: str) -> str:
        sha = self.resolve(ref)
        if sha is None:
            raise KeyError(f"{self.full_name}: no commit for {ref!r}")
        return sha

    def set_role(self, username: str, role: str) -> None:
        if role not in ROLE_TO_PERMISSION:
            raise ValueError(f"role {role!r}: one of {sorted(ROLE_TO_PERMISSION)}")
        self.roles[username] = role


def diff_files(old: dict[str, bytes], new: dict[str, bytes]) -> list[dict[str, Any]]:
    """GitHub's ``files`` entries (filename, status, additions...) between two trees."""
    out: list[dict[str, Any]] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        if before is None:
            status = "added"
        elif after is None:
            status = "removed"
        else:
            status = "modified"
        adds = len((after or b"").splitlines())
        dels = len((before or b"").splitlines())
        out.append(
            {
                "filename": path,
                "status": status,
                "additions": adds,
                "deletions": dels,
                "changes": adds + dels,
                "sha": blob_sha(after or b""),
            }
        )
    return out
