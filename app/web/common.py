"""What every route module shares: the services key, JSON helpers, auth checks."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web

from app.services import Services
from app.store.inbox import InboxWriter

SERVICES = web.AppKey("services", Services)
INBOX_WRITER = web.AppKey("inbox_writer", InboxWriter)
MAX_ID = (1 << 63) - 1  # ids are BIGINTs


class Submitter(Protocol):
    def submit(self, inbox_id: int) -> None: ...


GITHUB_WORKER = web.AppKey("github_worker", Submitter)
GITLAB_WORKER = web.AppKey("gitlab_worker", Submitter)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class TooLarge(Exception):
    """A request body over its cap."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole raw body (however the client chunks it); ``TooLarge`` past ``limit``
    bytes, without reading further."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed as strict JSON (UTF-8; no NaN or Infinity; nesting under 1,024
    levels); ``ValueError`` with the reason otherwise."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(str(e)) from None


async def json_body(request: web.Request, max_bytes: int = 1 << 20) -> dict[str, Any]:
    """The request's JSON object; 400/413 with a clear message otherwise. Call it only
    after the caller is authenticated."""
    try:
        raw = await read_body(request, max_bytes)
    except TooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=max_bytes,
            actual_size=request.content_length or max_bytes + 1,
            text=json.dumps({"error": f"the body is larger than {max_bytes} bytes"}),
            content_type="application/json",
        ) from None
    if not raw.strip():
        return {}
    try:
        body = parse_json(raw)
    except ValueError as e:
        raise bad_request(f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole raw body, or None when it is larger than ``limit``."""
    try:
        return await read_body(request, limit)
    except TooLarge:
        return None


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


def parse_id(raw: str) -> int | None:
    """``raw`` as an id: ASCII digits only, 1 .. 2**63 - 1 (None otherwise)."""
    if not raw or len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def parse_offset(raw: str) -> int | None:
    """``raw`` as a byte offset: ASCII digits only, 0 .. 2**63 - 1 (None otherwise)."""
    if not raw or len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def int_param(request: web.Request, name: str) -> int:
    """The path parameter ``name`` as an id; 404 naming it when it is not one."""
    value = parse_id(request.match_info[name])
    if value is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"{name} must be a number from 1 to {MAX_ID}"}),
            content_type="application/json",
        )
    return value


def query_int(
    query: Mapping[str, str],
    name: str,
    default: int,
    *,
    low: int = 0,
    high: int = MAX_ID,
    clamp: bool = False,
) -> int:
    """The query parameter ``name`` as an integer in ``low .. high`` (``default`` when
    absent or empty); 400 naming it otherwise (``²``, ``-1`` and ``10**20`` included).
    ``clamp``: a number out of ``low .. high`` (but under 2**63) is brought into it."""
    raw = query.get(name, "")
    if raw == "":
        return default
    value = parse_offset(raw)
    if value is not None and clamp:
        return min(max(value, low), high)
    if value is None or not low <= value <= high:
        raise bad_request(f"query parameter '{name}' must be an integer from {low} to {high}")
    return value


def clean_text(value: Any, name: str, *, max_len: int = 4096) -> str:
    """``value`` as a string fit for storing: no NUL byte, not over ``max_len``; 400
    naming ``name`` otherwise."""
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string")
    if "\x00" in value:
        raise bad_request(f"'{name}' must not contain a NUL byte")
    if len(value) > max_len:
        raise bad_request(f"'{name}' is longer than {max_len} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise bad_request(f"'{name}' is not valid Unicode") from None
    return value
