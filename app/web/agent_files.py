"""The agent as files anyone may download (they hold no secret): the agent itself, its
SHA-256, and the self-hosted installer. No authentication; ETags, so that a machine that
already has this version gets a 304."""

from __future__ import annotations

import hashlib

from aiohttp import web

from app.agentbuild import NAME
from app.agentinstall import install_script
from app.web.common import error, services

routes = web.RouteTableDef()

AGENT_PATH = f"/agent/{NAME}"  # what update instructions and user data point at


def _file(
    request: web.Request, body: bytes, etag: str, content_type: str, **headers: str
) -> web.Response:
    quoted = f'"{etag}"'
    common = {"ETag": quoted, "Cache-Control": "no-cache", **headers}
    if quoted in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=common)
    return web.Response(body=body, content_type=content_type, headers=common)


@routes.get(AGENT_PATH)
async def agent_file(request: web.Request) -> web.StreamResponse:
    agent = services(request).agent
    return _file(
        request,
        agent.data,
        agent.sha256,
        "application/octet-stream",
        **{
            "Content-Disposition": f'attachment; filename="{agent.file_name}"',
            "X-Ployd-Agent-Version": agent.version,
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.get(AGENT_PATH + ".sha256")
async def agent_sha256(request: web.Request) -> web.StreamResponse:
    agent = services(request).agent
    line = agent.sha256_line().encode()
    return _file(request, line, hashlib.sha256(line).hexdigest(), "text/plain")


@routes.get("/agent/install.sh")
async def install(request: web.Request) -> web.StreamResponse:
    """install.sh for this server: agents reach it at PLOYD_PUBLIC_URL, or where this
    request came to."""
    svc = services(request)
    server = svc.settings.public_url or f"{request.scheme}://{request.host}"
    try:
        script = install_script(server, svc.agent).encode()
    except ValueError as e:
        return error(500, f"{e} (set PLOYD_PUBLIC_URL)")
    return _file(request, script, hashlib.sha256(script).hexdigest(), "text/x-shellscript")
