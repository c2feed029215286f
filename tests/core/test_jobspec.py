"""The typed view of ``jobs.spec``: made from a planned job, stored, read back, defaults."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

import pytest

from app.core.config.loader import load_config
from app.core.config.model import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT_S,
    Artifacts,
    Cache,
    GpuRequest,
    Image,
    Resources,
    RetryPolicy,
    RetryReason,
    SpotPolicy,
    Workload,
)
from app.core.expand import expand
from app.core.hardware import Catalog
from app.core.jobspec import StoredJobSpec, StoredStep

CONFIG = """
version: 1
jobs:
  lint:
    steps:
      - run: ruff check .
  empty-artifacts:
    artifacts:
      paths: []
    steps:
      - run: "true"
  train:
    matrix:
      py: ["3.11", "3.12"]
    resources:
      cpu: 4
      disk: 20.5GB
    workload: train
    spot: always
    timeout: 1h
    image: img:1
    clean_machine: true
    env: {A: "1", PY: "${{ matrix.py }}"}
    secrets: [TOKEN]
    retry:
      max: 1
      when: [always]
      exit_codes: [2]
      capacity_wait: 20m
    cache:
      key: pip-${{ matrix.py }}
      paths: [~/.cache/pip, .venv]
    artifacts:
      paths: ["out/**"]
    steps:
      - name: Build
        run: make
        timeout: 90s
        env: {X: "${{ matrix.py }}"}
      - run: make test
        continue-on-error: true
"""


def planned() -> dict[str, StoredJobSpec]:
    jobs = expand(load_config(textwrap.dedent(CONFIG)), Catalog.default())
    return {j.name: StoredJobSpec.from_planned(j) for j in jobs}


def test_from_planned_reads_the_planned_job() -> None:
    jobs = planned()
    t = jobs["train (py=3.12)"]
    assert t.steps == (
        StoredStep("Build", "make", {"X": "3.12"}, 90, False),
        StoredStep("make test", "make test", {}, None, True),
    )
    assert dict(t.env) == {"A": "1", "PY": "3.12"}
    assert (t.secrets, t.timeout_s, t.workload, t.spot) == (
        ("TOKEN",), 3600, Workload.TRAIN, SpotPolicy.ALWAYS)
    assert t.retry == RetryPolicy(1, frozenset({RetryReason.ALWAYS}), (2,), capacity_wait_s=1200)
    assert (t.image, t.clean_machine, t.disk_gb) == (Image("img:1"), True, 21)  # disk: whole GB, up
    assert t.cache == Cache("pip-3.12", ("~/.cache/pip", ".venv"))
    assert t.artifacts == Artifacts(("out/**",))
    assert t.resources == Resources(cpu=4, disk_gb=20.5)  # what agents are matched to
    lint = jobs["lint"]
    assert lint == StoredJobSpec(steps=(StoredStep("ruff check .", "ruff check ."),))
    assert lint.timeout_s == DEFAULT_TIMEOUT_S and lint.retry == DEFAULT_RETRY
    # artifacts without paths are not stored
    assert jobs["empty-artifacts"].artifacts is None


@pytest.mark.parametrize("name", ["lint", "empty-artifacts", "train (py=3.11)"])
def test_stored_json_round_trips(name: str) -> None:
    spec = planned()[name]
    stored = spec.to_stored()
    again = json.loads(json.dumps(stored))  # as the JSON column gives it back
    assert again == stored
    assert StoredJobSpec.from_stored(again) == spec
    assert StoredJobSpec.from_stored(again).to_stored() == stored
    assert list(stored) == [
        "steps", "env", "secrets", "timeout_s", "retry", "workload", "spot", "image",
        "clean_machine", "disk_gb", "cache", "artifacts", "resources",
    ]


@pytest.mark.parametrize("stored", [None, {}])
def test_an_empty_spec_has_the_defaults(stored: dict[str, Any] | None) -> None:
    spec = StoredJobSpec.from_stored(stored)
    assert spec == StoredJobSpec()
    assert spec.timeout_s == DEFAULT_TIMEOUT_S == 1800
    assert spec.retry == DEFAULT_RETRY
    assert (spec.workload, spec.spot) == (Workload.TEST, SpotPolicy.AUTO)
    assert (spec.steps, dict(spec.env), spec.secrets) == ((), {}, ())
    assert (spec.image, spec.clean_machine, spec.disk_gb, spec.cache, spec.artifacts) == (
        None, False, None, None, None)


@pytest.mark.parametrize(
    ("stored", "field", "expected"),
    [
        ({"timeout_s": 0}, "timeout_s", 0),  # a value, not a missing key
        ({"timeout_s": None}, "timeout_s", DEFAULT_TIMEOUT_S),
        ({"timeout_s": "60"}, "timeout_s", 60),
        ({"spot": None}, "spot", SpotPolicy.AUTO),
        ({"spot": "never"}, "spot", SpotPolicy.NEVER),
        ({"workload": ""}, "workload", Workload.TEST),
        ({"retry": None}, "retry", DEFAULT_RETRY),
        ({"retry": {}}, "retry", DEFAULT_RETRY),
        ({"retry": {"max": 0}}, "retry", RetryPolicy(0, DEFAULT_RETRY.when)),
        ({"retry": {"when": []}}, "retry", RetryPolicy(2, frozenset())),
        ({"retry": {"exit_codes": ["3"]}}, "retry", RetryPolicy(exit_codes=(3,))),
        ({"secrets": ["A", 1]}, "secrets", ("A", "1")),
        ({"clean_machine": 1}, "clean_machine", True),
        ({"cache": {}}, "cache", None),
        ({"cache": {"key": "k", "paths": ["p"]}}, "cache", Cache("k", ("p",))),
        ({"artifacts": {}}, "artifacts", None),
        ({"artifacts": {"paths": ["a"]}}, "artifacts", Artifacts(("a",))),
        ({"artifacts": {"paths": ["a"], "expire_in_s": 60}}, "artifacts", Artifacts(("a",), 60)),
        ({"resources": None}, "resources", None),
        ({"resources": {"cpu": 8}}, "resources", Resources(cpu=8)),
        (
            {"resources": {"gpu": {"type": "h100", "count": 8, "memory_gb": 80}}},
            "resources",
            Resources(gpu=GpuRequest("h100", 8, 80.0)),
        ),
        ({"resources": {"gpu": {}, "memory_gb": 64}}, "resources", Resources(memory_gb=64.0)),
        ({"resources": {"gpu": {"count": 2}}}, "resources", Resources(gpu=GpuRequest(count=2))),
    ],
)
def test_missing_and_null_values(stored: dict[str, Any], field: str, expected: object) -> None:
    assert getattr(StoredJobSpec.from_stored(stored), field) == expected


def test_a_step_with_missing_keys() -> None:
    (step,) = StoredJobSpec.from_stored({"steps": [{"run": "x"}]}).steps
    assert step == StoredStep(title="", run="x", env={}, timeout_s=None, continue_on_error=False)
    assert step.to_stored() == {
        "title": "", "run": "x", "env": {}, "timeout_s": None, "continue_on_error": False}


@pytest.mark.parametrize(
    "stored",
    [{"workload": "nope"}, {"spot": "sometimes"}, {"retry": {"when": ["bad_luck"]}}],
)
def test_a_value_outside_its_enum_is_an_error(stored: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        StoredJobSpec.from_stored(stored)


def test_the_view_is_immutable() -> None:
    spec = StoredJobSpec.from_stored({"env": {"A": "1"}, "steps": [{"run": "x", "env": {}}]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.timeout_s = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.env["A"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.steps[0].env["B"] = "2"  # type: ignore[index]
