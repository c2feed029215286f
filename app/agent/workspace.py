"""A persistent git workspace per repository, reused between jobs (incremental builds).

The first job of a repository on a machine creates ``WORK_DIR/KEY`` with ``git init`` and
``origin`` at the job's URL; later jobs reuse it. Every job fetches the exact commit
(``git fetch origin SHA``, or all heads and tags when the remote refuses a bare SHA)
unless the workspace has it already (a re-run, the pipeline's other jobs), checks it out
detached and removes untracked files, keeping ignored ones (build outputs, caches).

The clone credential never touches the disk. ``origin`` is the job's clean URL; the
credential (``protocol.CloneAuth``) reaches git only in the environment of the commands
that talk to the remote, as an ``http.extraHeader`` (``Authorization: Basic ...``) through
``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_0``/``GIT_CONFIG_VALUE_0`` (git 2.31 and later;
older git: the same header through ``GIT_CONFIG_PARAMETERS``), never on a command line
or in a file. Git runs with an environment of its own (``PATH``, ``HOME``, ``LANG``/
``LC_ALL``, the proxy and CA variables, ``GIT_TERMINAL_PROMPT=0``), without credential
helpers, askpass, hooks or the user's global config, so nothing stores the credential
and nothing a step left behind sees it. What a step could have left in a reused
workspace's git directory to redirect a fetch (its ``config``, ``commondir``,
``config.worktree``) is replaced by a fresh config with the clean ``origin`` before every
job: a workspace whose remote URL held a token (older PloyD) loses it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from app.protocol import CloneAuth

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


# Passed through to git when set: what reaching the remote may need on this machine.
PASS_ENV = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)
# Before every command: no hooks (a step may have written .git/hooks), no credential
# helper (nothing stores or offers a credential), no advice.
SAFE_CONFIG = (
    "-c",
    "advice.detachedHead=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "credential.helper=",
    "-c",
    "core.fsmonitor=false",
    # The agent's git in a workspace its steps' user owns (sandbox.hand_over).
    "-c",
    "safe.directory=*",
)
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_CONFIG_COUNT_SINCE = (2, 31)  # GIT_CONFIG_COUNT and friends
_git_version: tuple[int, ...] | None = None


def git_version() -> tuple[int, ...]:
    """This machine's git version, ``(2, 39, 5)``; ``()`` when it cannot be told."""
    global _git_version
    if _git_version is None:
        try:
            out = subprocess.run(
                ["git", "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
        _git_version = tuple(int(g) for g in found.groups() if g) if found else ()
    return _git_version


def git_env(auth: CloneAuth | None = None, *, config_count: bool | None = None) -> dict[str, str]:
    """The whole environment of a git command: a minimal base and, for a command that
    talks to the remote, ``auth`` as an ``Authorization`` header. ``config_count``: use
    ``GIT_CONFIG_COUNT`` (default: when this git has it), else ``GIT_CONFIG_PARAMETERS``."""
    env = {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": os.environ.get("HOME") or "/",
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",  # no askpass program (it would override core.askPass/SSH_ASKPASS)
        "GIT_CONFIG_GLOBAL": "/dev/null",  # not ~/.gitconfig (a step may write it; 2.32+)
    }
    env.update({k: os.environ[k] for k in PASS_ENV if os.environ.get(k)})
    if auth is not None:
        basic = base64.b64encode(f"{auth.username}:{auth.token}".encode()).decode()
        header = f"Authorization: Basic {basic}"
        if config_count is None:
            config_count = git_version() >= _CONFIG_COUNT_SINCE
        if config_count:
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=header,
            )
        else:  # git's own way of passing -c to its children; base64 has no quote
            env["GIT_CONFIG_PARAMETERS"] = f"'http.extraheader={header}'"
    return env


async def _git(
    cwd: Path, *args: str, auth: CloneAuth | None = None, config_count: bool | None = None
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *SAFE_CONFIG,
        *args,
        cwd=cwd,
        env=git_env(auth, config_count=config_count),
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


def _check_url(clone_url: str, auth: CloneAuth | None) -> None:
    if not clone_url or clone_url.startswith("-"):
        raise WorkspaceError(f"bad clone URL: {clone_url!r}")
    if auth is None:
        return
    try:
        parts = urlsplit(clone_url)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or not host or parts.username is not None:
        raise WorkspaceError(f"a clone credential came with an unusable URL: {clone_url!r}")
    if not (parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK)):
        raise WorkspaceError(
            f"refusing to send the clone credential to {clone_url} "
            "(only over https, or http to this machine's loopback)"
        )


def _refused(out: str) -> bool:
    text = out.lower()
    return any(
        s in text for s in ("authentication failed", "could not read username", " 401", " 403")
    )


def _reset_config(git_dir: Path) -> None:
    """Forget what a step may have written into a reused workspace's git configuration
    (``prepare`` writes a fresh one)."""
    for name in ("config", "commondir", "config.worktree"):
        target = git_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _write_config(git_dir: Path, clone_url: str) -> None:
    """A fresh ``.git/config``: git's defaults and ``origin`` at the job's clean URL."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in clone_url):
        raise WorkspaceError(f"bad clone URL: {clone_url!r}")
    url = clone_url.replace("\\", "\\\\").replace('"', '\\"')
    text = (
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = true\n"
        f'[remote "origin"]\n\turl = "{url}"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
    )
    (git_dir / "config").write_text(text)


async def prepare(
    work_dir: Path,
    workspace_key: str,
    clone_url: str,
    sha: str,
    *,
    auth: CloneAuth | None = None,
    log: LogFn | None = None,
    config_count: bool | None = None,
) -> tuple[Path, bool]:
    """Make ``WORK_DIR/KEY`` a checkout of ``sha`` from ``clone_url``, fetched with
    ``auth`` when given (see the module's doc: it is never written down).

    Returns ``(path, reused)``; ``reused`` is True when an existing workspace was updated
    with ``git fetch`` rather than created. Raises ``WorkspaceError``. ``config_count``
    chooses how the credential reaches git (default: what this git supports).
    """

    async def say(text: str) -> None:
        if log is not None:
            await log(text + "\n")

    if not _SHA.fullmatch(sha):
        raise WorkspaceError(f"not a commit SHA: {sha!r}")
    _check_url(clone_url, auth)
    path = workspace_dir(work_dir, workspace_key)
    git_dir = path / ".git"
    reused = git_dir.is_dir() and not git_dir.is_symlink()
    if reused:
        _reset_config(git_dir)
    else:
        await say(f"workspace: new clone into {path}")
        if path.exists() or path.is_symlink():  # a half-made workspace, or not a git one
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        path.mkdir(parents=True)
        await _git_ok(path, "git init", "init", "--quiet")
    _write_config(git_dir, clone_url)  # what `git init` and `git remote add` write

    async def fetch(*args: str) -> tuple[int, str]:
        return await _git(path, "fetch", *args, auth=auth, config_count=config_count)

    # The commit is here already (a re-run, another job of the same pipeline): no fetch.
    rc = 1
    if reused:
        rc, _ = await _git(path, "cat-file", "-e", f"{sha}^{{commit}}")
        await say(f"workspace: reused {path} ({'commit here' if rc == 0 else 'git fetch'})")
    if rc == 0:
        first = ""
    else:
        rc, first = await fetch("--quiet", "--no-tags", "origin", sha)
    if rc != 0:
        # Some servers refuse a bare SHA: fetch every branch and tag, then look for it.
        rc, second = await fetch(
            "--quiet", "--tags", "--force", "origin", "+refs/heads/*:refs/remotes/origin/*"
        )
        if rc != 0:
            why = ""
            if auth is not None and _refused(second):
                why = (
                    " (the server refused the clone credential: it may have expired, or "
                    "not reach this repository)"
                )
            elif auth is None and _refused(second):
                why = " (the server asks for a credential, and this job has none)"
            raise WorkspaceError(f"git fetch from {clone_url} failed{why}: {first}\n{second}")
        rc, _ = await _git(path, "cat-file", "-e", f"{sha}^{{commit}}")
        if rc != 0:
            raise WorkspaceError(f"commit {sha} not found in {clone_url}: {first}")
    await _git_ok(path, f"git checkout {sha}", "checkout", "--quiet", "--force", "--detach", sha)
    await _git_ok(path, "git clean", "clean", "-ffdq")
    return path, reused
