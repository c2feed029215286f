"""A fake GitLab for tests: the REST endpoints of ``tests/contracts/gitlab-rest.md``.

Served on 127.0.0.1 under ``/api/v4``, with in-memory projects, commits, merge requests,
notes, emoji reactions, members and commit statuses. Every request is authenticated
(``PRIVATE-TOKEN`` or ``Authorization: Bearer``, 401 otherwise) and its parameters are
checked against the contract (``gitlab_contract.ENDPOINTS``): what GitLab would refuse is
answered as GitLab would (400/401/404) *and* recorded in ``fake.violations``;
``serve_fake_gitlab`` fails the test on exit if any are left (``take_violations()`` clears).

Usage::

    async with serve_fake_gitlab() as fake:          # or the ``fake_gitlab`` fixture
        proj = fake.add_project("group/models", files={".ployd.yml": "jobs: {}"})
        fake.set_member(proj, "alice", 30)
        fake.add_mr(proj, 7, files={"train.py": "print(1)"})
        fake.fail_next("POST", "/projects/:id/statuses/:sha", status=502)
        gl = gitlab.Gitlab(fake.url, private_token=fake.token)
        assert fake.calls("POST", "/projects/:id/statuses/:sha")[0].params["state"] == "running"

Webhook helpers for the other direction: ``delivery_headers``, ``load_fixture``.
"""

from __future__ import annotations

import itertools
import json
import time
import zlib
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.git_http import GitHttp
from tests.fakes.gitlab_contract import ParamError, check, find_endpoint
from tests.fakes.gitlab_handlers import HANDLERS, Call
from tests.fakes.gitlab_model import (
    FakeMR,
    FakeProject,
    Fault,
    GitLabAnswer,
    RecordedRequest,
    Violation,
    diff_entry,
    now_iso,
)
from tests.fakes.gitlab_webhooks import delivery_headers, fixture_event, load_fixture
from tests.fakes.serving import ViolationLog, serve

API_PREFIX = "/api/v4"
ProjectRef = FakeProject | int | str


# --------------------------------------------------------------------------- the fake


class FakeGitLab(ViolationLog):
    """In-memory GitLab. State is plain attributes; tests may read and change them."""

    service = "GitLab"

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = ("glpat-fake-token",),
        token_user: str = "ployd-bot",
        web_base: str = "https://gitlab.example.com",
    ) -> None:
        self.tokens = set(tokens)
        self.token = tokens[0]
        # What ``GET /personal_access_tokens/self`` says of each token (default: api).
        self.token_scopes: dict[str, list[str]] = {t: ["api"] for t in tokens}
        self.bot_role = 40  # the bot's role on every project (deploy tokens need 40)
        self.deploy_tokens: list[dict[str, Any]] = []  # as created, with "_project"
        self.clock = time.time
        self.git_root: Path | None = None  # git over HTTP at /_git/PATH.git, from here
        self.git = GitHttp(Path("/nonexistent"), self._git_allows, realm="GitLab")
        self.token_user = token_user
        self.web_base = web_base
        self.base_url = ""  # "http://127.0.0.1:PORT", set when served
        self._ids = itertools.count(5001)
        self.projects: dict[int, FakeProject] = {}
        self.users: dict[str, int] = {}  # username -> id
        self.notes: dict[int, dict[str, Any]] = {}
        self.awards: dict[int, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.faults: list[Fault] = []
        self.user_id(token_user)

    @property
    def url(self) -> str:
        """What to give python-gitlab (``gitlab.Gitlab(url)``) or PLOYD_GITLAB_URL."""
        return self.base_url

    def next_id(self) -> int:
        return next(self._ids)

    # ---------------------------------------------------------------- set-up helpers

    def user_id(self, username: str) -> int:
        """The user's id (the user is created on first use)."""
        if username not in self.users:
            self.users[username] = 100 + zlib.crc32(username.encode()) % 900_000
        return self.users[username]

    def username_of(self, user_id: int) -> str | None:
        return next((name for name, uid in self.users.items() if uid == user_id), None)

    def user_object(self, username: str) -> dict[str, Any]:
        return {
            "id": self.user_id(username),
            "username": username,
            "name": username.replace("-", " ").title(),
            "state": "active",
            "avatar_url": None,
            "web_url": f"{self.web_base}/{username}",
        }

    def project(self, ref: ProjectRef) -> FakeProject:
        """A project by object, numeric id or ``namespace/path``; KeyError if unknown."""
        found = self.find_project(ref)
        if found is None:
            raise KeyError(ref)
        return found

    def find_project(self, ref: ProjectRef) -> FakeProject | None:
        if isinstance(ref, FakeProject):
            return ref
        if isinstance(ref, int) or ref.isdigit():
            return self.projects.get(int(ref))
        return next(
            (p for p in self.projects.values() if p.path_with_namespace.lower() == ref.lower()),
            None,
        )

    def add_project(
        self,
        path_with_namespace: str,
        files: dict[str, str | bytes | None] | None = None,
        *,
        sha: str | None = None,
        default_branch: str = "main",
        project_id: int | None = None,
    ) -> FakeProject:
        """A project with one commit of ``files`` on ``default_branch``."""
        proj = FakeProject(project_id or self.next_id(), path_with_namespace, default_branch)
        proj.add_commit(files or {}, sha=sha, branch=default_branch, message="initial")
        self.projects[proj.id] = proj
        return proj

    def add_commit(
        self,
        project: ProjectRef,
        files: dict[str, str | bytes | None] | None = None,
        *,
        sha: str | None = None,
        branch: str | None = None,
        base: str | None = None,
    ) -> str:
        """A commit on ``base`` (default ``branch``'s head, else the default branch)."""
        return self.project(project).add_commit(files, sha=sha, branch=branch, base=base)

    def add_mr(
        self,
        project: ProjectRef,
        iid: int,
        source_sha: str | None = None,
        source_branch: str | None = None,
        target_branch: str = "main",
        author: str = "alice",
        fork: bool = False,
        changes: list[dict[str, Any] | str] | None = None,
        *,
        files: dict[str, str | bytes | None] | None = None,
        title: str = "A merge request",
    ) -> FakeMR:
        """An open MR. Its head is ``source_sha`` if that commit exists, else a new commit of
        ``files`` on the target branch. ``changes`` (paths or diff dicts) overrides the
        computed diff; ``fork`` gives it a different ``source_project_id``."""
        proj = self.project(project)
        base = proj.resolve(target_branch)
        assert base is not None, f"no branch {target_branch!r}"
        source_branch = source_branch or f"mr-{iid}"
        if source_sha is None or source_sha not in proj.commits:
            source_sha = proj.add_commit(files or {}, sha=source_sha, base=base)
        if not fork:  # a fork's branch is in the fork: here only refs/merge-requests/N/head
            proj.branches.setdefault(source_branch, source_sha)
        proj.mr_refs[f"refs/merge-requests/{iid}/head"] = source_sha
        listed = None
        if changes is not None:
            listed = [diff_entry(c, c) if isinstance(c, str) else c for c in changes]
        mr = FakeMR(
            iid=iid,
            id=self.next_id(),
            project_id=proj.id,
            source_project_id=self.next_id() if fork else proj.id,
            source_branch=source_branch,
            target_branch=target_branch,
            sha=source_sha,
            base_sha=proj.merge_base(base, source_sha) or base,
            author=author,
            title=title,
            changes=listed,
        )
        self.user_id(author)
        proj.mrs[iid] = mr
        return mr

    def set_member(
        self, project: ProjectRef, username: str, access_level: int, *, inherited: bool = False
    ) -> int:
        """Give ``username`` a role (0-60) on the project, directly or through its group;
        returns the user's id."""
        proj = self.project(project)
        uid = self.user_id(username)
        (proj.inherited if inherited else proj.members)[uid] = access_level
        return uid

    def add_note(
        self,
        project: ProjectRef,
        iid: int,
        body: str,
        *,
        author: str = "alice",
        system: bool = False,
    ) -> dict[str, Any]:
        """A comment on MR ``iid`` (``author`` defaults to alice)."""
        proj = self.project(project)
        mr = proj.mrs[iid]
        now = now_iso()
        note = {
            "id": self.next_id(),
            "type": None,
            "body": body,
            "attachment": None,
            "author": self.user_object(author),
            "created_at": now,
            "updated_at": now,
            "system": system,
            "noteable_id": mr.id,
            "noteable_type": "MergeRequest",
            "noteable_iid": mr.iid,
            "project_id": proj.id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "_mr": (proj.id, mr.iid),
        }
        self.notes[note["id"]] = note
        return note

    def mr_object(self, proj: FakeProject, mr: FakeMR) -> dict[str, Any]:
        """The MR as ``GET .../merge_requests/:iid`` answers it."""
        ref = f"!{mr.iid}"
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": proj.id,
            "title": mr.title,
            "description": "",
            "state": mr.state,
            "draft": False,
            "work_in_progress": False,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "source_project_id": mr.source_project_id,
            "target_project_id": proj.id,
            "author": self.user_object(mr.author),
            "labels": [],
            "sha": mr.sha,
            "diff_refs": {"base_sha": mr.base_sha, "head_sha": mr.sha, "start_sha": mr.base_sha},
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "has_conflicts": False,
            "changes_count": str(len(mr.changes if mr.changes is not None else [])),
            "merge_commit_sha": None,
            "squash_commit_sha": None,
            "head_pipeline": None,
            "web_url": f"{self.web_base}/{proj.path_with_namespace}/-/merge_requests/{mr.iid}",
            "references": {"short": ref, "relative": ref, "full": proj.path_with_namespace + ref},
            "user": {"can_merge": True},
        }

    def add_token(self, token: str, scopes: list[str]) -> None:
        """Another access token of the bot user, with these scopes."""
        self.tokens.add(token)
        self.token_scopes[token] = list(scopes)

    def _git_allows(self, user: str, password: str, repo: str) -> bool:
        """GitLab's git over HTTP: an access token (any user name) with a repository
        scope, or a project's live deploy token with its own user name."""
        project = self.find_project(repo)
        if project is None:
            return False
        if password in self.tokens:
            scopes = self.token_scopes.get(password, [])
            return bool({"api", "read_repository", "write_repository"} & set(scopes))
        now = self.clock()
        return any(
            d["_project"] == project.id
            and (d["username"], d["token"]) == (user, password)
            and "read_repository" in d["scopes"]
            and not d["revoked"]
            and (d["_expires"] is None or now < d["_expires"])
            for d in self.deploy_tokens
        )

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        pattern: str,
        status: int = 502,
        times: int = 1,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``.

        ``pattern`` is a contract template (``/projects/:id/statuses/:sha``) or a glob over
        the decoded path below /api/v4 (``/projects/*/statuses/*``); ``method`` may be "*".
        """
        default = {"message": f"{status} Fault injected"}
        self.faults.append(
            Fault(method, pattern, status, times, dict(headers or {}), body or default)
        )

    def rate_limit_next(
        self, method: str, pattern: str, retry_after: int = 1, times: int = 1
    ) -> None:
        """GitLab's rate limiter: 429, ``Retry-After`` and ``RateLimit-*``, "Retry later"."""
        headers = {
            "Retry-After": str(retry_after),
            "RateLimit-Limit": "600",
            "RateLimit-Remaining": "0",
            "RateLimit-Observed": "601",
        }
        self.fail_next(method, pattern, 429, times, body=b"Retry later\n", headers=headers)

    # ---------------------------------------------------------------- inspection

    def calls(self, method: str = "*", pattern: str = "*") -> list[RecordedRequest]:
        """Recorded requests matching a method and a contract template or glob."""
        probe = Fault(method, pattern, 0, 0)
        return [
            r
            for r in self.requests
            if probe.matches(r.method, r.path, r.endpoint.split(" ", 1)[1] if r.endpoint else None)
        ]


    # ---------------------------------------------------------------- serving

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/_git/{tail:.*}", self._git)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        return app

    async def _git(self, request: web.Request) -> web.StreamResponse:
        if self.git_root is None:
            return web.Response(status=404, text="no git root\n")
        self.git.root = self.git_root
        return await self.git.handle(request)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        data = await request.read()
        rec = RecordedRequest(
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            query=dict(request.query),
            body=_parse_body(data, request.content_type),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        self.requests.append(rec)
        try:
            status, payload, headers = self._answer(request.method, raw_path, rec)
        except GitLabAnswer as answer:
            status, payload, headers = answer.status, answer.body, {}
            if answer.violation:
                self.violations.append(
                    Violation(answer.violation, request.method, rec.path, answer.detail)
                )
        rec.status = status
        if isinstance(payload, bytes):
            content_type = headers.pop("Content-Type", "text/plain")
            return web.Response(
                body=payload,
                status=status,
                headers=headers,
                content_type=content_type.split(";")[0],
            )
        if status == 204 or payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    def _answer(
        self, method: str, raw_path: str, rec: RecordedRequest
    ) -> tuple[int, Any, dict[str, str]]:
        if not raw_path.startswith(API_PREFIX + "/"):
            raise GitLabAnswer(404, {"error": "404 Not Found"}, violation="undescribed")
        found = find_endpoint(method, raw_path[len(API_PREFIX) :])
        if found is None:
            raise GitLabAnswer(
                404,
                {"error": "404 Not Found"},
                violation="undescribed",
                detail="not an endpoint of tests/contracts/gitlab-rest.md",
            )
        endpoint, path_params = found
        rec.endpoint = endpoint.key
        token = self._authenticate(rec.headers)
        try:
            params, unknown = check(endpoint, {**rec.params, **path_params})
        except ParamError as err:
            raise GitLabAnswer(400, err.body, violation="params", detail=err.detail) from None
        for name in unknown:  # GitLab ignores them; a typo in PloyD is still a bug
            self.violations.append(
                Violation("unknown-param", method, rec.path, f"{name!r} is not in the contract")
            )
        template = endpoint.template
        for fault in self.faults:
            if fault.times > 0 and fault.matches(method, rec.path, template):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault.status, fault.body, dict(fault.headers)
        project = None
        if "id" in params:
            project = self.find_project(params["id"])
            if project is None:
                raise GitLabAnswer(404, {"message": "404 Project Not Found"})
        call = Call(method, rec.path, params, project, self.base_url + API_PREFIX, token)
        return HANDLERS[endpoint.handler](self, call)

    def _authenticate(self, headers: dict[str, str]) -> str:
        token = headers.get("private-token")
        if token is None:
            scheme, _, credential = headers.get("authorization", "").partition(" ")
            token = credential.strip() if scheme.lower() == "bearer" else None
        if token not in self.tokens:
            detail = "no token" if token is None else "unknown token"
            raise GitLabAnswer(
                401, {"message": "401 Unauthorized"}, violation="auth", detail=detail
            )
        return token


def _parse_body(data: bytes, content_type: str) -> Any:
    if not data:
        return None
    if content_type == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        return dict(parse_qsl(data.decode()))
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def serve_fake_gitlab(
    *, assert_clean: bool = True, **options: Any
) -> AbstractAsyncContextManager[FakeGitLab]:
    """Serve a ``FakeGitLab(**options)`` on 127.0.0.1 (random port) for the block; fails on
    exit if requests the real service would reject were recorded (``assert_clean``)."""
    return serve(FakeGitLab(**options), assert_clean=assert_clean)


__all__ = [
    "FakeGitLab",
    "FakeMR",
    "FakeProject",
    "RecordedRequest",
    "Violation",
    "delivery_headers",
    "fixture_event",
    "load_fixture",
    "serve_fake_gitlab",
]
