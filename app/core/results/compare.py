"""Metrics against a base run: the change of each value, its direction by
``higher_is_better``, and the ``fail_if`` gates.

A gate is ``OP THRESHOLD`` with OP one of ``<``, ``<=``, ``>``, ``>=``:

* ``"< -0.5%"``: the change against the base, in percent of the base value;
* ``"> +0.01"`` (a signed number): the change against the base, in the metric's unit;
* ``"< 0.9"`` (an unsigned number): the value itself, no base needed.

A relative gate without a base run (or with a base value of 0 for a percentage) is not
checked, and the result says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from app.core.results.metrics import format_value


class GateKind(StrEnum):
    VALUE = "value"  # the value itself
    DELTA = "delta"  # value - base
    PERCENT = "percent"  # (value - base) / |base| * 100


_GATE = re.compile(r"^\s*(<=|>=|<|>)\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class Gate:
    op: str
    threshold: float
    kind: GateKind
    text: str  # as written

    def trips(self, x: float) -> bool:
        if self.op == "<":
            return x < self.threshold
        if self.op == "<=":
            return x <= self.threshold
        if self.op == ">":
            return x > self.threshold
        return x >= self.threshold


def parse_gate(text: str) -> Gate:
    """``"< -0.5%"`` -> Gate; ValueError with what a gate looks like."""
    m = _GATE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"{text!r} is not a gate; write an operator and a threshold: "
            "'< -0.5%' (change in percent), '> +0.01' (change), '< 0.9' (value)"
        )
    op, sign, digits, exp, pct = m.groups()
    number = float(digits + (f"e{exp}" if exp else ""))
    if sign == "-":
        number = -number
    kind = GateKind.PERCENT if pct else GateKind.DELTA if sign else GateKind.VALUE
    return Gate(op, number, kind, text.strip())


@dataclass(frozen=True, slots=True)
class Change:
    """One metric of a run, with its base value when the base run had it."""

    name: str
    value: float
    base: float | None
    higher_is_better: bool | None

    @property
    def delta(self) -> float | None:
        return None if self.base is None else self.value - self.base

    @property
    def percent(self) -> float | None:
        if self.base is None or self.base == 0:
            return None
        return (self.value - self.base) / abs(self.base) * 100

    @property
    def verdict(self) -> str:
        """``better``, ``worse``, ``same``, ``changed`` (no direction known) or ``new``."""
        d = self.delta
        if d is None:
            return "new"
        if d == 0:
            return "same"
        if self.higher_is_better is None:
            return "changed"
        return "better" if (d > 0) == self.higher_is_better else "worse"

    def shown(self) -> str:
        """``0.912 (+0.004)``: the value and its change (no change: the value alone)."""
        d = self.delta
        if d is None:
            return format_value(self.value)
        sign = "+" if d >= 0 else "-"
        return f"{format_value(self.value)} ({sign}{format_value(abs(d))})"

    def arrow(self) -> str:
        d = self.delta
        if d is None:
            return "new"
        if d == 0:
            return "="
        up = "▲" if d > 0 else "▼"
        pct = self.percent
        rel = f" {pct:+.2f}%" if pct is not None else ""
        mark = {"better": "🟢 ", "worse": "🔴 "}.get(self.verdict, "")
        return f"{mark}{up}{rel}"


def changes(
    values: Mapping[str, float],
    base: Mapping[str, float] | None,
    higher_is_better: Mapping[str, bool],
) -> list[Change]:
    return [
        Change(
            name,
            v,
            base.get(name) if base is not None else None,
            higher_is_better.get(name),
        )
        for name, v in values.items()
    ]


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    gate: Gate
    failed: bool
    message: str  # why it failed, or why it was not checked ("" when it passed)


def check_gates(
    gates: Mapping[str, str],
    values: Mapping[str, float],
    base: Mapping[str, float] | None,
    base_label: str,
) -> list[GateResult]:
    """Each gate against the run's values and the base's (``base_label``: how to name
    the base run in a message, e.g. ``main @ 1a2b3c4``)."""
    out: list[GateResult] = []
    for name, text in gates.items():
        gate = parse_gate(text)
        if name not in values:
            out.append(GateResult(name, gate, False, f"{name} is not in the metrics; not checked"))
            continue
        v = values[name]
        b = base.get(name) if base is not None else None
        if gate.kind is GateKind.VALUE:
            x, what = v, f"{name} is {format_value(v)}"
        elif b is None:
            why = "no base run" if base is None else f"the base run ({base_label}) has no {name}"
            out.append(GateResult(name, gate, False, f"{name}: {why}; '{gate.text}' not checked"))
            continue
        elif gate.kind is GateKind.DELTA:
            x = v - b
            what = (
                f"{name} is {format_value(v)}, against {format_value(b)} on {base_label} "
                f"(a change of {x:+.6g})"
            )
        else:
            if b == 0:
                out.append(
                    GateResult(
                        name,
                        gate,
                        False,
                        f"{name}: the base value is 0; '{gate.text}' (a percentage) not checked",
                    )
                )
                continue
            x = (v - b) / abs(b) * 100
            what = (
                f"{name} is {format_value(v)}, against {format_value(b)} on {base_label} "
                f"(a change of {x:+.2f}%)"
            )
        if gate.trips(x):
            out.append(GateResult(name, gate, True, f"fail_if {name} '{gate.text}': {what}"))
        else:
            out.append(GateResult(name, gate, False, ""))
    return out
