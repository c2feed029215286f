"""Artifacts and caches over HTTP (docs/agent-protocol.md, "Artifacts and caches"):
the agent's calls (job token) and the download link (the job's signed link token)."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import posixpath
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from app.artifacts.access import BadRequest, NotFound
from app.artifacts.storage import BadUpload, LocalStore
from app.core.links import BadToken, verify_job
from app.engine.engine import AgentAuthError
from app.services import Services
from app.store.runs import job_tenant
from app.transfers import Transfers
from app.web.common import bearer, error, int_param, json_body, services

log = logging.getLogger("ployd.artifacts")

routes = web.RouteTableDef()
TRANSFERS = web.AppKey("transfers", Transfers)
EXPIRE_EVERY_S = 60.0
AGENT = "/api/v1/agent/attempts/{attempt_id}"
# Types a browser may show itself; anything else (HTML above all: an artifact is written
# by the job's code) is served as bytes to download. SVG (report plots) is shown as an
# image: under ``Content-Security-Policy: sandbox`` its scripts never run.
SAFE_TYPES = {
    "text/plain",
    "application/json",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
}


def install(app: web.Application, svc: Services) -> None:
    """Add the routes and the services they use (called by ``make_app``)."""
    app[TRANSFERS] = Transfers.build(svc.db, svc.settings)
    app.add_routes(routes)


def transfers(request: web.Request) -> Transfers:
    return request.app[TRANSFERS]


async def expire_forever(t: Transfers, every_s: float = EXPIRE_EVERY_S) -> None:
    """The server's expiry pass: expired artifacts, unused caches (off the event loop)."""
    while True:
        try:
            arts, caches = await asyncio.to_thread(t.expire, None)
            if arts or caches:
                log.info("expired %d artifact(s), %d cache entr(ies)", arts, caches)
        except Exception:  # keep expiring; report it
            log.exception("artifact expiry failed")
        await asyncio.sleep(every_s)  # a periodic pass, not a wait for something


def expire_now(app: web.Application, now: datetime | None = None) -> tuple[int, int]:
    return app[TRANSFERS].expire(now)


async def _guard(fn: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await fn()
    except AgentAuthError as e:
        return error(e.status, str(e))
    except BadRequest as e:
        return error(400, str(e))
    except NotFound as e:
        return error(404, str(e))
    except BadUpload as e:
        return error(422, str(e))


# (transfers, attempt id, job token, the JSON body) -> the JSON answer
JsonCall = Callable[[Transfers, int, str, dict[str, Any]], Any]


async def _json_call(
    request: web.Request, call: JsonCall, *, thread: bool = False, max_bytes: int = 1 << 20
) -> web.StreamResponse:
    """An agent call with a JSON body and a JSON answer, authenticated by the job token;
    ``thread``: the call does blocking I/O (the object store), so it runs off the loop."""
    attempt_id, token = int_param(request, "attempt_id"), bearer(request)
    try:  # the job token first: no body is parsed for a caller who is not the job
        services(request).engine.check_job_token(attempt_id, token)
    except AgentAuthError as e:
        return error(e.status, str(e))
    body = await json_body(request, max_bytes=max_bytes)

    async def run() -> web.StreamResponse:
        t = transfers(request)
        if thread:
            answer = await asyncio.to_thread(call, t, attempt_id, token, body)
        else:
            answer = call(t, attempt_id, token, body)
        return web.json_response(answer)

    return await _guard(run)


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


def _local(request: web.Request) -> LocalStore:
    store = transfers(request).store
    if not isinstance(store, LocalStore):
        raise NotFound("uploads go to the object store here, through presigned URLs")
    return store


# ---- artifacts: the agent ------------------------------------------------------------


@routes.post(AGENT + "/artifacts")
async def announce_artifacts(request: web.Request) -> web.StreamResponse:
    return await _json_call(
        request,
        lambda t, a, tok, b: {"uploads": t.artifacts.register(a, tok, b.get("files"))},
        max_bytes=4 << 20,
    )


@routes.put(AGENT + "/artifacts/{artifact_id}/blob")
async def upload_artifact(request: web.Request) -> web.StreamResponse:
    attempt_id, token = int_param(request, "attempt_id"), bearer(request)
    artifact_id = int_param(request, "artifact_id")

    async def run() -> web.StreamResponse:
        store = _local(request)
        key, size, sha = transfers(request).artifacts.pending(attempt_id, token, artifact_id)
        await store.write(key, _chunks(request), size, sha)
        return web.json_response({"ok": True})

    return await _guard(run)


@routes.post(AGENT + "/artifacts/done")
async def artifacts_done(request: web.Request) -> web.StreamResponse:
    return await _json_call(
        request, lambda t, a, tok, b: t.artifacts.confirm(a, tok, b.get("ids")), thread=True
    )


# ---- caches: the agent ---------------------------------------------------------------


@routes.post(AGENT + "/caches/restore")
async def cache_restore(request: web.Request) -> web.StreamResponse:
    return await _json_call(
        request,
        lambda t, a, tok, b: t.caches.restore(a, tok, b.get("key"), b.get("restore_keys", [])),
    )


@routes.post(AGENT + "/caches/save")
async def cache_save(request: web.Request) -> web.StreamResponse:
    return await _json_call(
        request,
        lambda t, a, tok, b: t.caches.reserve(a, tok, b.get("key"), b.get("size"), b.get("sha256")),
    )


@routes.post(AGENT + "/caches/done")
async def cache_done(request: web.Request) -> web.StreamResponse:
    return await _json_call(
        request, lambda t, a, tok, b: t.caches.commit(a, tok, b.get("entry_id")), thread=True
    )


@routes.put(AGENT + "/caches/{entry_id}/blob")
async def cache_upload(request: web.Request) -> web.StreamResponse:
    attempt_id, token = int_param(request, "attempt_id"), bearer(request)
    entry_id = int_param(request, "entry_id")

    async def run() -> web.StreamResponse:
        store = _local(request)
        key, size, sha = transfers(request).caches.entry(attempt_id, token, entry_id, writing=True)
        await store.write(key, _chunks(request), size, sha)
        return web.json_response({"ok": True})

    return await _guard(run)


@routes.get(AGENT + "/caches/{entry_id}/blob")
async def cache_download(request: web.Request) -> web.StreamResponse:
    attempt_id, token = int_param(request, "attempt_id"), bearer(request)
    entry_id = int_param(request, "entry_id")

    async def run() -> web.StreamResponse:
        store = _local(request)
        key, _, _ = transfers(request).caches.entry(attempt_id, token, entry_id, writing=False)
        path = store.path(key)
        if not path.is_file():
            raise NotFound("the archive is gone from the store")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    return await _guard(run)


# ---- downloads: people ---------------------------------------------------------------


@routes.get("/runs/{job_id}/artifacts/{path:.+}")
async def download(request: web.Request) -> web.StreamResponse:
    """The artifact behind the job's signed link: a redirect to a presigned GET (S3) or
    the file itself (local store), always as an attachment. 403 without a valid token."""
    svc = services(request)
    job_id = int_param(request, "job_id")
    tenant_id = job_tenant(svc.db, job_id)
    if tenant_id is None:
        raise web.HTTPForbidden(text="this link is not valid")
    try:
        verify_job(svc.settings.secret_key_bytes(), request.query.get("t", ""), job_id, tenant_id)
    except BadToken as e:
        raise web.HTTPForbidden(text=f"403: {e}") from None
    path = request.match_info["path"]
    art = transfers(request).artifacts.find(job_id, path)
    if art is None:
        raise web.HTTPNotFound(text=f"no artifact {path!r} in this job (or it has expired)")
    name = posixpath.basename(art.path)
    store = transfers(request).store
    if not isinstance(store, LocalStore):
        target = store.download_target(art.storage_key, "", filename=name)
        raise web.HTTPFound(target.url)
    file = store.path(art.storage_key)
    if not file.is_file():
        raise web.HTTPNotFound(text="the artifact is gone from the store")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype not in SAFE_TYPES:
        ctype = "application/octet-stream"
    headers = {
        "Content-Type": ctype,
        "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    return web.FileResponse(file, headers=headers)
