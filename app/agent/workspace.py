"""A persistent git workspace per repository, reused between jobs (incremental builds).

The first job of a repository on a machine creates ``WORK_DIR/KEY`` with ``git init`` and
``git remote add origin URL``; later jobs reuse it. Every job fetches the exact commit
(``git fetch origin SHA``, or all heads and tags when the remote refuses a bare SHA),
checks it out detached and removes untracked files, keeping ignored ones (build outputs,
caches).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

LogFn = Callable[[str], Awaitable[None]]

_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WorkspaceError(Exception):
    """The code could not be fetched or checked out; the message includes git's stderr."""


def workspace_dir(work_dir: Path, workspace_key: str) -> Path:
    """Where the workspace for ``workspace_key`` lives: one safe directory name."""
    name = _KEY_UNSAFE.sub("-", workspace_key).strip(".-")
    if not name:
        raise WorkspaceError(f"unusable workspace key {workspace_key!r}")
    return Path(work_dir) / name


async def _git(cwd: Path, *args: str) -> tuple[int, str]:
    env = dict(os.environ)
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"})
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-c",
        "advice.detachedHead=false",
        # The agent's git in a workspace its steps' user owns (sandbox.hand_over).
        "-c",
        "safe.directory=*",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace").strip()


async def _git_ok(cwd: Path, what: str, *args: str) -> str:
    rc, out = await _git(cwd, *args)
    if rc != 0:
        raise WorkspaceError(f"{what} failed (git exit {rc}): {out}")
    return out


async def prepare(
    work_dir: Path,
    workspace_key: str,
    clone_url: str,
    sha: str,
    *,
    log: LogFn | None = None,
) -> tuple[Path, bool]:
    """Make ``WORK_DIR/KEY`` a checkout of ``sha`` from ``clone_url``.

    Returns ``(path, reused)``; ``reused`` is True when an existing workspace was updated
    with ``git fetch`` rather than created. Raises ``WorkspaceError``.
    """

    async def say(text: str) -> None:
        if log is not None:
            await log(text + "\n")

    if not _SHA.fullmatch(sha):
        raise WorkspaceError(f"not a commit SHA: {sha!r}")
    if not clone_url or clone_url.startswith("-"):
        raise WorkspaceError(f"bad clone URL: {clone_url!r}")
    path = workspace_dir(work_dir, workspace_key)
    reused = (path / ".git").is_dir()
    if reused:
        await say(f"workspace: reused {path} (git fetch)")
        await _git_ok(path, "git remote set-url", "remote", "set-url", "origin", clone_url)
    else:
        await say(f"workspace: new clone into {path}")
        if path.exists():  # a half-made workspace from an interrupted job
            shutil.rmtree(path)
        path.mkdir(parents=True)
        await _git_ok(path, "git init", "init", "--quiet")
        await _git_ok(path, "git remote add", "remote", "add", "origin", clone_url)

    rc, first = await _git(path, "fetch", "--quiet", "--no-tags", "origin", sha)
    if rc != 0:
        # Some servers refuse a bare SHA: fetch every branch and tag, then look for it.
        rc, second = await _git(
            path,
            "fetch",
            "--quiet",
            "--tags",
            "--force",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
        )
        if rc != 0:
            raise WorkspaceError(f"git fetch from {clone_url} failed: {first}\n{second}")
        rc, _ = await _git(path, "cat-file", "-e", f"{sha}^{{commit}}")
        if rc != 0:
            raise WorkspaceError(f"commit {sha} not found in {clone_url}: {first}")
    await _git_ok(path, f"git checkout {sha}", "checkout", "--quiet", "--force", "--detach", sha)
    await _git_ok(path, "git clean", "clean", "-ffdq")
    return path, reused
