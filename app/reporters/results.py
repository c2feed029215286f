"""The results section of the summary comment, from the store: each job's metrics with
the base run's (``app.store.metrics``), its report images as signed links, and the
budget warnings of the pipeline (``app.store.notifications``)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from app.artifacts.service import download_path
from app.core.jobspec import StoredJobSpec
from app.core.report import JobView
from app.core.results.report import JobResults, Plot, results_section
from app.reporters.base import ReportSources
from app.store import metrics as metric_rows
from app.store import notifications as notification_rows
from app.store.forge_reports import ReportPipeline


def _token(log_url: str) -> str:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(log_url).query)
    return (query.get("t") or [""])[0]


def result_lines(
    sources: ReportSources, pipeline: ReportPipeline, views: Sequence[JobView]
) -> list[str]:
    """Markdown lines for the summary comment (blocking: run it in a thread)."""
    db, base_url = sources.db, sources.settings.base_url
    measured = metric_rows.of_pipeline(db, pipeline.id)
    files = metric_rows.report_files(db, metric_rows.report_globs(db, pipeline.id))
    out: list[JobResults] = []
    for view in views:
        m = measured.get(view.job_id)
        token = _token(view.log_url)
        plots = tuple(
            Plot(p, base_url + download_path(view.job_id, p, token))
            for p in files.get(view.job_id, ())
        )
        if m is None and not plots:
            continue
        spec = StoredJobSpec.from_stored(m.spec).metrics if m is not None else None
        out.append(
            JobResults(
                name=view.name,
                values=dict(m.scalars) if m else {},
                base_values=dict(m.base_scalars) if m and m.base_scalars is not None else None,
                base_label=m.base.label if m and m.base else None,
                base_url=f"{base_url}/pipelines/{m.base.pipeline_id}" if m and m.base else None,
                higher_is_better=dict(spec.higher_is_better) if spec else {},
                error=m.error if m else None,
                gate_failure=m.gate_failure if m else None,
                plots=plots,
                log_url=view.log_url,
            )
        )
    warnings = notification_rows.budget_warnings(db, pipeline.id)
    return results_section(out, warnings)
