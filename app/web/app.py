"""The aiohttp application: routes only; services are built by ``app.server``."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from app import __version__
from app.services import Services
from app.web import (
    agent_api,
    agent_files,
    api,
    dashboard,
    links_api,
    logs,
    notify_api,
    pipelines,
    webhooks_github,
    webhooks_gitlab,
)
from app.web.admin_api import install as install_admin
from app.web.artifacts_api import install as install_artifacts
from app.web.common import SERVICES
from app.web.metrics_api import install as install_metrics

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    try:
        svc.db.ping()
    except Exception as e:  # a health check reports; it does not crash
        return web.json_response({"status": "unhealthy", "error": type(e).__name__}, status=503)
    return web.json_response({"status": "ok", "version": __version__})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition (behind PLOYD_ADMIN_TOKEN when that is set)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from app.web.common import require_admin

    require_admin(request)
    body = request.app[SERVICES].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def refuse_nul(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No path or query parameter holds a NUL byte (``%00``): 400, before any handler
    (no store column takes one; PostgreSQL refuses it in any text)."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        if "\x00" in value or "\x00" in name:
            return web.json_response(
                {"error": f"parameter {name[:40]!r} must not contain a NUL byte"}, status=400
            )
    if "\x00" in request.path:
        return web.json_response({"error": "the path must not contain a NUL byte"}, status=400)
    return await handler(request)


def make_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=8 << 20, middlewares=[refuse_nul])
    app[SERVICES] = services
    app.add_routes(routes)
    app.add_routes(api.routes)
    app.add_routes(agent_api.routes)
    app.add_routes(agent_files.routes)
    app.add_routes(logs.routes)
    app.add_routes(webhooks_github.routes)
    app.add_routes(webhooks_gitlab.routes)
    app.add_routes(dashboard.routes)
    app.add_routes(links_api.routes)  # a job's signed link, for `ployd open`
    app.add_routes(pipelines.routes)
    install_artifacts(app, services)
    install_metrics(app, services)
    app.add_routes(notify_api.routes)
    install_admin(app, services)  # secrets, tenants' policies and spend
    return app
