"""``GET /api/v1/jobs/{id}/link`` (admin): the job's signed link, the one a forge report
carries (``/runs/{id}?t=TOKEN``, ``app.core.weblinks.signed_job_url`` like the API's
``signed_url``), for `ployd open JOB` to print or open."""

from __future__ import annotations

from aiohttp import web

from app.core.weblinks import signed_job_url
from app.store.runs import job_tenant
from app.web.common import error, int_param, require_admin, services

routes = web.RouteTableDef()


@routes.get("/api/v1/jobs/{id}/link")
async def job_link(request: web.Request) -> web.Response:
    require_admin(request)
    svc = services(request)
    job_id = int_param(request, "id")
    tenant = job_tenant(svc.db, job_id)
    if tenant is None:
        return error(404, "no such job")
    url = signed_job_url(svc.settings.base_url, svc.settings.secret_key_bytes(), job_id, tenant)
    return web.json_response({"job_id": job_id, "url": url})
