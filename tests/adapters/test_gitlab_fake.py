"""The fake GitLab holds callers to the contract (tests/contracts/gitlab-rest.md)."""

from __future__ import annotations

import aiohttp

from tests.fakes.gitlab import (
    FakeGitLab,
    delivery_headers,
    fixture_event,
    load_fixture,
    serve_fake_gitlab,
)


def _auth(fake: FakeGitLab) -> dict[str, str]:
    return {"PRIVATE-TOKEN": fake.token}


async def test_wrong_token_is_401_and_a_violation(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a.txt": "a"})
    url = f"{fake_gitlab.url}/api/v4/projects/{proj.id}/repository/files/a.txt/raw"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"PRIVATE-TOKEN": "nope"}) as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "401 Unauthorized"}
        async with http.get(url, headers={"Authorization": f"Bearer {fake_gitlab.token}"}) as resp:
            assert resp.status == 200
            assert await resp.text() == "a"
    assert [v.kind for v in fake_gitlab.take_violations()] == ["auth"]


async def test_undescribed_endpoint_is_404_and_a_violation(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models")
    url = f"{fake_gitlab.url}/api/v4/projects/{proj.id}/pipelines"
    async with aiohttp.ClientSession(headers=_auth(fake_gitlab)) as http, http.get(url) as resp:
        assert resp.status == 404
    (violation,) = fake_gitlab.take_violations()
    assert violation.kind == "undescribed"


async def test_status_state_enum_and_description_length(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models", sha="a" * 40)
    url = f"{fake_gitlab.url}/api/v4/projects/group%2Fmodels/statuses/{'a' * 40}"
    async with aiohttp.ClientSession(headers=_auth(fake_gitlab)) as http:
        async with http.post(url, json={"state": "error", "name": "ci"}) as resp:
            assert resp.status == 400
            assert await resp.json() == {"error": "state does not have a valid value"}
        async with http.post(url, json={"state": "success", "description": "x" * 256}) as resp:
            assert resp.status == 400
        async with http.post(url, json={"name": "ci"}) as resp:
            assert resp.status == 400
            assert await resp.json() == {"error": "state is missing"}
        async with http.post(url, json={"state": "running", "context": "ci"}) as resp:
            assert resp.status == 201
            assert (await resp.json())["name"] == "ci"
    kinds = [v.kind for v in fake_gitlab.take_violations()]
    assert kinds == ["params", "params", "params"]
    assert [s["status"] for s in proj.statuses] == ["running"]


async def test_status_transitions_follow_gitlab(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models", sha="b" * 40)
    url = f"{fake_gitlab.url}/api/v4/projects/{proj.id}/statuses/{'b' * 40}"
    async with aiohttp.ClientSession(headers=_auth(fake_gitlab)) as http:
        answers = []
        for state in ("pending", "pending", "running", "running", "success", "pending"):
            async with http.post(url, json={"state": state, "name": "ci"}) as resp:
                answers.append(resp.status)
    assert answers == [201, 400, 201, 400, 201, 201]
    assert [s["status"] for s in proj.statuses] == ["success", "pending"]
    assert fake_gitlab.violations == []


async def test_unknown_parameter_is_recorded_not_refused(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a.txt": "a"})
    url = f"{fake_gitlab.url}/api/v4/projects/{proj.id}/repository/files/a.txt/raw"
    async with (
        aiohttp.ClientSession(headers=_auth(fake_gitlab)) as http,
        http.get(url, params={"reff": "main"}) as resp,
    ):
        assert resp.status == 200
    assert [v.kind for v in fake_gitlab.take_violations()] == ["unknown-param"]


async def test_exit_fails_when_violations_remain() -> None:
    try:
        async with (
            serve_fake_gitlab() as fake,
            aiohttp.ClientSession() as http,
            http.get(f"{fake.url}/api/v4/users") as resp,
        ):
            assert resp.status == 401
    except AssertionError as exc:
        assert "[auth]" in str(exc)
    else:
        raise AssertionError("serve_fake_gitlab should have failed")


async def test_fault_injection_and_recording(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models", files={"a.txt": "a"})
    fake_gitlab.fail_next("GET", "/projects/:id/repository/files/:file_path/raw", status=503)
    fake_gitlab.rate_limit_next("GET", "/projects/*/repository/files/*/raw", retry_after=7)
    url = f"{fake_gitlab.url}/api/v4/projects/{proj.id}/repository/files/a.txt/raw"
    async with aiohttp.ClientSession(headers=_auth(fake_gitlab)) as http:
        statuses = []
        for _ in range(3):
            async with http.get(url) as resp:
                statuses.append((resp.status, resp.headers.get("Retry-After")))
    assert statuses == [(503, None), (429, "7"), (200, None)]
    assert len(fake_gitlab.calls("GET", "/projects/:id/repository/files/:file_path/raw")) == 3


async def test_missing_file_and_pagination(fake_gitlab: FakeGitLab) -> None:
    proj = fake_gitlab.add_project("group/models")
    fake_gitlab.add_mr(proj, 3, changes=[f"f{i}.py" for i in range(25)])
    base = f"{fake_gitlab.url}/api/v4/projects/{proj.id}"
    async with aiohttp.ClientSession(headers=_auth(fake_gitlab)) as http:
        async with http.get(f"{base}/repository/files/nope.txt/raw", params={"ref": "main"}) as r:
            assert r.status == 404
        async with http.get(f"{base}/merge_requests/3/diffs") as resp:
            assert len(await resp.json()) == 20
            assert resp.headers["X-Next-Page"] == "2"
            assert 'rel="next"' in resp.headers["Link"]


def test_webhook_helpers() -> None:
    payload = load_fixture("merge_request.open")
    assert payload["object_kind"] == "merge_request"
    event = fixture_event("merge_request.open")
    headers = delivery_headers(event, "s3cret", idempotency_key="k-1", uuid="u-1")
    assert headers["X-Gitlab-Event"] == "Merge Request Hook"
    assert headers["X-Gitlab-Token"] == "s3cret"
    assert headers["Idempotency-Key"] == "k-1"
    assert headers["X-Gitlab-Event-UUID"] == "u-1"
    assert headers["User-Agent"].startswith("GitLab/")
    assert "X-Gitlab-Token" not in delivery_headers(event, None)
