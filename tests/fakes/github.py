"""A fake GitHub for tests: GitHub's REST API as PloyD calls it, on 127.0.0.1.

Every request is checked against GitHub's own OpenAPI description
(``tests/contracts/github-rest-openapi-subset.json``): the method and path must be a
described operation, parameters and JSON bodies must satisfy their schemas, and the
caller must authenticate as GitHub requires (an RS256 app JWT for the ``/app`` endpoints
and ``/repos/{owner}/{repo}/installation``, an installation token this fake issued for
everything else). What fails is answered as GitHub would (401/404/422) *and* recorded in
``fake.violations``; ``serve_fake_github`` fails the test on exit if any are left.

Usage::

    async with serve_fake_github() as fake:          # or the ``fake_github`` fixture
        repo = fake.add_repo("octo-org", "models", files={".ployd.yml": "jobs: {}"})
        fake.set_permission("octo-org/models", "alice", "write")
        fake.add_pull("octo-org/models", 7, head_files={"train.py": "print(1)"})
        fake.fail_next("POST", "/repos/{owner}/{repo}/check-runs", status=502)
        ...  # point the code under test at fake.url, with fake.app_id / fake.private_key_pem
        assert fake.calls("POST", "/repos/{owner}/{repo}/check-runs")[0].json["name"] == "ci"

Webhook helpers for the other direction: ``sign``, ``delivery_headers``, ``load_fixture``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import github_handlers as handlers
from tests.fakes.git_http import GitHttp
from tests.fakes.github_model import (
    FakeInstallation,
    FakePull,
    FakeRepo,
    Fault,
    GitHubRejection,
    RecordedRequest,
    Violation,
    utc_iso,
)
from tests.fakes.github_openapi import Operation, load_spec
from tests.fakes.serving import ViolationLog, maybe_json, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "webhooks"
DOCS = "https://docs.github.com/rest"
SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID "
    "0000:0000:0000000:0000000:00000000."
)
SECONDARY_RATE_LIMIT_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)
# Endpoints GitHub serves to the app itself (JWT), not to an installation.
JWT_OPERATIONS = {
    "GET /app",
    "GET /app/installations",
    "POST /app/installations/{installation_id}/access_tokens",
    "GET /repos/{owner}/{repo}/installation",
}
JWT_MAX_LIFETIME = 600  # GitHub: exp no more than 10 minutes into the future


# --------------------------------------------------------------------------- webhooks


def sign(body: bytes, secret: str) -> str:
    """``X-Hub-Signature-256`` for ``body``: ``sha256=`` + HMAC-SHA256 hex, as GitHub signs."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(
    event: str, body: bytes, secret: str, delivery_id: str | None = None
) -> dict[str, str]:
    """The headers GitHub sends with a webhook delivery of ``body``."""
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/7a4f1e5",
    }


def load_fixture(name: str) -> dict[str, Any]:
    """A recorded webhook payload, e.g. ``load_fixture("pull_request.opened.1")``."""
    path = FIXTURES / (name if name.endswith(".json") else f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def generate_private_key_pem() -> str:
    """A fresh 2048-bit RSA key, PKCS#8 PEM (as GitHub hands out for apps)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


_KEY_CACHE: list[str] = []


def _test_key() -> str:
    """One generated key per test session: RSA generation costs ~50 ms."""
    if not _KEY_CACHE:
        _KEY_CACHE.append(generate_private_key_pem())
    return _KEY_CACHE[0]


# --------------------------------------------------------------------------- the fake


class FakeGitHub(ViolationLog):
    """In-memory GitHub. State is plain attributes; tests may read and change them."""

    service = "GitHub"

    def __init__(
        self,
        *,
        app_id: int = 4242,
        app_slug: str = "ployd",
        private_key_pem: str | None = None,
        webhook_secret: str = "fake-webhook-secret",
        prefix: str = "",
        token_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
        validate_responses: bool = True,
    ) -> None:
        self.spec = load_spec()
        self.app_id = app_id
        self.app_slug = app_slug
        self.private_key_pem = private_key_pem or _test_key()
        self._public_key = serialization.load_pem_private_key(
            self.private_key_pem.encode(), password=None
        ).public_key()
        self.webhook_secret = webhook_secret
        self.prefix = prefix.rstrip("/")
        self.token_ttl = token_ttl
        self.clock = clock
        self.validate_responses = validate_responses
        self.html_base = "https://github.com"
        self.base_url = ""  # "http://127.0.0.1:PORT", set when served
        self._ids = itertools.count(1001)

        self.installations: dict[int, FakeInstallation] = {}
        self.repos: dict[str, FakeRepo] = {}  # "owner/name" (lower-case) -> repo
        self.tokens: dict[str, tuple[int, float]] = {}  # token -> (installation, expiry)
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.annotations: dict[int, list[dict[str, Any]]] = {}
        self.check_suites: dict[int, dict[str, Any]] = {}
        self.rerequested_suites: list[int] = []
        self.comments: dict[int, dict[str, Any]] = {}
        self.reactions: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.trees: dict[str, tuple[str, str, str]] = {}  # tree sha -> (repo, commit, dir)
        self.rate_remaining: dict[str, int] = {}

        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.faults: list[Fault] = []
        # git over HTTP at /_git/OWNER/NAME.git, from working copies under git_root,
        # for x-access-token and a live installation token of the repository's app.
        self.git_root: Path | None = None
        self.git = GitHttp(Path("/nonexistent"), self._git_allows, realm="GitHub")

    # ---------------------------------------------------------------- set-up helpers

    @property
    def url(self) -> str:
        """The API base URL (what ``PLOYD_GITHUB_API_URL`` should be)."""
        return self.base_url + self.prefix

    def next_id(self) -> int:
        return next(self._ids)

    def add_installation(
        self,
        account: str,
        *,
        installation_id: int | None = None,
        account_type: str = "Organization",
    ) -> FakeInstallation:
        inst = FakeInstallation(
            id=installation_id or self.next_id(),
            account=account,
            account_id=self.next_id(),
            account_type=account_type,
        )
        self.installations[inst.id] = inst
        return inst

    def installation_for(self, account: str) -> FakeInstallation:
        for inst in self.installations.values():
            if inst.account.lower() == account.lower():
                return inst
        return self.add_installation(account)

    def add_repo(
        self,
        owner: str,
        name: str,
        files: dict[str, str | bytes | None] | None = None,
        *,
        sha: str | None = None,
        default_branch: str = "main",
        installation_id: int | None = None,
        private: bool = True,
        repo_id: int | None = None,
    ) -> FakeRepo:
        """A repository with one commit of ``files`` on ``default_branch``.

        Installed on ``installation_id`` (default: the owner's installation, made if needed).
        """
        inst = (
            self.installations[installation_id]
            if installation_id is not None
            else self.installation_for(owner)
        )
        repo = FakeRepo(
            owner=owner,
            name=name,
            id=repo_id or self.next_id(),
            installation_id=inst.id,
            default_branch=default_branch,
            private=private,
        )
        repo.add_commit(files or {}, sha=sha, branch=default_branch)
        self.repos[repo.full_name.lower()] = repo
        return repo

    def repo(self, full_name: str) -> FakeRepo:
        return self.repos[full_name.lower()]

    def add_commit(
        self,
        full_name: str,
        files: dict[str, str | bytes | None] | None = None,
        *,
        sha: str | None = None,
        branch: str | None = None,
        base: str | None = None,
    ) -> str:
        """A commit on ``base`` (default: the default branch's head) changing ``files``."""
        repo = self.repo(full_name)
        return repo.add_commit(files, sha=sha, branch=branch, base=base or repo.default_branch)

    def set_permission(self, full_name: str, username: str, role: str) -> None:
        """``role``: admin, maintain, write, triage, read or none."""
        self.repo(full_name).set_role(username, role)

    def add_pull(
        self,
        full_name: str,
        number: int,
        *,
        head_files: dict[str, str | bytes | None] | None = None,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        files: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> FakePull:
        """A pull request whose head commit changes ``head_files`` on the base branch.

        ``head_sha`` may name an existing commit instead. ``files`` overrides the computed
        ``pulls/{n}/files`` listing (give at least ``filename``; ``status`` defaults to
        ``modified``). Other keyword arguments set ``FakePull`` fields (user, title...).
        """
        repo = self.repo(full_name)
        base_ref = base_ref or repo.default_branch
        head_ref = head_ref or f"pr-{number}"
        base_sha = repo.resolve_or_raise(base_ref)
        if head_sha is None or head_sha not in repo.commits:
            head_sha = repo.add_commit(head_files or {}, sha=head_sha, base=base_sha)
        repo.branches.setdefault(head_ref, head_sha)
        pull = FakePull(number, head_sha, base_sha, head_ref, base_ref, files=files, **fields)
        repo.pulls[number] = pull
        return pull

    def add_check_suite(self, full_name: str, head_sha: str) -> int:
        for suite in self.check_suites.values():
            if suite["repo"] == full_name.lower() and suite["head_sha"] == head_sha:
                return int(suite["id"])
        suite_id = self.next_id()
        self.check_suites[suite_id] = {
            "id": suite_id,
            "repo": full_name.lower(),
            "head_sha": head_sha,
        }
        return suite_id

    def user_object(self, login: str, *, bot: bool = False) -> dict[str, Any]:
        """A user as GitHub embeds one (login, id, type, urls)."""
        return {
            "login": login,
            "id": int(hashlib.sha1(login.encode()).hexdigest()[:7], 16),
            "type": "Bot" if bot else "User",
            "html_url": f"{self.html_base}/{login}",
            "url": f"{self.url}/users/{login}",
        }

    def add_comment(
        self, full_name: str, issue_number: int, body: str, *, user: str | None = "octocat"
    ) -> dict[str, Any]:
        """A comment on an issue or pull request; ``user=None`` means the app's bot."""
        repo = self.repo(full_name)
        cid = self.next_id()
        now = utc_iso(self.clock())
        kind = "pull" if issue_number in repo.pulls else "issues"
        author = (
            self.user_object(f"{self.app_slug}[bot]", bot=True)
            if user is None
            else (self.user_object(user))
        )
        comment = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{self.url}/repos/{repo.full_name}/issues/comments/{cid}",
            "html_url": f"{self.html_base}/{repo.full_name}/{kind}/{issue_number}"
            f"#issuecomment-{cid}",
            "issue_url": f"{self.url}/repos/{repo.full_name}/issues/{issue_number}",
            "body": body,
            "user": author,
            "created_at": now,
            "updated_at": now,
            "author_association": "NONE" if user is None else "MEMBER",
            "_repo": repo.full_name.lower(),
            "_issue": issue_number,
        }
        self.comments[cid] = comment
        return comment

    def issue_token(self, installation_id: int, ttl: float | None = None) -> str:
        """An installation token, as ``POST .../access_tokens`` would give."""
        token = "ghs_" + uuid.uuid4().hex
        self.tokens[token] = (installation_id, self.clock() + (ttl or self.token_ttl))
        return token

    def app_jwt(self, *, lifetime: int = 540, iat_skew: int = 60, iss: Any = None) -> str:
        """A JWT signed with the app's key (for tests calling the fake directly)."""
        now = int(self.clock())
        payload = {"iat": now - iat_skew, "exp": now + lifetime, "iss": iss or str(self.app_id)}
        return jwt.encode(payload, self.private_key_pem, algorithm="RS256")

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 502,
        times: int = 1,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``.

        ``path_pattern`` is an OpenAPI template (``/repos/{owner}/{repo}/check-runs``) or a
        glob over the concrete path (``/repos/octo-org/*/check-runs``); ``method`` may be "*".
        """
        default = {"message": "Server Error"} if status >= 500 else {"message": "Fault"}
        self.faults.append(
            Fault(method, path_pattern, status, times, dict(headers or {}), body or default)
        )

    def rate_limit_next(
        self,
        method: str,
        path_pattern: str,
        retry_after: int = 1,
        times: int = 1,
        *,
        status: int = 403,
    ) -> None:
        """GitHub's secondary rate limit: 403 (or 429), ``retry-after``, GitHub's message."""
        body = {
            "message": SECONDARY_RATE_LIMIT_MESSAGE,
            "documentation_url": SECONDARY_RATE_LIMIT_DOCS,
        }
        self.fail_next(
            method,
            path_pattern,
            status,
            times,
            body=body,
            headers={"retry-after": str(retry_after)},
        )

    def primary_rate_limit_next(
        self, method: str, path_pattern: str, reset_in: int = 60, times: int = 1
    ) -> None:
        """GitHub's primary rate limit: 403 with ``x-ratelimit-remaining: 0`` and the reset."""
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(int(self.clock()) + reset_in),
            "x-ratelimit-resource": "core",
        }
        body = {"message": "API rate limit exceeded for installation.", "documentation_url": DOCS}
        self.fail_next(method, path_pattern, 403, times, body=body, headers=headers)

    # ---------------------------------------------------------------- inspection

    def calls(self, method: str = "*", path_pattern: str = "*") -> list[RecordedRequest]:
        """Recorded requests matching a method and an OpenAPI template or glob."""
        probe = Fault(method, path_pattern, 0, 0)
        return [r for r in self.requests if probe.matches(r.method, r.path, _template(r))]


    # ---------------------------------------------------------------- serving

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/_codeload/{tail:.*}", self._codeload)
        app.router.add_route("*", "/_git/{tail:.*}", self._git)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        body = await request.read()
        rec = RecordedRequest(
            method=request.method,
            path=request.path[len(self.prefix) :] if self.prefix else request.path,
            query=dict(request.query),
            json=maybe_json(body),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        self.requests.append(rec)
        op: Operation | None = None
        rate_key = "anonymous"
        try:
            if self.prefix:
                if not raw_path.startswith(self.prefix + "/"):
                    raise GitHubRejection(404, "Not Found", violation="undescribed")
                raw_path = raw_path[len(self.prefix) :]
            if not rec.headers.get("user-agent"):
                raise GitHubRejection(
                    403, "Request forbidden: a User-Agent is required", violation="auth"
                )
            matched = self.spec.match(request.method, raw_path)
            if matched is None:
                raise GitHubRejection(404, "Not Found", violation="undescribed")
            op, path_params = matched
            rec.operation = op.key
            rate_key = self._authenticate(op, path_params, rec.headers.get("authorization", ""))
            params, errors = op.check_params(path_params, rec.query)
            if errors:
                raise GitHubRejection(
                    422, "Invalid request.\n\n" + "\n".join(errors), violation="params"
                )
            data, errors = op.check_body(body, rec.headers.get("content-type", ""))
            if errors:
                status = 400 if errors[0].startswith("body is not JSON") else 422
                raise GitHubRejection(
                    status, "Invalid request.\n\n" + "\n".join(errors), violation="body"
                )
            fault = self._take_fault(request.method, rec.path, op.key.split(" ", 1)[1])
            if fault is not None:
                rec.status = fault.status
                return web.json_response(fault.body, status=fault.status, headers=fault.headers)
            ctx = handlers.Ctx(self, request, op, params, data)
            status, payload, headers = await handlers.dispatch(ctx)
        except GitHubRejection as rej:
            status, payload, headers = rej.status, self._error(rej), {}
            if rej.violation:
                self.violations.append(
                    Violation(rej.violation, request.method, rec.path, rej.detail)
                )
        if op is not None and self.validate_responses and status < 300:
            for err in op.response_errors(status, payload):
                self.violations.append(
                    Violation("response", request.method, rec.path, f"fake answered {err}")
                )
        rec.status = status
        headers = {**self._rate_headers(rate_key), **headers}
        if status in (204, 302) or payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    async def _git(self, request: web.Request) -> web.StreamResponse:
        if self.git_root is None:
            return web.Response(status=404, text="no git root\n")
        self.git.root = self.git_root
        return await self.git.handle(request)

    def _git_allows(self, user: str, password: str, repo: str) -> bool:
        held = self.tokens.get(password)
        found = self.repos.get(repo.lower())
        return (
            user == "x-access-token"
            and held is not None
            and found is not None
            and held[0] == found.installation_id
            and self.clock() < held[1]
        )

    async def _codeload(self, request: web.Request) -> web.StreamResponse:
        return await handlers.codeload(self, request)

    def _error(self, rej: GitHubRejection) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message": rej.message,
            "documentation_url": DOCS,
            "status": str(rej.status),
        }
        if rej.errors:
            out["errors"] = rej.errors
        return out

    def _take_fault(self, method: str, path: str, template: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.matches(method, path, template):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _rate_headers(self, key: str) -> dict[str, str]:
        remaining = self.rate_remaining.get(key, 5000) - 1
        self.rate_remaining[key] = max(remaining, 0)
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(max(remaining, 0)),
            "x-ratelimit-used": str(5000 - max(remaining, 0)),
            "x-ratelimit-reset": str(int(self.clock()) + 3600),
            "x-ratelimit-resource": "core",
        }

    # ---------------------------------------------------------------- authentication

    def _authenticate(self, op: Operation, path_params: dict[str, str], header: str) -> str:
        scheme, _, credential = header.partition(" ")
        scheme = scheme.lower()
        if op.key in JWT_OPERATIONS:
            if scheme != "bearer" or not credential:
                raise GitHubRejection(
                    401, "A JSON web token could not be decoded", violation="auth"
                )
            self._verify_jwt(credential.strip())
            return "app"
        if scheme not in ("token", "bearer") or not credential:
            raise GitHubRejection(401, "Requires authentication", violation="auth")
        token = credential.strip()
        if op.key == "GET /rate_limit" and token.count(".") == 2:
            self._verify_jwt(token)
            return "app"
        held = self.tokens.get(token)
        if held is None:
            raise GitHubRejection(401, "Bad credentials", violation="auth")
        installation_id, expires = held
        if self.clock() >= expires:
            raise GitHubRejection(401, "Bad credentials (token expired)", violation="auth")
        if "owner" in path_params and "repo" in path_params:
            repo = self.repos.get(f"{path_params['owner']}/{path_params['repo']}".lower())
            if repo is None:
                raise GitHubRejection(404, "Not Found")
            if repo.installation_id != installation_id:
                raise GitHubRejection(
                    404,
                    "Not Found",
                    violation="auth",
                    detail=f"token of installation {installation_id} used on {repo.full_name}",
                )
        return f"installation:{installation_id}"

    def _verify_jwt(self, token: str) -> None:
        try:
            claims = jwt.decode(
                token,
                self._public_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iat", "exp", "iss"],
                },
            )
        except jwt.PyJWTError as exc:
            raise GitHubRejection(
                401, f"A JSON web token could not be decoded ({exc})", violation="auth"
            ) from None
        now = self.clock()
        if str(claims["iss"]) != str(self.app_id):
            raise GitHubRejection(
                401, "'Issuer' claim ('iss') must be an Integer", violation="auth"
            )
        if claims["exp"] <= now:
            raise GitHubRejection(
                401,
                "'Expiration time' claim ('exp') must be a numeric "
                "value representing the future time at which the "
                "assertion expires",
                violation="auth",
            )
        if claims["exp"] > now + JWT_MAX_LIFETIME + 1:
            raise GitHubRejection(
                401, "'Expiration time' claim ('exp') is too far in the future", violation="auth"
            )
        if claims["iat"] > now + 60:
            raise GitHubRejection(
                401,
                "'Issued at' claim ('iat') must be an Integer representing a time in the past",
                violation="auth",
            )


def _template(rec: RecordedRequest) -> str | None:
    return rec.operation.split(" ", 1)[1] if rec.operation else None


def serve_fake_github(
    *, assert_clean: bool = True, **options: Any
) -> AbstractAsyncContextManager[FakeGitHub]:
    """Serve a ``FakeGitHub(**options)`` on 127.0.0.1 (random port) for the block; fails on
    exit if requests the real service would reject were recorded (``assert_clean``)."""
    return serve(FakeGitHub(**options), assert_clean=assert_clean)


__all__ = [
    "FakeGitHub",
    "FakeInstallation",
    "FakePull",
    "FakeRepo",
    "RecordedRequest",
    "Violation",
    "delivery_headers",
    "generate_private_key_pem",
    "load_fixture",
    "serve_fake_github",
    "sign",
]
