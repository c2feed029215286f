"""Webhook intake and API input, cause by cause (issue 15): each input that once made
PloyD answer 5xx, refuse a valid delivery, or accept one its worker then failed on, sent
as the wire carries it, with the answer it must get now. Both databases (``db_url``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from sqlalchemy import func, select

from app.store.models import InboxEvent, Pipeline
from tests.e2e.github_world import SECRET, GitHubWorld
from tests.e2e.gitlab_world import SECRET as GITLAB_SECRET
from tests.fakes.github import delivery_headers
from tests.fakes.gitlab_webhooks import delivery_headers as gitlab_headers

CONFIG = """
version: 1
jobs:
  unit:
    steps:
      - run: echo unit
"""
REPO = "acme/intake"


async def post_github(w: GitHubWorld, event: str, body: bytes, **extra: str) -> tuple[int, Any]:
    """``body`` exactly as given (bytes), signed as GitHub signs it."""
    assert w.h is not None
    headers = delivery_headers(event, body, SECRET)
    headers.update(extra)
    async with w.h.http.post(w.h.url + "/webhooks/github", data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def inbox_count(w: GitHubWorld) -> int:
    assert w.h is not None
    with w.h.engine.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(InboxEvent)) or 0)


async def test_a_5mb_push_is_accepted_and_processed_and_30mb_gets_413(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": CONFIG})
        push = w.push(REPO, "0" * 40, sha)
        # GitHub lists up to 2,048 commits in a push: pad with realistic commit objects
        commit = dict(push["commits"][0]) if push.get("commits") else {"id": "x" * 40}
        commit["message"] = "m" * 2500
        push["commits"] = [dict(commit, id=f"{n:040x}") for n in range(2048)]
        body = json.dumps(push).encode()
        assert 5 << 20 <= len(body) < 6 << 20
        status, answer = await post_github(w, "push", body)
        assert status == 202, answer
        await w.settle()
        assert w.h is not None
        with w.h.engine.db.session() as s:
            row = s.scalars(select(InboxEvent)).one()
            assert row.status == "processed" and len(row.payload["commits"]) == 2048
            assert s.scalar(select(func.count()).select_from(Pipeline)) == 1

        big = json.dumps({"pad": "x" * (30 << 20)}).encode()
        status, answer = await post_github(w, "push", big)
        assert status == 413 and f"larger than {25 << 20} bytes" in answer["error"]
        assert inbox_count(w) == 1


async def test_a_body_sent_in_small_chunks_is_read_whole_and_verified(
    github_world: Callable[..., Any],
) -> None:
    """``content.read(n)`` once returned only what was buffered: a body arriving in many
    pieces failed its signature (401)."""
    async with github_world() as w:
        sha = w.repo(REPO, {"README": "x"})
        body = json.dumps(w.push(REPO, "0" * 40, sha) | {"pad": "p" * 400_000}).encode()
        headers = delivery_headers("push", body, SECRET)

        async def pieces() -> Any:
            for i in range(0, len(body), 7000):
                yield body[i : i + 7000]
                await asyncio.sleep(0)  # each its own write

        assert w.h is not None
        async with w.h.http.post(
            w.h.url + "/webhooks/github", data=pieces(), headers=headers
        ) as r:  # chunked transfer encoding: no Content-Length
            assert r.status == 202, await r.text()


async def test_json_nested_too_deep_is_400_and_agent_endpoints_authenticate_first(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
        status, answer = await post_github(w, "push", deep)
        assert status == 400 and "not JSON" in answer["error"]
        assert w.h is not None
        for path in (
            "/api/v1/agent/claim",
            "/api/v1/agent/register",
            "/api/v1/agent/attempts/1/log",
            "/api/v1/agent/attempts/1/heartbeat",
            "/api/v1/agent/attempts/1/artifacts",
        ):
            async with w.h.http.post(w.h.url + path, data=deep) as r:
                assert r.status == 401, (path, r.status, await r.text())
            async with w.h.http.post(
                w.h.url + path, data=deep, headers={"Authorization": "Bearer nope"}
            ) as r:
                # a wrong token: refused before the body, or the body refused as JSON
                assert r.status in (400, 401), (path, r.status, await r.text())
        assert inbox_count(w) == 0


async def test_action_as_a_list_or_object_is_400(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {"README": "x"})
        pr = w.pull_request(REPO, 3, sha)
        for action in (["opened"], {"opened": 1}, 7):
            status, answer = await w.deliver("pull_request", pr | {"action": action})
            assert status == 400 and "'action' must be a string" in answer["error"]
        # an action PloyD does not act on is ignored, not an error
        status, answer = await w.deliver("pull_request", pr | {"action": "assigned"})
        assert status == 202 and answer == {"ignored": "pull_request.assigned"}
        assert inbox_count(w) == 0


async def test_nan_and_infinity_are_not_json(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {"README": "x"})
        push = w.push(REPO, "0" * 40, sha)
        for literal in ("NaN", "Infinity", "-Infinity"):
            body = json.dumps(push | {"size": 1.5}).replace("1.5", literal).encode()
            status, answer = await post_github(w, "push", body)
            assert status == 400 and "not JSON" in answer["error"], literal
        status, _ = await post_github(w, "push", b'{"a": "\xff\xfe"}')
        assert status == 400  # not UTF-8
        assert inbox_count(w) == 0


async def test_pushes_and_pull_requests_missing_or_mistyped_fields_are_400_naming_the_field(
    github_world: Callable[..., Any],
) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {"README": "x"})
        push = w.push(REPO, "0" * 40, sha)
        pr = w.pull_request(REPO, 3, sha)
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("push", {k: v for k, v in push.items() if k != "repository"}, "'repository'"),
            ("push", push | {"ref": 5}, "'ref' must be a string"),
            ("push", push | {"ref": "refs/heads/ma\x00in"}, "'ref' must not contain a NUL"),
            ("push", push | {"repository": push["repository"] | {"full_name": "x"}}, "owner/name"),
            ("push", push | {"installation": {"id": "1"}}, "'installation.id' must be an int"),
            ("push", push | {"installation": {"id": 1 << 63}}, "'installation.id' must be betw"),
            ("push", push | {"sender": None}, "'sender' must be an object"),
            ("pull_request", {k: v for k, v in pr.items() if k != "pull_request"}, "'pull_re"),
            (
                "pull_request",
                pr | {"pull_request": pr["pull_request"] | {"number": "3"}},
                "'pull_request.number' must be an integer, not a string",
            ),
            (
                "pull_request",
                pr | {"pull_request": pr["pull_request"] | {"head": {"ref": "x"}}},
                "'pull_request.head.sha' is required",
            ),
        ]
        for event, payload, needle in cases:
            status, answer = await w.deliver(event, payload)
            assert status == 400 and needle in answer["error"], (needle, answer)
        assert inbox_count(w) == 0
        status, _ = await w.deliver("push", push)  # the well-formed one still goes in
        assert status == 202
        await w.settle()
        assert w.h is not None
        with w.h.engine.db.session() as s:
            assert s.scalars(select(InboxEvent.status)).all() == ["processed"]


async def test_gitlab_object_attributes_not_an_object_and_bad_fields_are_400(
    gitlab_world: Callable[..., Any],
) -> None:
    async with gitlab_world() as w:
        sha = w.project("ml/intake", {"README": "x"})
        mr = w.merge_request("ml/intake", 4, sha)
        for attrs in (["open"], "open", 3):
            status, answer = await w.deliver(
                "Merge Request Hook", mr | {"object_attributes": attrs}
            )
            assert status == 400 and "'object_attributes' must be an object" in answer["error"]
        mr_attrs = mr["object_attributes"]
        status, answer = await w.deliver(
            "Merge Request Hook", mr | {"object_attributes": mr_attrs | {"iid": "4"}}
        )
        assert status == 400 and "'object_attributes.iid' must be an integer" in answer["error"]
        push = w.push("ml/intake", "0" * 40, sha)
        status, answer = await w.deliver(
            "Push Hook", {k: v for k, v in push.items() if k != "project"}
        )
        assert status == 400 and "'project' is required" in answer["error"]
        # NaN, deep nesting: not JSON
        assert w.h is not None
        for raw in (b'{"object_kind": NaN}', b"[" * 3000 + b"]" * 3000):
            async with w.h.http.post(
                w.h.url + "/webhooks/gitlab",
                data=raw,
                headers=gitlab_headers("Push Hook", GITLAB_SECRET),
            ) as r:
                assert r.status == 400, await r.text()
        # the token is checked before the body is read
        async with w.h.http.post(
            w.h.url + "/webhooks/gitlab", data=b"[" * 3000, headers=gitlab_headers("Push Hook", "x")
        ) as r:
            assert r.status == 401
        with w.h.engine.db.session() as s:
            assert s.scalar(select(func.count()).select_from(InboxEvent)) == 0


async def test_api_ids_numbers_and_strings_are_validated(github_world: Callable[..., Any]) -> None:
    async with github_world() as w:
        sha = w.repo(REPO, {".ployd.yml": CONFIG})
        status, _ = await w.deliver("push", w.push(REPO, "0" * 40, sha))
        assert status == 202
        await w.settle()
        assert w.h is not None
        h = w.h
        with h.engine.db.session() as s:
            pid = s.scalars(select(Pipeline.id)).one()
        job = h.job(pid, "unit")

        async def status_of(method: str, path: str, **kw: Any) -> int:
            async with h.http.request(method, h.url + path, **kw) as r:
                await r.read()
                return r.status

        huge = str(1 << 63)
        for path in (
            f"/api/v1/pipelines/{huge}",
            f"/api/v1/jobs/{huge}",
            f"/api/v1/jobs/{huge}/log",
            f"/api/v1/attempts/{10**30}/log",
            f"/runs/{huge}",
            f"/runs/{huge}/raw",
            "/api/v1/jobs/%C2%B2",  # "²": isdigit() says yes, int() says no
            "/api/v1/jobs/0",
        ):
            assert await status_of("GET", path) == 404, path
        for method, path in (
            ("POST", f"/api/v1/pipelines/{huge}/cancel"),
            ("POST", f"/api/v1/jobs/{huge}/retry"),
            ("POST", f"/api/v1/agent/attempts/{huge}/finish"),
        ):
            assert await status_of(method, path) in (401, 404), path
        assert await status_of("DELETE", f"/api/v1/agents/tokens/{huge}") == 400
        # query numbers: 10**20, "²", negative, words: 400 naming the parameter
        for query in ("offset=100000000000000000000", "offset=-1", "limit=%C2%B2", "limit=x"):
            async with h.http.get(h.url + f"/api/v1/jobs/{job.id}/log?{query}") as r:
                assert r.status == 400, query
                assert query.split("=")[0] in (await r.json())["error"]
        assert await status_of("GET", "/api/v1/pipelines?limit=100000000000000000000") == 400
        for query in ("attempt=%C2%B2", "from=100000000000000000000", "before=%C2%B2"):
            assert await status_of("GET", f"/runs/{job.id}?{query}&t=x") in (400, 403), query
        # NUL bytes: in a body's strings and in query parameters
        for body in ({"repo": "/tmp/x\x00y"}, {"repo": "/tmp/x", "ref": "ma\x00in"}):
            async with h.http.post(h.url + "/api/v1/pipelines", json=body) as r:
                assert r.status == 400 and "NUL" in (await r.json())["error"]
        async with h.http.get(h.url + "/api/v1/secrets?repo=a%00b") as r:
            assert r.status == 400 and "NUL" in (await r.json())["error"]
        # a login form that is not UTF-8, names a charset that does not exist, is no form
        for content_type, form in (
            ("application/x-www-form-urlencoded", b"token=%ff%fe\xff"),
            ("application/x-www-form-urlencoded; charset=bogus", b"token=a"),
            (
                "multipart/form-data; boundary=x",
                b'--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n\xff\xfe\r\n--x--\r\n',
            ),
            ("multipart/form-data", b"--x\r\n"),
        ):
            async with h.http.post(
                h.url + "/login", data=form, headers={"Content-Type": content_type}
            ) as r:
                assert r.status in (400, 401), content_type
        async with h.http.get(h.url + "/healthz") as r:
            assert r.status == 200


async def test_group_commit_records_every_concurrent_delivery_once(
    github_world: Callable[..., Any],
) -> None:
    async with github_world(agents=0) as w:
        sha = w.repo(REPO, {"README": "x"})
        pr = w.pull_request(REPO, 3, sha)
        body = json.dumps(pr).encode()
        assert w.h is not None
        h = w.h

        async def one(delivery: str) -> int:
            headers = delivery_headers("pull_request", body, SECRET, delivery_id=delivery)
            async with h.http.post(h.url + "/webhooks/github", data=body, headers=headers) as r:
                await r.read()
                return r.status

        ids = [f"burst-{n}" for n in range(300)] + [f"burst-{n}" for n in range(0, 300, 3)]
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            h_http, h.http = h.http, http
            try:
                statuses = await asyncio.gather(*(one(d) for d in ids))
            finally:
                h.http = h_http
        assert statuses.count(202) == 300 and set(statuses) <= {200, 202}
        assert inbox_count(w) == 300  # every 2xx'd delivery is stored, each once
        # many deliveries per transaction: far fewer commits than deliveries
        assert h.server.forges.writer.transactions < 300
