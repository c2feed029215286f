"""Workspaces: a real git repository in tmp_path as the remote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.agent.workspace import WorkspaceError, prepare

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "c") -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    repo = tmp_path / "remote"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


async def test_first_clone_then_reuse(tmp_path: Path, remote: Path) -> None:
    sha1 = commit(remote, {"a.txt": "one", ".gitignore": "build/\n"})
    logs: list[str] = []

    async def log(text: str) -> None:
        logs.append(text)

    work = tmp_path / "work"
    path, reused = await prepare(work, "acme-model", str(remote), sha1, log=log)
    assert not reused and path == work / "acme-model"
    assert (path / "a.txt").read_text() == "one"
    assert "workspace: new clone" in logs[0]

    # A marker inside .git, an ignored build output and an untracked file.
    (path / ".git" / "ployd-marker").write_text("x")
    inode = (path / ".git").stat().st_ino
    (path / "build").mkdir()
    (path / "build" / "out.o").write_text("cached")
    (path / "stray.txt").write_text("untracked")
    (path / "a.txt").write_text("locally modified")

    sha2 = commit(remote, {"a.txt": "two", "b.txt": "new"})
    logs.clear()
    path2, reused2 = await prepare(work, "acme-model", f"file://{remote}", sha2, log=log)
    assert reused2 and path2 == path
    assert logs[0].startswith(f"workspace: reused {path} (git fetch)")
    assert (path / ".git" / "ployd-marker").exists()  # not a fresh clone
    assert (path / ".git").stat().st_ino == inode
    assert (path / "a.txt").read_text() == "two"
    assert (path / "b.txt").read_text() == "new"
    assert (path / "build" / "out.o").read_text() == "cached"  # ignored: kept
    assert not (path / "stray.txt").exists()  # untracked: cleaned
    assert git(path, "rev-parse", "HEAD") == sha2

    # And back to the older commit.
    await prepare(work, "acme-model", str(remote), sha1)
    assert (path / "a.txt").read_text() == "one" and not (path / "b.txt").exists()


async def test_commit_not_on_a_branch_tip(tmp_path: Path, remote: Path) -> None:
    sha1 = commit(remote, {"a.txt": "one"})
    commit(remote, {"a.txt": "two"})
    path, _ = await prepare(tmp_path / "w", "k", str(remote), sha1)
    assert (path / "a.txt").read_text() == "one"


async def test_unknown_sha(tmp_path: Path, remote: Path) -> None:
    commit(remote, {"a.txt": "one"})
    with pytest.raises(WorkspaceError) as e:
        await prepare(tmp_path / "w", "k", str(remote), "0" * 40)
    assert "0" * 40 in str(e.value)


async def test_bad_url(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as e:
        await prepare(tmp_path / "w", "k", str(tmp_path / "nope"), "a" * 40)
    assert "git fetch" in str(e.value)


@pytest.mark.parametrize("sha", ["main", "--upload-pack=evil", ""])
async def test_refuses_a_non_sha(tmp_path: Path, remote: Path, sha: str) -> None:
    with pytest.raises(WorkspaceError):
        await prepare(tmp_path / "w", "k", str(remote), sha)


async def test_unsafe_key_stays_inside_work_dir(tmp_path: Path, remote: Path) -> None:
    sha = commit(remote, {"a.txt": "one"})
    path, _ = await prepare(tmp_path / "w", "../../etc/acme model", str(remote), sha)
    assert path.parent == tmp_path / "w"
