"""A line chart of a metric's curve as inline SVG (no script, no external reference):
the points scaled into the box, the first and last step and the value range labelled."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from app.core.results.metrics import Point, format_value

MAX_DRAWN = 500  # points drawn; a longer curve is thinned evenly (its ends kept)


def _thin(points: Sequence[Point]) -> list[Point]:
    if len(points) <= MAX_DRAWN:
        return list(points)
    step = (len(points) - 1) / (MAX_DRAWN - 1)
    return [points[round(i * step)] for i in range(MAX_DRAWN)]


def line_chart(name: str, points: Sequence[Point], width: int = 360, height: int = 140) -> str:
    """``<svg>`` of the curve ``name``; an empty string for no points."""
    if not points:
        return ""
    pts = _thin(points)
    pad_l, pad_r, pad_t, pad_b = 48, 8, 18, 18
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    xs = [p.step for p in pts]
    ys = [p.value for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    xspan = (x1 - x0) or 1.0
    yspan = (y1 - y0) or 1.0

    def sx(x: float) -> float:
        return pad_l + (x - x0) / xspan * w

    def sy(y: float) -> float:
        return pad_t + h - (y - y0) / yspan * h

    path = " ".join(f"{sx(p.step):.1f},{sy(p.value):.1f}" for p in pts)
    label = escape(name)
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}: {len(points)} points">'
        f'<text x="{pad_l}" y="12" font-size="11">{label}</text>'
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{path}"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" font-size="10" text-anchor="end">'
        f"{escape(format_value(y1))}</text>"
        f'<text x="{pad_l - 4}" y="{pad_t + h}" font-size="10" text-anchor="end">'
        f"{escape(format_value(y0))}</text>"
        f'<text x="{pad_l}" y="{height - 4}" font-size="10">{escape(format_value(x0))}</text>'
        f'<text x="{width - pad_r}" y="{height - 4}" font-size="10" text-anchor="end">'
        f"{escape(format_value(x1))}</text>"
        "</svg>"
    )
