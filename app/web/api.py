"""The JSON API under /api/v1: pipelines, jobs, attempts, logs; start, cancel, retry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from app.adapters.local_git import LocalRepoError
from app.core.config.errors import ConfigInvalid
from app.core.slash import retry_hardware
from app.core.weblinks import absolute, job_path, pipeline_path, signed_job_url
from app.engine.engine import NotAllowed
from app.handlers.pipelines import start_local_async
from app.store.db import Database
from app.store.pipelines import (
    AttemptRecord,
    JobRecord,
    PipelineRecord,
    attempt_record,
    job_record,
    list_pipelines,
    pipeline_record,
)
from app.store.runs import job_tenant
from app.web.common import (
    clean_text,
    error,
    int_param,
    json_body,
    query_int,
    require_admin,
    services,
)

routes = web.RouteTableDef()
T = TypeVar("T")


def _t(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


class Links:
    """Every object's ``web_url`` (``app.core.weblinks``'s scheme) under ``base``; a job's
    ``signed_url`` too (its page for anyone holding the link), given the key."""

    def __init__(self, base: str, key: bytes) -> None:
        self.base, self.key = base, key

    def pipeline(self, pipeline_id: int) -> str:
        return absolute(self.base, pipeline_path(pipeline_id))

    def job(self, job_id: int) -> str:
        return absolute(self.base, job_path(job_id))

    def signed(self, job_id: int, tenant_id: int) -> str:
        return signed_job_url(self.base, self.key, job_id, tenant_id)

    def attempt(self, job_id: int, number: int) -> str:
        return f"{self.job(job_id)}?attempt={number}"


def links_of(request: web.Request) -> Links:
    svc = services(request)
    return Links(svc.settings.base_url, svc.settings.secret_key_bytes())


def pipeline_json(p: PipelineRecord, links: Links, with_jobs: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "web_url": links.pipeline(p.id),
        "repo": p.repo,
        "forge": p.forge,
        "ref": p.ref,
        "sha": p.sha,
        "trigger": p.trigger,
        "actor": p.actor,
        "state": p.state,
        "created_at": _t(p.created_at),
        "finished_at": _t(p.finished_at),
    }
    if with_jobs:
        out["jobs"] = [job_json(j, links, tenant_id=p.tenant_id) for j in p.jobs]
    return out


def attempt_json(a: AttemptRecord, links: Links) -> dict[str, Any]:
    return {
        "id": a.id,
        "web_url": links.attempt(a.job_id, a.number),
        "number": a.number,
        "state": a.state,
        "reason": a.reason,
        "end_reason": a.end_reason,
        "error": a.error,
        "machine": a.machine,
        "instance_type": a.instance_type,
        "spot": a.spot,
        "exit_code": a.exit_code,
        "failed_step": a.failed_step,
        "cost": a.cost,
        "steps": a.steps,
        "log_size": a.log_size,
        "created_at": _t(a.created_at),
        "started_at": _t(a.started_at),
        "finished_at": _t(a.finished_at),
    }


def job_json(
    j: JobRecord, links: Links, *, tenant_id: int | None = None, with_attempts: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": j.id,
        "web_url": links.job(j.id),
        "pipeline_id": j.pipeline_id,
        "name": j.name,
        "base_name": j.base_name,
        "matrix": j.matrix,
        "needs": j.needs,
        "when": j.when,
        "allow_failure": j.allow_failure,
        "hardware": j.hardware,
        "candidates": j.candidates,
        "state": j.state,
        "skip_reason": j.skip_reason,
        "attempts": len(j.attempts),
        "queued_at": _t(j.queued_at),
        "started_at": _t(j.started_at),
        "finished_at": _t(j.finished_at),
    }
    if tenant_id is not None:
        out["signed_url"] = links.signed(j.id, tenant_id)
    if with_attempts:
        out["attempts"] = [attempt_json(a, links) for a in j.attempts]
    return out


@routes.get("/api/v1/pipelines")
async def get_pipelines(request: web.Request) -> web.Response:
    require_admin(request)
    limit = query_int(request.query, "limit", 50, low=1, high=500, clamp=True)
    rows = list_pipelines(services(request).db, limit)
    links = links_of(request)
    return web.json_response({"pipelines": [pipeline_json(p, links) for p in rows]})


@routes.post("/api/v1/pipelines")
async def create_pipeline(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_body(request)
    repo, ref = body.get("repo"), body.get("ref", "HEAD")
    if not isinstance(repo, str) or not repo or not isinstance(ref, str) or not ref:
        return error(400, 'give {"repo": "/path/to/a/git/repository", "ref": "main"}')
    repo, ref = clean_text(repo, "repo"), clean_text(ref, "ref", max_len=1024)
    actor = clean_text(body.get("actor") or "api", "actor", max_len=200)
    svc = services(request)
    try:
        started = await start_local_async(svc.engine, svc.catalog, repo, ref, actor=actor)
    except LocalRepoError as e:
        return error(400, str(e))
    except ConfigInvalid as e:
        return error(422, "the configuration is invalid", errors=[x.to_dict() for x in e.errors])
    if started.pipeline_id is None:
        return web.json_response({"id": None, "sha": started.sha, "reason": "no trigger matched"})
    return web.json_response(
        {
            "id": started.pipeline_id,
            "sha": started.sha,
            "ref": started.ref,
            "url": f"{svc.settings.base_url}/api/v1/pipelines/{started.pipeline_id}",
            "web_url": links_of(request).pipeline(started.pipeline_id),
        },
        status=201,
    )


def _show(
    request: web.Request,
    load: Callable[[Database, int], T | None],
    what: str,
    show: Callable[[T], dict[str, Any]],
) -> web.Response:
    """``show(record)`` as JSON for the record named by the path's id, or 404."""
    require_admin(request)
    found = load(services(request).db, int_param(request, "id"))
    if found is None:
        return error(404, f"no such {what}")
    return web.json_response(show(found))


@routes.get("/api/v1/pipelines/{id}")
async def get_pipeline(request: web.Request) -> web.Response:
    links = links_of(request)
    return _show(
        request, pipeline_record, "pipeline", lambda p: pipeline_json(p, links, with_jobs=True)
    )


@routes.get("/api/v1/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    links = links_of(request)
    db = services(request).db
    return _show(
        request,
        job_record,
        "job",
        lambda j: job_json(j, links, tenant_id=job_tenant(db, j.id), with_attempts=True),
    )


@routes.get("/api/v1/jobs/{id}/attempts")
async def get_attempts(request: web.Request) -> web.Response:
    links = links_of(request)
    return _show(
        request,
        job_record,
        "job",
        lambda j: {"attempts": [attempt_json(a, links) for a in j.attempts]},
    )


async def _log_response(request: web.Request, a: AttemptRecord | None) -> web.Response:
    if a is None:
        return error(404, "no such attempt")
    offset = query_int(request.query, "offset", 0)
    limit = query_int(request.query, "limit", 8 << 20, high=64 << 20, clamp=True)
    logs = services(request).logs
    # off the event loop: with S3 a read is a network call
    data = await asyncio.to_thread(logs.read, a.log_path, offset, limit) if a.log_path else b""
    return web.Response(
        body=data,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Log-Size": str(a.log_size), "X-Attempt-State": a.state},
    )


@routes.get("/api/v1/attempts/{id}/log")
async def attempt_log(request: web.Request) -> web.Response:
    require_admin(request)
    attempt = attempt_record(services(request).db, int_param(request, "id"))
    return await _log_response(request, attempt)


@routes.get("/api/v1/jobs/{id}/log")
async def job_log(request: web.Request) -> web.Response:
    """The log of the job's latest attempt."""
    require_admin(request)
    j = job_record(services(request).db, int_param(request, "id"))
    if j is None:
        return error(404, "no such job")
    return await _log_response(request, j.attempts[-1] if j.attempts else None)


@routes.post("/api/v1/pipelines/{id}/cancel")
async def cancel_pipeline(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        n = services(request).engine.cancel_pipeline(int_param(request, "id"), "api")
    except KeyError:
        return error(404, "no such pipeline")
    return web.json_response({"cancelled_jobs": n})


@routes.post("/api/v1/jobs/{id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        done = services(request).engine.cancel_job(int_param(request, "id"), "api")
    except KeyError:
        return error(404, "no such job")
    if not done:
        return error(409, "the job has already finished")
    return web.json_response({"ok": True})


@routes.post("/api/v1/jobs/{id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    """Retry a finished job, or start a manual one; with ``{"hardware": "h100"}`` on
    that hardware (``CLASS[:COUNT]``, like `/ployd retry on h100`)."""
    require_admin(request)
    svc = services(request)
    body = await json_body(request, max_bytes=4096)
    raw = body.get("hardware")
    hardware: str | None = None
    candidates: list[str] | None = None
    if raw is not None:
        if not isinstance(raw, str) or not raw.strip():
            return error(400, "hardware must be a hardware spec CLASS[:COUNT], e.g. h100 or l4:4")
        choice = retry_hardware(raw[:64], svc.catalog)
        if isinstance(choice, str):
            return error(400, f"hardware: {choice}")
        hardware, candidates = choice
    try:
        attempt_id = svc.engine.retry_job(
            int_param(request, "id"), "api", hardware=hardware, candidates=candidates
        )
    except KeyError:
        return error(404, "no such job")
    except NotAllowed as e:
        return error(409, str(e))
    return web.json_response({"attempt_id": attempt_id}, status=201)
