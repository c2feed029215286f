"""GitHubClient end to end against the fake GitHub, plus its pure parts, table-driven."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import jwt
import pytest

from app.adapters.github import (
    GitHubAppConfig,
    GitHubClient,
    GitHubConfigError,
    GitHubError,
    GitHubRateLimited,
    GitHubUnavailable,
    Repo,
    RetryPolicy,
    make_app_jwt,
    split_check_run,
)
from app.adapters.github.retry import retry_delay
from tests.fakes.github import FakeGitHub, serve_fake_github

TOKENS = "/app/installations/{installation_id}/access_tokens"
CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"
CHECK_RUN = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
CONTENTS = "/repos/{owner}/{repo}/contents/{path}"


class Clock:
    """A settable clock shared by the client and the fake: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    fake: FakeGitHub
    gh: GitHubClient
    clock: Clock
    repo: Repo
    sleeps: list[float] = field(default_factory=list)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = Clock()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with serve_fake_github(clock=clock) as fake, aiohttp.ClientSession() as session:
        fake_repo = fake.add_repo(
            "octo-org",
            "models",
            files={".ployd.yml": "jobs:\n  train: {}\n", "src/train.py": "print('é')\n"},
        )
        gh = GitHubClient(
            session,
            app_id=fake.app_id,
            private_key_pem=fake.private_key_pem,
            api_url=fake.url,
            sleep=sleep,
            clock=clock,
        )
        repo = Repo("octo-org", "models", fake_repo.installation_id)
        yield Env(fake, gh, clock, repo, sleeps)


def head(env: Env) -> str:
    return env.fake.repo("octo-org/models").branches["main"]


# --------------------------------------------------------------------------- auth


async def test_token_is_fetched_once_and_refreshed_near_expiry(env: Env) -> None:
    for _ in range(3):
        assert await env.gh.get_file(env.repo, ".ployd.yml", "main") == "jobs:\n  train: {}\n"
    assert len(env.fake.calls("POST", TOKENS)) == 1
    env.clock.advance(3600 - 301)  # 301 s left: still past the 5-minute margin
    await env.gh.get_file(env.repo, ".ployd.yml", "main")
    assert len(env.fake.calls("POST", TOKENS)) == 1
    env.clock.advance(2)  # 299 s left: renew
    await env.gh.get_file(env.repo, ".ployd.yml", "main")
    tokens = env.fake.calls("POST", TOKENS)
    assert len(tokens) == 2 and env.gh.auth.fetches == 2
    used = {r.headers["authorization"] for r in env.fake.calls("GET", CONTENTS)}
    assert len(used) == 2  # the new token is the one used afterwards


async def test_concurrent_callers_share_one_token_fetch(env: Env) -> None:
    results = await asyncio.gather(
        *(env.gh.get_file(env.repo, "src/train.py", "main") for _ in range(8))
    )
    assert set(results) == {"print('é')\n"}
    assert len(env.fake.calls("POST", TOKENS)) == 1


async def test_the_app_jwt_is_what_github_accepts(env: Env) -> None:
    token = make_app_jwt(env.fake.app_id, env.fake.private_key_pem, now=env.clock())
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == str(env.fake.app_id)
    assert claims["iat"] == env.clock() - 60
    assert 540 <= claims["exp"] - env.clock() <= 600
    assert env.fake.calls("POST", TOKENS) == []  # tokens are fetched lazily


def test_the_app_key_is_parsed_once_and_a_jwt_serves_a_minute(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.adapters.github import auth

    parsed: list[bytes] = []
    real = auth.load_pem_private_key

    def counting(data: bytes, password: bytes | None) -> object:
        parsed.append(data)
        return real(data, password=password)

    monkeypatch.setattr(auth, "load_pem_private_key", counting)
    signs: list[object] = []
    real_encode = auth.jwt.encode
    monkeypatch.setattr(
        auth.jwt, "encode", lambda *a, **kw: signs.append(a) or real_encode(*a, **kw)
    )
    app = auth.AppAuth(env.fake.app_id, env.fake.private_key_pem, _never, clock=env.clock)
    first = {app.app_jwt() for _ in range(100)}
    assert len(parsed) == 1 and len(signs) == 1 and len(first) == 1
    env.clock.advance(59)
    assert app.app_jwt() in first
    env.clock.advance(2)  # a minute old: signed anew, with the same parsed key
    later = app.app_jwt()
    assert later not in first and len(signs) == 2 and len(parsed) == 1
    claims = jwt.decode(later, options={"verify_signature": False})
    assert claims["exp"] - env.clock() >= 480  # 8 minutes left at least, whenever used


async def _never(installation_id: int, app_jwt: str) -> dict[str, str]:
    raise AssertionError("no token fetch expected")


async def test_a_failed_token_fetch_is_backed_off_not_retried_per_call(env: Env) -> None:
    unknown = Repo("octo-org", "models", 424242)  # an installation GitHub does not know
    env.fake.fail_next("POST", "/app/installations/424242/access_tokens", status=404, times=99)
    for _ in range(20):
        with pytest.raises(GitHubError) as info:
            await env.gh.get_pull(unknown, 1)
        assert info.value.status == 404
    assert len(env.fake.calls("POST", TOKENS)) == 1  # one fetch, then the same error
    with pytest.raises(GitHubError):
        await env.gh.clone_token(unknown)  # clone tokens obey the same backoff
    assert len(env.fake.calls("POST", TOKENS)) == 1
    env.clock.advance(1.01)  # the first backoff (1 s) is over: one more try
    for _ in range(5):
        with pytest.raises(GitHubError):
            await env.gh.get_pull(unknown, 1)
    assert len(env.fake.calls("POST", TOKENS)) == 2
    env.clock.advance(1.01)  # the second failure backs off 2 s: not yet
    with pytest.raises(GitHubError):
        await env.gh.get_pull(unknown, 1)
    assert len(env.fake.calls("POST", TOKENS)) == 2
    # a known installation is not held back by another's failures
    assert await env.gh.get_file(env.repo, ".ployd.yml", "main") is not None
    assert len(env.fake.calls("POST", TOKENS)) == 3
    env.fake.take_violations()


async def test_a_token_fetch_that_succeeds_again_clears_the_backoff(env: Env) -> None:
    env.fake.fail_next("POST", TOKENS, status=404)
    with pytest.raises(GitHubError):
        await env.gh.get_pull(env.repo, 1)
    with pytest.raises(GitHubError):  # backing off: GitHub is not asked
        await env.gh.get_pull(env.repo, 1)
    assert len(env.fake.calls("POST", TOKENS)) == 1
    env.clock.advance(1.01)
    assert await env.gh.get_file(env.repo, ".ployd.yml", "main") is not None
    env.fake.fail_next("POST", TOKENS, status=404)
    env.fake.tokens.clear()  # revoked: the next call fetches, fails, and backs off 1 s again
    with pytest.raises(GitHubError):
        await env.gh.get_pull(env.repo, 1)
    env.clock.advance(1.01)
    assert await env.gh.get_file(env.repo, ".ployd.yml", "main") is not None
    env.fake.take_violations()


async def test_revoked_token_is_replaced_once(env: Env) -> None:
    await env.gh.get_file(env.repo, ".ployd.yml", "main")
    env.fake.tokens.clear()  # GitHub revoked it
    assert await env.gh.get_file(env.repo, ".ployd.yml", "main") is not None
    assert len(env.fake.calls("POST", TOKENS)) == 2
    assert [v.kind for v in env.fake.take_violations()] == ["auth"]  # the one 401


async def test_installation_is_looked_up_when_not_given(env: Env) -> None:
    repo = Repo.parse("octo-org/models")
    await env.gh.get_file(repo, ".ployd.yml", "main")
    await env.gh.get_file(repo, "src/train.py", "main")
    lookups = env.fake.calls("GET", "/repos/{owner}/{repo}/installation")
    assert len(lookups) == 1
    assert lookups[0].headers["authorization"].lower().startswith("bearer ")


# --------------------------------------------------------------------------- calls


async def test_get_file(env: Env) -> None:
    assert await env.gh.get_file(env.repo, "src/train.py", head(env)) == "print('é')\n"
    assert await env.gh.get_file(env.repo, "missing.yml", "main") is None
    assert await env.gh.get_file(env.repo, "src", "main") is None  # a directory
    assert await env.gh.get_file(env.repo, ".ployd.yml", "no-such-branch") is None
    [first, *_] = env.fake.calls("GET", CONTENTS)
    assert first.query == {"ref": head(env)}


async def test_changed_files_paginate(env: Env) -> None:
    files = {f"data/part-{i:03}.csv": str(i) for i in range(230)}
    env.fake.add_pull("octo-org/models", 12, head_files={**files, "src/train.py": None})
    changed = await env.gh.changed_files_pr(env.repo, 12)
    assert sorted(changed) == sorted([*files, "src/train.py"])
    pages = env.fake.calls("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")
    assert [r.query.get("page", "1") for r in pages] == ["1", "2", "3"]


async def test_renamed_files_count_both_names(env: Env) -> None:
    env.fake.add_pull(
        "octo-org/models",
        4,
        head_files={"x": "1"},
        files=[{"filename": "new.py", "previous_filename": "old.py", "status": "renamed"}],
    )
    assert await env.gh.changed_files_pr(env.repo, 4) == ["old.py", "new.py"]


async def test_changed_files_compare(env: Env) -> None:
    before = head(env)
    after = env.fake.add_commit("octo-org/models", {"README.md": "hi", ".ployd.yml": None})
    changed = await env.gh.changed_files_compare(env.repo, before, after)
    assert sorted(changed) == [".ployd.yml", "README.md"]
    assert await env.gh.changed_files_compare(env.repo, after, after) == []


async def test_check_run_with_output_annotations_and_actions(env: Env) -> None:
    note = {
        "path": "src/train.py",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "warning",
        "message": "slow",
    }
    actions = [
        {"label": "Re-run", "description": "Run the job again", "identifier": "rerun"},
        {"label": "Cancel", "description": "Stop the job", "identifier": "cancel"},
        {"label": "On demand", "description": "Retry without spot", "identifier": "ondemand"},
    ]
    run_id = await env.gh.create_check_run(
        env.repo,
        name="ployd / train",
        head_sha=head(env),
        status="in_progress",
        details_url="https://ployd.example/runs/1",
        external_id="job-1",
        output={
            "title": "Training",
            "summary": "s" * 70000,
            "text": "t" * 70000,
            "annotations": [note] * 120,
        },
        actions=actions,
    )
    run = env.fake.check_runs[run_id]
    assert run["status"] == "in_progress" and run["_actions"] == actions
    assert len(env.fake.annotations[run_id]) == 120
    assert len(run["output"]["summary"]) == 65535 and run["output"]["summary"].endswith(
        "(truncated)"
    )
    posts, patches = env.fake.calls("POST", CHECK_RUNS), env.fake.calls("PATCH", CHECK_RUN)
    assert len(posts) == 1 and len(patches) == 2
    sent = [len(r.json["output"]["annotations"]) for r in [*posts, *patches]]
    assert sent == [50, 50, 20]

    await env.gh.update_check_run(
        env.repo,
        run_id,
        conclusion="failure",
        output={"title": "Failed", "summary": "OOM", "annotations": [note]},
    )
    run = env.fake.check_runs[run_id]
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert run["output"]["title"] == "Failed" and run["output"]["annotations_count"] == 121


async def test_check_run_limits_are_checked_before_calling(env: Env) -> None:
    action = {"label": "a", "description": "b", "identifier": "c"}
    with pytest.raises(ValueError, match="at most 3 actions"):
        await env.gh.create_check_run(env.repo, name="x", head_sha=head(env), actions=[action] * 4)
    assert env.fake.calls("POST", CHECK_RUNS) == []


async def test_comments_reactions_permissions_statuses_pulls(env: Env) -> None:
    fake, gh, repo = env.fake, env.gh, env.repo
    pull = fake.add_pull("octo-org/models", 5, head_files={"src/train.py": "print(2)\n"})
    comment_id = await gh.create_comment(repo, 5, "Plan: 2 jobs")
    await gh.edit_comment(repo, comment_id, "Plan: 3 jobs")
    assert fake.comments[comment_id]["body"] == "Plan: 3 jobs"
    await gh.add_reaction(repo, comment_id, "eyes")
    assert [r["content"] for r in fake.reactions] == ["eyes"]

    for user, role in [
        ("ada", "admin"),
        ("mo", "maintain"),
        ("wu", "write"),
        ("tri", "triage"),
        ("rae", "read"),
        ("nan", "none"),
    ]:
        fake.set_permission("octo-org/models", user, role)
        assert await gh.permission(repo, user) == role
    assert await gh.permission(repo, "stranger") == "none"

    data = await gh.get_pull(repo, 5)
    assert data["head"]["sha"] == pull.head_sha and data["number"] == 5

    run_id = await gh.create_check_run(repo, name="ci", head_sha=pull.head_sha)
    suite = fake.check_runs[run_id]["check_suite"]["id"]
    await gh.rerequest_check_suite(repo, suite)
    assert fake.rerequested_suites == [suite]


# --------------------------------------------------------------------------- failures


async def test_502_then_success_is_retried(env: Env) -> None:
    await env.gh.get_file(env.repo, ".ployd.yml", "main")  # token first
    env.fake.fail_next("POST", CHECK_RUNS, status=502)
    run_id = await env.gh.create_check_run(env.repo, name="ci", head_sha=head(env))
    assert run_id in env.fake.check_runs
    assert env.sleeps == [1.0]
    assert [r.status for r in env.fake.calls("POST", CHECK_RUNS)] == [502, 201]
    assert env.gh.metrics.retries == 1 and env.gh.metrics.errors == 1


async def test_secondary_rate_limit_waits_as_told(env: Env) -> None:
    env.fake.rate_limit_next(
        "POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", retry_after=7
    )
    assert await env.gh.create_comment(env.repo, 1, "hello")
    assert env.sleeps == [7.0]
    assert env.gh.metrics.rate_limited == 1
    assert env.gh.metrics.rate_limit_remaining is not None


async def test_primary_rate_limit_waits_for_the_reset(env: Env) -> None:
    env.fake.primary_rate_limit_next("GET", CONTENTS, reset_in=30)
    assert await env.gh.get_file(env.repo, ".ployd.yml", "main")
    assert env.sleeps == [31.0]


async def test_rate_limit_beyond_the_budget_is_raised(env: Env) -> None:
    env.fake.rate_limit_next("GET", CONTENTS, retry_after=3600)
    with pytest.raises(GitHubRateLimited) as caught:
        await env.gh.get_file(env.repo, ".ployd.yml", "main")
    assert caught.value.status == 403 and caught.value.retry_after == 3600
    assert env.sleeps == []


async def test_422_is_raised_not_retried(env: Env) -> None:
    with pytest.raises(GitHubError) as caught:
        await env.gh.create_check_run(env.repo, name="ci", head_sha="0" * 40)
    assert caught.value.status == 422 and "No commit found" in caught.value.message
    assert len(env.fake.calls("POST", CHECK_RUNS)) == 1 and env.sleeps == []
    assert [v.kind for v in env.fake.take_violations()] == ["semantic"]


async def test_persistent_5xx_gives_up_within_bounds(env: Env) -> None:
    env.fake.fail_next("GET", CONTENTS, status=503, times=10)
    with pytest.raises(GitHubUnavailable) as caught:
        await env.gh.get_file(env.repo, ".ployd.yml", "main")
    assert caught.value.status == 503
    assert env.sleeps == [1.0, 2.0, 4.0, 8.0]  # 5 attempts
    assert len(env.fake.calls("GET", CONTENTS)) == 5


async def test_network_errors_are_retried_then_raised() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with serve_fake_github() as fake:
        url, key = fake.url, fake.private_key_pem
    # the fake is gone: connections are refused
    async with aiohttp.ClientSession() as session:
        gh = GitHubClient(
            session,
            app_id=1,
            private_key_pem=key,
            api_url=url,
            sleep=sleep,
            policy=RetryPolicy(attempts=3),
        )
        with pytest.raises(GitHubUnavailable) as caught:
            await gh.get_file(Repo("o", "r", 1), "x", "main")
    assert caught.value.status == 0 and sleeps == [1.0, 2.0]


async def test_tokens_never_reach_the_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.fake.fail_next("GET", CONTENTS, status=502)
    await env.gh.get_file(env.repo, ".ployd.yml", "main")
    tokens = list(env.fake.tokens)
    assert tokens and "retry" in caplog.text
    assert not any(t in caplog.text for t in tokens)
    assert not any(t in repr(env.gh.auth) for t in tokens)


async def test_enterprise_server_base_url() -> None:
    async with serve_fake_github(prefix="/api/v3") as fake, aiohttp.ClientSession() as s:
        r = fake.add_repo("octo-org", "models", files={"a.txt": "b"})
        gh = GitHubClient(
            s, app_id=fake.app_id, private_key_pem=fake.private_key_pem, api_url=fake.url + "/"
        )
        assert await gh.get_file(Repo("octo-org", "models", r.installation_id), "a.txt", "main")


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("attempt", "waited", "status", "headers", "body", "expected"),
    [
        (1, 0, 200, {}, b"", None),
        (1, 0, 404, {}, b"", None),
        (1, 0, 422, {}, b"", None),
        (1, 0, 403, {}, b'{"message": "Resource not accessible"}', None),
        (1, 0, 502, {}, b"", 1.0),
        (3, 0, 500, {}, b"", 4.0),
        (5, 0, 502, {}, b"", None),  # out of attempts
        (1, 119.5, 502, {}, b"", None),  # out of time
        (1, 0, 403, {"retry-after": "5"}, b"", 5.0),
        (1, 0, 429, {"retry-after": "2"}, b"", 2.0),
        (1, 0, 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, b"", 11.0),
        (1, 0, 403, {}, b'{"message": "You have exceeded a secondary rate limit"}', 60.0),
        (1, 0, 403, {"retry-after": "500"}, b"", None),  # longer than the budget
    ],
)
def test_retry_delay(attempt, waited, status, headers, body, expected) -> None:
    assert retry_delay(RetryPolicy(), attempt, waited, status, headers, body, 1000.0) == expected


def test_split_check_run_leaves_small_bodies_alone() -> None:
    body, more = split_check_run({"name": "x", "head_sha": "y", "output": {"summary": "s"}})
    assert body == {"name": "x", "head_sha": "y", "output": {"summary": "s"}} and more == []


def test_config_from_env(tmp_path) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n")
    config = GitHubAppConfig.from_env(
        {
            "PLOYD_GITHUB_APP_ID": "42",
            "PLOYD_GITHUB_PRIVATE_KEY_FILE": str(key),
            "PLOYD_GITHUB_API_URL": "https://ghe.example/api/v3/",
        }
    )
    assert (config.app_id, config.api_url) == (42, "https://ghe.example/api/v3")
    assert "PRIVATE KEY" not in repr(config)
    assert (
        GitHubAppConfig.from_env(
            {"PLOYD_GITHUB_APP_ID": "1", "PLOYD_GITHUB_PRIVATE_KEY": config.private_key_pem}
        ).api_url
        == "https://api.github.com"
    )
    with pytest.raises(GitHubConfigError):
        GitHubAppConfig.from_env({"PLOYD_GITHUB_APP_ID": "x"})
    with pytest.raises(GitHubConfigError):
        GitHubAppConfig.from_env({"PLOYD_GITHUB_APP_ID": "1"})
