"""The results section of the pull request's summary comment / merge request note:
per job with metrics, each value with its change against the base run (``0.912
(+0.004)``, arrows by ``higher_is_better``) and the base commit; a tripped gate; the
job's report images (embedded, with a link); budget warnings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.core.report.markdown import NONE, escape_md, md_url
from app.core.results.compare import changes
from app.core.results.metrics import format_value

MAX_METRICS_SHOWN = 30  # per job
MAX_SECTION = 12_000  # characters of the section (the comment's limit is 65 536)
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")


@dataclass(frozen=True, slots=True)
class Plot:
    path: str
    url: str  # absolute, signed


@dataclass(frozen=True, slots=True)
class JobResults:
    name: str
    values: dict[str, float] = field(default_factory=dict)
    base_values: dict[str, float] | None = None
    base_label: str | None = None  # "main @ 1a2b3c4"
    base_url: str | None = None  # the base pipeline's page
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    error: str | None = None
    gate_failure: str | None = None
    plots: tuple[Plot, ...] = ()
    log_url: str = ""


def _metrics_table(r: JobResults) -> list[str]:
    rows = changes(r.values, r.base_values, r.higher_is_better)
    lines = ["| metric | value | base | change |", "| --- | --- | --- | --- |"]
    for c in rows[:MAX_METRICS_SHOWN]:
        base = format_value(c.base) if c.base is not None else NONE
        lines.append(f"| {escape_md(c.name)} | {c.shown()} | {base} | {c.arrow()} |")
    if len(rows) > MAX_METRICS_SHOWN:
        lines.append(f"| … and {len(rows) - MAX_METRICS_SHOWN} more | | | |")
    return lines


def results_section(jobs: Sequence[JobResults], warnings: Sequence[str] = ()) -> list[str]:
    """Markdown lines (empty when no job has results and nothing warns)."""
    out: list[str] = []
    shown = [j for j in jobs if j.values or j.error or j.plots or j.gate_failure]
    if shown:
        out += ["", "#### Results"]
    size = 0
    for i, j in enumerate(shown):
        if size > MAX_SECTION:
            out += ["", f"… and {len(shown) - i} more jobs with results (see their job pages)"]
            break
        start = len(out)
        head = f"**{escape_md(j.name)}**"
        if j.base_label:
            base = escape_md(j.base_label)
            head += (
                f" · compared with [{base}]({md_url(j.base_url)})"
                if j.base_url
                else (f" · compared with {base}")
            )
        elif j.values:
            head += " · no earlier successful run on the base branch to compare with"
        out += ["", head]
        if j.gate_failure:
            out += ["", f"❌ {escape_md(j.gate_failure)}"]
        if j.error:
            out += ["", f"⚠️ {escape_md(j.error)}"]
        if j.values:
            out += ["", *_metrics_table(j)]
        if j.plots:
            out.append("")
            for p in j.plots:
                name = escape_md(p.path)
                if p.path.lower().endswith(IMAGE_SUFFIXES):
                    out.append(f"[![{name}]({md_url(p.url)})]({md_url(p.url)})")
                else:
                    out.append(f"[{name}]({md_url(p.url)})")
        size += sum(len(x) + 1 for x in out[start:])
    if warnings:
        out += ["", *[f"- 💸 {escape_md(w)}" for w in warnings]]
    return out
