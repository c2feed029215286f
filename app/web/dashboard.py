"""`/`: the operators' dashboard, behind PLOYD_ADMIN_TOKEN (a sign-in form sets a cookie).

What failed lately (each linked to its job's page and its pipeline), what is queued and
running by hardware and why each waits, machines (EC2 and this server's local agents)
and self-hosted agents with their hardware and current job; then pictures over the last
14 days: queue wait and duration p50/p95 per hardware class, spend per day per
repository against the tenants' budgets, outcomes per day; the last day's figures as a
table, spend this month by tenant (its jobs' run time, the boot time of machines started
for them, and the idle time of warm machines bound to it, which is their pool's) and by
repository, and machine time this month per pool (running jobs, booting, idle).
Server-rendered SVG; no script.
"""

from __future__ import annotations

import calendar
import hmac
import html
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from app import __version__
from app.core.clock import aware
from app.core.pools import hardware_summary, labels_text
from app.core.stats import by_day, day_labels, hourly, percentile
from app.core.weblinks import job_path, pipeline_path
from app.metrics import hardware_class
from app.policy.enforce import month_start
from app.store import charges
from app.store.agents import AgentView
from app.store.db import Database
from app.store.overview import (
    Failure,
    dashboard_summary,
    failures,
    history,
    running_jobs_by_agent,
)
from app.store.tenants import all_tenants
from app.web.charts import CSS as CHART_CSS
from app.web.charts import OUTCOME_COLOURS, bar_chart, line_chart
from app.web.common import services
from app.web.logs.view import is_operator

routes = web.RouteTableDef()
COOKIE = "ployd_admin"


def signed_in(request: web.Request) -> bool:
    """The operator (``app.web.logs.view.is_operator``): the admin token as a bearer or
    in the sign-in cookie; with no admin token (PloyD then only listens on loopback)
    everyone on this machine, unless PLOYD_PUBLIC_URL names another host."""
    return is_operator(request)


@dataclass
class Overview:
    active: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    by_class: dict[str, int] = field(default_factory=dict)
    machines: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    agents: list[tuple[str, ...]] = field(default_factory=list)
    waits: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    durations: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    cost: list[tuple[str, float]] = field(default_factory=list)
    per_hour: list[int] = field(default_factory=list)
    spend: list[tuple[str, ...]] = field(default_factory=list)
    machine_time: list[tuple[str, ...]] = field(default_factory=list)
    charts: str = ""
    failures: list[Failure] = field(default_factory=list)
    running: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    daily_budget: float | None = None


def _time(seconds: float, usd: float) -> str:
    """Machine time and its cost: ``1.5 h · $3.20``."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min · ${usd:,.2f}"
    return f"{seconds / 3600:,.1f} h · ${usd:,.2f}"


def pool_time(db: Database, now: datetime) -> list[tuple[str, ...]]:
    """This month's machine time per pool: run, boot, idle (with what is accruing)."""
    with db.session() as s:
        pools = charges.by_pool(s, month_start(now), now)
    return [
        (
            p.pool,
            _time(p.run.seconds, p.run.usd),
            _time(p.boot.seconds, p.boot.usd),
            _time(p.idle.seconds, p.idle.usd),
        )
        for p in pools
    ]


def tenant_spend(request: web.Request, now: datetime) -> tuple[list[tuple[str, ...]], float | None]:
    """Each tenant's spend this month against its budget (the policy's figures), and the
    budgets' sum spread over the month's days (None when no tenant has a budget)."""
    from app.web.admin_api import SECURITY

    book = request.app[SECURITY].policy
    db = services(request).db
    rows = []
    budgets = 0.0
    for tenant in all_tenants(db, order="name"):
        sp = book.spend_of(db, tenant.id, now)
        if sp is None:  # gone since it was listed
            continue
        budgets += sp.budget or 0.0
        budget = "-" if sp.budget is None else f"${sp.budget:,.2f}"
        flag = (
            "over budget"
            if sp.budget is not None and sp.spent_usd > sp.budget
            else ("warning" if sp.warning else "")
        )
        run, boot, idle = (sp.machine_time.get(k, (0.0, 0.0)) for k in ("run", "boot", "idle"))
        rows.append(
            (
                f"{tenant.forge}:{tenant.name}",
                f"${sp.spent_usd + sp.running_usd:,.2f}",
                f"${run[1]:,.2f}",
                f"${boot[1]:,.2f}",
                f"${idle[1]:,.2f}",
                budget,
                flag,
            )
        )
    days = calendar.monthrange(now.year, now.month)[1]
    return rows, (budgets / days if budgets else None)


def overview(db: Database, now: datetime) -> Overview:
    o = Overview()
    day = now - timedelta(days=1)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    summary = dashboard_summary(db, claimed_since=day, finished_since=month)
    counts: dict[str, int] = defaultdict(int)
    for job in summary.active:
        cls = hardware_class(job.hardware)
        counts[cls] += 1
        since = aware(job.waiting_since or job.queued_at or job.created_at)
        age = _age(now - since) if since else "-"
        why = job.waiting_reason or ("waiting for its needs" if job.state == "waiting" else "")
        o.active.append((f"{job.repo} · {job.name}", cls, job.state, why, age))
    o.by_class = dict(sorted(counts.items()))
    for m in summary.machines:
        launched = aware(m.launched_at)
        o.machines.append(
            (
                m.instance_id or "(starting)",
                m.instance_type,
                m.market,
                m.state,
                _age(now - launched) if launched else "-",
            )
        )
    waits: dict[str, list[float]] = defaultdict(list)
    took: dict[str, list[float]] = defaultdict(list)
    starts: list[datetime] = []
    for a in summary.claimed:
        cls = hardware_class(a.hardware)
        claimed, created = aware(a.claimed_at), aware(a.created_at)
        if claimed and created:
            waits[cls].append((claimed - created).total_seconds())
            starts.append(claimed)
        finished = aware(a.finished_at)
        if claimed and finished:
            took[cls].append((finished - claimed).total_seconds())
    o.waits = {c: (percentile(v, 50), percentile(v, 95)) for c, v in sorted(waits.items())}
    o.durations = {c: (percentile(v, 50), percentile(v, 95)) for c, v in sorted(took.items())}
    o.per_hour = hourly(starts, now)
    o.cost = list(summary.cost)
    o.failures = list(failures(db, now - timedelta(days=DAYS)))
    o.running = running_jobs_by_agent(db)
    o.machines = [(*m, _job_text(o.running.get(m[0]))) for m in o.machines]
    return o


DAYS = 14


def _job_text(job: tuple[int, str, str] | None) -> str:
    return f"{job[2]} · {job[1]}" if job else "-"


def charts(db: Database, now: datetime, daily_budget: float | None) -> str:
    """The pictures: queue wait and duration p50/p95 per hardware class, spend per day per
    repository against the budget, outcomes per day; the last ``DAYS`` days."""
    since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS - 1)
    past = history(db, since)
    labels = day_labels(now, DAYS)
    waits: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    took: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    spend: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    outcomes: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for a in past:
        cls = hardware_class(a.hardware)
        created, claimed, finished = aware(a.created_at), aware(a.claimed_at), aware(a.finished_at)
        if created and claimed:
            waits[cls].append((claimed, (claimed - created).total_seconds()))
        if claimed and finished:
            took[cls].append((finished, (finished - claimed).total_seconds()))
        if finished and a.cost:
            spend[a.repo].append((finished, a.cost))
        if finished and a.state in OUTCOME_COLOURS:
            outcomes[a.state].append((finished, 1.0))

    def p_series(points: dict[str, list[tuple[datetime, float]]]) -> dict[str, list[float | None]]:
        out: dict[str, list[float | None]] = {}
        for cls in sorted(points):
            days = by_day(points[cls], now, DAYS)
            out[f"{cls} p50"] = [percentile(d, 50) for d in days]
            out[f"{cls} p95"] = [percentile(d, 95) for d in days]
        return out

    def sums(points: dict[str, list[tuple[datetime, float]]]) -> dict[str, list[float]]:
        return {k: [sum(d) for d in by_day(v, now, DAYS)] for k, v in sorted(points.items())}

    is_p95: Callable[[str], bool] = lambda name: name.endswith("p95")  # noqa: E731
    budget = ("daily budget", daily_budget) if daily_budget else None
    return (
        '<section id="charts"><h2>Last 14 days</h2>'
        "<h3>Queue wait per hardware class (p50 solid, p95 dashed)</h3>"
        + line_chart(
            "chart-wait",
            labels,
            p_series(waits),
            _secs,
            dashed=is_p95,
            empty="no job claimed in 14 days",
        )
        + "<h3>Duration per hardware class (p50 solid, p95 dashed)</h3>"
        + line_chart(
            "chart-duration",
            labels,
            p_series(took),
            _secs,
            dashed=is_p95,
            empty="no job finished in 14 days",
        )
        + "<h3>Spend per day by repository</h3>"
        + bar_chart(
            "chart-spend", labels, sums(spend), _usd, reference=budget, empty="no cost in 14 days"
        )
        + "<h3>Outcomes per day</h3>"
        + bar_chart(
            "chart-outcomes",
            labels,
            sums(outcomes),
            lambda v: f"{v:g}",
            colours=OUTCOME_COLOURS,
            empty="no attempt ended in 14 days",
        )
        + "</section>"
    )


def _usd(v: float) -> str:
    return f"${v:,.2f}" if v >= 1 or v == 0 else f"${v:.3f}"


def agent_rows(
    agents: list[AgentView],
    now: datetime,
    local: Sequence[tuple[str, Mapping[str, Any]]] = (),
    running: dict[str, tuple[int, str, str]] | None = None,
) -> list[tuple[str, ...]]:
    """One row per agent, registered ones then this server's own (pool ``local``):
    name, pool, hardware, labels, version, state, last seen, current job."""
    rows = []
    for a in agents:
        seen = aware(a.last_seen)
        job = f"{a.job.name} (attempt {a.job.attempt_id})" if a.job else "-"
        rows.append(
            (
                a.name,
                a.pool,
                hardware_summary(a.hardware),
                labels_text(a.labels),
                a.version or "-",
                a.state,
                f"{_age(now - seen)} ago" if seen else "never",
                job,
            )
        )
    for name, hw in local:
        current = (running or {}).get(name)
        rows.append(
            (
                name,
                "local",
                hardware_summary(hw),
                "-",
                __version__,
                "busy" if current else "idle",
                "now",
                _job_text(current),
            )
        )
    return rows


def _age(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h {s % 3600 // 60}m"


def _secs(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f}s" if v < 120 else f"{v / 60:.1f}m")


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> str:
    if not rows:
        return f"<p class=empty>{html.escape(empty)}</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _failures(rows: list[Failure]) -> str:
    """Failed jobs, each linked to its page and its pipeline's."""
    if not rows:
        return "<p class=empty>nothing failed in 14 days</p>"
    e = html.escape
    body = "".join(
        f'<tr class="failure"><td><a href="{job_path(f.job_id)}">{e(f.job)}</a></td>'
        f'<td><a href="{pipeline_path(f.pipeline_id)}">#{f.pipeline_id}</a></td>'
        f"<td>{e(f.repo)}</td><td>{e(f.ref.removeprefix('refs/heads/'))}</td>"
        f'<td class="s-{e(f.state)}">{e(f.state)}</td><td>{e(f.why)}</td>'
        f"<td>{e(_when(f.finished_at))}</td></tr>"
        for f in rows
    )
    head = "".join(
        f"<th>{h}</th>" for h in ("job", "pipeline", "repository", "branch", "state", "why", "when")
    )
    return f"<table id=failures-table><tr>{head}</tr>{body}</table>"


def _when(dt: datetime | None) -> str:
    d = aware(dt)
    return d.strftime("%m-%d %H:%M UTC") if d else "-"


def render(o: Overview) -> str:
    cls_rows = [(c, str(n)) for c, n in o.by_class.items()]
    timing = [
        (
            c,
            _secs(w[0]),
            _secs(w[1]),
            _secs(o.durations.get(c, (None, None))[0]),
            _secs(o.durations.get(c, (None, None))[1]),
        )
        for c, w in o.waits.items()
    ]
    cost_rows = [(repo, f"${total:,.2f}") for repo, total in o.cost]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>PloyD</title>
<meta http-equiv="refresh" content="30">
<style>
:root {{ color-scheme: light dark; }}
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }}
a {{ color: #0969da; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: .2em .8em; border-bottom: 1px solid #eee; }}
.empty {{ color: #888; }} section {{ margin-bottom: 1.5em; }}
.s-failed, .s-timed_out, .s-interrupted {{ color: #cf222e; }}
@media (prefers-color-scheme: dark) {{
 body {{ color: #e6edf3; background: #0d1117; }} a {{ color: #4493f8; }}
 th, td {{ border-color: #21262d; }} }}
{CHART_CSS}
</style></head>
<body>
<h1>PloyD</h1>
<nav><a href="/pipelines">pipelines</a> · <a href="/pipelines?state=failed">failed pipelines</a>
</nav>
<section id="failures"><h2>Failed lately</h2>
{_failures(o.failures)}
</section>
<section><h2>Now: {len(o.active)} job(s) queued or running</h2>
{_table(("hardware", "jobs"), cls_rows, "nothing queued or running")}
{_table(("job", "hardware", "state", "why it waits", "since"), o.active, "")}
</section>
<section><h2>Machines</h2>
{
        _table(
            ("instance", "type", "market", "state", "age", "job"),
            o.machines,
            "no cloud machines",
        )
    }
</section>
<section><h2>Agents</h2>
{
        _table(
            ("agent", "pool", "hardware", "labels", "version", "state", "last seen", "job"),
            o.agents,
            "no agents (ployd agents token create; or PLOYD_LOCAL_AGENTS)",
        )
    }
</section>
{o.charts}
<section><h2>Last 24 hours</h2>
{
        _table(
            ("hardware", "queue p50", "queue p95", "duration p50", "duration p95"),
            timing,
            "no job started in the last day",
        )
    }
</section>
<section><h2>Spend this month, by tenant</h2>
{
        _table(
            ("tenant", "spent", "run", "boot", "pool idle (not in spent)", "budget", ""),
            o.spend,
            "no tenants yet",
        )
    }
</section>
<section id="machine-time"><h2>Machine time this month, by pool</h2>
{
        _table(
            ("pool", "running jobs", "booting", "idle (warm pool, draining)"),
            o.machine_time,
            "no machine started this month",
        )
    }
</section>
<section><h2>Cost this month, by repository</h2>
{_table(("repository", "cost"), cost_rows, "no cost yet")}
</section>
</body></html>"""


SIGN_IN = """<!doctype html><html><head><meta charset="utf-8"><title>PloyD: sign in</title></head>
<body style="font: 14px system-ui; margin: 2em"><h1>PloyD</h1>
<form method="post" action="/login"><label>Admin token
<input type="password" name="token" autocomplete="current-password" autofocus></label>
<input type="hidden" name="next" value="{next}">
<button>Sign in</button></form>{error}</body></html>"""


def _next(raw: object) -> str:
    """Where to go after signing in: a path of this site only (never ``//host``)."""
    text = raw if isinstance(raw, str) else ""
    ok = text.startswith("/") and not text.startswith("//") and "\\" not in text
    return text if ok and len(text) < 2000 else "/"


def sign_in_page(error: str = "", next_: str = "/") -> str:
    return SIGN_IN.format(error=error, next=html.escape(next_))


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    target = _next(request.query.get("next", "/"))
    if signed_in(request):
        raise web.HTTPSeeOther(target)
    return web.Response(text=sign_in_page("", target), content_type="text/html", status=401)


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    if not signed_in(request):
        return web.Response(text=sign_in_page(), content_type="text/html", status=401)
    now = datetime.now(UTC)
    svc = services(request)
    o = overview(svc.db, now)
    o.spend, o.daily_budget = tenant_spend(request, now)
    o.machine_time = pool_time(svc.db, now)
    o.agents = agent_rows(svc.pools.agents(), now, svc.engine.local_agents(), o.running)
    o.charts = charts(svc.db, now, o.daily_budget)
    page = render(o)
    return web.Response(text=page, content_type="text/html")


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    token = services(request).settings.admin_token
    try:
        form = await request.post()
    except (UnicodeDecodeError, LookupError, ValueError):  # not UTF-8, a bogus charset, no form
        return web.Response(
            text=sign_in_page("<p>The form could not be read (it must be UTF-8).</p>"),
            content_type="text/html",
            status=400,
        )
    given = str(form.get("token", ""))
    target = _next(form.get("next", "/"))
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        why = "That is not the admin token." if token else "Set PLOYD_ADMIN_TOKEN to sign in."
        return web.Response(
            text=sign_in_page(f"<p>{why}</p>", target),
            content_type="text/html",
            status=401,
        )
    response = web.HTTPSeeOther(target)
    secure = services(request).settings.base_url.startswith("https://")
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=secure, max_age=12 * 3600
    )
    raise response
