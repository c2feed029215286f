"""The admin API (``Authorization: Bearer <PLOYD_ADMIN_TOKEN>``): secrets, tenants'
policies and their spend.

- ``GET /api/v1/secrets?repo=OWNER/NAME[&forge=github]``: names, scopes, when set; never values
- ``PUT /api/v1/secrets``: ``{"repo", "name", "value" | "reference", "branch"?, "forge"?}``
- ``DELETE /api/v1/secrets?repo=...&name=...[&branch=...][&forge=...]``
- ``GET /api/v1/tenants``; ``GET|PUT /api/v1/tenants/{id}/policy``;
  ``GET /api/v1/tenants/{id}/spend``
- ``GET /api/v1/agents/tokens``: the registration tokens (never the tokens themselves);
  ``DELETE /api/v1/agents/tokens/{id}`` revokes one.
- ``POST /api/v1/agents/tokens``: ``{"pool", "tenants": [...] | "*", "labels"?, "expires"?}``
  -> a one-time registration token, shown once (201)
- ``GET /api/v1/agents``; ``POST /api/v1/agents/{name}/disable`` (drains it),
  ``POST /api/v1/agents/{name}/enable``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web

from app.policy.model import PolicyError
from app.policy.setup import Security
from app.pools import AgentNotFound, PoolError, TokenNotFound, as_json, token_json
from app.secrets.references import ReferenceError
from app.secrets.store import SecretError, SecretNotFound
from app.services import Services
from app.store.tenants import TenantView, all_tenants
from app.web.common import (
    clean_text,
    error,
    int_param,
    json_body,
    parse_id,
    require_admin,
    services,
)

routes = web.RouteTableDef()
T = TypeVar("T")
SECURITY = web.AppKey("security", Security)
ACTOR = "admin-api"


def install(app: web.Application, svc: Services) -> None:
    """Register the routes, with the engine's secret store and policy book."""
    app[SECURITY] = svc.security
    app.add_routes(routes)


def _security(request: web.Request) -> Security:
    return request.app[SECURITY]


def _str(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise web.HTTPBadRequest(
            text=f'{{"error": "{key} must be a non-empty string"}}',
            content_type="application/json",
        )
    clean_text(value, key)
    return value


# ---- secrets ---------------------------------------------------------------------------


@routes.get("/api/v1/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    require_admin(request)
    repo = request.query.get("repo", "")
    if not repo:
        return error(400, "say which repository: ?repo=OWNER/NAME")
    try:
        infos = _security(request).secrets.list(repo, forge=request.query.get("forge") or None)
    except SecretError as e:
        return error(404, str(e))
    return web.json_response({"secrets": [i.as_json() for i in infos]})


@routes.put("/api/v1/secrets")
async def put_secret(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_body(request)
    repo, name = _str(body, "repo"), _str(body, "name")
    value, ref = body.get("value"), body.get("reference")
    if (value is None) == (ref is None):
        return error(400, 'give exactly one of "value" and "reference" (aws-sm:..., aws-ssm:...)')
    text = value if value is not None else ref
    if not isinstance(text, str) or not text:
        return error(400, "the value or reference must be a non-empty string")
    store = _security(request).secrets
    try:
        info = await asyncio.to_thread(
            store.set,
            repo,
            name,
            text,
            forge=_str(body, "forge", required=False) or None,
            branch=_str(body, "branch", required=False),
            actor=ACTOR,
            reference=ref is not None,
        )
    except (SecretError, ReferenceError) as e:
        return error(400, str(e))
    return web.json_response(info.as_json())


@routes.delete("/api/v1/secrets")
async def delete_secret(request: web.Request) -> web.Response:
    require_admin(request)
    q = request.query
    if not q.get("repo") or not q.get("name"):
        return error(400, "say which secret: ?repo=OWNER/NAME&name=NAME[&branch=PATTERN]")
    try:
        _security(request).secrets.delete(
            q["repo"],
            q["name"],
            forge=q.get("forge") or None,
            branch=q.get("branch", ""),
            actor=ACTOR,
        )
    except SecretNotFound as e:
        return error(404, str(e))
    except SecretError as e:
        return error(400, str(e))
    return web.json_response({"deleted": q["name"]})


# ---- tenants ---------------------------------------------------------------------------


def _tenant_json(t: TenantView) -> dict[str, Any]:
    return {"id": t.id, "forge": t.forge, "external_id": t.external_id, "name": t.name}


@routes.get("/api/v1/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    require_admin(request)
    tenants = [_tenant_json(t) for t in all_tenants(services(request).db)]
    return web.json_response({"tenants": tenants})


def _found(value: T | None) -> T:
    if value is None:
        raise web.HTTPNotFound(text='{"error": "no such tenant"}', content_type="application/json")
    return value


@routes.get("/api/v1/tenants/{tenant_id}/policy")
async def get_policy(request: web.Request) -> web.Response:
    require_admin(request)
    book = _security(request).policy
    view = _found(book.view(services(request).db, int_param(request, "tenant_id")))
    return web.json_response(
        {
            "tenant": _tenant_json(view.tenant),
            "effective": view.effective.as_json(),
            "source": view.source,
            "stored": view.stored,
        }
    )


@routes.put("/api/v1/tenants/{tenant_id}/policy")
async def put_policy(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_body(request)
    book = _security(request).policy
    try:
        view = _found(book.put(services(request).db, int_param(request, "tenant_id"), body, ACTOR))
    except PolicyError as e:
        return error(400, str(e))
    return web.json_response(
        {
            "tenant": _tenant_json(view.tenant),
            "effective": view.effective.as_json(),
            "source": view.source,
        }
    )


@routes.get("/api/v1/tenants/{tenant_id}/spend")
async def get_spend(request: web.Request) -> web.Response:
    require_admin(request)
    book = _security(request).policy
    spend = _found(book.spend_of(services(request).db, int_param(request, "tenant_id")))
    return web.json_response(spend.as_json())


# ---- self-hosted agents --------------------------------------------------------------

TOKEN_FIELDS = ("pool", "tenants", "labels", "expires")


@routes.get("/api/v1/agents/tokens")
async def list_agent_tokens(request: web.Request) -> web.Response:
    require_admin(request)
    tokens = await asyncio.to_thread(services(request).pools.tokens)
    return web.json_response({"tokens": [token_json(t) for t in tokens]})


@routes.delete("/api/v1/agents/tokens/{id}")
async def revoke_agent_token(request: web.Request) -> web.Response:
    require_admin(request)
    raw = request.match_info["id"]
    token_id = parse_id(raw)
    if token_id is None:
        return error(400, f"not a token id: {raw[:40]!r}")
    try:
        info = await asyncio.to_thread(services(request).pools.revoke_token, token_id, actor=ACTOR)
    except TokenNotFound as e:
        return error(404, str(e))
    return web.json_response(token_json(info))


@routes.post("/api/v1/agents/tokens")
async def create_agent_token(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_body(request)
    unknown = sorted(k for k in body if k not in TOKEN_FIELDS)
    if unknown:
        return error(400, f"unknown field {unknown[0]!r}; known: {', '.join(TOKEN_FIELDS)}")
    pool = body.get("pool")
    if not isinstance(pool, str) or not pool:
        return error(400, "pool must be a non-empty string")
    tenants = body.get("tenants", [])
    if isinstance(tenants, str):
        tenants = [tenants]
    if not isinstance(tenants, list):
        return error(400, 'tenants must be a list like ["github:acme"], or "*" for every tenant')
    expires = body.get("expires")
    if expires is not None and not isinstance(expires, str):
        return error(400, 'expires must be a duration like "7d", "12h" or "30m"')
    try:
        new = services(request).pools.create_token(
            pool, tenants, labels=body.get("labels"), expires=expires, actor=ACTOR
        )
    except PoolError as e:
        return error(400, str(e))
    return web.json_response({"token": new.token, **token_json(new.info)}, status=201)


@routes.get("/api/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response({"agents": [as_json(a) for a in services(request).pools.agents()]})


@routes.post("/api/v1/agents/{name}/{action:disable|enable}")
async def set_agent_state(request: web.Request) -> web.Response:
    require_admin(request)
    pools = services(request).pools
    name, action = request.match_info["name"], request.match_info["action"]
    try:
        agent = (pools.disable if action == "disable" else pools.enable)(name, actor=ACTOR)
    except AgentNotFound as e:
        return error(404, str(e))
    return web.json_response(as_json(agent))
