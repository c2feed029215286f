"""Matrix expansion (include/exclude, hardware axis), needs, ${{ matrix.K }}, candidates."""

from __future__ import annotations

import textwrap

from app.core.config.loader import load_config
from app.core.config.model import HardwareSpec, Matrix, PlannedJob, frozen_map
from app.core.expand import child_name, expand, matrix_combinations
from app.core.hardware import Catalog

CAT = Catalog.default()


def plan(text: str) -> dict[str, PlannedJob]:
    jobs = expand(load_config(textwrap.dedent(text)), CAT)
    return {j.name: j for j in jobs}


def m(axes: dict[str, list[str]], include: list[dict[str, str]] | None = None,
      exclude: list[dict[str, str]] | None = None) -> Matrix:
    return Matrix(axes=frozen_map({k: tuple(v) for k, v in axes.items()}),  # type: ignore[arg-type]
                  include=tuple(frozen_map(i) for i in include or []),
                  exclude=tuple(frozen_map(e) for e in exclude or []))


def test_product_in_order() -> None:
    assert matrix_combinations(m({"a": ["1", "2"], "b": ["x", "y"]})) == [
        {"a": "1", "b": "x"}, {"a": "1", "b": "y"}, {"a": "2", "b": "x"}, {"a": "2", "b": "y"}]


def test_exclude_partial_match() -> None:
    combos = matrix_combinations(m({"a": ["1", "2"], "b": ["x", "y"]}, exclude=[{"a": "1"}]))
    assert combos == [{"a": "2", "b": "x"}, {"a": "2", "b": "y"}]


def test_include_github_semantics() -> None:
    # GitHub's documented example: fruit x animal with includes
    matrix = m({"fruit": ["apple", "pear"], "animal": ["cat", "dog"]}, include=[
        {"color": "green"},
        {"color": "pink", "animal": "cat"},
        {"fruit": "apple", "shape": "circle"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ])
    assert matrix_combinations(matrix) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_include_only_matrix() -> None:
    assert matrix_combinations(m({}, include=[{"a": "1"}, {"a": "2", "b": "3"}])) == [
        {"a": "1"}, {"a": "2", "b": "3"}]


def test_child_name() -> None:
    assert child_name("gpu-tests", {"python": "3.11", "hardware": "l4"}) == \
        "gpu-tests (python=3.11, hardware=l4)"


def test_expand_matrix_hardware_axis_needs_and_refs() -> None:
    jobs = plan("""\
        version: 1
        jobs:
          unit:
            hardware: cpu:8
            steps: [{run: pytest}]
          gpu-tests:
            needs: [unit]
            matrix:
              python: [3.11, "3.12"]
              hardware: [l4, a10g:4]
              exclude: [{python: "3.12", hardware: "a10g:4"}]
              include: [{python: "3.12", hardware: l4, extra: fast}]
            env:
              PY: py${{ matrix.python }}
            cache:
              key: k-${{matrix.python}}
              paths: [x]
            steps:
              - name: test on ${{ matrix.hardware }}
                run: echo ${{ matrix.python }} ${{ matrix.extra }} $HOME
                env: {H: "${{ matrix.hardware }}"}
          train:
            needs: gpu-tests
            hardware: h100:8
            workload: train
            steps: [{run: x}]
        """)
    assert list(jobs) == [
        "unit",
        "gpu-tests (python=3.11, hardware=l4)",
        "gpu-tests (python=3.11, hardware=a10g:4)",
        "gpu-tests (python=3.12, hardware=l4, extra=fast)",
        "train",
    ]
    unit = jobs["unit"]
    assert unit.base == "unit" and dict(unit.matrix) == {} and unit.needs == ()
    assert unit.hardware == (HardwareSpec("cpu", 8),) and unit.candidates[0] == "c7i.2xlarge"
    assert not unit.is_matrix_child

    a = jobs["gpu-tests (python=3.11, hardware=a10g:4)"]
    assert a.base == "gpu-tests" and a.is_matrix_child
    assert dict(a.matrix) == {"python": "3.11", "hardware": "a10g:4"}
    assert a.hardware == (HardwareSpec("a10g", 4),)
    assert a.candidates[0] == "g5.12xlarge" and "g5.xlarge" not in a.candidates
    assert a.needs == ("unit",)
    assert dict(a.env) == {"PY": "py3.11"}
    assert a.steps[0].name == "test on a10g:4"
    assert a.steps[0].run == "echo 3.11  $HOME"  # include-only key is empty here
    assert dict(a.steps[0].env) == {"H": "a10g:4"}
    assert a.cache is not None and a.cache.key == "k-3.11"
    assert a.spec.steps[0].run == "echo ${{ matrix.python }} ${{ matrix.extra }} $HOME"

    fast = jobs["gpu-tests (python=3.12, hardware=l4, extra=fast)"]
    assert fast.steps[0].run == "echo 3.12 fast $HOME"
    assert fast.hardware == (HardwareSpec("l4", 1),)

    train = jobs["train"]
    assert train.needs == tuple(n for n in jobs if n.startswith("gpu-tests"))
    assert train.candidates == ("p5.48xlarge",)


def test_candidates_follow_preference_then_workload() -> None:
    jobs = plan("""\
        version: 1
        jobs:
          bench:
            hardware: [a100, h100]
            steps: [{run: x}]
          infer:
            workload: inference
            resources: {gpu: {count: 1, memory: 24GB}}
            steps: [{run: x}]
          prep:
            workload: preprocess
            hardware: cpu:16
            steps: [{run: x}]
        """)
    assert jobs["bench"].candidates == ("p4d.24xlarge", "p5.4xlarge", "p5.48xlarge")
    infer = jobs["infer"]
    assert infer.hardware == () and infer.resources is not None
    tiers = [CAT.hardware_class(CAT.get(n).cls).tier for n in infer.candidates]
    assert tiers.index("training") > tiers.index("inference")
    assert jobs["prep"].candidates[0] == "r7i.4xlarge"


def test_defaults_apply_to_every_child() -> None:
    jobs = plan("""\
        version: 1
        defaults:
          timeout: 1h
          env: {A: "1"}
        jobs:
          t:
            matrix: {n: [1, 2]}
            steps: [{run: "echo ${{ matrix.n }}"}]
        """)
    assert [j.spec.timeout_s for j in jobs.values()] == [3600, 3600]
    assert [dict(j.env) for j in jobs.values()] == [{"A": "1"}, {"A": "1"}]
    assert [j.steps[0].run for j in jobs.values()] == ["echo 1", "echo 2"]
    assert [j.hardware for j in jobs.values()] == [(HardwareSpec("cpu", 2),)] * 2
