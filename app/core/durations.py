"""Durations (``90s``, ``30m``, ``2h``, ``7d``, ``1h30m``) and sizes (``512MB``, ``40GB``,
``2TB``)."""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s?(MB|GB|TB|MiB|GiB|TiB)$")
_SIZE_GB = {"MB": 1 / 1024, "MiB": 1 / 1024, "GB": 1.0, "GiB": 1.0, "TB": 1024.0, "TiB": 1024.0}

DURATION_HELP = "a duration like 90s, 30m, 2h, 7d or 1h30m"
SIZE_HELP = "a size like 512MB, 40GB or 2TB"


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises ``ValueError`` with a human message when it is not a duration."""
    t = text.strip()
    m = _DURATION_RE.match(t)
    if not t or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not {DURATION_HELP}")
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def format_duration(seconds: int) -> str:
    """The shortest spelling of ``seconds`` in this syntax (``5400`` -> ``1h30m``)."""
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def parse_size_gb(text: str) -> float:
    """Gigabytes in ``text`` (1 GB = 1024 MB); raises ``ValueError`` when it is not a size."""
    m = _SIZE_RE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not {SIZE_HELP}")
    return float(m.group(1)) * _SIZE_GB[m.group(2)]


def format_size_gb(gb: float) -> str:
    if gb >= 1024 and gb % 1024 == 0:
        return f"{int(gb // 1024)}TB"
    if gb == int(gb):
        return f"{int(gb)}GB"
    if gb < 1:
        return f"{round(gb * 1024)}MB"
    return f"{gb:g}GB"
