"""The fake GitHub itself: it must refuse what GitHub refuses, and answer in GitHub's shapes."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from gidgethub import sansio

from tests.fakes.github import (
    FakeGitHub,
    delivery_headers,
    generate_private_key_pem,
    load_fixture,
    serve_fake_github,
    sign,
)
from tests.fakes.github_openapi import load_spec

UA = {"User-Agent": "ployd-tests"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=UA) as s:
        yield s


async def call(
    session: aiohttp.ClientSession,
    fake: FakeGitHub,
    method: str,
    path: str,
    *,
    auth: str | None = None,
    json: Any = None,
    **kw: Any,
) -> tuple[int, Any, Any]:
    headers = {"Authorization": auth} if auth else {}
    async with session.request(
        method, fake.url + path, json=json, headers=headers, allow_redirects=False, **kw
    ) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body, resp.headers


def token_for(fake: FakeGitHub, owner: str = "octo-org") -> str:
    return "token " + fake.issue_token(fake.installation_for(owner).id)


@pytest.fixture
def repo_fake(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(
        "octo-org", "models", files={".ployd.yml": "jobs: {}\n", "src/train.py": "print(1)\n"}
    )
    return fake_github


# --------------------------------------------------------------------------- refusals


async def test_undescribed_endpoint_is_404_and_a_violation(repo_fake, session) -> None:
    status, body, _ = await call(
        session, repo_fake, "GET", "/repos/octo-org/models/branches", auth=token_for(repo_fake)
    )
    assert status == 404 and body["message"] == "Not Found"
    status, _, _ = await call(
        session, repo_fake, "PUT", "/repos/octo-org/models/check-runs", auth=token_for(repo_fake)
    )
    assert status == 404
    kinds = [(v.kind, v.method) for v in repo_fake.take_violations()]
    assert kinds == [("undescribed", "GET"), ("undescribed", "PUT")]


async def test_invalid_body_is_422_and_a_violation(repo_fake, session) -> None:
    sha = repo_fake.repo("octo-org/models").branches["main"]
    status, body, _ = await call(
        session,
        repo_fake,
        "POST",
        "/repos/octo-org/models/check-runs",
        auth=token_for(repo_fake),
        json={"name": "ci", "head_sha": sha, "status": "running"},
    )
    assert status == 422
    assert "'running' is not one of" in body["message"]
    [violation] = repo_fake.take_violations()
    assert violation.kind == "body" and "status" in violation.message
    assert repo_fake.check_runs == {}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "ci"},  # head_sha required
        {"name": "ci", "head_sha": "x", "actions": [{"label": "a", "description": "b"}] * 1},
        {"name": "ci", "head_sha": "x", "output": {"title": "t", "summary": "s" * 65536}},
        {
            "name": "ci",
            "head_sha": "x",
            "output": {"title": "t", "summary": "s", "annotations": [{"path": "a"}]},
        },
    ],
)
async def test_body_schema_details(repo_fake, session, body) -> None:
    status, _, _ = await call(
        session,
        repo_fake,
        "POST",
        "/repos/octo-org/models/check-runs",
        auth=token_for(repo_fake),
        json=body,
    )
    assert status == 422
    assert [v.kind for v in repo_fake.take_violations()] == ["body"]


async def test_too_many_actions_and_annotations_are_refused(repo_fake, session) -> None:
    sha = repo_fake.repo("octo-org/models").branches["main"]
    action = {"label": "Re-run", "description": "Run again", "identifier": "rerun"}
    note = {
        "path": "a",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "notice",
        "message": "m",
    }
    for extra in (
        {"actions": [action] * 4},
        {"output": {"title": "t", "summary": "s", "annotations": [note] * 51}},
    ):
        status, _, _ = await call(
            session,
            repo_fake,
            "POST",
            "/repos/octo-org/models/check-runs",
            auth=token_for(repo_fake),
            json={"name": "ci", "head_sha": sha, **extra},
        )
        assert status == 422
    assert [v.kind for v in repo_fake.take_violations()] == ["body", "body"]


async def test_update_completed_needs_conclusion(repo_fake, session) -> None:
    sha = repo_fake.repo("octo-org/models").branches["main"]
    auth = token_for(repo_fake)
    _, run, _ = await call(
        session,
        repo_fake,
        "POST",
        "/repos/octo-org/models/check-runs",
        auth=auth,
        json={"name": "ci", "head_sha": sha},
    )
    status, _, _ = await call(
        session,
        repo_fake,
        "PATCH",
        f"/repos/octo-org/models/check-runs/{run['id']}",
        auth=auth,
        json={"status": "completed"},
    )
    assert status == 422
    assert [v.kind for v in repo_fake.take_violations()] == ["body"]


async def test_query_parameters_are_typed(repo_fake, session) -> None:
    auth = token_for(repo_fake)
    for query in ("?status=running", "?per_page=many", "?colour=red"):
        status, _, _ = await call(
            session,
            repo_fake,
            "GET",
            f"/repos/octo-org/models/commits/main/check-runs{query}",
            auth=auth,
        )
        assert status == 422
    assert [v.kind for v in repo_fake.take_violations()] == ["params"] * 3


async def test_jwt_endpoints_refuse_bad_tokens(repo_fake, session) -> None:
    inst = repo_fake.installation_for("octo-org").id
    path = f"/app/installations/{inst}/access_tokens"
    now = int(time.time())
    other_key = generate_private_key_pem()
    bad = {
        "expired": jwt.encode(
            {"iat": now - 700, "exp": now - 60, "iss": str(repo_fake.app_id)},
            repo_fake.private_key_pem,
            algorithm="RS256",
        ),
        "forged": jwt.encode(
            {"iat": now - 60, "exp": now + 500, "iss": str(repo_fake.app_id)},
            other_key,
            algorithm="RS256",
        ),
        "too long": repo_fake.app_jwt(lifetime=3600),
        "wrong app": repo_fake.app_jwt(iss="999"),
        "not a jwt": "ghs_notajwt",
    }
    for name, token in bad.items():
        status, _, _ = await call(session, repo_fake, "POST", path, auth=f"Bearer {token}")
        assert status == 401, name
    # an installation token is no app credential either
    status, _, _ = await call(session, repo_fake, "GET", "/app", auth=token_for(repo_fake))
    assert status == 401
    assert [v.kind for v in repo_fake.take_violations()] == ["auth"] * (len(bad) + 1)
    assert repo_fake.calls("POST", "/app/installations/{installation_id}/access_tokens")


async def test_installation_tokens_are_checked(repo_fake, session) -> None:
    other = repo_fake.add_repo("someone-else", "private")
    url = "/repos/octo-org/models/contents/.ployd.yml"
    assert (await call(session, repo_fake, "GET", url))[0] == 401
    assert (await call(session, repo_fake, "GET", url, auth="token ghs_made_up"))[0] == 401
    expired = repo_fake.issue_token(repo_fake.installation_for("octo-org").id, ttl=-1)
    assert (await call(session, repo_fake, "GET", url, auth=f"token {expired}"))[0] == 401
    foreign = "token " + repo_fake.issue_token(other.installation_id)
    assert (await call(session, repo_fake, "GET", url, auth=foreign))[0] == 404
    assert [v.kind for v in repo_fake.take_violations()] == ["auth"] * 4
    # Bearer works as well as token
    bearer = token_for(repo_fake).replace("token ", "Bearer ")
    assert (await call(session, repo_fake, "GET", url, auth=bearer))[0] == 200


async def test_violations_fail_the_block() -> None:
    with pytest.raises(AssertionError, match="undescribed"):
        async with serve_fake_github() as fake, aiohttp.ClientSession(headers=UA) as s:
            await call(s, fake, "GET", "/nowhere")


# --------------------------------------------------------------------------- answers


async def test_every_operation_answers_in_the_spec_shape(repo_fake, session) -> None:
    """Walk every described operation; response validation is on, so shapes are checked."""
    fake = repo_fake
    repo = fake.repo("octo-org/models")
    pull = fake.add_pull("octo-org/models", 3, head_files={"src/train.py": "print(2)\n"})
    fake.set_permission("octo-org/models", "alice", "triage")
    auth, app = token_for(fake), f"Bearer {fake.app_jwt()}"
    base = "/repos/octo-org/models"
    _, run, _ = await call(
        session,
        fake,
        "POST",
        f"{base}/check-runs",
        auth=auth,
        json={"name": "ci", "head_sha": pull.head_sha},
    )
    _, comment, _ = await call(
        session, fake, "POST", f"{base}/issues/3/comments", auth=auth, json={"body": "hello"}
    )
    suite = run["check_suite"]["id"]
    inst = repo.installation_id
    plan = [
        ("GET", "/app", app, None, 200),
        ("GET", "/app/installations", app, None, 200),
        ("POST", f"/app/installations/{inst}/access_tokens", app, None, 201),
        ("GET", f"{base}/installation", app, None, 200),
        ("GET", "/rate_limit", auth, None, 200),
        ("GET", f"{base}/contents/.ployd.yml?ref=main", auth, None, 200),
        ("GET", f"{base}/contents/src", auth, None, 200),
        ("GET", f"{base}/check-runs/{run['id']}", auth, None, 200),
        ("PATCH", f"{base}/check-runs/{run['id']}", auth, {"status": "in_progress"}, 200),
        ("GET", f"{base}/commits/{pull.head_sha}/check-runs", auth, None, 200),
        ("POST", f"{base}/check-suites/{suite}/rerequest", auth, None, 201),
        ("GET", f"{base}/issues/3/comments", auth, None, 200),
        ("PATCH", f"{base}/issues/comments/{comment['id']}", auth, {"body": "edited"}, 200),
        (
            "POST",
            f"{base}/issues/comments/{comment['id']}/reactions",
            auth,
            {"content": "rocket"},
            201,
        ),
        (
            "POST",
            f"{base}/issues/comments/{comment['id']}/reactions",
            auth,
            {"content": "rocket"},
            200,
        ),
        ("GET", f"{base}/collaborators/alice/permission", auth, None, 200),
        ("GET", f"{base}/pulls/3", auth, None, 200),
        ("GET", f"{base}/pulls/3/files", auth, None, 200),
        ("GET", f"{base}/compare/main...pr-3", auth, None, 200),
        ("POST", f"{base}/statuses/{pull.head_sha}", auth, {"state": "success"}, 201),
        ("GET", f"{base}/git/trees/main?recursive=1", auth, None, 200),
        ("GET", f"{base}/tarball/main", auth, None, 302),
        ("DELETE", f"{base}/issues/comments/{comment['id']}", auth, None, 204),
    ]
    for method, path, credential, body, expected in plan:
        status, _, _ = await call(session, fake, method, path, auth=credential, json=body)
        assert status == expected, (method, path)
    described = {op.key for op in load_spec().operations}
    exercised = {r.operation for r in fake.requests}
    assert described <= exercised
    assert fake.violations == []


async def test_contents_are_base64_and_missing_is_404(repo_fake, session) -> None:
    auth = token_for(repo_fake)
    status, body, _ = await call(
        session, repo_fake, "GET", "/repos/octo-org/models/contents/src/train.py", auth=auth
    )
    assert status == 200 and body["encoding"] == "base64" and body["type"] == "file"
    import base64

    assert base64.b64decode(body["content"]) == b"print(1)\n"
    status, _, _ = await call(
        session, repo_fake, "GET", "/repos/octo-org/models/contents/nope.yml", auth=auth
    )
    assert status == 404
    status, _, _ = await call(
        session,
        repo_fake,
        "GET",
        "/repos/octo-org/models/contents/.ployd.yml?ref=nobranch",
        auth=auth,
    )
    assert status == 404
    assert repo_fake.violations == []  # a 404 for a missing file is no violation


async def test_pagination_links(repo_fake, session) -> None:
    files = [{"filename": f"f{i:03}.py"} for i in range(75)]
    repo_fake.add_pull("octo-org/models", 9, head_files={"x": "y"}, files=files)
    status, page, headers = await call(
        session,
        repo_fake,
        "GET",
        "/repos/octo-org/models/pulls/9/files?per_page=50",
        auth=token_for(repo_fake),
    )
    assert status == 200 and len(page) == 50
    assert 'rel="next"' in headers["Link"] and "page=2" in headers["Link"]


async def test_tarball_redirects_to_an_archive(repo_fake, session) -> None:
    status, _, headers = await call(
        session, repo_fake, "GET", "/repos/octo-org/models/tarball/main", auth=token_for(repo_fake)
    )
    assert status == 302
    async with session.get(headers["Location"]) as resp:
        data = await resp.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(m.name.split("/", 1)[1] for m in tar.getmembers())
    assert names == [".ployd.yml", "src/train.py"]


async def test_faults_are_consumed_and_requests_recorded(repo_fake, session) -> None:
    repo_fake.fail_next("GET", "/repos/{owner}/{repo}/contents/{path}", status=503, times=2)
    url, auth = "/repos/octo-org/models/contents/.ployd.yml", token_for(repo_fake)
    statuses = [(await call(session, repo_fake, "GET", url, auth=auth))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    repo_fake.rate_limit_next("*", "/repos/octo-org/*/contents/*", retry_after=3)
    status, body, headers = await call(session, repo_fake, "GET", url, auth=auth)
    assert status == 403 and headers["retry-after"] == "3"
    assert "secondary rate limit" in body["message"]
    recorded = repo_fake.calls("GET", "/repos/{owner}/{repo}/contents/{path}")
    assert [r.status for r in recorded] == [503, 503, 200, 403]
    assert recorded[0].headers["authorization"].startswith("token ")
    assert recorded[0].path == url


async def test_api_prefix_for_enterprise_server(session) -> None:
    async with serve_fake_github(prefix="/api/v3") as fake:
        fake.add_repo("octo-org", "models", files={"a": "b"})
        assert fake.url.endswith("/api/v3")
        status, _, _ = await call(
            session, fake, "GET", "/repos/octo-org/models/contents/a", auth=token_for(fake)
        )
        assert status == 200


# --------------------------------------------------------------------------- webhooks


def test_sign_matches_gidgethub_validation() -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    headers = delivery_headers("ping", body, "s3cret", delivery_id="abc")
    assert headers["X-GitHub-Event"] == "ping" and headers["X-GitHub-Delivery"] == "abc"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["X-Hub-Signature-256"] == sign(body, "s3cret")
    sansio.validate_event(body, signature=headers["X-Hub-Signature-256"], secret="s3cret")
    event = sansio.Event.from_http(
        {k.lower(): v for k, v in headers.items()}, body, secret="s3cret"
    )
    assert event.event == "ping"


def test_load_fixture() -> None:
    payload = load_fixture("pull_request.opened.1")
    assert payload["action"] == "opened" and payload["pull_request"]["number"]
    assert load_fixture("ping.1.json")["zen"]
