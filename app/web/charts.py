"""Hand-written SVG charts for the dashboard: a line chart and a stacked bar chart, each
with both axes, tick values, a legend, and every value in a ``<title>`` (and, for the
lines, the last value written at its end). No script; everything escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence

e = html.escape

W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 120, 12, 36
PALETTE = (
    "#4c6ef5",
    "#e8590c",
    "#2f9e44",
    "#ae3ec9",
    "#1098ad",
    "#f08c00",
    "#c2255c",
    "#5c940d",
)
OUTCOME_COLOURS = {
    "succeeded": "#2f9e44",
    "failed": "#e03131",
    "timed_out": "#f08c00",
    "interrupted": "#ae3ec9",
    "cancelled": "#868e96",
}


def _nice_top(v: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``v``."""
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def _axes(top: float, labels: Sequence[str], fmt: Callable[[float], str]) -> str:
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h}"/>',
    ]
    for i in range(5):
        v = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}"/>'
        )
        out.append(f'<text class="tick y" x="{LEFT - 6}" y="{y + 4:.1f}">{e(fmt(v))}</text>')
    n = len(labels)
    step = max(1, math.ceil(n / 7))
    for i, label in enumerate(labels):
        if (n - 1 - i) % step:  # every step-th label, counted back from the last
            continue
        x = LEFT + plot_w * (i + 0.5) / n
        out.append(f'<text class="tick x" x="{x:.1f}" y="{H - BOTTOM + 16}">{e(label)}</text>')
    return "".join(out)


def _legend(names: Sequence[str], colours: Sequence[str], dashed: Sequence[bool] = ()) -> str:
    out = []
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        y = TOP + 14 * i + 6
        dash = ' stroke-dasharray="4 3"' if dashed and dashed[i] else ""
        out.append(
            f'<line x1="{W - RIGHT + 10}" y1="{y}" x2="{W - RIGHT + 26}" y2="{y}" '
            f'stroke="{colour}" stroke-width="3"{dash}/>'
            f'<text class="legend" x="{W - RIGHT + 30}" y="{y + 4}">{e(name[:16])}</text>'
        )
    return "".join(out)


def line_chart(
    ident: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: Callable[[float], str],
    *,
    dashed: Callable[[str], bool] = lambda _: False,
    empty: str = "nothing yet",
) -> str:
    """One line per series over ``labels`` (None: no value that day)."""
    values = [v for s in series.values() for v in s if v is not None]
    if not values:
        return f'<p class="empty" id="{e(ident)}">{e(empty)}</p>'
    top = _nice_top(max(values))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    n = len(labels)
    lines = []
    names = list(series)
    colours = [PALETTE[(i // 2) % len(PALETTE)] for i in range(len(names))]
    for name, colour in zip(names, colours, strict=True):
        pts = []
        dots = []
        for i, v in enumerate(series[name]):
            if v is None:
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h - plot_h * v / top
            pts.append(f"{x:.1f},{y:.1f}")
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{e(name)} · {e(labels[i])}: {e(fmt(v))}</title></circle>"
            )
        dash = ' stroke-dasharray="4 3"' if dashed(name) else ""
        last = [v for v in series[name] if v is not None][-1]
        lx, ly = pts[-1].split(",")
        lines.append(
            f'<g class="series" data-name="{e(name)}">'
            f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash}/>{"".join(dots)}'
            f'<text class="value" x="{float(lx) + 4:.1f}" y="{float(ly) - 4:.1f}">'
            f"{e(fmt(last))}</text></g>"
        )
    return (
        f'<svg class="chart" id="{e(ident)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'role="img">{_axes(top, labels, fmt)}{"".join(lines)}'
        f"{_legend(names, colours, [dashed(n) for n in names])}</svg>"
    )


def bar_chart(
    ident: str,
    labels: Sequence[str],
    stacks: Mapping[str, Sequence[float]],
    fmt: Callable[[float], str],
    *,
    colours: Mapping[str, str] | None = None,
    reference: tuple[str, float] | None = None,
    empty: str = "nothing yet",
) -> str:
    """Bars stacked per label (one colour per stack), and an optional dashed reference
    line (a budget) named and valued."""
    n = len(labels)
    totals = [sum(s[i] for s in stacks.values()) for i in range(n)]
    if not any(totals):
        return f'<p class="empty" id="{e(ident)}">{e(empty)}</p>'
    top = _nice_top(max([*totals, reference[1] if reference else 0.0]))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = plot_w / n
    names = list(stacks)
    cols = [(colours or {}).get(k, PALETTE[i % len(PALETTE)]) for i, k in enumerate(names)]
    bars = []
    for i in range(n):
        base = 0.0
        x = LEFT + bw * i + 1
        for name, colour in zip(names, cols, strict=True):
            v = stacks[name][i]
            if v <= 0:
                continue
            h = plot_h * v / top
            y = TOP + plot_h - plot_h * (base + v) / top
            bars.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{e(name)} · {e(labels[i])}: {e(fmt(v))}</title></rect>'
            )
            base += v
        if totals[i] and bw >= 18:
            y = TOP + plot_h - plot_h * totals[i] / top - 3
            bars.append(
                f'<text class="value bar" x="{x + bw / 2 - 1:.1f}" y="{y:.1f}">'
                f"{e(fmt(totals[i]))}</text>"
            )
    ref = ""
    legend_names, legend_cols = names, cols
    if reference is not None:
        y = TOP + plot_h - plot_h * reference[1] / top
        ref = (
            f'<line class="reference" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" '
            f'y2="{y:.1f}" stroke="#e03131" stroke-dasharray="6 4"/>'
            f'<text class="value" x="{LEFT + plot_w - 4}" y="{y - 4:.1f}" text-anchor="end">'
            f"{e(reference[0])}: {e(fmt(reference[1]))}</text>"
        )
    return (
        f'<svg class="chart" id="{e(ident)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'role="img">{_axes(top, labels, fmt)}{"".join(bars)}{ref}'
        f"{_legend(legend_names, legend_cols)}</svg>"
    )


CSS = """
svg.chart{font:11px system-ui,sans-serif;overflow:visible}
svg.chart .axis{stroke:#57606a}svg.chart .grid{stroke:#d8dee4;stroke-dasharray:2 3}
svg.chart .tick.y{text-anchor:end;fill:#57606a}svg.chart .tick.x{text-anchor:middle;fill:#57606a}
svg.chart .value{fill:#1f2328;font-size:10px}svg.chart .value.bar{text-anchor:middle}
svg.chart .legend{fill:#1f2328}
@media (prefers-color-scheme: dark){svg.chart .value,svg.chart .legend{fill:#e6edf3}
svg.chart .grid{stroke:#30363d}svg.chart .tick.x,svg.chart .tick.y{fill:#8d96a0}}
"""
