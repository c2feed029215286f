"""Who may see a job's pages (what they show is ``app.store.runs``).

* Operators see everything: PLOYD_ADMIN_TOKEN as a bearer token or in the sign-in
  cookie; without an admin token PloyD listens on loopback only, and everyone there is
  the operator, unless ``PLOYD_PUBLIC_URL`` names another host (a proxy brings the
  world to loopback then: links only).
* Anyone else needs the signed token of the link (``app.core.links``), scoped to one job
  of one tenant: without a valid one every log URL answers 403, an unknown job too (no
  difference is visible between "no such job" and "not yours"); the page says how to
  get a link instead of naming the token's fault only.
"""

from __future__ import annotations

import hmac
import html
from urllib.parse import urlsplit

from aiohttp import web

from app.core.links import BadToken, verify_job
from app.store.runs import JobInfo, load_job
from app.web.common import bearer, int_param, query_int, services

ADMIN_COOKIE = "ployd_admin"


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_operator(request: web.Request) -> bool:
    """The admin token presented; or, without one, a request from this machine to a
    PloyD that does not give forges a public address (``PLOYD_PUBLIC_URL`` unset or on
    loopback: behind a proxy, every visitor would come from loopback)."""
    settings = services(request).settings
    if settings.admin_token:
        return is_admin(request)
    public = urlsplit(settings.public_url).hostname if settings.public_url else None
    remote = request.remote or ""
    from_here = remote.startswith("127.") or remote == "::1"
    return from_here and (public is None or public in LOOPBACK)


def is_admin(request: web.Request) -> bool:
    """PLOYD_ADMIN_TOKEN presented as a bearer token or the ``ployd_admin`` cookie."""
    expected = services(request).settings.admin_token
    if not expected:
        return False
    for given in (bearer(request), request.cookies.get(ADMIN_COOKIE, "")):
        if given and hmac.compare_digest(given.encode(), expected.encode()):
            return True
    return False


NO_ACCESS = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>PloyD: no access</title><meta name="referrer" content="no-referrer"></head>
<body style="font:15px/1.5 system-ui,sans-serif;margin:2em;max-width:44em">
<h1>403: {headline}</h1>
<p>A job's page opens with the link PloyD posts on the pull request or merge request
(the check's or the status's <b>Details</b> link), which carries a token for that job.
{why}</p>
<ul>
<li>On the forge: open the commit's checks and follow <b>Details</b>.</li>
<li>On the server: <code>ployd open {job}</code> prints the signed link.</li>
<li>Operators: <a href="/login?next={next}">sign in with the admin token</a>.</li>
</ul></body></html>"""


def no_access(request: web.Request, why: str) -> web.HTTPForbidden:
    """403 with a page that says how to get access (HTML for a browser)."""
    job = request.match_info.get("job_id", "JOB")
    headline = "this page needs a link" if not request.query.get("t") else "this link is not valid"
    page = NO_ACCESS.format(
        headline=html.escape(headline),
        why=html.escape(why),
        job=html.escape(job),
        next=html.escape(f"/runs/{job}" if job.isdigit() else "/"),
    )
    return web.HTTPForbidden(
        text=page,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def authorized_job(request: web.Request) -> JobInfo:
    """The job of ``/runs/{job_id}...`` for an operator, or when ``?t=`` opens it; 403
    otherwise."""
    svc = services(request)
    job_id = int_param(request, "job_id")
    job = load_job(svc.db, job_id)
    token = request.query.get("t", "")
    if job is not None and is_operator(request):
        return job
    if not token:
        raise no_access(request, "This address has no token.")
    if job is None:
        raise no_access(request, "This link does not open this job.")
    try:
        verify_job(svc.settings.secret_key_bytes(), token, job_id, job.tenant_id)
    except BadToken as e:
        raise no_access(request, f"The token is not accepted: {e}.") from None
    return job


def attempt_number(request: web.Request) -> int | None:
    """``?attempt=N`` (None when absent); 400 when it is not a number (``²`` included)."""
    if request.query.get("attempt", "") == "":
        return None
    return query_int(request.query, "attempt", 0, low=1, high=1 << 31)
