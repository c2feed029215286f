"""The HTML of the pipelines list and of a pipeline's page (the jobs as a graph drawn in
SVG, then a table with their buttons). Everything from the database is escaped; no
script."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from app.core.clock import aware
from app.core.layout import grid
from app.core.weblinks import forge_links, job_path, pipeline_path
from app.store.pipelines import JobRecord, PipelineFilter, PipelineRecord

e = html.escape

ICONS = {
    "succeeded": "✓",
    "failed": "✗",
    "timed_out": "⏱",
    "cancelled": "⊘",
    "interrupted": "⚡",
    "running": "●",
    "dispatching": "●",
    "queued": "○",
    "waiting": "○",
    "manual": "▷",
    "skipped": "\u2013",
}
FINAL = ("succeeded", "failed", "timed_out", "cancelled", "interrupted", "skipped")
FILL = {
    "succeeded": "#dafbe1",
    "failed": "#ffebe9",
    "timed_out": "#ffebe9",
    "interrupted": "#ffebe9",
    "running": "#fff8c5",
    "dispatching": "#fff8c5",
}

CSS = """
:root{color-scheme:light dark}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
a{color:#0969da}
nav.top{padding:.4em 1.5em;font-size:.9em;border-bottom:1px solid #d8dee4}
nav.top a{margin-right:1em}
main{padding:1em 1.5em}
h1{font-size:1.3em;margin:.2em 0 .4em}
table{border-collapse:collapse;margin:.6em 0}
th,td{text-align:left;padding:.25em .8em;border-bottom:1px solid #eaeef2;vertical-align:top}
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin:.4em 0}
form.filters label{display:flex;flex-direction:column;font-size:.85em;color:#57606a}
.s-succeeded{color:#1a7f37}.s-failed,.s-timed_out,.s-interrupted{color:#cf222e}
.s-running,.s-dispatching{color:#9a6700}.s-cancelled,.s-skipped,.s-queued,.s-waiting{color:#57606a}
.paging a{margin-right:1.2em}.empty{color:#57606a}
svg.dag text{font:12px system-ui,sans-serif;fill:#1f2328}
svg.dag rect{stroke:#8c959f;fill:#f6f8fa}svg.dag path{stroke:#8c959f;fill:none}
svg.dag a:hover rect{stroke:#0969da;stroke-width:2}
td form{display:inline}
@media (prefers-color-scheme: dark){
body{color:#e6edf3;background:#0d1117}a{color:#4493f8}
nav.top{border-color:#30363d}th,td{border-color:#21262d}
svg.dag text{fill:#e6edf3}svg.dag rect{fill:#161b22}
.s-succeeded{color:#3fb950}.s-failed,.s-timed_out,.s-interrupted{color:#f85149}
}
"""


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)} · PloyD</title><style>{CSS}</style></head><body>"
        '<nav class="top"><a href="/">dashboard</a><a href="/pipelines">pipelines</a></nav>'
        f"<main>{body}</main></body></html>"
    )


def _dur(a: datetime | None, b: datetime | None) -> str:
    a, b = aware(a), aware(b)
    if a is None or b is None:
        return ""
    s = max((b - a).total_seconds(), 0.0)
    if s < 1:
        return f"{round(s * 1000)}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s) // 60}m {int(s) % 60:02d}s"
    return f"{int(s) // 3600}h {int(s) % 3600 // 60:02d}m"


def _when(dt: datetime | None) -> str:
    d = aware(dt)
    return d.strftime("%Y-%m-%d %H:%M UTC") if d else ""


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def _state(state: str) -> str:
    return f'<span class="s-{e(state)}">{ICONS.get(state, "•")} {e(state)}</span>'


def _commit_cells(p: PipelineRecord) -> tuple[str, str]:
    links = forge_links(p.forge, p.clone_url, p.sha, p.pr_number)
    sha = f"<code>{e(p.sha[:10])}</code>"
    commit = f'<a href="{e(links.commit)}">{sha}</a>' if links.commit else sha
    change = (
        f'<a href="{e(links.change)}">{e(links.change_label)}</a>'
        if links.change
        else (f"#{p.pr_number}" if p.pr_number else "")
    )
    return commit, change


# ---- the list -------------------------------------------------------------------------


def _query(where: PipelineFilter, **extra: object) -> str:
    q = {
        "repo": where.repo,
        "branch": where.branch,
        "state": where.state,
        "forge": where.forge,
        **extra,
    }
    return urlencode({k: v for k, v in q.items() if v not in (None, "")})


def _select(name: str, options: Sequence[str], chosen: str | None) -> str:
    opts = ['<option value="">any</option>'] + [
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o)}</option>'
        for o in options
    ]
    return f'<label>{name}<select name="{name}" id="f-{name}">{"".join(opts)}</select></label>'


def pipelines_list(
    rows: Sequence[PipelineRecord],
    counts: Mapping[int, Mapping[str, int]],
    where: PipelineFilter,
    *,
    repos: Sequence[str],
    forges: Sequence[str],
    states: Sequence[str],
    more: bool,
    paged: bool,
    limit: int,
    now: datetime | None = None,
) -> str:
    now = now or datetime.now(UTC)
    form = (
        '<form class="filters" method="get" action="/pipelines" id="filters">'
        + _select("repo", repos, where.repo)
        + f'<label>branch<input name="branch" id="f-branch" value="{e(where.branch or "")}">'
        "</label>"
        + _select("state", states, where.state)
        + _select("forge", forges, where.forge)
        + '<button type="submit">Filter</button>'
        + ('<a href="/pipelines">clear</a>' if _query(where) else "")
        + "</form>"
    )
    if not rows:
        table = '<p class="empty" id="no-pipelines">no pipeline matches</p>'
    else:
        head = "".join(
            f"<th>{h}</th>"
            for h in ("pipeline", "state", "repository", "branch", "commit", "PR/MR", "trigger")
        )
        head += "<th>jobs</th><th>started</th><th>duration</th>"
        body = []
        for p in rows:
            commit, change = _commit_cells(p)
            jobs = " ".join(
                f'<span class="s-{e(s)}" title="{e(s)}">{ICONS.get(s, "•")}{n}</span>'
                for s, n in sorted(counts.get(p.id, {}).items())
            )
            end = p.finished_at if p.finished_at else now
            body.append(
                f'<tr class="pipeline" id="p-{p.id}">'
                f'<td><a href="{pipeline_path(p.id)}">#{p.id}</a></td><td>{_state(p.state)}</td>'
                f"<td>{e(p.repo)}</td><td>{e(_branch(p.ref))}</td><td>{commit}</td>"
                f"<td>{change}</td><td>{e(p.trigger)}{' by ' + e(p.actor) if p.actor else ''}"
                f"</td><td>{jobs}</td><td>{e(_when(p.created_at))}</td>"
                f"<td>{e(_dur(p.created_at, end))}</td></tr>"
            )
        table = f'<table id="pipelines"><tr>{head}</tr>{"".join(body)}</table>'
    paging = []
    if paged:
        paging.append(f'<a href="/pipelines?{_query(where, limit=limit)}">newest</a>')
    if more and rows:
        older = _query(where, before=rows[-1].id, limit=limit)
        paging.append(f'<a href="/pipelines?{older}" id="older">older →</a>')
    return page(
        "Pipelines",
        f"<h1>Pipelines</h1>{form}{table}<div class=paging>{''.join(paging)}</div>",
    )


# ---- one pipeline -----------------------------------------------------------------------

BOX_W, BOX_H, GAP_X, GAP_Y = 210, 64, 60, 16


def _last(j: JobRecord) -> tuple[str, str, str]:
    """(machine, duration, cost) of the job's latest attempt."""
    a = j.attempts[-1] if j.attempts else None
    if a is None:
        return "", "", ""
    machine = a.instance_type or a.machine or ""
    end = a.finished_at or (datetime.now(UTC) if a.started_at else None)
    cost = sum(x.cost or 0.0 for x in j.attempts)
    return machine, _dur(a.started_at, end), (f"${cost:.4f}" if cost else "")


def dag(p: PipelineRecord) -> str:
    """The jobs as boxes in columns by their needs, edges from each need to the job."""
    order = [j.name for j in p.jobs]
    where = grid(order, {j.name: [str(n) for n in j.needs] for j in p.jobs})
    if not where:
        return ""
    cols = max(c for c, _ in where.values()) + 1
    rows = max(r for _, r in where.values()) + 1
    width, height = cols * (BOX_W + GAP_X), rows * (BOX_H + GAP_Y) + GAP_Y

    def pos(name: str) -> tuple[int, int]:
        c, r = where[name]
        return c * (BOX_W + GAP_X) + 4, r * (BOX_H + GAP_Y) + GAP_Y

    edges = []
    for j in p.jobs:
        x2, y2 = pos(j.name)
        for need in j.needs:
            if str(need) not in where:
                continue
            x1, y1 = pos(str(need))
            x1, y1, y2m = x1 + BOX_W, y1 + BOX_H // 2, y2 + BOX_H // 2
            mid = (x1 + x2) // 2
            edges.append(f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2m} {x2},{y2m}"/>')
    boxes = []
    for j in p.jobs:
        x, y = pos(j.name)
        machine, dur, cost = _last(j)
        hw = ", ".join(str(h) for h in j.hardware) or "cpu"
        fill = FILL.get(j.state)
        style = f' style="fill:{fill}"' if fill else ""
        line2 = " · ".join(x for x in (j.state, dur) if x)
        line3 = " · ".join(x for x in (hw, machine, cost) if x)
        boxes.append(
            f'<a href="{job_path(j.id)}" class="node" data-job="{j.id}">'
            f"<title>{e(j.name)}: {e(j.state)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"{style}/>'
            f'<text x="{x + 10}" y="{y + 18}" font-weight="600">'
            f"{ICONS.get(j.state, '•')} {e(j.name[:28])}</text>"
            f'<text x="{x + 10}" y="{y + 36}">{e(line2[:34])}</text>'
            f'<text x="{x + 10}" y="{y + 53}">{e(line3[:34])}</text></a>'
        )
    return (
        f'<svg class="dag" id="dag" width="{width}" height="{height}" role="img" '
        f'aria-label="the jobs and their needs">{"".join(edges)}{"".join(boxes)}</svg>'
    )


def _button(action: str, label: str, ident: str, hardware: str = "") -> str:
    hidden = f'<input type="hidden" name="hardware" value="{e(hardware)}">' if hardware else ""
    return (
        f'<form method="post" action="{e(action)}">{hidden}'
        f'<button type="submit" id="{e(ident)}">{e(label)}</button></form>'
    )


def pipeline_page(p: PipelineRecord, *, operator: bool) -> str:
    commit, change = _commit_cells(p)
    links = forge_links(p.forge, p.clone_url, p.sha, p.pr_number)
    repo = f'<a href="{e(links.repo)}">{e(p.repo)}</a>' if links.repo else e(p.repo)
    end = p.finished_at or datetime.now(UTC)
    head = (
        f'<h1>{repo} · pipeline #{p.id} <span id="state">{_state(p.state)}</span></h1>'
        f"<div>{e(_branch(p.ref))} · {commit}"
        + (f" · {change}" if change else "")
        + f" · {e(p.trigger)}{' by ' + e(p.actor) if p.actor else ''}"
        f" · started {e(_when(p.created_at))} · {e(_dur(p.created_at, end))}</div>"
    )
    if operator and p.state == "running":
        head += _button(f"/pipelines/{p.id}/cancel", "Cancel pipeline", "cancel-pipeline")
    rows = []
    for j in p.jobs:
        machine, dur, cost = _last(j)
        buttons = ""
        if operator:
            if j.state in FINAL or j.state == "manual":
                verb = "Run" if j.state == "manual" else "Retry"
                buttons = _button(f"/pipelines/{p.id}/jobs/{j.id}/retry", verb, f"retry-{j.id}")
            else:
                buttons = _button(
                    f"/pipelines/{p.id}/jobs/{j.id}/cancel", "Cancel", f"cancel-{j.id}"
                )
        why = f" ({e(j.skip_reason)})" if j.skip_reason else ""
        rows.append(
            f'<tr class="job" id="job-{j.id}"><td><a href="{job_path(j.id)}">{e(j.name)}</a></td>'
            f"<td>{_state(j.state)}{why}</td><td>{e(', '.join(str(h) for h in j.hardware))}</td>"
            f"<td>{e(machine)}</td><td>{e(dur)}</td><td>{e(cost)}</td>"
            f"<td>{len(j.attempts)}</td><td>{buttons}</td></tr>"
        )
    table = (
        '<table id="jobs"><tr><th>job</th><th>state</th><th>hardware</th><th>machine</th>'
        "<th>duration</th><th>cost</th><th>attempts</th><th></th></tr>" + "".join(rows) + "</table>"
    )
    return page(f"pipeline #{p.id} · {p.repo}", head + dag(p) + table)
