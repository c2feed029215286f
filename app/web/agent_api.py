"""The agent protocol's server side (docs/agent-protocol.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.engine.engine import AgentAuthError, OutOfOrder
from app.web.common import bearer, error, int_param, json_body, services

routes = web.RouteTableDef()

STEP_STATES = {"running", "succeeded", "failed", "timed_out", "cancelled", "skipped"}


def _num(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise web.HTTPBadRequest(
            text=f'{{"error": "{key} must be a number"}}', content_type="application/json"
        )
    return float(value)


@routes.post("/api/v1/agent/claim")
async def claim(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    body = await json_body(request)
    agent_id = body.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id or len(agent_id) > 128:
        return error(400, "agent_id must be a non-empty string of at most 128 characters")
    try:
        who = svc.engine.authenticate(bearer(request), agent_id)
    except AgentAuthError as e:
        return error(e.status, str(e))
    found = await svc.engine.claim(who, _num(body, "wait", 0))
    if found is None:
        return web.Response(status=204)
    return web.json_response(found)


async def _guard(request: web.Request, fn: Any) -> web.StreamResponse:
    try:
        return await fn()  # type: ignore[no-any-return]
    except AgentAuthError as e:
        return error(e.status, str(e))
    except OutOfOrder as e:
        return error(409, str(e), expected=e.expected)


@routes.post("/api/v1/agent/attempts/{attempt_id}/log")
async def log(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    body = await json_body(request, max_bytes=4 << 20)
    seq, data = body.get("seq"), body.get("data")
    if not isinstance(seq, int) or seq < 0 or not isinstance(data, str):
        return error(400, "a log chunk is {seq: int >= 0, data: string}")

    async def run() -> web.StreamResponse:
        cancel = svc.engine.record_log(attempt_id, bearer(request), seq, data)
        return web.json_response({"cancel": cancel})

    return await _guard(request, run)


@routes.post("/api/v1/agent/attempts/{attempt_id}/steps")
async def step(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    body = await json_body(request)
    index, state, code = body.get("index"), body.get("state"), body.get("exit_code")
    if not isinstance(index, int) or index < 0 or state not in STEP_STATES:
        return error(400, f"a step report is {{index: int, state: one of {sorted(STEP_STATES)}}}")
    if code is not None and not isinstance(code, int):
        return error(400, "exit_code must be an integer or null")

    async def run() -> web.StreamResponse:
        cancel = svc.engine.record_step(attempt_id, bearer(request), index, state, code)
        return web.json_response({"cancel": cancel})

    return await _guard(request, run)


@routes.post("/api/v1/agent/attempts/{attempt_id}/heartbeat")
async def heartbeat(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    body = await json_body(request)
    wait = _num(body, "wait", 0)

    async def run() -> web.StreamResponse:
        cancel = await svc.engine.heartbeat(attempt_id, bearer(request), wait)
        return web.json_response({"cancel": cancel})

    return await _guard(request, run)


@routes.post("/api/v1/agent/attempts/{attempt_id}/finish")
async def finish(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    body = await json_body(request)
    result = body.get("result")
    if result not in ("succeeded", "failed", "timed_out", "cancelled", "interrupted"):
        return error(400, "result must be succeeded, failed, timed_out, cancelled or interrupted")
    for key in ("exit_code", "failed_step"):
        if body.get(key) is not None and not isinstance(body.get(key), int):
            return error(400, f"{key} must be an integer or null")
    reason, err = body.get("reason"), body.get("error")

    async def run() -> web.StreamResponse:
        svc.engine.finish(
            attempt_id,
            bearer(request),
            result,
            reason=reason if isinstance(reason, str) else None,
            exit_code=body.get("exit_code"),
            failed_step=body.get("failed_step"),
            error=err if isinstance(err, str) else None,
        )
        return web.json_response({"ok": True})

    return await _guard(request, run)
