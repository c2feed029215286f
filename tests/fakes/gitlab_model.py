"""The fake GitLab's state: projects with commits and branches, merge requests, records."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_SHA_SEQ = itertools.count(1)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def make_sha(seed: str) -> str:
    return hashlib.sha1(f"{seed}:{next(_SHA_SEQ)}".encode()).hexdigest()


class GitLabAnswer(Exception):
    """Stop handling: answer ``status`` with ``body``; ``violation`` names a contract breach."""

    def __init__(
        self, status: int, body: Any, *, violation: str | None = None, detail: str = ""
    ) -> None:
        super().__init__(detail or str(body))
        self.status = status
        self.body = body
        self.violation = violation
        self.detail = detail or str(body)


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    parent: str | None = None
    message: str = "commit"


@dataclass
class FakeMR:
    iid: int
    id: int
    project_id: int
    source_project_id: int
    source_branch: str
    target_branch: str
    sha: str
    base_sha: str
    author: str
    title: str = "A merge request"
    state: str = "opened"
    changes: list[dict[str, Any]] | None = None  # None: computed from the commits


@dataclass
class FakeProject:
    id: int
    path_with_namespace: str
    default_branch: str = "main"
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    members: dict[int, int] = field(default_factory=dict)  # user id -> level (direct)
    inherited: dict[int, int] = field(default_factory=dict)  # user id -> level (groups)
    mrs: dict[int, FakeMR] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    # refs/merge-requests/N/head -> sha: a merge request's head, which for a fork's is on
    # no branch of this project
    mr_refs: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return self.branches[self.default_branch]

    def branch_containing(self, sha: str) -> str | None:
        """A branch whose history holds ``sha`` (as GitLab's ``branch_names_contains``)."""
        return next((b for b, head in self.branches.items() if sha in self.ancestors(head)), None)

    def add_commit(
        self,
        files: dict[str, str | bytes | None] | None,
        *,
        sha: str | None = None,
        branch: str | None = None,
        base: str | None = None,
        message: str = "commit",
    ) -> str:
        """A commit on ``base`` (a ref; default ``branch``'s head if it exists, else the
        default branch's head) changing ``files``.

        A ``None`` value deletes the file. Moves ``branch`` (if given) to the new commit.
        """
        start = base or (branch if branch in self.branches else self.default_branch)
        parent = self.resolve(start) if self.commits else None
        if base and parent is None:
            raise KeyError(f"unknown base {base!r}")
        tree = dict(self.commits[parent].files) if parent else {}
        for path, content in (files or {}).items():
            if content is None:
                tree.pop(path, None)
            else:
                tree[path] = content.encode() if isinstance(content, str) else content
        sha = sha or make_sha(self.path_with_namespace)
        self.commits[sha] = Commit(sha, tree, parent, message)
        if branch:
            self.branches[branch] = sha
        return sha

    def resolve(self, ref: str | None) -> str | None:
        """A branch name, full SHA or unique SHA prefix (7+) as a SHA; None if unknown."""
        ref = ref or self.default_branch
        if ref == "HEAD":
            ref = self.default_branch
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.commits:
            return ref
        if len(ref) >= 7:
            hits = [sha for sha in self.commits if sha.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        return None

    def ancestors(self, sha: str) -> list[str]:
        out: list[str] = []
        cur: str | None = sha
        while cur is not None:
            out.append(cur)
            cur = self.commits[cur].parent
        return out

    def merge_base(self, a: str, b: str) -> str | None:
        seen = set(self.ancestors(a))
        return next((sha for sha in self.ancestors(b) if sha in seen), None)

    def diff(self, base: str | None, head: str) -> list[dict[str, Any]]:
        """Per-file changes from ``base`` to ``head``, in GitLab's diff shape."""
        old = self.commits[base].files if base else {}
        new = self.commits[head].files
        out = []
        for path in sorted(set(old) | set(new)):
            if old.get(path) == new.get(path):
                continue
            out.append(diff_entry(path, path, new_file=path not in old, deleted=path not in new))
        return out


def diff_entry(
    old_path: str,
    new_path: str,
    *,
    new_file: bool = False,
    deleted: bool = False,
    renamed: bool | None = None,
) -> dict[str, Any]:
    return {
        "old_path": old_path,
        "new_path": new_path,
        "a_mode": "0" if new_file else "100644",
        "b_mode": "0" if deleted else "100644",
        "diff": f"@@ -1 +1 @@\n-{old_path}\n+{new_path}\n",
        "new_file": new_file,
        "renamed_file": (old_path != new_path) if renamed is None else renamed,
        "deleted_file": deleted,
        "generated_file": False,
    }


@dataclass
class RecordedRequest:
    method: str
    path: str  # decoded, below /api/v4
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    endpoint: str | None = None  # "POST /projects/:id/statuses/:sha"
    status: int = 0

    @property
    def params(self) -> dict[str, Any]:
        """Query and JSON body merged, as GitLab reads them."""
        merged: dict[str, Any] = dict(self.query)
        if isinstance(self.body, dict):
            merged.update(self.body)
        return merged


@dataclass
class Violation:
    kind: str  # auth, undescribed, params, unknown-param
    method: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.method} {self.path}: {self.detail}"


@dataclass
class Fault:
    method: str
    pattern: str
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def matches(self, method: str, path: str, template: str | None) -> bool:
        if self.method not in ("*", method):
            return False
        if template is not None and self.pattern == template:
            return True
        return fnmatch.fnmatchcase(path, self.pattern)
