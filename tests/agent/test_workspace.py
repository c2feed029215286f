"""Workspaces: a real git repository in tmp_path as the remote."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.agent.workspace import WorkspaceError, git_env, git_version, prepare
from app.protocol import CloneAuth
from tests.fakes.git_http import GitHttp, credential_forms, files_holding, serve_git_http

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
    assert logs[0] == f"workspace: reused {path} (git fetch)\n"
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


async def test_a_commit_already_here_is_not_fetched_again(tmp_path: Path, remote: Path) -> None:
    sha = commit(remote, {"a.txt": "one"})
    work = tmp_path / "work"
    path, _ = await prepare(work, "k", str(remote), sha)
    (path / "a.txt").write_text("changed by a step")
    (path / ".git" / "config").write_text('[remote "origin"]\n\turl = /elsewhere\n')
    shutil.rmtree(remote)  # only a fetch would notice
    logs: list[str] = []

    async def log(text: str) -> None:
        logs.append(text)

    again, reused = await prepare(work, "k", str(remote), sha, log=log)
    assert reused and again == path
    assert logs == [f"workspace: reused {path} (commit here)\n"]
    assert (path / "a.txt").read_text() == "one"
    assert git(path, "config", "remote.origin.url") == str(remote)  # rewritten all the same
    with pytest.raises(WorkspaceError, match="git fetch"):  # a commit not here: fetched
        await prepare(work, "k", str(remote), "b" * 40)


async def test_origin_is_the_url_as_given_and_control_characters_are_refused(
    tmp_path: Path,
) -> None:
    odd = tmp_path / 'a "quoted" \\ remote'
    odd.mkdir()
    git(odd, "init", "-q", "-b", "main")
    sha = commit(odd, {"a.txt": "one"})
    path, _ = await prepare(tmp_path / "w", "k", str(odd), sha)
    assert git(path, "config", "remote.origin.url") == str(odd)
    assert (path / "a.txt").read_text() == "one"
    for bad in (f"{odd}\n[core]\n\tfsmonitor = evil", f"{odd}\x00"):
        with pytest.raises(WorkspaceError, match="bad clone URL"):
            await prepare(tmp_path / "w", "k", bad, sha)


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


# --- the clone credential, over git's smart HTTP for real ------------------------------

TOKEN = "ghs_LiveInstallationToken0123456789abcdef"
USER = "x-access-token"


def secret_forms_of(auth: CloneAuth) -> list[bytes]:
    """What must be nowhere on disk: the token, user:token and the header's base64."""
    return credential_forms(auth.username, auth.token)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, GitHttp, Path]]:
    """acme/models (a working copy under tmp_path/git) served over HTTP, readable with
    x-access-token:TOKEN only."""
    root = tmp_path / "git"
    (root / "acme" / "models").mkdir(parents=True)
    git(root / "acme" / "models", "init", "-q", "-b", "main")

    def authorize(user: str, password: str, repo: str) -> bool:
        return (user, password, repo) == (USER, TOKEN, "acme/models")

    async with serve_git_http(root, authorize) as (url, server):
        yield f"{url}/acme/models.git", server, root / "acme" / "models"


@pytest.mark.parametrize("config_count", [True, False], ids=["GIT_CONFIG_COUNT", "old git"])
async def test_the_right_token_checks_out_and_stays_off_disk(
    tmp_path: Path, served: tuple[str, GitHttp, Path], config_count: bool
) -> None:
    url, server, repo = served
    sha = commit(repo, {"a.txt": "one"})
    auth = CloneAuth(USER, TOKEN)
    work = tmp_path / "work"
    path, _ = await prepare(work, "k", url, sha, auth=auth, config_count=config_count)
    assert (path / "a.txt").read_text() == "one"
    assert git(path, "remote", "get-url", "origin") == url  # the clean URL
    assert files_holding(work, secret_forms_of(auth)) == []
    # Sent as a header from the first request on (no 401 round trip), to the server only.
    assert server.requests and all(r.status == 200 for r in server.requests)
    assert {(r.user, r.password) for r in server.requests} == {(USER, TOKEN)}
    # And again on a reused workspace.
    sha2 = commit(repo, {"a.txt": "two"})
    _, reused = await prepare(work, "k", url, sha2, auth=auth, config_count=config_count)
    assert reused and (path / "a.txt").read_text() == "two"
    assert files_holding(work, secret_forms_of(auth)) == []


async def test_a_wrong_token_is_a_clear_error_and_stays_off_disk(
    tmp_path: Path, served: tuple[str, GitHttp, Path]
) -> None:
    url, server, repo = served
    sha = commit(repo, {"a.txt": "one"})
    wrong = CloneAuth(USER, "ghs_expired0000000000000000000000000000")
    with pytest.raises(WorkspaceError) as e:
        await prepare(tmp_path / "work", "k", url, sha, auth=wrong)
    message = str(e.value)
    assert "refused the clone credential" in message and url in message
    assert wrong.token not in message
    assert files_holding(tmp_path / "work", secret_forms_of(wrong)) == []
    assert server.requests and all(r.status == 401 for r in server.requests)


async def test_no_token_for_a_private_repository_says_so(
    tmp_path: Path, served: tuple[str, GitHttp, Path]
) -> None:
    url, _, repo = served
    sha = commit(repo, {"a.txt": "one"})
    with pytest.raises(WorkspaceError) as e:
        await prepare(tmp_path / "work", "k", url, sha)
    assert "asks for a credential, and this job has none" in str(e.value)


async def test_an_old_workspace_with_a_token_in_its_remote_is_cleaned(
    tmp_path: Path, served: tuple[str, GitHttp, Path]
) -> None:
    """What older PloyD left: the token in .git/config. Also what a step could leave:
    hooks, a URL rewrite, an include; none of them is used."""
    url, _, repo = served
    sha = commit(repo, {"a.txt": "one"})
    auth = CloneAuth(USER, TOKEN)
    work = tmp_path / "work"
    path, _ = await prepare(work, "k", url, sha, auth=auth)
    old_url = url.replace("http://", f"http://{USER}:{TOKEN}@", 1)
    git(path, "remote", "set-url", "origin", old_url)
    spy = tmp_path / "spy.txt"
    hook = path / ".git" / "hooks" / "reference-transaction"
    hook.write_text(f"#!/bin/sh\nenv >> {spy}\n")
    hook.chmod(0o755)
    (path / ".git" / "hooks" / "post-checkout").write_bytes(hook.read_bytes())
    (path / ".git" / "hooks" / "post-checkout").chmod(0o755)
    git(path, "config", "url.http://127.0.0.1:9/steal/.insteadOf", url)
    git(path, "config", "include.path", str(tmp_path / "evil.cfg"))
    assert TOKEN in (path / ".git" / "config").read_text()
    sha2 = commit(repo, {"a.txt": "two"})
    _, reused = await prepare(work, "k", url, sha2, auth=auth)
    assert reused and (path / "a.txt").read_text() == "two"
    assert git(path, "remote", "get-url", "origin") == url
    assert "insteadOf" not in (path / ".git" / "config").read_text()
    assert not spy.exists()  # no hook ran
    assert files_holding(work, secret_forms_of(auth)) == []


async def test_credential_helpers_and_askpass_are_not_asked(
    tmp_path: Path, served: tuple[str, GitHttp, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper in the user's config (which a step could write) would store what git
    asked for or was given: git runs without the user's config and without helpers."""
    url, _, repo = served
    sha = commit(repo, {"a.txt": "one"})
    log = tmp_path / "helper.log"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f"[credential]\n\thelper = \"!f() {{ echo helper \\\"$@\\\" >> {log}; }}; f\"\n"
    )
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho askpass >> {log}\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    await prepare(tmp_path / "w1", "k", url, sha, auth=CloneAuth(USER, TOKEN))
    with pytest.raises(WorkspaceError):
        await prepare(tmp_path / "w2", "k", url, sha, auth=CloneAuth(USER, "wrong-token"))
    assert not log.exists()


def test_git_gets_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLOYD_ADMIN_TOKEN", "server-secret")
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    env = git_env(CloneAuth(USER, TOKEN), config_count=True)
    assert "PLOYD_ADMIN_TOKEN" not in env
    assert env["https_proxy"] == "http://proxy.internal:3128"
    header = "Authorization: Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"]) == ("1", "http.extraHeader")
    assert env["GIT_CONFIG_VALUE_0"] == header
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == ""
    assert "GIT_CONFIG_COUNT" not in git_env(None)
    old = git_env(CloneAuth(USER, TOKEN), config_count=False)
    assert old["GIT_CONFIG_PARAMETERS"] == f"'http.extraheader={header}'"
    assert git_version() >= (2, 31)  # this machine's git: the GIT_CONFIG_COUNT path


@pytest.mark.parametrize(
    "url",
    [
        "http://github.example.com/acme/models.git",
        "file:///srv/git/acme/models",
        "ssh://git@github.com/acme/models.git",
        "https://user:pw@github.com/acme/models.git",
    ],
)
async def test_the_credential_goes_only_over_https_or_loopback_http(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(WorkspaceError) as e:
        await prepare(tmp_path / "w", "k", url, "a" * 40, auth=CloneAuth(USER, TOKEN))
    assert "clone credential" in str(e.value) and TOKEN not in str(e.value)
