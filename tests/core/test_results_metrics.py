"""Metrics files: the three formats, flattening, bounds, and hostile input as one clear line."""

from __future__ import annotations

import json
import math

import pytest

from app.core.results.compare import Change, GateKind, changes, check_gates, parse_gate
from app.core.results.metrics import (
    MAX_BYTES,
    MAX_NAMES,
    MAX_POINTS,
    MetricsError,
    Point,
    detect_format,
    format_value,
    parse_metrics,
    select,
)


def parse(name: str, text: str | bytes) -> object:
    return parse_metrics(name, text.encode() if isinstance(text, str) else text)


def test_json_numbers_nested_objects_flattened_and_lists_as_series() -> None:
    m = parse_metrics(
        "metrics.json",
        json.dumps(
            {"accuracy": 0.912, "eval": {"f1": 0.8, "per_class": {"cat": 0.7}}, "loss": [3, 2, 1.5]}
        ).encode(),
    )
    assert dict(m.scalars) == {
        "accuracy": 0.912,
        "eval.f1": 0.8,
        "eval.per_class.cat": 0.7,
        "loss": 1.5,  # a curve's last value
    }
    assert m.series["loss"] == (Point(0, 3), Point(1, 2), Point(2, 1.5))
    assert m.problems == ()


def test_json_values_that_are_not_numbers_are_named_and_left_out() -> None:
    m = parse_metrics(
        "m.json", b'{"a": NaN, "b": Infinity, "c": "fast", "d": true, "e": null, "f": 1}'
    )
    assert dict(m.scalars) == {"f": 1}
    text = "\n".join(m.problems)
    assert "a: NaN is not a value PloyD can compare" in text
    assert "b: Infinity" in text and "c: a string" in text and "d: a boolean" in text
    assert "e: null" in text


def test_json_lines_are_curves_in_step_order() -> None:
    lines = [
        {"name": "loss", "value": 2.0, "step": 10},
        {"name": "loss", "value": 3.0, "step": 0},
        {"name": "acc", "value": 0.5},
        {"name": "acc", "value": 0.6},
    ]
    m = parse_metrics("train.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    assert m.series["loss"] == (Point(0, 3.0), Point(10, 2.0))
    assert m.series["acc"] == (Point(0, 0.5), Point(1, 0.6))
    assert m.scalars["loss"] == 2.0 and m.scalars["acc"] == 0.6


def test_openmetrics_text_as_gitlab_users_write_it() -> None:
    text = (
        "# HELP accuracy Top-1 accuracy\n"
        "# TYPE accuracy gauge\n"
        "accuracy 0.912\n"
        'latency_ms{quantile="0.99",model="base"} 12.5 1700000000\n'
        "memory_bytes 1.5e9\n"
        "broken NaN\n"
        "# EOF\n"
        "after_eof 1\n"
    )
    m = parse_metrics("metrics.txt", text.encode())
    assert dict(m.scalars) == {
        "accuracy": 0.912,
        'latency_ms{quantile="0.99",model="base"}': 12.5,
        "memory_bytes": 1.5e9,
    }
    assert any("broken: NaN" in p for p in m.problems)


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("m.json", b"{not json", "not valid JSON"),
        ("m.json", b"[1, 2]", "the JSON is a list, not an object"),
        ("m.json", b"", "empty"),
        ("m.json", b"\xff\xfe\x00garbage", "not UTF-8"),
        ("m.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        ("m.jsonl", b'{"name": "a", "value": 1}\nnope\n', "line 2 is not valid JSON"),
        ("m.jsonl", b'{"value": 1}\n', 'not an object with "name" and "value"'),
        ("m.txt", b"accuracy is great\n", "line 1 is not a sample"),
        ("m.json", b" " * (MAX_BYTES + 1), "over the limit of 1.0 MB"),
    ],
)
def test_unusable_files_are_one_clear_line(name: str, data: bytes, why: str) -> None:
    with pytest.raises(MetricsError) as e:
        parse_metrics(name, data)
    assert why in str(e.value)
    assert "\n" not in str(e.value)


def test_bounds_on_names_points_and_depth() -> None:
    many = {f"m{i}": i for i in range(MAX_NAMES + 5)}
    m = parse_metrics("m.json", json.dumps(many).encode())
    assert len(m.scalars) == MAX_NAMES
    assert any(f"more than {MAX_NAMES} metrics" in p for p in m.problems)
    curve = {"loss": list(range(MAX_POINTS + 10))}
    m = parse_metrics("m.json", json.dumps(curve).encode())
    assert len(m.series["loss"]) == MAX_POINTS
    deep: dict[str, object] = {"x": 1}
    for _ in range(30):
        deep = {"d": deep}
    m = parse_metrics("m.json", json.dumps(deep).encode())
    assert not m.scalars and any("nested deeper" in p for p in m.problems)
    m = parse_metrics("m.json", json.dumps({"x" * 300: 1, "big": 10**400}).encode())
    assert not m.scalars


def test_format_detection_and_key_selection() -> None:
    assert detect_format("results", '{"a": 1}') == "json"
    assert (
        detect_format("results", '{"name": "a", "value": 1}\n{"name": "a", "value": 2}') == "jsonl"
    )
    assert detect_format("results", "a 1\n") == "openmetrics"
    m = parse_metrics("m.json", b'{"eval": {"acc": 1, "f1": 2}, "loss": 3}')
    kept, missing = select(m, ["eval.*", "nope"])
    assert list(kept.scalars) == ["eval.acc", "eval.f1"] and missing == ["nope"]


def test_values_are_shown_without_float_noise() -> None:
    assert format_value(0.912) == "0.912"
    assert format_value(0.1 + 0.2) == "0.3"
    assert format_value(3.0) == "3"
    assert format_value(123.456) == "123.5"
    assert format_value(1.2e-5) == "1.2e-05"
    assert not math.isnan(float(format_value(2.5e9)))
    assert format_value(math.inf) == "Infinity" and format_value(-math.inf) == "-Infinity"


def test_random_input_is_parsed_or_one_metrics_error_nothing_else() -> None:
    import random

    rnd = random.Random(20)
    pieces = [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"a"',
        b":",
        b",",
        b"1e999",
        b"NaN",
        b"\n",
        b"1",
        b'{"name":"a","value":1e308,"step":-1e308}\n',
        b'x{a="b"} 1\n',
        b"\xff",
        b"# EOF\n",
    ]
    for _ in range(3000):
        data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 25)))
        for name in ("m.json", "m.jsonl", "m.txt", "m"):
            try:
                m = parse_metrics(name, data)
            except MetricsError:
                continue
            opposite = {k: -v for k, v in m.scalars.items()}
            for c in changes(m.scalars, opposite, {}):
                c.shown(), c.arrow()  # a change can overflow: shown, never raised
            check_gates({"a": "< -1%"}, m.scalars, opposite, "base")


# ---- comparisons and gates -----------------------------------------------------------


def test_changes_show_the_delta_and_the_arrow_by_direction() -> None:
    got = changes(
        {"accuracy": 0.912, "latency_ms": 12.0, "new": 1.0, "flat": 2.0},
        {"accuracy": 0.908, "latency_ms": 10.0, "flat": 2.0},
        {"accuracy": True, "latency_ms": False},
    )
    acc, lat, new, flat = got
    assert acc.shown() == "0.912 (+0.004)" and acc.verdict == "better"
    assert acc.arrow().startswith("🟢 ▲")
    assert lat.shown() == "12 (+2)" and lat.verdict == "worse"
    assert lat.arrow() == "🔴 ▲ +20.00%"
    assert new.shown() == "1" and new.arrow() == "new"
    assert flat.arrow() == "="
    assert Change("x", 1.0, 2.0, None).arrow() == "▼ -50.00%"


@pytest.mark.parametrize(
    ("text", "op", "threshold", "kind"),
    [
        ("< -0.5%", "<", -0.5, GateKind.PERCENT),
        ("> +10%", ">", 10.0, GateKind.PERCENT),
        (">= +0.01", ">=", 0.01, GateKind.DELTA),
        ("< 0.9", "<", 0.9, GateKind.VALUE),
        ("<= 1e3", "<=", 1000.0, GateKind.VALUE),
    ],
)
def test_gates_parse(text: str, op: str, threshold: float, kind: GateKind) -> None:
    g = parse_gate(text)
    assert (g.op, g.threshold, g.kind) == (op, threshold, kind)


@pytest.mark.parametrize("bad", ["", "-0.5%", "< abc", "== 1", "< 1%%", "<"])
def test_bad_gates_say_what_a_gate_looks_like(bad: str) -> None:
    with pytest.raises(ValueError, match="write an operator and a threshold"):
        parse_gate(bad)


def test_gates_against_the_base_name_metric_value_base_and_threshold() -> None:
    results = check_gates(
        {"accuracy": "< -0.5%", "latency_ms": "> +10%", "loss": "> 2", "f1": "< -1%"},
        {"accuracy": 0.90, "latency_ms": 10.5, "loss": 1.0, "f1": 0.5},
        {"accuracy": 0.912, "latency_ms": 10.0, "loss": 5.0},
        "main @ 1a2b3c4",
    )
    by = {r.name: r for r in results}
    assert by["accuracy"].failed
    assert by["accuracy"].message == (
        "fail_if accuracy '< -0.5%': accuracy is 0.9, against 0.912 on main @ 1a2b3c4 "
        "(a change of -1.32%)"
    )
    assert not by["latency_ms"].failed and not by["loss"].failed
    assert not by["f1"].failed and "has no f1" in by["f1"].message


def test_relative_gates_without_a_base_are_not_checked_but_absolute_ones_are() -> None:
    results = check_gates(
        {"accuracy": "< -0.5%", "loss": "> 2"}, {"accuracy": 0.1, "loss": 3}, None, ""
    )
    assert not results[0].failed and "no base run" in results[0].message
    assert results[1].failed and "loss is 3" in results[1].message


def test_the_results_section_names_the_base_and_stays_bounded() -> None:
    from app.core.results.report import MAX_SECTION, JobResults, Plot, results_section

    one = JobResults(
        name="train",
        values={"accuracy": 0.912},
        base_values={"accuracy": 0.908},
        base_label="main @ 1a2b3c4",
        base_url="https://p/pipelines/1",
        higher_is_better={"accuracy": True},
        plots=(Plot("plots/a.png", "https://p/runs/1/artifacts/plots/a.png?t=x"),),
    )
    lines = results_section([one], ["budget: tenant t is at 82% of its monthly budget"])
    text = "\n".join(lines)
    assert "**train** · compared with [main @ 1a2b3c4](https://p/pipelines/1)" in text
    assert "| accuracy | 0.912 (+0.004) | 0.908 | 🟢 ▲ +0.44% |" in text
    assert "[![plots/a.png](https://p/runs/1/artifacts/plots/a.png?t=x)]" in text
    assert "- 💸 budget: tenant t is at 82% of its monthly budget" in text
    assert results_section([JobResults(name="lint")]) == []
    many = [
        JobResults(name=f"job-{i}", values={f"m{k}": float(k) for k in range(30)})
        for i in range(200)
    ]
    big = "\n".join(results_section(many))
    assert len(big) < MAX_SECTION + 5000 and "more jobs with results" in big
