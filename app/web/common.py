"""What every route module shares: the services key, JSON helpers, auth checks."""

from __future__ import annotations

import hmac
import json
from typing import Any, Protocol

from aiohttp import web

from app.services import Services

SERVICES = web.AppKey("services", Services)


class Submitter(Protocol):
    def submit(self, inbox_id: int) -> None: ...


GITHUB_WORKER = web.AppKey("github_worker", Submitter)
GITLAB_WORKER = web.AppKey("gitlab_worker", Submitter)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def json_body(request: web.Request, max_bytes: int = 1 << 20) -> dict[str, Any]:
    """The request's JSON object; 400/413 with a clear message otherwise."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(raw))
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # Recursion: nested too deep
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"the body is not JSON: {e}"}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be a JSON object"}),
            content_type="application/json",
        )
    return body


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = await request.content.read(limit + 1)
    return None if len(body) > limit else body


def refuse(
    request: web.Request, forge: str, reason: str, status: int, message: str
) -> web.Response:
    """Refuse a webhook delivery: counted in ``ployd_webhooks_rejected`` by reason."""
    services(request).metrics.rejected.labels(forge, reason).inc()
    return error(status, message)


def bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require_admin(request: web.Request) -> None:
    """When PLOYD_ADMIN_TOKEN is set, the API needs it as a bearer token."""
    expected = services(request).settings.admin_token
    if expected and not hmac.compare_digest(bearer(request).encode(), expected.encode()):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "this API needs Authorization: Bearer <PLOYD_ADMIN_TOKEN>"}),
            content_type="application/json",
        )


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"{name} must be a number"}), content_type="application/json"
        ) from None
