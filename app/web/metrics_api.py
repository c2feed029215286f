"""The agent's metrics call (docs/agent-protocol.md, "Metrics"): the job's metrics file,
authenticated by the job token; answered with the lines for the job's log."""

from __future__ import annotations

import asyncio

from aiohttp import web

from app.artifacts.access import BadRequest
from app.engine.engine import AgentAuthError
from app.results.metrics import MetricsIntake
from app.services import Services
from app.web.common import bearer, error, int_param, json_body

routes = web.RouteTableDef()
INTAKE = web.AppKey("metrics_intake", MetricsIntake)
MAX_BODY = 2 << 20  # a 1 MiB file in base64, and the rest


def install(app: web.Application, svc: Services) -> None:
    app[INTAKE] = MetricsIntake(svc.db)
    app.add_routes(routes)


@routes.post("/api/v1/agent/attempts/{attempt_id}/metrics")
async def receive_metrics(request: web.Request) -> web.StreamResponse:
    attempt_id, token = int_param(request, "attempt_id"), bearer(request)
    intake = request.app[INTAKE]
    try:
        await asyncio.to_thread(intake.check, attempt_id, token)
        body = await json_body(request, max_bytes=MAX_BODY)
        got = await asyncio.to_thread(intake.receive, attempt_id, token, body)
    except AgentAuthError as e:
        return error(e.status, str(e))
    except BadRequest as e:
        return error(400, str(e))
    return web.json_response(got.to_json())
