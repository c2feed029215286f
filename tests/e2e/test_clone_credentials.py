"""The forges' clone credentials (``engine.hooks.payload_hooks``): for an HTTPS clone URL the
GitHub App gives a fresh read-only installation token and the GitLab bot its clone token,
each returned as Credentials (URL with the token, the token to mask); any other URL is
left alone (None)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.engine.hooks import Credentials
from app.protocol import JobPayload
from app.store.models import Pipeline
from tests.e2e.github_world import GitHubWorld
from tests.e2e.gitlab_world import GitLabWorld

CONFIG = "version: 1\njobs:\n  unit: {steps: [{run: 'true'}]}\n"


def payload(forge: str, pipeline_id: int, clone_url: str) -> JobPayload:
    return JobPayload(
        pipeline_id=pipeline_id, job_id=1, attempt_id=1, attempt_number=1, name="unit",
        forge=forge, repo="acme/models", clone_url=clone_url, sha="a" * 40,
        ref="refs/heads/main", workspace_key=f"{forge}-acme-models", timeout_s=60,
    )


async def test_github_gives_an_installation_token_for_https(
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
        (token,) = got.mask
        assert token.startswith("ghs_") and token in w.fake.tokens
        assert got == Credentials(f"https://x-access-token:{token}@github.com/acme/models.git",
                                  (token,))
        assert await hook(replace(job, clone_url="file:///srv/git/acme/models")) is None
        assert job.mask == ()  # the job it was given is as it was


async def test_gitlab_gives_its_clone_token_for_https(gitlab_world: Callable[..., Any]) -> None:
    async with gitlab_world() as w:
        w: GitLabWorld
        assert w.h is not None
        hook = w.h.engine.hooks.payload_hooks["gitlab"]
        job = payload("gitlab", 1, "https://gitlab.example.com/ml/models.git")
        token = w.fake.token
        assert await hook(job) == Credentials(
            f"https://oauth2:{token}@gitlab.example.com/ml/models.git", (token,)
        )
        assert await hook(replace(job, clone_url="file:///srv/git/ml/models")) is None
