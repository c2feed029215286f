"""Git's smart HTTP protocol, served for real on loopback: ``git http-backend`` run as a CGI
program by an aiohttp route, behind HTTP Basic authentication as forges ask for it.

A request without credentials, or with credentials ``authorize(user, password, repo)``
refuses, gets ``401`` with ``WWW-Authenticate: Basic`` (what GitHub and GitLab answer);
the others go to ``git http-backend`` with ``GIT_PROJECT_ROOT`` (repositories are the
working copies under ``root``: ``/OWNER/NAME.git/info/refs`` is ``root/OWNER/NAME``),
``GIT_HTTP_EXPORT_ALL``, ``PATH_INFO``, ``QUERY_STRING``, ``CONTENT_TYPE``,
``REQUEST_METHOD`` and the body on its standard input. Every request is recorded
(``requests``). Used by the fake GitHub (``/_git/...``) and the fake GitLab, and alone
(``serve_git_http``) by the workspace tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

Authorize = Callable[[str, str, str], bool]  # (user, password, "OWNER/NAME") -> allowed
_SERVICE = re.compile(
    r"^/(?P<repo>.+?)(?:\.git)?(?P<rest>/(?:info/refs|git-upload-pack|git-receive-pack|HEAD"
    r"|objects/.+))$"
)


@dataclass
class GitRequest:
    method: str
    path: str
    user: str | None
    password: str | None
    authorization: str | None  # the header as it came
    status: int


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of an ``Authorization: Basic`` header, or None."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class GitHttp:
    """The route's handler; ``root`` holds the repositories, ``authorize`` decides."""

    def __init__(self, root: Path, authorize: Authorize, *, realm: str = "Git") -> None:
        self.root = root
        self.authorize = authorize
        self.realm = realm
        self.requests: list[GitRequest] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        header = request.headers.get("Authorization")
        found = _SERVICE.match(path)
        creds = basic_credentials(header)
        user, password = creds if creds is not None else (None, None)

        def answer(status: int, response: web.StreamResponse) -> web.StreamResponse:
            self.requests.append(GitRequest(request.method, path, user, password, header, status))
            return response

        if found is None:
            return answer(404, web.Response(status=404, text="not a git path\n"))
        repo = found.group("repo")
        if creds is None or not self.authorize(creds[0], creds[1], repo):
            return answer(
                401,
                web.Response(
                    status=401,
                    text="HTTP Basic: Access denied\n",
                    headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'},
                ),
            )
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo}{found.group('rest')}",
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REQUEST_METHOD": request.method,
            "REMOTE_USER": creds[0],
            "REMOTE_ADDR": request.remote or "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        }
        if request.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        if body[:2] == b"\x1f\x8b":  # still gzipped (git compresses large requests)
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(body)
        head, sep, payload = out.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        if proc.returncode != 0 and status == 200:
            status = 500
            payload = err
        return answer(status, web.Response(status=status, body=payload, headers=headers))

    def add_routes(self, app: web.Application, prefix: str) -> None:
        app.router.add_route("*", prefix + "/{tail:.*}", self.handle)


@asynccontextmanager
async def serve_git_http(root: Path, authorize: Authorize) -> AsyncIterator[tuple[str, GitHttp]]:
    """``async with serve_git_http(root, authorize) as (url, server)``: repositories under
    ``root`` at ``url/OWNER/NAME.git`` on 127.0.0.1."""
    server = GitHttp(root, authorize)
    app = web.Application()
    server.add_routes(app, "/git")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/git", server
    finally:
        await runner.cleanup()


# --- what must be nowhere on disk after a job -------------------------------------------


def credential_forms(user: str, token: str) -> list[bytes]:
    """A clone credential as it could land in a file: the token, ``user:token`` and the
    ``Authorization: Basic`` header's base64 of it."""
    pair = f"{user}:{token}".encode()
    return [token.encode(), pair, base64.b64encode(pair)]


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root`` (``.git`` included) that contains one of ``needles``."""
    found = []
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            data = f.read_bytes()
            found += [f"{f}: {n[:12]!r}" for n in needles if n in data]
    return found
