"""`/runs/{job_id}?t=TOKEN` and its companions: the page, the live tail (SSE), the raw
text (ranges, attachment) and the retry button. Every one answers 403 without the
link's valid token (``view.authorized_job``).

The page streams: its head goes out before the log is read, then one page of the log
(the last ``PAGE_LINES`` lines by default, or around the first error; "earlier" and
"later" links by byte offset), never the whole log.

The live tail wakes on the engine's ``log_appended`` broadcast (a chunk stored, an
attempt ended, a pipeline changed): no polling. Each event carries complete lines,
rendered, with the byte offset after them as its id, so a reconnecting EventSource
(``Last-Event-ID``) resumes exactly where it stopped. A page that ends before the log's
end (a range, "earlier lines") follows the job too, without its lines (``lines=0``): it
is told when the log grows (``grown``: its later lines are on the last page), its steps'
states, and the end, when it settles like the full page.
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
from app.core.cause import bigger_gpu, plain
from app.core.links import sign_job
from app.core.slash import retry_hardware
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
from app.store.pipelines import pipeline_record
from app.store.runs import AttemptInfo, JobInfo, load_attempt, load_job
from app.web.common import parse_offset, query_int, services
from app.web.logs import render
from app.web.logs.results import results_html
from app.web.logs.view import attempt_number, authorized_job, is_operator

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
    """A byte offset from the query (None when absent); 400 naming it when it is not one."""
    return None if query.get(name, "") == "" else query_int(query, name, 0)


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
) -> tuple[Window, str, ErrorLine | None]:
    """Blocking: (window, the HTML of the steps and their lines, the cause's line)."""
    window, err = _page_window(store, attempt, query)
    path = attempt.log_path or ""
    lines = render.LineRenderer(render.sections(attempt), err, store.chunk_times(path))
    rows = lines.rows(window.data, window.start, window.first_line)
    explicit = "from" in query or "before" in query
    body = render.body_sections(attempt, window, rows, err, job.id, token, explicit)
    return window, body, err


def page_context(
    request: web.Request,
    job: JobInfo,
    attempt: AttemptInfo | None,
    err: ErrorLine | None,
    *,
    live: bool,
) -> render.PageContext:
    """Blocking (reads the pipeline): what the header needs besides the job."""
    svc = services(request)
    operator = is_operator(request)
    token = request.query.get("t", "")
    pipeline = pipeline_record(svc.db, job.pipeline_id, tenant_id=job.tenant_id)
    siblings: dict[int, str] = {}
    if pipeline is not None and not operator:  # a visitor by link: links to its pipeline's
        key = svc.settings.secret_key_bytes()  # jobs (the same tenant's), signed alike
        siblings = {j.id: sign_job(key, j.id, job.tenant_id) for j in pipeline.jobs}
    cause = err.cause if err is not None else None
    bigger = None
    if cause is not None and cause.wants_bigger_gpu:
        hw = (attempt.hardware if attempt else ()) or job.hardware
        bigger = bigger_gpu(svc.catalog, hw[0]) if hw else None
    return render.PageContext(
        token=token,
        operator=operator,
        cause=cause,
        bigger=bigger,
        pipeline=pipeline,
        sibling_tokens=siblings,
        live=live,
        err_line=err.line if err is not None and cause is not None else None,
    )


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
    err: ErrorLine | None = None
    body = ""
    if attempt is not None and attempt.log_path:
        window, body, err = await asyncio.to_thread(
            _render_log, svc.logs, job, attempt, token, request.query
        )
    elif attempt is not None:
        body = render.body_sections(attempt, None, [], None, job.id, token, False)
    following = job.state not in ("succeeded", "failed", "timed_out", "cancelled", "skipped")
    active = following and (attempt is None or not attempt.final) and job.state != "manual"
    live = active and not (window and window.later)  # the tail is shown: it grows
    watch = active and not live  # a page before the end: it settles, and says "grown"
    ctx = await asyncio.to_thread(page_context, request, job, attempt, err, live=live)
    parts = [render.top_nav(ctx.operator), render.header(job, attempt, ctx)]
    artifacts = await asyncio.to_thread(artifacts_for_job, svc.db, job.id, token)
    if artifacts:
        parts.append(render.artifacts(artifacts))
    results = await asyncio.to_thread(results_html, svc.db, job.id, token)
    if results:
        parts.append(results)
    if attempt is not None and window is not None:
        search = render.search_form(job, attempt, token)
        stamped = 'class="ts"' in body
        parts.append(
            render.pager(
                job, attempt, token, window, search=search, timestamps=stamped, watch=watch
            )
        )
        parts.append('<div id="search-results" hidden></div>')
    events = ""
    if live or watch:
        number = attempt.number if attempt else None
        if live:
            url = render.link(
                job.id, token, "/events", attempt=number, offset=window.end if window else 0
            )
        else:
            assert window is not None
            url = render.link(
                job.id, token, "/events", attempt=number, offset=window.size, lines=0
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
    resumed = parse_offset(last_id)
    offset = resumed if resumed is not None else (_offset(request.query, "offset") or 0)
    with_lines = request.query.get("lines", "1") != "0"  # "0": a range's page, no lines
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
                if not with_lines and offset < a.log_size:
                    offset = a.log_size
                    await resp.write(render.sse("grown", {"size": offset}, offset))
                while with_lines and offset < a.log_size:
                    data, first = await asyncio.to_thread(_chunk, store, a, offset, line is None)
                    if not data:
                        break
                    renderer.set_times(await asyncio.to_thread(store.chunk_times, a.log_path))
                    line = first if first is not None else line
                    assert line is not None
                    rows = renderer.rows(data, offset, line)
                    offset += len(data)
                    line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                    shown = {"rows": rows, "last": line - 1}  # the page's last line now
                    await resp.write(render.sse("lines", shown, offset))
            if a is not None:
                steps = render.summaries(a)
                if steps != sent_steps:
                    sent_steps = steps
                    await resp.write(render.sse("steps", {"steps": steps}))
            done = a is not None and a.final and offset >= a.log_size
            if done or (job_state in ("skipped", "cancelled") and a is None):
                final_state = job_state if a is None else a.state
                if final_state != sent_state:
                    number = a.number if a is not None else None
                    head = await asyncio.to_thread(_settled_header, request, job.id, number)
                    await resp.write(
                        render.sse("end", {"state": final_state, "header": head}, offset)
                    )
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


def _settled_header(request: web.Request, job_id: int, number: int | None) -> str:
    """Blocking: the header once the attempt has ended (its attempts list, duration,
    cost, cause and buttons as a reload would show them)."""
    svc = services(request)
    job = load_job(svc.db, job_id)
    if job is None:
        return ""
    attempt = job.attempt(number)
    err = None
    if attempt is not None and attempt.failed and attempt.log_path:
        steps = [{"index": s.index, "log_offset": s.log_offset} for s in attempt.steps]
        err = locate_error(svc.logs, attempt.log_path, attempt.log_size, steps, attempt.failed_step)
    return render.header(job, attempt, page_context(request, job, attempt, err, live=False))


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


# ---- search -----------------------------------------------------------------------------

SEARCH_PIECE = 1 << 20
MAX_HITS = 200
MAX_QUERY = 200


def search_log(
    store: LogStore, path: str, size: int, needle: str, *, limit: int = MAX_HITS
) -> tuple[list[tuple[int, int, str]], bool, int]:
    """Blocking: [(line number, offset, text)] of the lines containing ``needle``
    (case-insensitive, ANSI codes ignored), read piece by piece over the whole log;
    whether there are more than ``limit``; how many lines were read."""
    want = needle.lower()
    hits: list[tuple[int, int, str]] = []
    pos, line, carry = 0, 1, b""
    while pos < size:
        data = store.read(path, pos, min(SEARCH_PIECE, size - pos))
        if not data:
            break
        base = pos - len(carry)
        buf, pos = carry + data, pos + len(data)
        cut = buf.rfind(b"\n") if pos < size else len(buf) - 1
        if cut < 0:
            carry = buf
            continue
        whole, carry = buf[: cut + 1], buf[cut + 1 :]
        off = base
        for raw in whole.split(b"\n")[: whole.count(b"\n") + (0 if whole.endswith(b"\n") else 1)]:
            text = plain(raw.decode("utf-8", "replace"))
            if want in text.lower():
                if len(hits) == limit:
                    return hits, True, line
                hits.append((line, off, text[:500]))
            off += len(raw) + 1
            line += 1
    return hits, False, line - 1


@routes.get("/runs/{job_id}/search")
async def search(request: web.Request) -> web.Response:
    """``?q=`` over the whole log of the attempt: the matching lines (at most 200), each
    with a link to the page that shows it."""
    job = authorized_job(request)
    svc = services(request)
    attempt = _attempt(request, job)
    q = request.query.get("q", "")
    if not q.strip() or len(q) > MAX_QUERY or "\x00" in q:
        return web.json_response(
            {"error": f"q: give 1 to {MAX_QUERY} characters to search for"}, status=400
        )
    hits: list[tuple[int, int, str]] = []
    more, lines = False, 0
    if attempt is not None and attempt.log_path:
        hits, more, lines = await asyncio.to_thread(
            search_log, svc.logs, attempt.log_path, attempt.log_size, q
        )
    token = request.query.get("t", "")
    number = attempt.number if attempt else None
    matches = [
        {
            "line": n,
            "offset": off,
            "text": text,
            "href": render.link(job.id, token, attempt=number, **{"from": off}) + f"#L{n}",
        }
        for n, off, text in hits
    ]
    return web.json_response(
        {"q": q, "matches": matches, "more": more, "lines": lines},
        headers=_security_headers(),
    )


# ---- raw --------------------------------------------------------------------------------

RANGE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")


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
    """The page's Retry buttons (a form field ``hardware`` retries on other hardware):
    for operators only (the admin token as bearer or the ``ployd_admin`` cookie, or
    loopback without one); a cross-site form is refused by its Origin."""
    job = authorized_job(request)
    svc = services(request)
    if not is_operator(request):
        raise web.HTTPForbidden(
            text=f"403: retrying needs PloyD's admin token; or comment `/ployd retry {job.name}`"
        )
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="403: a retry must come from the log page itself")
    form = await request.post()
    raw = form.get("hardware")
    hardware: str | None = None
    candidates: list[str] | None = None
    if raw is not None:
        choice = retry_hardware(raw[:64] if isinstance(raw, str) else "", svc.catalog)
        if isinstance(choice, str):
            raise web.HTTPBadRequest(text=f"400: hardware: {choice}")
        hardware, candidates = choice
    try:
        svc.engine.retry_job(job.id, "admin (log page)", hardware=hardware, candidates=candidates)
    except NotAllowed as e:
        raise web.HTTPConflict(text=str(e)) from None
    raise web.HTTPSeeOther(render.link(job.id, request.query.get("t", "")))
