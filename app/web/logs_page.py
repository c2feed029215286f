"""`/runs/{job_id}?t=TOKEN`: the job's log, one click from the pull request.

Private by default: the signed token in the link (``app.core.links``) opens this one
job and nothing else; without a valid one the answer is 403. Server-rendered HTML that
works without JavaScript: line numbers with anchors (`#L120`), the first error line
highlighted, steps with their results, and the raw text at `/runs/{job_id}/raw?t=...`.
"""

from __future__ import annotations

import html

from aiohttp import web

from app.core.links import BadToken, verify_job
from app.core.logscan import ANSI
from app.reporters.views import failure_details
from app.store.models import Job
from app.web.common import int_param, services

routes = web.RouteTableDef()
MAX_PAGE_BYTES = 8 << 20


def _authorized_job(request: web.Request) -> Job:
    svc = services(request)
    job_id = int_param(request, "job_id")
    with svc.db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise web.HTTPForbidden(text="this link is not valid")
        tenant_id = job.pipeline.repository.tenant_id
        _ = [a.state for a in job.attempts]
        _ = job.pipeline.repository.full_name
    try:
        verify_job(svc.settings.secret_key_bytes(), request.query.get("t", ""), job_id, tenant_id)
    except BadToken as e:
        raise web.HTTPForbidden(text=f"403: {e}") from None
    return job


@routes.get("/runs/{job_id}/raw")
async def raw_log(request: web.Request) -> web.Response:
    job = _authorized_job(request)
    attempt = job.attempts[-1] if job.attempts else None
    data = b""
    if attempt is not None and attempt.log_path:
        data = services(request).logs.read(attempt.log_path)
    return web.Response(body=data, content_type="text/plain", charset="utf-8")


@routes.get("/runs/{job_id}")
async def log_page(request: web.Request) -> web.Response:
    job = _authorized_job(request)
    svc = services(request)
    attempt = job.attempts[-1] if job.attempts else None
    text, error_line = "", None
    if attempt is not None and attempt.log_path:
        start = max(attempt.log_size - MAX_PAGE_BYTES, 0)
        text = svc.logs.read(attempt.log_path, start).decode("utf-8", errors="replace")
        if attempt.failed_step is not None:
            _title, _tail, error_line = failure_details(svc.logs, attempt)
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        cls = ' class="err"' if n == error_line else ""
        rows.append(
            f'<tr id="L{n}"{cls}><td class="n"><a href="#L{n}">{n}</a></td>'
            f"<td>{html.escape(ANSI.sub('', line))}</td></tr>"
        )
    steps = "".join(
        f"<li>{html.escape(str(st.get('title', st.get('index'))))}: "
        f"{html.escape(str(st.get('state')))}</li>"
        for st in (attempt.steps if attempt else [])
    )
    title = html.escape(f"{job.pipeline.repository.full_name} · {job.name}")
    attempts = "".join(
        f"<li>attempt {a.number}: {html.escape(a.state)} — {html.escape(a.reason)}"
        + (f" ({html.escape(a.end_reason or '')})" if a.end_reason else "")
        + "</li>"
        for a in job.attempts
    )
    raw = f"/runs/{job.id}/raw?t={html.escape(request.query.get('t', ''))}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font: 13px ui-monospace, monospace; width: 100%; }}
td {{ white-space: pre-wrap; padding: 0 .6em; vertical-align: top; }}
td.n {{ text-align: right; color: #888; user-select: none; width: 4em; }}
td.n a {{ color: inherit; text-decoration: none; }}
tr.err {{ background: #ffe3e3; }}
tr:target {{ background: #fff3bf; }}
</style></head>
<body>
<h1>{title}</h1>
<p>state: <b>{html.escape(job.state)}</b> · hardware: {html.escape(", ".join(job.hardware))}
 · <a href="{raw}">raw log</a></p>
<ul>{attempts}</ul>
<ol>{steps}</ol>
<table>{"".join(rows)}</table>
</body></html>"""
    return web.Response(text=page, content_type="text/html")
