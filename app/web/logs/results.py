"""The job page's results: its metrics (a table with the change against the base run,
a line chart per curve) and its report images (``report:``), from the job's latest
attempt that sent them."""

from __future__ import annotations

from html import escape

from app.artifacts.service import download_path
from app.core.jobspec import stored_metrics
from app.core.report.markdown import NONE
from app.core.results.chart import line_chart
from app.core.results.compare import changes
from app.core.results.metrics import format_value
from app.core.results.report import IMAGE_SUFFIXES
from app.store import metrics as metric_rows
from app.store.db import Database

MAX_ROWS = 200
MAX_CHARTS = 20


def results_html(db: Database, job_id: int, token: str) -> str:
    """The section, or an empty string when the job has neither (blocking)."""
    m = metric_rows.of_job(db, job_id)
    globs = metric_rows.report_globs_of_job(db, job_id)
    files = metric_rows.report_files(db, {job_id: globs}).get(job_id, []) if globs else []
    if m is None and not files:
        return ""
    parts = ['<section class="results"><h2>Results</h2>']
    if m is not None:
        spec = stored_metrics(m.spec)
        where = (
            f"compared with {escape(m.base.label)}"
            if m.base is not None
            else "no earlier successful run on the base branch to compare with"
        )
        parts.append(f"<p>{escape(m.file)} (attempt {m.attempt_number}), {where}</p>")
        if m.gate_failure:
            parts.append(f'<p class="gate">{escape(m.gate_failure)}</p>')
        if m.error:
            parts.append(f'<p class="problem">{escape(m.error)}</p>')
        for p in m.problems[:20]:
            parts.append(f'<p class="problem">{escape(p)}</p>')
        rows = changes(
            m.scalars, m.base_scalars, dict(spec.higher_is_better) if spec is not None else {}
        )
        if rows:
            body = "".join(
                f"<tr><td>{escape(c.name)}</td><td>{escape(format_value(c.value))}</td>"
                f"<td>{escape(format_value(c.base)) if c.base is not None else NONE}</td>"
                f'<td class="{c.verdict}">{escape(c.arrow())}</td></tr>'
                for c in rows[:MAX_ROWS]
            )
            parts.append(
                '<table class="metrics"><thead><tr><th>metric</th><th>value</th>'
                f"<th>base</th><th>change</th></tr></thead><tbody>{body}</tbody></table>"
            )
        charts = [line_chart(name, pts) for name, pts in list(m.series.items())[:MAX_CHARTS]]
        if charts:
            parts.append('<div class="charts">' + "".join(charts) + "</div>")
    for path in files:
        url = escape(download_path(job_id, path, token))
        if path.lower().endswith(IMAGE_SUFFIXES):
            parts.append(
                f'<figure><a href="{url}"><img src="{url}" alt="{escape(path)}"></a>'
                f"<figcaption>{escape(path)}</figcaption></figure>"
            )
        else:
            parts.append(f'<p><a href="{url}">{escape(path)}</a></p>')
    parts.append("</section>")
    return "".join(parts)
