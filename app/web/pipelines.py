"""`/pipelines` (the list: filters by repository, branch, state and forge; pages of 50
by id) and `/pipelines/{id}` (the jobs as a graph, with state, duration, hardware,
machine and cost; retry and cancel buttons). For operators only: a visitor by a
forge's signed link sees its job's page (`/runs/{job_id}`) and that pipeline's summary
there, nothing else.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from app.core.states import PipelineState
from app.engine.engine import NotAllowed
from app.store.pipelines import (
    PipelineFilter,
    filter_choices,
    find_pipelines,
    job_record,
    job_states,
    pipeline_record,
)
from app.web.common import int_param, services
from app.web.logs.view import is_operator
from app.web.pipelines_html import page, pipeline_page, pipelines_list

routes = web.RouteTableDef()
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
FORGES = ("github", "gitlab", "local")
STATES = tuple(s.value for s in PipelineState)


def _operator_only(request: web.Request) -> None:
    if not is_operator(request):
        target = request.path_qs if request.method == "GET" else "/pipelines"
        raise web.HTTPSeeOther(f"/login?next={target}")


def _bad(field: str, message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=page("bad request", f"<h1>400: {field}</h1><p>{message}</p>"),
        content_type="text/html",
    )


def _text(request: web.Request, name: str, limit: int = 255) -> str | None:
    raw = request.query.get(name, "").strip()
    if len(raw) > limit or "\x00" in raw:
        raise _bad(name, f"{name} must be at most {limit} characters")
    return raw or None


def _filters(request: web.Request) -> tuple[PipelineFilter, int | None, int]:
    state, forge = _text(request, "state"), _text(request, "forge")
    if state is not None and state not in STATES:
        raise _bad("state", f"state must be one of {', '.join(STATES)}")
    if forge is not None and forge not in FORGES:
        raise _bad("forge", f"forge must be one of {', '.join(FORGES)}")
    before_raw, limit_raw = _text(request, "before", 20), _text(request, "limit", 5)
    if before_raw is not None and not before_raw.isdigit():
        raise _bad("before", "before must be a pipeline id")
    if limit_raw is not None and not (limit_raw.isdigit() and 1 <= int(limit_raw) <= MAX_LIMIT):
        raise _bad("limit", f"limit must be a number from 1 to {MAX_LIMIT}")
    where = PipelineFilter(
        repo=_text(request, "repo"), branch=_text(request, "branch"), state=state, forge=forge
    )
    return where, int(before_raw) if before_raw else None, int(limit_raw or DEFAULT_LIMIT)


@routes.get("/pipelines")
async def pipelines(request: web.Request) -> web.Response:
    _operator_only(request)
    where, before, limit = _filters(request)
    db = services(request).db

    def load() -> str:
        rows, more = find_pipelines(db, where, limit=limit, before_id=before)
        counts = job_states(db, [p.id for p in rows])
        repos, forges = filter_choices(db)
        return pipelines_list(
            rows,
            counts,
            where,
            repos=repos,
            forges=sorted(set(forges) | set(FORGES)),
            states=STATES,
            more=more,
            paged=before is not None,
            limit=limit,
        )

    return web.Response(text=await asyncio.to_thread(load), content_type="text/html")


@routes.get("/pipelines/{id}")
async def pipeline(request: web.Request) -> web.Response:
    _operator_only(request)
    found = await asyncio.to_thread(pipeline_record, services(request).db, int_param(request, "id"))
    if found is None:
        raise web.HTTPNotFound(
            text=page("no such pipeline", "<h1>404: no such pipeline</h1>"),
            content_type="text/html",
        )
    return web.Response(text=pipeline_page(found, operator=True), content_type="text/html")


def _same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="403: a button must come from PloyD's own page")


def _job_of(request: web.Request) -> tuple[int, int]:
    """(pipeline id, job id) of ``/pipelines/{id}/jobs/{job_id}/...``; 404 unless the
    job is of that pipeline."""
    pid, job_id = int_param(request, "id"), int_param(request, "job_id")
    job = job_record(services(request).db, job_id)
    if job is None or job.pipeline_id != pid:
        raise web.HTTPNotFound(text="404: no such job in this pipeline")
    return pid, job_id


@routes.post("/pipelines/{id}/jobs/{job_id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    _operator_only(request)
    _same_origin(request)
    pid, job_id = _job_of(request)
    try:
        services(request).engine.retry_job(job_id, "admin (pipeline page)")
    except NotAllowed as e:
        raise web.HTTPConflict(text=str(e)) from None
    raise web.HTTPSeeOther(f"/pipelines/{pid}")


@routes.post("/pipelines/{id}/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    _operator_only(request)
    _same_origin(request)
    pid, job_id = _job_of(request)
    services(request).engine.cancel_job(job_id, "admin (pipeline page)")
    raise web.HTTPSeeOther(f"/pipelines/{pid}")


@routes.post("/pipelines/{id}/cancel")
async def cancel_pipeline(request: web.Request) -> web.Response:
    _operator_only(request)
    _same_origin(request)
    pid = int_param(request, "id")
    try:
        services(request).engine.cancel_pipeline(pid, "admin (pipeline page)")
    except KeyError:
        raise web.HTTPNotFound(text="404: no such pipeline") from None
    raise web.HTTPSeeOther(f"/pipelines/{pid}")
