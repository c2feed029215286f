"""The service commands' client: PloyD's JSON API (``app/web/api.py``) over HTTP, with the
standard library only (these commands start fast and need nothing of the server's).

Where: ``PLOYD_URL`` (default the local server, ``http://127.0.0.1:$PLOYD_PORT``, port
8080); who: ``PLOYD_ADMIN_TOKEN`` as a bearer token when set. Links: the ``web_url`` an
API object carries, else the fixed scheme (``/pipelines/{id}``, ``/runs/{job_id}``).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 30.0
TERMINAL_JOB = frozenset(
    {"succeeded", "failed", "cancelled", "skipped", "timed_out", "interrupted", "manual"}
)
TERMINAL_PIPELINE = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    """The service answered an error, or could not be reached; ``str`` says which."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def default_url() -> str:
    from app.settings import env_setting

    explicit = env_setting("PLOYD_URL").rstrip("/")
    if explicit:
        return explicit
    port = env_setting("PLOYD_PORT") or "8080"
    return f"http://127.0.0.1:{port}"


class Client:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        from app.settings import env_setting

        self.url = (url or default_url()).rstrip("/")
        self.token = env_setting("PLOYD_ADMIN_TOKEN") if token is None else token

    def request(
        self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None
    ) -> Response:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
                return Response(r.status, r.read(), {k.lower(): v for k, v in r.headers.items()})
        except urllib.error.HTTPError as e:
            raise ApiError(_http_error(e, method, path), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(
                f"cannot reach PloyD at {self.url}: {reason} "
                "(is `ployd serve` running? set PLOYD_URL to its address)"
            ) from None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None).json()

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {}).json()

    def pipeline_url(self, pipeline: dict[str, Any]) -> str:
        return str(pipeline.get("web_url") or f"{self.url}/pipelines/{pipeline['id']}")

    def job_url(self, job: dict[str, Any]) -> str:
        return str(job.get("web_url") or f"{self.url}/runs/{job['id']}")


def _http_error(e: urllib.error.HTTPError, method: str, path: str) -> str:
    try:
        detail = json.loads(e.read() or b"{}")
    except ValueError:
        detail = {}
    message = detail.get("error") if isinstance(detail, dict) else None
    if e.code == 401:
        return f"{message or 'unauthorized'} (set PLOYD_ADMIN_TOKEN)"
    if message and isinstance(detail.get("errors"), list):
        lines = [message]
        for err in detail["errors"]:
            where = ":".join(str(err.get(k)) for k in ("file", "line", "column") if err.get(k))
            lines.append(f"  {where}: {err.get('message')}")
        return "\n".join(lines)
    return str(message or f"{method} {path}: HTTP {e.code}")


_RUNS = re.compile(r"/runs/(\d+)(?:[/?#]|$)")
_PIPELINES = re.compile(r"/pipelines/(\d+)(?:[/?#]|$)")


def job_id(client: Client, text: str) -> int:
    """A job named as its id (``17``), ``PIPELINE/NAME`` (``3/unit``) or its page's URL."""
    if text.isdigit():
        return int(text)
    m = _RUNS.search(text)
    if m:
        return int(m.group(1))
    head, sep, name = text.partition("/")
    if sep and head.isdigit() and name:
        jobs = client.get(f"/api/v1/pipelines/{head}")["jobs"]
        for j in jobs:
            if name in (j["name"], str(j["id"])):
                return int(j["id"])
        known = ", ".join(j["name"] for j in jobs)
        raise ApiError(f"pipeline {head} has no job {name!r} (jobs: {known})")
    raise ApiError(f"{text!r} is not a job: give its id (17), PIPELINE/NAME (3/unit) or its URL")


def pipeline_id(text: str) -> int | None:
    """A pipeline named as its id or its page's URL; None when ``text`` is neither."""
    if text.isdigit():
        return int(text)
    m = _PIPELINES.search(text)
    return int(m.group(1)) if m else None
