"""Small, pure text helpers for what PloyD writes to forges: markdown escaping, code
fences that the quoted text cannot close, ANSI stripping, human durations and money."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Markdown punctuation that can start emphasis, links, code, HTML or tables inline.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
# CSI (colours, cursor moves), OSC (titles, hyperlinks), and the other two-byte escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FENCE_RUN = re.compile(r"`{3,}|~{3,}")
NONE = "\N{EN DASH}"  # an empty table cell
_URL_UNSAFE = {" ": "%20", "(": "%28", ")": "%29", "|": "%7C", "<": "%3C", ">": "%3E"}


def escape_md(text: str) -> str:
    """``text`` shown literally inside markdown prose or a table cell (one line)."""
    one_line = " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", one_line)


def code_span(text: str) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence_for(text: str) -> str:
    """A backtick fence longer than any fence-like run inside ``text`` (at least three)."""
    longest = max((len(m) for m in _FENCE_RUN.findall(text)), default=0)
    return "`" * max(3, longest + 1)


def md_url(url: str) -> str:
    """``url`` safe inside ``[label](url)`` and inside a table cell."""
    return "".join(_URL_UNSAFE.get(c, c) for c in url)


def strip_ansi(text: str) -> str:
    """``text`` as a terminal would leave it: escape codes removed, and of a line rewritten
    with carriage returns (progress bars) only what was written last."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    if "\r" in text:
        text = "\n".join(
            line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n")
        )
    return _CONTROL.sub("", text)


def human_duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``, ``2d 03h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (None when either is unknown)."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def human_money(usd: float) -> str:
    """``$0.12``, ``$1,234.50``, ``<$0.01``."""
    if 0 < usd < 0.005:
        return "<$0.01"
    return f"${usd:,.2f}"


def iso(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC), as GitHub documents its timestamps."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock(ts: datetime) -> str:
    """``2024-05-01 14:03 UTC``."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters, ending with ``ellipsis`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis
