"""Property-based fuzz of everything a stranger can send PloyD (issue 15).

Correctly signed (GitHub) or tokened (GitLab) deliveries of random JSON, and of GitHub's
and GitLab's real payloads with the fields the handlers read replaced by random values
or removed; then random path parameters, query strings, headers and bodies on every
route of the app. Properties: no answer is a 5xx, nothing is logged with a traceback,
and the server still answers ``/healthz`` afterwards.

Bounded and deterministic: hypothesis with ``derandomize`` (the same examples every run)
and ``PLOYD_FUZZ_EXAMPLES`` examples per property (default 60: a few seconds each);
raise it for a longer hunt, e.g. ``PLOYD_FUZZ_EXAMPLES=5000``. Hypothesis drives a
thread; the requests run on the test's event loop, where the server lives.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from app.adapters.github import GitHubError
from app.adapters.gitlab.errors import GitLabError
from app.core.receipts import GITHUB, GITLAB, Field
from tests.e2e.github_world import SECRET as GITHUB_SECRET
from tests.e2e.gitlab_world import SECRET as GITLAB_SECRET

EXAMPLES = int(os.environ.get("PLOYD_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # deterministic: the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

# ---------------------------------------------------------------------------- strategies

NASTY_TEXT = [
    "",
    "0",
    "1",
    "-1",
    "²",
    "١٢",
    str(1 << 63),
    str(10**20),
    "1e3",
    " 1",
    "\x00",
    "a\x00b",
    "../../etc/passwd",
    "%00",
    "\ud7ff",
    "x" * 5000,
    "refs/heads/main",
    "acme/models",
]
texts = st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXT))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=6)
DELETE = object()


def field_paths(fields: dict[str, Field], prefix: str = "") -> list[str]:
    out = []
    for name, spec in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        out.append(path)
        out.extend(field_paths(dict(spec.fields), path))
    return out


def mutate(payload: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    p = copy.deepcopy(payload)
    for path, value in changes:
        *parents, last = path.split(".")
        node: Any = p
        for name in parents:
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return p


def encode(payload: Any) -> bytes:
    """As a sender might: NaN and Infinity written as Python's json writes them."""
    return json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------- the harness


class Fuzzer:
    """Posts from hypothesis' thread onto the server's loop; collects what went wrong."""

    def __init__(self, loop: asyncio.AbstractEventLoop, http: aiohttp.ClientSession) -> None:
        self.loop = loop
        self.http = http
        self.failures: list[str] = []
        self.statuses: dict[int, int] = {}

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def request(self, what: str, method: str, url: URL, **kw: Any) -> int:
        async def go() -> int:
            async with self.http.request(method, url, allow_redirects=False, **kw) as r:
                await r.read()
                return r.status

        status = self.run(go())
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500:
            self.failures.append(f"{status} for {what}: {method} {url}")
        return status


FORGE_ERRORS = (GitHubError, GitLabError)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records with a traceback, or aiohttp's errors. Not counted: a handler that the
    forge answered with an error (a merge request the delivery names that GitLab does
    not have): the delivery was well formed, GitLab said no; the worker's retries and
    dead letters deal with those."""

    def forge_said_no(r: logging.LogRecord) -> bool:
        return (
            r.name == "ployd.inbox"
            and r.exc_info is not None
            and isinstance(r.exc_info[1], FORGE_ERRORS)
        )

    return [
        f"{r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}"
        for r in caplog.records
        if (r.exc_info and not forge_said_no(r))
        or (r.name.startswith("aiohttp") and r.levelno >= logging.ERROR)
    ]


def failed_deliveries(db: Any) -> list[str]:
    """The errors of deliveries whose handler failed for another reason than the
    forge's answer (a KeyError, a TypeError: a field the schema should have checked)."""
    from sqlalchemy import select

    from app.store.models import InboxEvent

    with db.session() as s:
        errors = s.scalars(select(InboxEvent.error).where(InboxEvent.status == "failed")).all()
    return [e for e in errors if not (e or "").startswith(("GitHubError", "GitLabError"))]


async def fuzz_in_thread(body: Callable[[], None]) -> None:
    await asyncio.to_thread(body)


# ---------------------------------------------------------------------------- GitHub


async def test_fuzz_signed_github_deliveries_and_every_route(
    github_world: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with github_world(agents=0) as w:
        sha = w.repo("acme/fuzz", {"README": "x"})
        base = {
            "push": w.push("acme/fuzz", "0" * 40, sha),
            "pull_request": w.pull_request("acme/fuzz", 3, sha),
        }
        h = w.h
        fz = Fuzzer(asyncio.get_running_loop(), h.http)
        url = URL(h.url + "/webhooks/github")

        def post(event: str, body: bytes) -> None:
            sig = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sig,
                "Content-Type": "application/json",
            }
            fz.request(f"github {event} {body[:200]!r}", "POST", url, data=body, headers=headers)

        events = st.sampled_from([*GITHUB, "ping", "star", "", "Push"])

        @FUZZ
        @given(event=events, payload=json_objects)
        def random_json(event: str, payload: dict[str, Any]) -> None:
            post(event, encode(payload))

        @FUZZ
        @given(data=st.data())
        def mutated(data: st.DataObject) -> None:
            event = data.draw(st.sampled_from(sorted(base)))
            paths = field_paths(GITHUB[event])
            changes = data.draw(
                st.lists(
                    st.tuples(st.sampled_from(paths), st.one_of(st.just(DELETE), json_values)),
                    min_size=1,
                    max_size=3,
                )
            )
            post(event, encode(mutate(base[event], changes)))

        await fuzz_in_thread(random_json)
        await fuzz_in_thread(mutated)
        await fuzz_routes(fz, h.url, h.server.runner.app)
        gh = h.server.github
        await gh.worker.drain()  # what was accepted was handled, quietly
        async with h.http.get(h.url + "/healthz") as r:
            assert r.status == 200
        assert not failed_deliveries(h.engine.db), failed_deliveries(h.engine.db)[:5]
    assert not fz.failures, fz.failures[:10]
    assert sum(n for s, n in fz.statuses.items() if 200 <= s < 300) > 0  # some got in
    assert not no_tracebacks(caplog), no_tracebacks(caplog)[:5]


# ---------------------------------------------------------------------------- GitLab


async def test_fuzz_gitlab_deliveries(
    gitlab_world: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with gitlab_world(agents=0) as w:
        sha = w.project("ml/fuzz", {"README": "x"})
        base = {
            "Push Hook": w.push("ml/fuzz", "0" * 40, sha),
            "Merge Request Hook": w.merge_request("ml/fuzz", 4, sha),
        }
        h = w.h
        fz = Fuzzer(asyncio.get_running_loop(), h.http)
        url = URL(h.url + "/webhooks/gitlab")

        def post(event: str, body: bytes) -> None:
            headers = {
                "X-Gitlab-Event": event,
                "X-Gitlab-Token": GITLAB_SECRET,
                "Idempotency-Key": str(uuid.uuid4()),
                "Content-Type": "application/json",
            }
            fz.request(f"gitlab {event} {body[:200]!r}", "POST", url, data=body, headers=headers)

        @FUZZ
        @given(event=st.sampled_from([*GITLAB, "Issue Hook", ""]), payload=json_objects)
        def random_json(event: str, payload: dict[str, Any]) -> None:
            post(event, encode(payload))

        @FUZZ
        @given(data=st.data())
        def mutated(data: st.DataObject) -> None:
            event = data.draw(st.sampled_from(sorted(base)))
            paths = field_paths(GITLAB[event])
            changes = data.draw(
                st.lists(
                    st.tuples(st.sampled_from(paths), st.one_of(st.just(DELETE), json_values)),
                    min_size=1,
                    max_size=3,
                )
            )
            post(event, encode(mutate(base[event], changes)))

        await fuzz_in_thread(random_json)
        await fuzz_in_thread(mutated)
        await h.server.gitlab.worker.drain()
        async with h.http.get(h.url + "/healthz") as r:
            assert r.status == 200
        assert not failed_deliveries(h.engine.db), failed_deliveries(h.engine.db)[:5]
    assert not fz.failures, fz.failures[:10]
    assert not no_tracebacks(caplog), no_tracebacks(caplog)[:5]


# ---------------------------------------------------------------------------- every route

PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
QUERY_NAMES = [
    "limit",
    "offset",
    "attempt",
    "from",
    "before",
    "t",
    "repo",
    "name",
    "forge",
    "branch",
    "download",
]


async def fuzz_routes(fz: Fuzzer, base_url: str, app: Any) -> None:
    routes = sorted(
        {
            (r.method, r.resource.canonical)
            for r in app.router.routes()
            if r.method not in ("HEAD", "*") and r.resource is not None
        }
    )
    assert len(routes) > 30  # every route of the app, not a sample

    @FUZZ
    @given(
        route=st.sampled_from(routes),
        values=st.lists(texts, min_size=3, max_size=3),
        query=st.dictionaries(st.sampled_from(QUERY_NAMES), texts, max_size=3),
        body=st.one_of(
            st.none(),
            json_values.map(encode),
            st.binary(max_size=200),
            st.dictionaries(texts, texts, max_size=3).map(
                lambda d: urlencode(d, encoding="utf-8", errors="surrogatepass").encode()
            ),
        ),
        content_type=st.sampled_from(
            [
                "application/json",
                "application/x-www-form-urlencoded",
                "application/x-www-form-urlencoded; charset=bogus",
                "multipart/form-data; boundary=x",
                "multipart/form-data",
                "text/plain",
                "",
            ]
        ),
        token=st.one_of(st.none(), texts.filter(lambda s: s.isascii() and s.isprintable())),
    )
    def one(
        route: tuple[str, str],
        values: list[str],
        query: dict[str, str],
        body: bytes | None,
        content_type: str,
        token: str | None,
    ) -> None:
        method, template = route
        given_values = iter(values)

        def fill(m: re.Match[str]) -> str:
            value = next(given_values, "1") or "1"
            return quote(value.encode("utf-8", "surrogatepass"), safe="")

        path = PARAM.sub(fill, template)
        qs = "&".join(
            f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
            for k, v in query.items()
        )
        url = URL(base_url + path + (f"?{qs}" if qs else ""), encoded=True)
        headers = {"Content-Type": content_type} if content_type else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if method in ("GET", "DELETE"):
            body = None
        fz.request(f"route {method} {template}", method, url, data=body, headers=headers)

    await fuzz_in_thread(one)
