"""Parse a job's metrics file: JSON (numbers, nested objects flattened to ``a.b.c``,
lists of numbers as series), JSON lines of ``{"name", "value", "step"}`` (curves), or the
OpenMetrics / Prometheus text format.

Everything is bounded (``MAX_BYTES``, ``MAX_NAMES``, ``MAX_POINTS``, ``MAX_DEPTH``,
``MAX_NAME``); a file that cannot be read at all raises ``MetricsError`` with one line a
person reads; a value that cannot be used (NaN, infinite, a string) is left out and
named in ``Metrics.problems``. Never anything else: the input is written by the job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

MAX_BYTES = 1 << 20  # the most of a metrics file read
MAX_NAMES = 1000  # distinct metric names kept
MAX_POINTS = 10_000  # points of all series together
MAX_DEPTH = 16  # nesting of JSON objects flattened
MAX_NAME = 200  # characters in a metric name
MAX_PROBLEMS = 20  # lines about left-out values


class MetricsError(ValueError):
    """The file as a whole cannot be used; the message is one line for the log."""


@dataclass(frozen=True, slots=True)
class Point:
    step: float
    value: float


@dataclass(frozen=True, slots=True)
class Metrics:
    """``scalars``: one value per name (a series also gives its last value); ``series``:
    the curves, points in step order. Both in the file's order."""

    scalars: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    series: Mapping[str, tuple[Point, ...]] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[str, ...] = ()


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


class _Collector:
    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}
        self.series: dict[str, list[Point]] = {}
        self.problems: list[str] = []
        self.points = 0
        self._dropped = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self._dropped += 1

    def _name(self, name: str) -> str | None:
        name = "".join(c for c in name if c.isprintable()).strip()
        if not name:
            self.problem("a metric with an empty name was left out")
            return None
        if len(name) > MAX_NAME:
            self.problem(f"{name[:40]}...: a name longer than {MAX_NAME} characters; left out")
            return None
        known = name in self.scalars or name in self.series
        if not known and len(self.scalars) + len(self.series) >= MAX_NAMES:
            self.problem(f"more than {MAX_NAMES} metrics; {name} and later ones left out")
            return None
        return name

    def number(self, name: str, value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(f"{name}: {_kind(value)}, not a number; left out")
            return None
        try:
            v = float(value)
        except OverflowError:
            self.problem(f"{name}: a number too large; left out")
            return None
        if not math.isfinite(v):
            self.problem(f"{name}: {_nonfinite(v)} is not a value PloyD can compare; left out")
            return None
        return v

    def scalar(self, name: str, value: Any) -> None:
        key = self._name(name)
        if key is None:
            return
        v = self.number(key, value)
        if v is not None:
            self.scalars[key] = v

    def point(self, name: str, value: Any, step: Any) -> None:
        key = self._name(name)
        if key is None:
            return
        v = self.number(key, value)
        if v is None:
            return
        if self.points >= MAX_POINTS:
            self.problem(f"more than {MAX_POINTS} points in all; the rest left out")
            return
        pts = self.series.setdefault(key, [])
        if step is None:
            s = float(len(pts))
        else:
            s_ = self.number(f"{key} step", step)
            if s_ is None:
                return
            s = s_
        pts.append(Point(s, v))
        self.points += 1

    def result(self) -> Metrics:
        problems = list(self.problems)
        if self._dropped:
            problems.append(f"... and {self._dropped} more values left out")
        series = {k: tuple(sorted(v, key=lambda p: p.step)) for k, v in self.series.items() if v}
        scalars = dict(self.scalars)
        for k, pts in series.items():
            scalars.setdefault(k, pts[-1].value)  # a curve compares by its last value
        return Metrics(MappingProxyType(scalars), MappingProxyType(series), tuple(problems))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _nonfinite(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _json(text: str) -> Any:
    # NaN and Infinity parse (Python's json allows them), to be reported by name later.
    return json.loads(text)


def _flatten(c: _Collector, prefix: str, value: Any, depth: int) -> None:
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            c.problem(f"{prefix}: nested deeper than {MAX_DEPTH} levels; left out")
            return
        for k, v in value.items():
            _flatten(c, f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
    elif isinstance(value, list) and prefix:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            for i, v in enumerate(value):
                c.point(prefix, v, i)
        else:
            c.problem(f"{prefix}: a list of something other than numbers; left out")
    elif prefix:
        c.scalar(prefix, value)


def parse_json(text: str) -> Metrics:
    try:
        data = _json(text)
    except RecursionError:
        raise MetricsError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise MetricsError(f"not valid JSON ({_why(e)})") from None
    if not isinstance(data, dict):
        raise MetricsError(f"the JSON is {_kind(data)}, not an object of metrics")
    c = _Collector()
    _flatten(c, "", data, 0)
    return c.result()


def _why(e: ValueError) -> str:
    msg = getattr(e, "msg", None)
    line = getattr(e, "lineno", None)
    if msg and line:
        return f"{msg} at line {line}"
    return str(e)[:120]


def parse_json_lines(text: str) -> Metrics:
    c = _Collector()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = _json(line)
        except (ValueError, RecursionError):
            raise MetricsError(f"line {n} is not valid JSON") from None
        if not isinstance(entry, dict) or "name" not in entry or "value" not in entry:
            raise MetricsError(f'line {n} is not an object with "name" and "value"')
        name = entry["name"]
        if not isinstance(name, str):
            raise MetricsError(f'line {n}: "name" must be a string')
        c.point(name, entry["value"], entry.get("step"))
    return c.result()


# name{labels} value [timestamp]
_SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\S+)?\s*$",
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _labels(text: str, n: int) -> str:
    inner = text[1:-1].strip()
    pairs = []
    pos = 0
    while pos < len(inner):
        m = _LABEL.match(inner, pos)
        if m is None:
            raise MetricsError(f'line {n}: labels {text[:60]} are not name="value" pairs')
        pairs.append(f'{m.group(1)}="{m.group(2)}"')
        pos = m.end()
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _om_value(raw: str) -> float | str:
    low = raw.lower()
    if low in ("nan", "+inf", "inf", "-inf"):
        return {"nan": math.nan, "-inf": -math.inf}.get(low, math.inf)
    try:
        return float(raw)
    except ValueError:
        return raw


def parse_openmetrics(text: str) -> Metrics:
    c = _Collector()
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            if s == "# EOF":
                break
            continue
        m = _SAMPLE.match(s)
        if m is None:
            raise MetricsError(f"line {n} is not a sample (name{{labels}} value): {s[:60]!r}")
        name = m.group(1) + (_labels(m.group(2), n) if m.group(2) else "")
        value = _om_value(m.group(3))
        if isinstance(value, str):
            raise MetricsError(f"line {n} is not a sample (name{{labels}} value): {s[:60]!r}")
        c.scalar(name, value)
    return c.result()


def detect_format(file: str, text: str) -> str:
    """``json``, ``jsonl`` or ``openmetrics``: by the file's extension, else by the text."""
    low = file.lower()
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith(".json"):
        return "json"
    if low.endswith((".txt", ".prom", ".om")):
        return "openmetrics"
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines:
        return "json"
    if len(lines) > 1 and all(x.startswith("{") and x.endswith("}") for x in lines):
        return "jsonl"
    if lines[0].startswith(("{", "[")):
        return "json"
    return "openmetrics"


def parse_metrics(file: str, data: bytes) -> Metrics:
    """The metrics in ``data`` (the file named ``file``); MetricsError when unusable."""
    if len(data) > MAX_BYTES:
        raise MetricsError(
            f"{human_bytes(len(data))} or more, over the limit of {human_bytes(MAX_BYTES)}"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MetricsError(f"not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise MetricsError("empty")
    fmt = detect_format(file, text)
    if fmt == "jsonl":
        return parse_json_lines(text)
    if fmt == "openmetrics":
        return parse_openmetrics(text)
    return parse_json(text)


def select(metrics: Metrics, keys: Sequence[str] | None) -> tuple[Metrics, list[str]]:
    """Only the metrics ``keys`` names (exact names or globs like ``eval.*``); also the
    keys that matched nothing. ``keys`` None: all of them."""
    if not keys:
        return metrics, []

    def wanted(name: str) -> bool:
        return any(fnmatchcase(name, k) for k in keys)

    missing = [k for k in keys if not any(fnmatchcase(n, k) for n in _names(metrics))]
    return (
        Metrics(
            MappingProxyType({k: v for k, v in metrics.scalars.items() if wanted(k)}),
            MappingProxyType({k: v for k, v in metrics.series.items() if wanted(k)}),
            metrics.problems,
        ),
        missing,
    )


def _names(m: Metrics) -> Iterable[str]:
    yield from m.scalars
    yield from m.series


def format_value(v: float) -> str:
    """A value as shown: up to 4 significant decimals, no float noise (0.912, 1.2e-05)."""
    if not math.isfinite(v):  # a change between two huge values can overflow
        return _nonfinite(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4g}" if abs(v) >= 1 else f"{round(v, 4):g}" if abs(v) >= 0.01 else f"{v:.3g}"
