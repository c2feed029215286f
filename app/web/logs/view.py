"""Who may see the log page (what it shows is ``app.store.runs``): the signed token of
the link (``app.core.links``), scoped to one job of one tenant. Without a valid token
every log URL answers 403, an unknown job too (no difference is visible between "no
such job" and "not yours")."""

from __future__ import annotations

import hmac

from aiohttp import web

from app.core.links import BadToken, verify_job
from app.store.runs import JobInfo, load_job
from app.web.common import bearer, int_param, query_int, services

ADMIN_COOKIE = "ployd_admin"


def authorized_job(request: web.Request) -> JobInfo:
    """The job of ``/runs/{job_id}...`` when ``?t=`` opens it; 403 otherwise."""
    svc = services(request)
    job_id = int_param(request, "job_id")
    job = load_job(svc.db, job_id)
    if job is None:
        raise web.HTTPForbidden(text="403: this link is not valid")
    try:
        verify_job(
            svc.settings.secret_key_bytes(), request.query.get("t", ""), job_id, job.tenant_id
        )
    except BadToken as e:
        raise web.HTTPForbidden(text=f"403: {e}") from None
    return job


def is_admin(request: web.Request) -> bool:
    """PLOYD_ADMIN_TOKEN presented as a bearer token or the ``ployd_admin`` cookie."""
    expected = services(request).settings.admin_token
    if not expected:
        return False
    for given in (bearer(request), request.cookies.get(ADMIN_COOKIE, "")):
        if given and hmac.compare_digest(given.encode(), expected.encode()):
            return True
    return False


def attempt_number(request: web.Request) -> int | None:
    """``?attempt=N`` (None when absent); 400 when it is not a number (``²`` included)."""
    if request.query.get("attempt", "") == "":
        return None
    return query_int(request.query, "attempt", 0, low=1, high=1 << 31)
