"""What was sent about a pipeline outside the forge (``GET
/api/v1/pipelines/{pipeline_id}/notifications``, behind PLOYD_ADMIN_TOKEN like the rest
of the API): each delivery's channel kind, event, state, tries and last error. Never a
secret: a Slack channel is named by its secret's name."""

from __future__ import annotations

import asyncio

from aiohttp import web

from app.store import notifications as rows
from app.web.common import int_param, require_admin, services

routes = web.RouteTableDef()


@routes.get("/api/v1/pipelines/{pipeline_id}/notifications")
async def list_notifications(request: web.Request) -> web.StreamResponse:
    require_admin(request)
    pipeline_id = int_param(request, "pipeline_id")
    views = await asyncio.to_thread(rows.listing, services(request).db, pipeline_id)
    return web.json_response(
        {
            "notifications": [
                {
                    "id": v.id,
                    "event": v.event,
                    "channel": v.kind,
                    "target": v.channel_target,
                    "state": v.state,
                    "tries": v.tries,
                    "error": v.error,
                }
                for v in views
                if v.kind != rows.PR_KIND
            ]
        }
    )
