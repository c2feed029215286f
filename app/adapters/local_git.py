"""A repository on this machine's disk, read with git: the "forge" of `ployd serve`'s
`POST /api/v1/pipelines` and of tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


class LocalRepoError(ValueError):
    """The path is not a git repository, or the ref does not exist."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=False, timeout=30
    )


def resolve(repo: Path, ref: str) -> tuple[str, str]:
    """(full ref, sha) for ``ref`` in the repository at ``repo``."""
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        raise LocalRepoError(f"{repo} is not a git repository")
    res = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if res.returncode != 0:
        raise LocalRepoError(f"{ref!r} is not a commit in {repo}")
    sha = res.stdout.decode().strip()
    full = _git(repo, "rev-parse", "--symbolic-full-name", ref).stdout.decode().strip()
    return (full or sha), sha


def read_file(repo: Path, sha: str, path: str) -> str | None:
    """The text of ``path`` at ``sha``, or None when it does not exist there."""
    res = _git(repo, "show", f"{sha}:{path}")
    if res.returncode != 0:
        return None
    return res.stdout.decode("utf-8", errors="replace")


def default_branch(repo: Path) -> str:
    res = _git(repo, "symbolic-ref", "--short", "HEAD")
    return res.stdout.decode().strip() or "main"
