"""`/runs/{job_id}?t=TOKEN` and its companions: the page, the live tail (SSE), the raw
text (ranges, attachment) and the retry button. Every one answers 403 without the
link's valid token (``view.authorized_job``).

The page streams: its head goes out before the log is read, then one page of the log
(the last ``PAGE_LINES`` lines by default, or around the first error; "earlier" and
"later" links by byte offset), never the whole log.

The live tail wakes on the engine's ``log_appended`` broadcast (a chunk stored, an
attempt ended, a pipeline changed): no polling. Each event carries complete lines,
rendered, with the byte offset after them as its id, so a reconnecting EventSource
(``Last-Event-ID``) resumes exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from app.artifacts.service import artifacts_for_job
from app.engine.engine import NotAllowed
from app.logs.store import LogStore
from app.logs.window import (
    ErrorLine,
    Window,
    back_window,
    complete_end,
    forward_window,
    locate_error,
)
from app.store.runs import AttemptInfo, JobInfo, load_attempt, load_job
from app.web.common import services
from app.web.logs import render
from app.web.logs.results import results_html
from app.web.logs.view import attempt_number, authorized_job, is_admin

routes = web.RouteTableDef()

KEEPALIVE_S = 15.0
EVENT_BYTES = 256 * 1024
RAW_PIECE = 1 << 20
CONTEXT_BEFORE_ERROR = 100  # lines shown above the error when it is not in the tail


def _security_headers(nonce: str | None = None) -> dict[str, str]:
    src = f"'nonce-{nonce}'" if nonce else "'none'"
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {src}; script-src {src}; connect-src 'self'; "
            "img-src 'self'; "  # the job's report images (artifacts)
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",  # the token is in the URL
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }


def _offset(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name, "")
    return int(raw) if raw.isdigit() else None


def _attempt(request: web.Request, job: JobInfo) -> AttemptInfo | None:
    number = attempt_number(request)
    attempt = job.attempt(number)
    if number is not None and attempt is None:
        raise web.HTTPNotFound(text=f"job {job.id} has no attempt {number}")
    return attempt


# ---- the page -------------------------------------------------------------------------


def _page_window(
    store: LogStore, attempt: AttemptInfo, query: Mapping[str, str]
) -> tuple[Window, ErrorLine | None]:
    """Blocking: the page of the log to show, and the error line to highlight."""
    path = attempt.log_path or ""
    total = attempt.log_size
    size = total if attempt.final else complete_end(store, path, total)
    err = None
    if attempt.failed:
        steps = [{"index": s.index, "log_offset": s.log_offset} for s in attempt.steps]
        err = locate_error(store, path, total, steps, attempt.failed_step)
    start, before = _offset(query, "from"), _offset(query, "before")
    if start is not None:
        return forward_window(store, path, start, size), err
    if before is not None:
        return back_window(store, path, min(before, size), size), err
    window = back_window(store, path, size, size)
    if err is not None and err.offset < window.start:  # show the error, not the tail
        above = back_window(store, path, err.offset, size, lines=CONTEXT_BEFORE_ERROR)
        window = forward_window(store, path, above.start, size)
    return window, err


def _render_log(
    store: LogStore,
    job: JobInfo,
    attempt: AttemptInfo,
    token: str,
    query: Mapping[str, str],
) -> tuple[Window, str]:
    """Blocking: (window, the HTML of the steps and their lines)."""
    window, err = _page_window(store, attempt, query)
    lines = render.LineRenderer(render.sections(attempt), err)
    rows = lines.rows(window.data, window.start, window.first_line)
    explicit = "from" in query or "before" in query
    body = render.body_sections(attempt, window, rows, err, job.id, token, explicit)
    return window, body


@routes.get("/runs/{job_id}")
async def log_page(request: web.Request) -> web.StreamResponse:
    job = authorized_job(request)
    svc = services(request)
    token = request.query.get("t", "")
    attempt = _attempt(request, job)
    nonce = secrets.token_urlsafe(16)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/html; charset=utf-8", **_security_headers(nonce)}
    )
    await resp.prepare(request)
    await resp.write(render.head(job).replace("<style>", f'<style nonce="{nonce}">', 1).encode())
    window: Window | None = None
    body = ""
    if attempt is not None and attempt.log_path:
        window, body = await asyncio.to_thread(
            _render_log, svc.logs, job, attempt, token, request.query
        )
    elif attempt is not None:
        body = render.body_sections(attempt, None, [], None, job.id, token, False)
    following = job.state not in ("succeeded", "failed", "timed_out", "cancelled", "skipped")
    live = following and (attempt is None or not attempt.final) and not (window and window.later)
    live = live and job.state != "manual"
    admin = is_admin(request)
    parts = [
        render.header(
            job,
            attempt,
            token,
            admin=admin,
            admin_configured=bool(svc.settings.admin_token),
            live=live,
        )
    ]
    artifacts = await asyncio.to_thread(artifacts_for_job, svc.db, job.id, token)
    if artifacts:
        parts.append(render.artifacts(artifacts))
    results = await asyncio.to_thread(results_html, svc.db, job.id, token)
    if results:
        parts.append(results)
    if attempt is not None and window is not None:
        parts.append(render.pager(job, attempt, token, window))
    events = ""
    if live:
        url = render.link(
            job.id,
            token,
            "/events",
            attempt=attempt.number if attempt else None,
            offset=window.end if window else 0,
        )
        events = f' data-events="{render.e(url)}"'
    if attempt is None:
        body = f'<p class="elsewhere">no attempt yet: the job is {render.e(job.state)}</p>'
    parts.append(f'<main id="log"{events}>{body}</main>')
    if attempt is not None and window is not None and (window.earlier or window.later):
        parts.append(render.pager(job, attempt, token, window))
    parts.append(render.page_tail(nonce))
    await resp.write("".join(parts).encode())
    await resp.write_eof()
    return resp


# ---- the live tail ----------------------------------------------------------------------


def _chunk(
    store: LogStore, attempt: AttemptInfo, offset: int, need_line: bool
) -> tuple[bytes, int | None]:
    """Blocking: the complete lines after ``offset`` (everything, once the attempt has
    ended), at most ``EVENT_BYTES``; and the line number at ``offset`` if asked."""
    path = attempt.log_path or ""
    limit = min(attempt.log_size - offset, EVENT_BYTES)
    data = store.read(path, offset, limit)
    if not (attempt.final and offset + len(data) >= attempt.log_size):
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
        elif len(data) < EVENT_BYTES:
            data = b""  # a line still being written: wait for its end
    line = store.lines_before(path, offset) + 1 if need_line and data else None
    return data, line


@routes.get("/runs/{job_id}/events")
async def log_events(request: web.Request) -> web.StreamResponse:
    job = authorized_job(request)
    svc = services(request)
    engine, store = svc.engine, svc.logs
    attempt = _attempt(request, job)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no",
            **_security_headers(),
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    await resp.prepare(request)
    last_id = request.headers.get("Last-Event-ID", "")
    offset = int(last_id) if last_id.isdigit() else (_offset(request.query, "offset") or 0)
    attempt_id = attempt.id if attempt is not None else None
    renderer: render.LineRenderer | None = None
    line: int | None = None
    sent_steps: list[tuple[str, str]] = []
    sent_state = ""
    waiter: asyncio.Future[bool] | None = None
    try:
        await resp.write(b"retry: 1000\n\n")
        while not engine.closing:
            # Listen before looking, so that news arriving while we look wakes us.
            waiter = asyncio.ensure_future(engine.log_appended.wait(KEEPALIVE_S))
            await asyncio.sleep(0)
            current = _current(svc.db, job.id, attempt_id)
            if current is None:
                break
            a, job_state = current
            attempt_id = a.id if a is not None else None
            if a is not None and a.log_path:
                if renderer is None:
                    renderer = render.LineRenderer(render.sections(a), None)
                else:
                    renderer.place(render.sections(a))  # steps may have started since
                while offset < a.log_size:
                    data, first = await asyncio.to_thread(_chunk, store, a, offset, line is None)
                    if not data:
                        break
                    line = first if first is not None else line
                    assert line is not None
                    rows = renderer.rows(data, offset, line)
                    offset += len(data)
                    line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                    await resp.write(render.sse("lines", {"rows": rows}, offset))
            if a is not None:
                steps = render.summaries(a)
                if steps != sent_steps:
                    sent_steps = steps
                    await resp.write(render.sse("steps", {"steps": steps}))
            done = a is not None and a.final and offset >= a.log_size
            if done or (job_state in ("skipped", "cancelled") and a is None):
                final_state = job_state if a is None else a.state
                if final_state != sent_state:
                    await resp.write(render.sse("end", {"state": final_state}, offset))
                break
            if not await waiter:
                await resp.write(b": keepalive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the reader went away, or the server stops
    finally:
        if waiter is not None:
            waiter.cancel()
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp


def _current(db: Any, job_id: int, attempt_id: int | None) -> tuple[AttemptInfo | None, str] | None:
    """(the followed attempt, the job's state) now: the first attempt to exist when the
    page had none."""
    if attempt_id is not None:
        a = load_attempt(db, attempt_id)
        job = load_job(db, job_id) if a is not None and a.final else None
        return (a, job.state if job else "running") if a is not None else None
    job = load_job(db, job_id)
    if job is None:
        return None
    return (job.attempts[0] if job.attempts else None), job.state


# ---- raw --------------------------------------------------------------------------------

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single ``Range: bytes=...``; None for the whole log; raises
    416 when it cannot be satisfied."""
    m = RANGE.match(header.strip())
    if not header or m is None:
        return None
    a, b = m.group(1), m.group(2)
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        start, end = max(size - n, 0), size
    else:
        start = int(a)
        end = min(int(b) + 1, size) if b else size
    if start >= size or end <= start:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _filename(job: JobInfo, attempt: AttemptInfo) -> str:
    base = f"{job.repo}-{job.name}-{job.id}-attempt{attempt.number}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") + ".log"


@routes.get("/runs/{job_id}/raw")
async def raw_log(request: web.Request) -> web.StreamResponse:
    job = authorized_job(request)
    store = services(request).logs
    attempt = _attempt(request, job)
    size = attempt.log_size if attempt is not None and attempt.log_path else 0
    span = _range(request.headers.get("Range", ""), size) if size else None
    start, end = span if span else (0, size)
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        **_security_headers(),
    }
    headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    if span:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if attempt is not None and request.query.get("download") not in (None, "", "0"):
        headers["Content-Disposition"] = f'attachment; filename="{_filename(job, attempt)}"'
    resp = web.StreamResponse(status=206 if span else 200, headers=headers)
    await resp.prepare(request)
    if request.method == "HEAD" or attempt is None or not attempt.log_path:
        await resp.write_eof()
        return resp
    pos = start
    try:
        while pos < end:
            data = await asyncio.to_thread(
                store.read, attempt.log_path, pos, min(RAW_PIECE, end - pos)
            )
            if not data:
                break
            await resp.write(data)
            pos += len(data)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the reader had enough
    return resp


# ---- retry ------------------------------------------------------------------------------


@routes.post("/runs/{job_id}/retry")
async def retry(request: web.Request) -> web.StreamResponse:
    """The page's Retry button: needs the link's token AND the admin token (bearer or
    the ``ployd_admin`` cookie); a cross-site form is refused by its Origin."""
    job = authorized_job(request)
    svc = services(request)
    if not is_admin(request):
        raise web.HTTPForbidden(
            text=f"403: retrying needs PloyD's admin token; or comment `/ployd retry {job.name}`"
        )
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="403: a retry must come from the log page itself")
    try:
        svc.engine.retry_job(job.id, "admin (log page)")
    except NotAllowed as e:
        raise web.HTTPConflict(text=str(e)) from None
    raise web.HTTPSeeOther(render.link(job.id, request.query.get("t", "")))
