"""The forges' clone credentials (``engine.hooks.payload_hooks``) and what becomes of them.

For an HTTPS (or loopback HTTP) clone URL the GitHub App gives a fresh read-only
installation token (``x-access-token``), the GitLab bot a read-only deploy token of the
project it mints (or ``oauth2`` and PLOYD_GITLAB_CLONE_TOKEN, which must be read-only to
start); other URLs get nothing. End to end, git's smart HTTP is served for real by the
fakes (tests/fakes/git_http.py, ``git http-backend`` behind HTTP Basic): a job fetches
with the credential, and afterwards no file under the agents' work dir and no line of the
job's log holds the token, ``user:token`` or its base64 (the header's form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from app.engine.hooks import Credentials
from app.handlers.gitlab.clone import CloneTokenError, GitLabCloneCredentials
from app.protocol import CloneAuth, JobPayload
from app.settings import SettingsError
from app.store.models import Attempt, Pipeline
from tests.e2e.github_world import GitHubWorld
from tests.e2e.gitlab_world import GitLabWorld
from tests.fakes.git_http import credential_forms, files_holding

CONFIG = "version: 1\njobs:\n  unit: {steps: [{run: 'true'}]}\n"
# A step that looks for the credential where it could be: git's config, the remote, env.
SNOOP = """version: 1
jobs:
  unit:
    steps:
      - run: |
          git remote get-url origin
          git config --list --show-origin
          env | sort
          test -f ok.txt
"""
READ_ONLY = "glpat-read-only-clone-token"


def payload(forge: str, pipeline_id: int, clone_url: str, repo: str = "acme/models") -> JobPayload:
    return JobPayload(
        pipeline_id=pipeline_id, job_id=1, attempt_id=1, attempt_number=1, name="unit",
        forge=forge, repo=repo, clone_url=clone_url, sha="a" * 40,
        ref="refs/heads/main", workspace_key=f"{forge}-acme-models", timeout_s=60,
    )  # fmt: skip


async def pushed_job_log(w: GitHubWorld | GitLabWorld, event: str, payload: Any) -> str:
    """Deliver the push, let its one pipeline run; the log of its job ``unit``, which
    must have succeeded."""
    assert w.h is not None
    status, body = await w.deliver(event, payload)
    assert status == 202, body
    await w.settle()
    with w.h.engine.db.session() as s:
        pipeline = s.query(Pipeline).one()
        pid, state = pipeline.id, pipeline.state
    log = w.h.log(pid, "unit")
    assert state == "succeeded", log
    return log


def forms(auth: CloneAuth) -> list[bytes]:
    return credential_forms(auth.username, auth.token)


# --- GitHub -----------------------------------------------------------------------------


async def test_github_gives_an_installation_token_for_https_and_loopback_http(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        w: GitHubWorld
        assert w.h is not None
        sha = w.repo("acme/models", {".ployd.yml": CONFIG})
        status, body = await w.deliver("push", w.push("acme/models", "0" * 40, sha))
        assert status == 202, body
        await w.settle()
        with w.h.engine.db.session() as s:
            pid = s.query(Pipeline).one().id
        hook = w.h.engine.hooks.payload_hooks["github"]
        job = payload("github", pid, "https://github.com/acme/models.git")
        got = await hook(job)
        assert got is not None
        token = got.auth.token
        assert token.startswith("ghs_") and token in w.fake.tokens
        assert got == Credentials(CloneAuth("x-access-token", token))
        assert got.mask == (token, f"x-access-token:{token}")
        loopback = await hook(replace(job, clone_url="http://127.0.0.1:9/acme/models.git"))
        assert loopback is not None and loopback.auth.username == "x-access-token"
        for url in (
            "file:///srv/git/acme/models",
            "http://github.example.com/acme/models.git",  # plain HTTP across a network
            "ssh://git@github.com/acme/models.git",
        ):
            assert await hook(replace(job, clone_url=url)) is None, url
        assert job.mask == () and job.clone_auth is None  # the job it was given is as it was


async def test_a_github_job_over_http_leaves_no_token_on_disk_or_in_its_log(
    github_world: Callable[..., Any],
) -> None:
    async with github_world(git_http=True) as w:
        w: GitHubWorld
        assert w.h is not None
        sha = w.repo("acme/models", {".ployd.yml": SNOOP, "ok.txt": "yes"})
        log = await pushed_job_log(w, "push", w.push("acme/models", "0" * 40, sha))
        # The agent fetched over HTTP with a live installation token, as a header.
        fetched = [r for r in w.fake.git.requests if r.status == 200]
        assert fetched and {r.user for r in fetched} == {"x-access-token"}
        auths = {CloneAuth(r.user or "", r.password or "") for r in fetched}
        assert all(a.token in w.fake.tokens for a in auths)
        assert w.fake.base_url + "/_git/acme/models.git" in log  # `git remote get-url`
        needles = [n for a in auths for n in forms(a)]
        work = w.h.server.services.settings.workspaces_dir
        assert list(work.rglob(".git")), "the workspace is there"
        assert files_holding(work, needles) == []
        assert not any(n.decode() in log for n in needles)


# --- GitLab -----------------------------------------------------------------------------


async def test_gitlab_mints_a_read_only_deploy_token_per_project_and_reuses_it(
    gitlab_world: Callable[..., Any],
) -> None:
    async with gitlab_world() as w:
        w: GitLabWorld
        assert w.h is not None
        w.project("ml/models", {".ployd.yml": CONFIG})
        hook = w.h.engine.hooks.payload_hooks["gitlab"]
        assert isinstance(hook, GitLabCloneCredentials)
        now = [1_900_000_000.0]
        hook.clock = lambda: now[0]
        job = payload("gitlab", 1, "https://gitlab.example.com/ml/models.git", "ml/models")
        got = await hook(job)
        assert got is not None
        (minted,) = w.fake.deploy_tokens
        assert got.auth == CloneAuth(minted["username"], minted["token"])
        assert minted["username"].startswith("gitlab+deploy-token-")
        assert minted["scopes"] == ["read_repository"] and minted["name"] == "ployd-clone"
        call = w.fake.calls("POST", "/projects/:id/deploy_tokens")[0]
        assert call.params["expires_at"] == "2030-03-17T18:46:40Z"  # an hour ahead
        assert got.auth.token != w.fake.token  # never the bot's api token
        now[0] += 45 * 60  # 15 minutes before it expires: still the same one
        assert await hook(job) == got and len(w.fake.deploy_tokens) == 1
        now[0] += 6 * 60  # 9 minutes before: a new one
        renewed = await hook(job)
        assert renewed is not None and renewed != got and len(w.fake.deploy_tokens) == 2
        assert not w.fake.calls("DELETE", "/projects/:id/deploy_tokens/:token_id")
        # The first one is still valid for 9 minutes (a clone may be using it): kept. At
        # the renewal after it expired, it is deleted, so they do not pile up.
        now[0] += 51 * 60
        third = await hook(job)
        assert third is not None and third != renewed and len(w.fake.deploy_tokens) == 3
        assert len(w.fake.calls("DELETE", "/projects/:id/deploy_tokens/:token_id")) == 1
        assert [bool(d.get("_deleted")) for d in w.fake.deploy_tokens] == [True, False, False]
        assert await hook(replace(job, clone_url="file:///srv/git/ml/models")) is None


async def test_a_refused_deploy_token_fails_the_job_naming_the_project_and_the_fix(
    gitlab_world: Callable[..., Any],
) -> None:
    async with gitlab_world(git_http=True) as w:
        w: GitLabWorld
        assert w.h is not None
        w.fake.bot_role = 30  # Developer: GitLab answers 403
        hook = w.h.engine.hooks.payload_hooks["gitlab"]
        job = payload("gitlab", 1, "https://gitlab.example.com/ml/models.git", "ml/models")
        w.project("ml/models", {".ployd.yml": CONFIG})
        with pytest.raises(CloneTokenError) as e:
            await hook(job)
        message = str(e.value)
        assert "ml/models" in message and "403" in message
        assert "Maintainer" in message and "PLOYD_GITLAB_CLONE_TOKEN" in message
        # A pipeline: its attempt ends with that error, before reaching an agent.
        sha = w.fake.project("ml/models").head
        status, body = await w.deliver("Push Hook", w.push("ml/models", "0" * 40, sha))
        assert status == 202, body
        await w.settle()
        with w.h.engine.db.session() as s:
            errors = [a.error or "" for a in s.scalars(select(Attempt))]
        assert errors and all("Maintainer role on ml/models" in e for e in errors), errors


async def test_a_gitlab_job_over_http_with_a_deploy_token_leaves_no_token_behind(
    gitlab_world: Callable[..., Any],
) -> None:
    async with gitlab_world(git_http=True) as w:
        w: GitLabWorld
        assert w.h is not None
        sha = w.project("ml/models", {".ployd.yml": SNOOP, "ok.txt": "yes"})
        log = await pushed_job_log(w, "Push Hook", w.push("ml/models", "0" * 40, sha))
        fetched = [r for r in w.fake.git.requests if r.status == 200]
        (minted,) = w.fake.deploy_tokens
        assert fetched and {(r.user, r.password) for r in fetched} == {
            (minted["username"], minted["token"])
        }
        needles = forms(CloneAuth(minted["username"], minted["token"]))
        needles += [w.fake.token.encode()]  # nor the bot's token
        assert files_holding(w.h.server.services.settings.workspaces_dir, needles) == []
        assert not any(n.decode() in log for n in needles)


async def test_a_read_only_clone_token_is_used_as_oauth2(
    gitlab_world: Callable[..., Any],
) -> None:
    async def start(w: GitLabWorld) -> None:
        w.fake.add_token(READ_ONLY, ["read_repository"])

    async with gitlab_world(git_http=True, clone_token=READ_ONLY, before_start=start) as w:
        w: GitLabWorld
        assert w.h is not None
        hook = w.h.engine.hooks.payload_hooks["gitlab"]
        job = payload("gitlab", 1, "https://gitlab.example.com/ml/models.git", "ml/models")
        assert await hook(job) == Credentials(CloneAuth("oauth2", READ_ONLY))
        assert w.fake.calls("GET", "/personal_access_tokens/self")
        assert w.fake.calls("GET", "/personal_access_tokens/self")[0].headers[
            "private-token"
        ] == READ_ONLY
        sha = w.project("ml/models", {".ployd.yml": CONFIG})
        status, body = await w.deliver("Push Hook", w.push("ml/models", "0" * 40, sha))
        assert status == 202, body
        await w.settle()
        with w.h.engine.db.session() as s:
            assert s.query(Pipeline).one().state == "succeeded"
        assert w.fake.deploy_tokens == []
        assert {r.password for r in w.fake.git.requests if r.status == 200} == {READ_ONLY}
        needles = forms(CloneAuth("oauth2", READ_ONLY))
        assert files_holding(w.h.server.services.settings.workspaces_dir, needles) == []


@pytest.mark.parametrize(
    ("scopes", "says"),
    [
        (["api"], "has api"),
        (["read_repository", "write_repository"], "has write_repository"),
        (["read_api"], "lacks read_repository"),
        (None, "GitLab could not tell what this token is"),  # unknown to GitLab: 401
    ],
)
async def test_a_clone_token_that_is_not_read_only_refuses_to_start(
    gitlab_world: Callable[..., Any], scopes: list[str] | None, says: str
) -> None:
    async def start(w: GitLabWorld) -> None:
        if scopes is not None:
            w.fake.add_token(READ_ONLY, scopes)

    with pytest.raises(SettingsError) as e:
        async with gitlab_world(clone_token=READ_ONLY, before_start=start, clean=False):
            pass
    assert says in str(e.value) and "PLOYD_GITLAB_CLONE_TOKEN" in str(e.value)
    assert READ_ONLY not in str(e.value)
