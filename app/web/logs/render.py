"""The log page's HTML: header (hardware, machine, market, times, cost, attempts,
retry), steps folded with ``<details>``, numbered lines with anchors, and the small
script that scrolls to the error and follows a running job over SSE. Everything from
the log or the database is escaped; the page's Content-Security-Policy lets only its own
script (by nonce) run, so even a mistake here could not run a log's ``<script>``."""

from __future__ import annotations

import bisect
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from app.artifacts.service import ArtifactView as ArtifactLike
from app.core.cause import Cause
from app.core.weblinks import forge_links, job_path, pipeline_path
from app.logs.window import ErrorLine, Window
from app.store.overview import ENDED
from app.store.pipelines import PipelineRecord
from app.store.runs import AttemptInfo, JobInfo, StepInfo
from app.web.logs.ansi import CSS as ANSI_CSS
from app.web.logs.ansi import AnsiState, render_line

e = html.escape

STATE_ICONS = {
    "succeeded": "✓",
    "failed": "✗",
    "timed_out": "⏱",
    "cancelled": "⊘",
    "interrupted": "⚡",
    "running": "●",
    "skipped": "\u2013",
    "pending": "○",
}

CSS = (
    """
:root{color-scheme:light dark}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
a{color:#0969da}
nav.top{padding:.4em 1.5em;font-size:.9em;border-bottom:1px solid #d8dee4}
nav.top a{margin-right:1em}
header{padding:1em 1.5em .5em;border-bottom:1px solid #d8dee4}
h1{font-size:1.3em;margin:0 0 .3em}
.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;
 border:1px solid #bbb}
.s-succeeded{color:#1a7f37}.s-failed,.s-timed_out,.s-interrupted{color:#cf222e}
.s-running{color:#9a6700}.s-cancelled,.s-skipped,.s-pending{color:#57606a}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.6em 0}
dl.meta dt{color:#57606a}dl.meta dd{margin:0}
ol.attempts{margin:.3em 0;padding-left:1.4em}
.actions{margin:.6em 0}.actions code{background:#f6f8fa;padding:.1em .4em}
nav.pager{padding:.4em 1.5em;font-size:.9em;background:#f6f8fa}
nav.pager a{margin-right:1.2em}
main{padding:.5em 0 3em}
details.step{border-top:1px solid #eaeef2}
details.step>summary{padding:.3em 1.5em;cursor:pointer;font-weight:500}
summary .dur{color:#57606a;font-weight:400;margin-left:.6em}
summary .st{font-weight:400;margin-left:.6em}
.lines{font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace}
.l{display:flex;white-space:pre-wrap;word-break:break-all}
.l .n{flex:0 0 5.5em;text-align:right;padding-right:1em;color:#8c959f;
 text-decoration:none;user-select:none}
.l .n::before{content:attr(data-n)}
.l .t{flex:1;min-width:0;padding-right:1em}
.l:target{background:#fff8c5}
.l.err{background:#ffebe9;box-shadow:inset 3px 0 #cf222e}
.l.err:target{background:#ffd8d3}
.elsewhere{padding:.2em 1.5em;color:#57606a;font-size:.9em}
#live{color:#9a6700;font-size:.9em;margin-left:.6em}
.cause{margin:.6em 0;padding:.5em .8em;border-left:4px solid #cf222e;background:#fff5f5}
.cause .line{font:12.5px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
.cause form{display:inline}
.summary ul{list-style:none;padding:0;margin:.3em 0;display:flex;flex-wrap:wrap;gap:.3em 1.2em}
form.search{display:inline-flex;gap:.3em;margin-left:1em}
#search-results{padding:.2em 1.5em;font-size:.9em}
.l .ts{display:none;flex:0 0 auto;padding-right:1em;color:#8c959f}
body.show-ts .l .ts{display:inline}
label.ts-toggle{margin-left:1em}
#search-results ol{font:12.5px ui-monospace,monospace;padding-left:4em}
@media (prefers-color-scheme: dark){
body{color:#e6edf3;background:#0d1117}
a{color:#4493f8}
header,nav.top{border-color:#30363d}
dl.meta dt,summary .dur,.elsewhere{color:#8d96a0}
nav.pager,.actions code{background:#161b22}
details.step{border-color:#21262d}
.l:target{background:#3b2e00}
.l.err{background:#3c1618;box-shadow:inset 3px 0 #f85149}
.l.err:target{background:#5a1e21}
.cause{background:#2a1215}
.s-succeeded{color:#3fb950}.s-failed,.s-timed_out,.s-interrupted{color:#f85149}
.s-running{color:#d29922}
.f0{color:#b1bac4}.f1{color:#ff7b72}.f2{color:#7ee787}.f3{color:#e3b341}
.f4{color:#79c0ff}.f5{color:#d2a8ff}.f6{color:#56d4dd}.f7{color:#c9d1d9}
.b1{background:#5a1e21}.b2{background:#12361b}.b3{background:#3b2e00}.b4{background:#0c2d6b}
}
"""
    + ANSI_CSS
)


def _dur(a: datetime | None, b: datetime | None) -> str:
    if a is None or b is None:
        return ""
    exact = max((b - a).total_seconds(), 0.0)
    if exact < 1:
        return f"{round(exact * 1000)}ms"
    if exact < 10:
        return f"{exact:.1f}s"
    s = int(exact)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"


def link(job_id: int, token: str, suffix: str = "", /, **query: object) -> str:
    params = {"t": token, **{k: v for k, v in query.items() if v is not None}}
    return f"/runs/{job_id}{suffix}?{urlencode(params)}"


# ---- sections and lines ---------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    key: str  # "pre" or the step index
    title: str
    start: int  # byte offset (None-less: pending steps have none and get no lines)
    step: StepInfo | None


def sections(attempt: AttemptInfo) -> list[Section]:
    """The log's parts in order: what comes before the first step ("Set up"), then
    every step (pending ones too, without a place in the log yet)."""
    out = [Section("pre", "Set up job", 0, None)]
    for st in attempt.steps:
        out.append(
            Section(str(st.index), st.title, st.log_offset if st.log_offset is not None else -1, st)
        )
    return out


class LineRenderer:
    """Numbered lines, grouped by the section their first byte belongs to."""

    def __init__(
        self,
        secs: list[Section],
        err: ErrorLine | None,
        times: Sequence[tuple[int, float]] = (),
    ) -> None:
        self.place(secs)
        self.err = err
        self.ansi = AnsiState()
        self.set_times(times)

    def set_times(self, times: Sequence[tuple[int, float]]) -> None:
        """When each chunk arrived (offset, Unix time): each line shows its chunk's."""
        self._t_offsets = [t[0] for t in times]
        self._t_values = [t[1] for t in times]

    def _stamp(self, offset: int) -> str:
        i = bisect.bisect_right(self._t_offsets, offset) - 1
        if i < 0:
            return ""
        t = datetime.fromtimestamp(self._t_values[i], UTC)
        return f'<span class="ts">{t.strftime("%H:%M:%S")}.{t.microsecond // 1000:03d}</span>'

    def place(self, secs: list[Section]) -> None:
        """Where each section starts (again when steps have started since)."""
        placed = sorted((s.start, i) for i, s in enumerate(secs) if s.start >= 0)
        self._starts = [p[0] for p in placed]
        self._keys = [secs[p[1]].key for p in placed]

    def key_at(self, offset: int) -> str:
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._keys[max(i, 0)] if self._keys else "pre"

    def rows(self, data: bytes, start: int, first_line: int) -> list[tuple[str, str]]:
        """[(section key, HTML of its consecutive lines)] for ``data`` at ``start``."""
        out: list[tuple[str, list[str]]] = []
        offset, n = start, first_line
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        for raw in lines:
            key = self.key_at(offset)
            err = self.err is not None and self.err.offset == offset
            cls = "l err" if err else "l"
            text = render_line(raw.decode("utf-8", "replace"), self.ansi)
            stamp = self._stamp(offset) if self._t_offsets else ""
            row = (
                f'<div class="{cls}" id="L{n}"><a class="n" href="#L{n}" data-n="{n}"></a>'
                f'{stamp}<span class="t">{text}</span></div>'
            )
            if out and out[-1][0] == key:
                out[-1][1].append(row)
            else:
                out.append((key, [row]))
            offset += len(raw) + 1
            n += 1
        return [(k, "".join(r)) for k, r in out]


def step_summary(sec: Section, attempt: AttemptInfo) -> str:
    if sec.step is None:
        started = any(s.log_offset is not None for s in attempt.steps)
        if started or attempt.state == "succeeded":
            state = "succeeded"
        else:
            state = attempt.state if attempt.final else "running"
        dur = _dur(attempt.started_at or attempt.claimed_at, _first_step_start(attempt))
    else:
        st = sec.step
        state = st.state
        dur = _dur(st.started_at, st.finished_at)
        if st.exit_code not in (None, 0):
            state = f"{state} (exit {st.exit_code})"
    icon = STATE_ICONS.get(state.split(" ")[0], "•")
    cls = "s-" + state.split(" ")[0]
    return (
        f'<span class="{cls}">{icon}</span> {e(sec.title)}'
        f'<span class="st {cls}">{e(state)}</span><span class="dur">{e(dur)}</span>'
    )


def _first_step_start(attempt: AttemptInfo) -> datetime | None:
    return next((s.started_at for s in attempt.steps if s.started_at), None)


def body_sections(
    attempt: AttemptInfo,
    window: Window | None,
    rows: list[tuple[str, str]],
    err: ErrorLine | None,
    job_id: int,
    token: str,
    explicit_page: bool,
) -> str:
    secs = sections(attempt)
    html_by_key: dict[str, list[str]] = {}
    for key, chunk in rows:
        html_by_key.setdefault(key, []).append(chunk)
    err_key = LineRenderer(secs, None).key_at(err.offset) if err else None
    starts = sorted(s.start for s in secs if s.start >= 0)
    out = []
    for sec in secs:
        if sec.key == "pre" and sec.start == 0 and not html_by_key.get("pre"):
            first = next((s.start for s in secs[1:] if s.start >= 0), None)
            if first == 0 or (first is None and attempt.final and window and window.size == 0):
                continue  # nothing before the first step
        st = sec.step
        open_ = (
            sec.key == err_key
            or (st is not None and (st.state == "running" or st.index == attempt.failed_step))
            or (explicit_page and sec.key in html_by_key)
            or (
                sec.key == "pre"
                and not attempt.final
                and not any(s.log_offset is not None for s in attempt.steps)
            )
        )
        inner = "".join(html_by_key.get(sec.key, []))
        note = ""
        if not inner and sec.start >= 0 and window is not None:
            nxt = [s for s in starts if s > sec.start]
            sec_end = nxt[0] if nxt else window.size
            if sec_end > sec.start and (sec.start < window.start or sec.start >= window.end):
                href = e(link(job_id, token, attempt=attempt.number, **{"from": sec.start}))
                note = (
                    f'<div class="elsewhere">this step\'s output is on another page: '
                    f'<a href="{href}">show it</a></div>'
                )
        out.append(
            f'<details class="step" id="step-{sec.key}"{" open" if open_ else ""}>'
            f"<summary>{step_summary(sec, attempt)}</summary>"
            f'<div class="lines" id="lines-{sec.key}">{inner}</div>{note}</details>'
        )
    return "".join(out)


# ---- the page -------------------------------------------------------------------------


def head(job: JobInfo) -> str:
    title = e(f"{job.name} · {job.repo}")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="referrer" content="no-referrer">'
        f"<title>{title} · PloyD</title><style>{CSS}</style></head><body>"
    )


@dataclass(frozen=True)
class PageContext:
    """What the header shows besides the job: who looks, and what the log says."""

    token: str
    operator: bool  # may use the buttons
    cause: Cause | None = None
    bigger: str | None = None  # the next GPU class up, for a CUDA OOM
    pipeline: PipelineRecord | None = None  # the pipeline's summary
    sibling_tokens: Mapping[int, str] = field(default_factory=dict)
    live: bool = False
    err_line: int | None = None  # the cause's line number


def attempt_line(a: AttemptInfo) -> str:
    """``attempt 2 · failed: a step failed (exit 1) · retried by admin``: its state, why
    it ended, and why it was started."""
    parts = [f'<span class="s-{e(a.state)}">{e(a.state)}</span>']
    if a.final and a.state != "succeeded":
        why = a.error or ENDED.get(a.end_reason or "", (a.end_reason or "").replace("_", " "))
        if why and why != a.state:
            code = f" (exit {a.exit_code})" if a.exit_code not in (None, 0) else ""
            parts[0] += f": {e(why)}{e(code)}"
    if a.reason:
        parts.append(f"started: {e(a.reason)}")
    return " · ".join(parts)


def header(job: JobInfo, attempt: AttemptInfo | None, ctx: PageContext) -> str:
    token = ctx.token
    state_cls = "s-" + job.state
    links = forge_links(job.forge, job.clone_url, job.sha, job.pr_number)
    where = [f"{e(job.ref)}"]
    sha = f"<code>{e(job.sha[:12])}</code>"
    where.append(f'<a href="{e(links.commit)}">{sha}</a>' if links.commit else sha)
    if links.change:
        where.append(f'<a href="{e(links.change)}" id="change">{e(links.change_label)}</a>')
    pipe = f"pipeline {job.pipeline_id}"
    if ctx.operator:
        pipe = f'<a href="{e(pipeline_path(job.pipeline_id))}" id="pipeline-link">{pipe}</a>'
    parts = [
        f'<header id="job-header"><h1>{e(job.repo)} · {e(job.name)} '
        f'<span class="badge {state_cls}" id="state">{e(job.state)}</span>'
        + ('<span id="live">● live</span>' if ctx.live else "")
        + "</h1>",
        f"<div>{pipe} · {' · '.join(where)}</div>",
    ]
    rows: list[tuple[str, str]] = []
    if attempt is not None:
        hw = ", ".join(attempt.hardware or job.hardware) or "—"
        rows.append(("hardware", hw))
        rows.append(("machine", attempt.instance_type or attempt.machine or "—"))
        if attempt.instance_type:
            rows.append(("market", "spot" if attempt.spot else "on-demand"))
        queued_from = job.queued_at if attempt.number == 1 else attempt.created_at
        start = attempt.claimed_at or attempt.started_at
        rows.append(("queued", _dur(queued_from or attempt.created_at, start) or "—"))
        end = attempt.finished_at
        if attempt.started_at and end:
            rows.append(("duration", _dur(attempt.started_at, end)))
        elif attempt.started_at:
            rows.append(("started", _when(attempt.started_at)))
        if attempt.cost is not None:
            total = sum(a.cost or 0.0 for a in job.attempts)
            cost = f"${attempt.cost:.4f}"
            if len(job.attempts) > 1:
                cost += f" (all attempts: ${total:.4f})"
            rows.append(("cost", cost))
        elif attempt.price_hourly:
            rows.append(("price", f"${attempt.price_hourly:.4f}/h"))
    else:
        rows.append(("hardware", ", ".join(job.hardware) or "—"))
    parts.append(
        '<dl class="meta">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows) + "</dl>"
    )
    if job.attempts:
        items = []
        for a in job.attempts:
            label = f"attempt {a.number}"
            if attempt is None or a.number != attempt.number:
                label = f'<a href="{e(link(job.id, token, attempt=a.number))}">{label}</a>'
            else:
                label = f"<b>{label}</b>"
            items.append(f"<li>{label} · {attempt_line(a)}</li>")
        parts.append(f'<ol class="attempts" id="attempts">{"".join(items)}</ol>')
    if ctx.cause is not None and attempt is not None and attempt.failed:
        parts.append(cause_box(job, ctx))
    parts.append(_actions(job, ctx))
    if ctx.pipeline is not None:
        parts.append(pipeline_summary(job, ctx))
    parts.append("</header>")
    return "".join(parts)


def cause_box(job: JobInfo, ctx: PageContext) -> str:
    """The line that says why, named, with the way out when there is one."""
    c = ctx.cause
    assert c is not None
    line = (
        f'<a class="line" href="#L{ctx.err_line}">{e(c.text)}</a>'
        if ctx.err_line is not None
        else f'<span class="line">{e(c.text)}</span>'
    )
    out = [f'<section class="cause" id="cause"><b>{e(c.title)}</b>: {line}']
    if c.advice:
        out.append(f'<div class="advice">{e(c.advice)}</div>')
    if c.wants_bigger_gpu and ctx.bigger:
        way = [f"retry on a bigger GPU ({e(ctx.bigger)})"]
        if ctx.operator and _final(job):
            action = e(link(job.id, ctx.token, "/retry"))
            way.append(
                f'<form method="post" action="{action}">'
                f'<input type="hidden" name="hardware" value="{e(ctx.bigger)}">'
                f'<button type="submit" id="retry-bigger">Retry on {e(ctx.bigger)}</button>'
                "</form>"
            )
        if job.forge != "local":
            cmd = f"/ployd retry {_quoted(job.name)} on {ctx.bigger}"
            way.append(f"or comment <code>{e(cmd)}</code>")
        else:  # no pull request to comment on: the service's CLI
            cmd = f"ployd retry {job.id} --on {ctx.bigger}"
            way.append(f"or run <code>{e(cmd)}</code>")
        out.append(f'<div class="way-out">{" ".join(way)}</div>')
    out.append("</section>")
    return "".join(out)


def _quoted(name: str) -> str:
    return f'"{name}"' if " " in name or "(" in name else name


def _final(job: JobInfo) -> bool:
    return job.state in ("succeeded", "failed", "timed_out", "cancelled", "interrupted", "skipped")


def pipeline_summary(job: JobInfo, ctx: PageContext) -> str:
    """The jobs of this job's pipeline, each linked (signed for a visitor by link)."""
    p = ctx.pipeline
    assert p is not None
    items = []
    for j in p.jobs:
        icon = STATE_ICONS.get(j.state, "•")
        name = e(j.name)
        if j.id == job.id:
            item = f"<b>{name}</b>"
        elif ctx.operator or j.id in ctx.sibling_tokens:
            href = job_path(j.id, "" if ctx.operator else ctx.sibling_tokens[j.id])
            item = f'<a href="{e(href)}">{name}</a>'
        else:
            item = name
        items.append(f'<li><span class="s-{e(j.state)}">{icon}</span> {item}</li>')
    return (
        f'<section class="summary" id="pipeline-summary">pipeline {p.id}: '
        f'<span class="s-{e(p.state)}">{e(p.state)}</span><ul>{"".join(items)}</ul></section>'
    )


def artifacts(items: Sequence[ArtifactLike]) -> str:
    """The job's artifacts, with sizes and download links (signed like the page)."""
    rows = "".join(
        f'<li><a href="{e(a.url)}" download>{e(a.path)}</a> {e(a.size_text)}'
        + (f" (attempt {a.attempt})" if a.attempt > 1 else "")
        + "</li>"
        for a in items
    )
    return f'<section class="artifacts"><h2>Artifacts</h2><ul>{rows}</ul></section>'


def _actions(job: JobInfo, ctx: PageContext) -> str:
    if not _final(job) and job.state != "manual":
        return ""
    if ctx.operator:
        action = e(link(job.id, ctx.token, "/retry"))
        verb = "Run" if job.state == "manual" else "Retry"
        return (
            f'<form class="actions" method="post" action="{action}">'
            f'<button type="submit" id="retry">{verb}</button></form>'
        )
    if job.forge == "local":
        return (
            f'<div class="actions">to run it again: <code>ployd retry {job.id}</code> '
            "on the server</div>"
        )
    verb = "run" if job.state == "manual" else "retry"
    cmd = f"/ployd {verb} {_quoted(job.name)}"
    where = "merge request" if job.forge == "gitlab" else "pull request"
    return (
        f'<div class="actions">to run it again, comment <code>{e(cmd)}</code> on the {where}</div>'
    )


def pager(
    job: JobInfo,
    attempt: AttemptInfo,
    token: str,
    window: Window,
    *,
    search: str = "",
    timestamps: bool = False,
    watch: bool = False,
) -> str:
    """The links to the other pages of the log and what this one shows. ``watch``: a
    page before the end of a running log gets a (hidden) note for when it grows."""
    links = []
    n = attempt.number
    if window.earlier:
        links.append(
            f'<a href="{e(link(job.id, token, attempt=n, before=window.start))}">'
            "↑ earlier lines</a>"
        )
        links.append(
            f'<a href="{e(link(job.id, token, attempt=n, **{"from": 0}))}">first lines</a>'
        )
    if window.later:
        links.append(
            f'<a href="{e(link(job.id, token, attempt=n, **{"from": window.end}))}">'
            "↓ later lines</a>"
        )
        links.append(f'<a href="{e(link(job.id, token, attempt=n))}">latest</a>')
    raw = link(job.id, token, "/raw", attempt=n)
    download = link(job.id, token, "/raw", attempt=n, download=1)
    links.append(f'<a href="{e(raw)}">raw</a><a href="{e(download)}">download</a>')
    last = window.first_line + window.data.count(b"\n") - 1
    shown = f"lines {window.first_line} to {last}"
    if not window.data:
        shown = "no output yet" if not attempt.final else "no output"
    grown = ""
    if watch:
        latest = e(link(job.id, token, attempt=n))
        grown = f'<a id="grown" href="{latest}" hidden>the log has grown: latest lines ↓</a>'
    shown_html = f'<span class="shown" data-first="{window.first_line}">{e(shown)}</span>'
    toggle = (
        '<label class="ts-toggle"><input type="checkbox" id="ts-toggle"> timestamps (UTC, '
        "when the server received the line)</label>"
        if timestamps
        else ""
    )
    return f'<nav class="pager">{"".join(links)}{grown}{shown_html}{toggle}{search}</nav>'


SCRIPT = """
(function(){
var err=document.querySelector('.l.err');
function reveal(el){for(var p=el.parentElement;p;p=p.parentElement){
 if(p.tagName==='DETAILS')p.open=true;}}
if(location.hash){var t=document.getElementById(location.hash.slice(1));
 if(t){reveal(t);t.scrollIntoView({block:'center'});}}
else if(err){reveal(err);err.scrollIntoView({block:'center'});}
var main=document.getElementById('log');var src=main&&main.getAttribute('data-events');
if(!src||!window.EventSource)return;
var es=new EventSource(src);
function atBottom(){return window.innerHeight+window.scrollY>=document.body.scrollHeight-80;}
es.addEventListener('lines',function(ev){
 var follow=atBottom();var d=JSON.parse(ev.data);
 d.rows.forEach(function(r){var box=document.getElementById('lines-'+r[0]);
  if(!box){box=document.getElementById('lines-pre');}
  if(box){box.insertAdjacentHTML('beforeend',r[1]);var det=box.parentElement;
   if(det&&det.tagName==='DETAILS')det.open=true;}});
 if(d.last)document.querySelectorAll('.pager .shown').forEach(function(sp){
  sp.textContent='lines '+sp.getAttribute('data-first')+' to '+d.last;});
 if(follow)window.scrollTo(0,document.body.scrollHeight);});
es.addEventListener('grown',function(){var g=document.getElementById('grown');
 if(g)g.hidden=false;});
es.addEventListener('steps',function(ev){
 JSON.parse(ev.data).steps.forEach(function(s){
  var det=document.getElementById('step-'+s[0]);
  if(det)det.querySelector('summary').innerHTML=s[1];});});
es.addEventListener('end',function(ev){var d=JSON.parse(ev.data);
 var h=document.getElementById('job-header');if(h&&d.header){h.outerHTML=d.header;}
 var st=document.getElementById('state');if(st){st.textContent=d.state;
 st.className='badge s-'+d.state;}
 var live=document.getElementById('live');if(live)live.remove();
 main.removeAttribute('data-events');document.body.setAttribute('data-ended',d.state);
 es.close();});
})();
(function(){
var box=document.getElementById('ts-toggle');
if(box){box.addEventListener('change',function(){
 document.body.classList.toggle('show-ts',box.checked);});}
var form=document.getElementById('search');var out=document.getElementById('search-results');
if(!form||!out||!window.fetch)return;
form.addEventListener('submit',function(ev){ev.preventDefault();
 var q=form.querySelector('input[name=q]').value;if(!q)return;
 var url=form.getAttribute('data-url')+'&q='+encodeURIComponent(q);
 fetch(url,{credentials:'same-origin'}).then(function(r){return r.json();}).then(function(d){
  out.hidden=false;out.textContent='';
  var p=document.createElement('p');p.id='search-count';
  p.textContent=d.matches.length+(d.more?'+':'')+' line(s) match “'+d.q+'”'+
   ' in '+d.lines+' lines';out.appendChild(p);
  var ol=document.createElement('ol');
  d.matches.forEach(function(m){var li=document.createElement('li');li.value=m.line;
   var a=document.createElement('a');a.href=m.href;a.textContent=m.text;a.className='hit';
   li.appendChild(a);ol.appendChild(li);});
  out.appendChild(ol);});});
})();
"""


def search_form(job: JobInfo, attempt: AttemptInfo, token: str) -> str:
    """Search the whole log on the server (``/runs/{id}/search``), not only this page."""
    url = link(job.id, token, "/search", attempt=attempt.number)
    return (
        f'<form class="search" id="search" method="get" action="/runs/{job.id}/search" '
        f'data-url="{e(url)}"><input type="search" name="q" placeholder="search the whole log" '
        f'aria-label="search the whole log"><input type="hidden" name="t" value="{e(token)}">'
        f'<input type="hidden" name="attempt" value="{attempt.number}">'
        '<button type="submit">Search</button></form>'
    )


def top_nav(operator: bool) -> str:
    """Links to the other pages, for operators (a visitor by link sees only its job)."""
    if not operator:
        return ""
    return '<nav class="top"><a href="/">dashboard</a><a href="/pipelines">pipelines</a></nav>'


def page_tail(nonce: str) -> str:
    return f'<script nonce="{e(nonce)}">{SCRIPT}</script></body></html>'


def summaries(attempt: AttemptInfo) -> list[tuple[str, str]]:
    return [(s.key, step_summary(s, attempt)) for s in sections(attempt)]


def sse(event: str, data: object, ident: int | None = None) -> bytes:
    head_ = f"id: {ident}\n" if ident is not None else ""
    return f"{head_}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def join(parts: Iterable[str]) -> str:
    return "".join(parts)
