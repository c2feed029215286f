"""The agent protocol's server side (docs/agent-protocol.md; messages in app/protocol.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from aiohttp import web

from app.engine.engine import AgentAuthError, OutOfOrder
from app.protocol import (
    Answer,
    BootFailure,
    ClaimRequest,
    FinishAnswer,
    FinishReport,
    Heartbeat,
    LogChunk,
    ProtocolError,
    Registration,
    StepReport,
    UpdateRequired,
)
from app.web.agent_files import AGENT_PATH
from app.web.common import bearer, error, int_param, json_body, services

routes = web.RouteTableDef()
M = TypeVar("M")


def _needs_bearer(request: web.Request) -> None:
    """401 before a byte of the body is read when no credential is presented at all."""
    if not bearer(request):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "this endpoint needs Authorization: Bearer <token>"}),
            content_type="application/json",
        )


async def _read(parse: Callable[[object], M], request: web.Request, max_bytes: int = 1 << 20) -> M:
    """The request's body read by a message's ``from_json``; 400 naming the field
    otherwise (``ProtocolError``). Only once a credential was presented."""
    _needs_bearer(request)
    try:
        return parse(await json_body(request, max_bytes=max_bytes))
    except ProtocolError as e:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(e)}), content_type="application/json"
        ) from None


@routes.post("/api/v1/agent/register")
async def register(request: web.Request) -> web.StreamResponse:
    """A registration token (``Authorization: Bearer``), exchanged once for the agent's
    own credential: 401 for a token that is unknown, used already or expired."""
    svc = services(request)
    body = await _read(Registration.from_json, request)
    try:
        registered = svc.engine.register(bearer(request), body)
    except AgentAuthError as e:
        return error(e.status, str(e))
    return web.json_response(registered.to_json())


@routes.post("/api/v1/agent/claim")
async def claim(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    body = await _read(ClaimRequest.from_json, request)
    try:
        who = svc.engine.authenticate(bearer(request), body)
    except AgentAuthError as e:
        return error(e.status, str(e))
    agent = svc.agent
    if body.version and body.version != agent.version:
        # another version of the agent: it gets no job until it runs this server's
        update = UpdateRequired(version=agent.version, url=AGENT_PATH, sha256=agent.sha256)
        return web.json_response(update.to_json(), status=426, headers={"Upgrade": "ployd-agent"})
    if body.hardware is not None:
        who = replace(who, hardware=body.hardware)
    found = await svc.engine.claim(who, float(body.wait))
    if found is None:
        return web.Response(status=204)
    return web.json_response(found.to_json())


@routes.post("/api/v1/agent/bootstrap-failed")
async def bootstrap_failed(request: web.Request) -> web.StreamResponse:
    """A machine's bootstrap could not start the agent (registration token): its attempt
    ends `interrupted` saying why, and the machine retires."""
    svc = services(request)
    body = await _read(BootFailure.from_json, request, max_bytes=16 << 10)
    try:
        failed = svc.engine.machine_failed_to_start(bearer(request), body.reason)
    except AgentAuthError as e:
        return error(e.status, str(e))
    return web.json_response({"machine": failed.name, "attempt_id": failed.attempt_id})


def _job_token_refused(svc: Any, attempt_id: int, request: web.Request) -> web.Response | None:
    """The job token checked before the body is read (None: it is this attempt's)."""
    try:
        svc.engine.check_job_token(attempt_id, bearer(request))
    except AgentAuthError as e:
        return error(e.status, str(e))
    return None


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
    if (refused := _job_token_refused(svc, attempt_id, request)) is not None:
        return refused
    chunk = await _read(LogChunk.from_json, request, max_bytes=4 << 20)

    async def run() -> web.StreamResponse:
        cancel = svc.engine.record_log(attempt_id, bearer(request), chunk)
        return web.json_response(Answer(cancel).to_json())

    return await _guard(request, run)


@routes.post("/api/v1/agent/attempts/{attempt_id}/steps")
async def step(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    if (refused := _job_token_refused(svc, attempt_id, request)) is not None:
        return refused
    report = await _read(StepReport.from_json, request)

    async def run() -> web.StreamResponse:
        cancel = svc.engine.record_step(attempt_id, bearer(request), report)
        return web.json_response(Answer(cancel).to_json())

    return await _guard(request, run)


@routes.post("/api/v1/agent/attempts/{attempt_id}/heartbeat")
async def heartbeat(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    if (refused := _job_token_refused(svc, attempt_id, request)) is not None:
        return refused
    beat = await _read(Heartbeat.from_json, request)

    async def run() -> web.StreamResponse:
        cancel = await svc.engine.heartbeat(attempt_id, bearer(request), float(beat.wait))
        return web.json_response(Answer(cancel).to_json())

    return await _guard(request, run)


@routes.post("/api/v1/agent/attempts/{attempt_id}/finish")
async def finish(request: web.Request) -> web.StreamResponse:
    svc, attempt_id = services(request), int_param(request, "attempt_id")
    if (refused := _job_token_refused(svc, attempt_id, request)) is not None:
        return refused
    report = await _read(FinishReport.from_json, request)

    async def run() -> web.StreamResponse:
        svc.engine.finish(attempt_id, bearer(request), report)
        return web.json_response(FinishAnswer().to_json())

    return await _guard(request, run)
