"""`/`: the operators' dashboard, behind PLOYD_ADMIN_TOKEN (a sign-in form sets a cookie).

What is queued and running by hardware and why each waits, machines with their state and
age, self-hosted agents (pool, hardware, labels, version, state, last seen, current job),
queue time and duration p50/p95 over the last day, cost by repository this month,
and a chart of jobs per hour. Server-rendered; no JavaScript needed.
"""

from __future__ import annotations

import hmac
import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from app.core.clock import aware
from app.core.pools import hardware_summary, labels_text
from app.core.stats import hourly, percentile
from app.metrics import hardware_class
from app.store.agents import AgentView
from app.store.db import Database
from app.store.overview import dashboard_summary
from app.store.tenants import all_tenants
from app.web.common import bearer, services

routes = web.RouteTableDef()
COOKIE = "ployd_admin"


def signed_in(request: web.Request) -> bool:
    """With no admin token (PloyD then only listens on loopback) everyone on this machine
    is the operator; otherwise the token as a bearer or in the sign-in cookie."""
    token = services(request).settings.admin_token
    if not token:
        return True
    given = bearer(request) or request.cookies.get(COOKIE, "")
    return hmac.compare_digest(given.encode(), token.encode())


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
    spend: list[tuple[str, str, str, str]] = field(default_factory=list)


def tenant_spend(request: web.Request, now: datetime) -> list[tuple[str, str, str, str]]:
    """Each tenant's spend this month against its budget (the policy's figures)."""
    from app.web.admin_api import SECURITY

    book = request.app[SECURITY].policy
    db = services(request).db
    rows = []
    for tenant in all_tenants(db, order="name"):
        sp = book.spend_of(db, tenant.id, now)
        if sp is None:  # gone since it was listed
            continue
        budget = "-" if sp.budget is None else f"${sp.budget:,.2f}"
        flag = (
            "over budget"
            if sp.budget is not None and sp.spent_usd > sp.budget
            else ("warning" if sp.warning else "")
        )
        rows.append(
            (
                f"{tenant.forge}:{tenant.name}",
                f"${sp.spent_usd + sp.running_usd:,.2f}",
                budget,
                flag,
            )
        )
    return rows


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
    return o


def agent_rows(agents: list[AgentView], now: datetime) -> list[tuple[str, ...]]:
    """One row per registered agent: name, pool, hardware, labels, version, state, last
    seen, current job."""
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


def _bars(values: list[float], labels: list[str], unit: str = "", width: int = 480) -> str:
    """A small inline SVG bar chart."""
    if not values or max(values) <= 0:
        return "<p class=empty>nothing yet</p>"
    top, h, n = max(values), 90, len(values)
    bw = width / n
    bars = "".join(
        f'<rect x="{i * bw + 1:.1f}" y="{h - v / top * h:.1f}" width="{bw - 2:.1f}" '
        f'height="{v / top * h:.1f}"><title>{html.escape(labels[i])}: {v:g}{unit}</title></rect>'
        for i, v in enumerate(values)
    )
    return (
        f'<svg class=chart width="{width}" height="{h}" role="img" aria-label="chart">{bars}</svg>'
    )


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
    hours = [f"{24 - i}h ago" for i in range(24)]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>PloyD</title>
<meta http-equiv="refresh" content="30">
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: .2em .8em; border-bottom: 1px solid #eee; }}
.empty {{ color: #888; }} .chart rect {{ fill: #4c6ef5; }}
section {{ margin-bottom: 1.5em; }}
</style></head>
<body>
<h1>PloyD</h1>
<section><h2>Now: {len(o.active)} job(s) queued or running</h2>
{_table(("hardware", "jobs"), cls_rows, "nothing queued or running")}
{_table(("job", "hardware", "state", "why it waits", "since"), o.active, "")}
</section>
<section><h2>Machines</h2>
{_table(("instance", "type", "market", "state", "age"), o.machines, "no machines")}
</section>
<section><h2>Agents</h2>
{
        _table(
            ("agent", "pool", "hardware", "labels", "version", "state", "last seen", "job"),
            o.agents,
            "no self-hosted agents (ployd agents token create)",
        )
    }
</section>
<section><h2>Last 24 hours</h2>
{
        _table(
            ("hardware", "queue p50", "queue p95", "duration p50", "duration p95"),
            timing,
            "no job started in the last day",
        )
    }
<p>jobs started per hour</p>{_bars([float(v) for v in o.per_hour], hours)}
</section>
<section><h2>Spend this month, by tenant</h2>
{_table(("tenant", "spent", "budget", ""), o.spend, "no tenants yet")}
</section>
<section><h2>Cost this month, by repository</h2>
{_table(("repository", "cost"), cost_rows, "no cost yet")}
{_bars([c for _, c in o.cost], [r for r, _ in o.cost], " $")}
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
    o = overview(services(request).db, now)
    o.spend = tenant_spend(request, now)
    o.agents = agent_rows(services(request).pools.agents(), now)
    page = render(o)
    return web.Response(text=page, content_type="text/html")


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    token = services(request).settings.admin_token
    form = await request.post()
    given = str(form.get("token", ""))
    target = _next(form.get("next", "/"))
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return web.Response(
            text=sign_in_page("<p>That is not the admin token.</p>", target),
            content_type="text/html",
            status=401,
        )
    response = web.HTTPSeeOther(target)
    secure = services(request).settings.base_url.startswith("https://")
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=secure, max_age=12 * 3600
    )
    raise response
