"""Every feature of the language is accepted and modelled; guards against hostile input."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from app.core.config.errors import ConfigInvalid
from app.core.config.loader import load_config, load_config_file
from app.core.config.model import (
    DEFAULT_PR_TYPES,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT_S,
    GpuRequest,
    HardwareSpec,
    Image,
    PullRequestTrigger,
    PushTrigger,
    Resources,
    RetryReason,
    SpotPolicy,
    When,
    Workload,
)
from app.core.config.schema import SCHEMA_PATH, is_valid, load_schema
from app.core.config.yamlload import load_yaml

ROOT = Path(__file__).resolve().parents[2]

FULL = textwrap.dedent("""\
    version: 1
    on:
      push:
        branches: [main, "release/*"]
        branches-ignore: ["wip/*"]
        tags: ["v*"]
        paths: ["src/**"]
        paths-ignore: ["docs/**"]
      pull_request:
        branches: [main]
        paths: ["**"]
        paths-ignore: ["*.md"]
        types: [opened, ready_for_review]
    defaults:
      hardware: cpu:4
      timeout: 45m
      workload: batch
      spot: always
      retry: 3
      image: python:3.12
      allow_failure: true
      secrets: [TOKEN]
      env:
        A: 1
        B: true
        C: "x"
    jobs:
      lint:
        steps:
          - run: ruff check .
      unit:
        hardware: [h100:8, a100]
        workload: train
        spot: never
        needs: lint
        paths: ["model/**"]
        paths-ignore: ["model/README.md"]
        when: always
        timeout: 1h30m
        retry:
          max: 1
          when: [no_capacity, script_failure]
          exit_codes: [137, 143]
        cache:
          key: pip-${{ hashFiles('requirements.txt') }}
          paths: [~/.cache/pip]
          restore-keys: [pip-]
        artifacts:
          paths: ["out/**"]
          expire_in: 7d
        allow_failure: false
        image: nvcr.io/nvidia/pytorch:24.05-py3
        secrets: [WANDB_API_KEY, HF_TOKEN]
        env:
          C: "overridden"
          VER: 3.10
          OCT: 010
          NONE_STR: "null"
        steps:
          - name: Install
            run: pip install -r requirements.txt
            env: {X: 1.5}
            timeout: 10m
            continue-on-error: true
          - run: |
              pytest -q
              echo done
      eval:
        needs: [unit, lint]
        resources:
          gpu: {type: a100, count: 2, memory: 40GB}
          cpu: 16
          memory: 64GB
          disk: 2TB
        workload: inference
        when: manual
        steps: [{run: python eval.py}]
      gpu-count:
        resources: {gpu: 4}
        steps: [{run: x}]
    """)


def test_every_feature_is_modelled() -> None:
    c = load_config(FULL, filename="repo/.ployd.yml")
    assert c.version == 1 and c.file == "repo/.ployd.yml"
    assert list(c.jobs) == ["lint", "unit", "eval", "gpu-count"]
    t = c.triggers
    assert not t.implicit
    assert t.push == PushTrigger(branches=("main", "release/*"), branches_ignore=("wip/*",),
                                 tags=("v*",), paths=("src/**",), paths_ignore=("docs/**",))
    assert t.pull_request == PullRequestTrigger(branches=("main",), paths=("**",),
                                                paths_ignore=("*.md",),
                                                types=("opened", "ready_for_review"))

    lint = c.jobs["lint"]  # everything from defaults
    assert lint.hardware == (HardwareSpec("cpu", 4),)
    assert lint.resources is None
    assert lint.timeout_s == 45 * 60
    assert lint.workload is Workload.BATCH and lint.spot is SpotPolicy.ALWAYS
    assert lint.retry.max == 3 and lint.retry.when == DEFAULT_RETRY.when
    assert lint.image == Image("python:3.12") and lint.allow_failure is True
    assert lint.clean_machine is False
    assert lint.secrets == ("TOKEN",)
    assert dict(lint.env) == {"A": "1", "B": "true", "C": "x"}
    assert lint.steps[0].run == "ruff check ." and lint.steps[0].title == "ruff check ."
    assert lint.mark.line == 28 and lint.mark.column == 3

    unit = c.jobs["unit"]
    assert unit.hardware == (HardwareSpec("h100", 8), HardwareSpec("a100", 1))
    assert unit.workload is Workload.TRAIN and unit.spot is SpotPolicy.NEVER
    assert unit.needs == ("lint",)
    assert unit.paths == ("model/**",) and unit.paths_ignore == ("model/README.md",)
    assert unit.when is When.ALWAYS
    assert unit.timeout_s == 5400
    assert unit.retry.max == 1
    assert unit.retry.when == frozenset({RetryReason.NO_CAPACITY, RetryReason.SCRIPT_FAILURE})
    assert unit.retry.exit_codes == (137, 143)
    assert unit.cache is not None
    assert unit.cache.key == "pip-${{ hashFiles('requirements.txt') }}"
    assert unit.cache.paths == ("~/.cache/pip",) and unit.cache.restore_keys == ("pip-",)
    assert unit.artifacts is not None
    assert unit.artifacts.paths == ("out/**",) and unit.artifacts.expire_in_s == 7 * 86400
    assert unit.allow_failure is False
    assert unit.image == Image("nvcr.io/nvidia/pytorch:24.05-py3")
    assert unit.secrets == ("WANDB_API_KEY", "HF_TOKEN")
    # env merged over defaults; numbers keep their spelling
    assert dict(unit.env) == {"A": "1", "B": "true", "C": "overridden", "VER": "3.10",
                              "OCT": "010", "NONE_STR": "null"}
    s0, s1 = unit.steps
    assert s0.name == "Install" and s0.title == "Install"
    assert dict(s0.env) == {"X": "1.5"} and s0.timeout_s == 600 and s0.continue_on_error
    assert s0.mark.line == 60 and s0.mark.column == 9
    assert s1.run == "pytest -q\necho done\n" and s1.name is None and s1.title == "pytest -q"

    ev = c.jobs["eval"]
    assert ev.hardware == ()
    assert ev.resources == Resources(gpu=GpuRequest(type="a100", count=2, memory_gb=40.0),
                                     cpu=16, memory_gb=64.0, disk_gb=2048.0)
    assert ev.when is When.MANUAL and ev.workload is Workload.INFERENCE
    assert ev.needs == ("unit", "lint")
    assert c.jobs["gpu-count"].resources == Resources(gpu=GpuRequest(count=4))


def test_defaults_when_nothing_is_said() -> None:
    c = load_config("version: 1\njobs:\n  a:\n    steps: [{run: x}]\n")
    a = c.jobs["a"]
    assert c.triggers.implicit
    assert c.triggers.push == PushTrigger()
    assert c.triggers.pull_request == PullRequestTrigger()
    assert c.triggers.pull_request.types == DEFAULT_PR_TYPES
    assert a.hardware == (HardwareSpec("cpu", 2),)
    assert a.timeout_s == DEFAULT_TIMEOUT_S == 1800
    assert a.retry == DEFAULT_RETRY
    assert a.retry.max == 2
    assert a.retry.when == frozenset({RetryReason.SPOT_INTERRUPTION, RetryReason.INFRASTRUCTURE})
    assert a.workload is Workload.TEST and a.spot is SpotPolicy.AUTO and a.when is When.ON_SUCCESS
    assert a.matrix is None and a.cache is None and a.artifacts is None and a.image is None


@pytest.mark.parametrize(("on", "push", "pr"), [
    ("on: push", True, False),
    ("on: [push, pull_request]", True, True),
    ("on:\n  pull_request:", False, True),
    ("on:\n  push: {}\n", True, False),
    ("on: {}", False, False),
])
def test_on_forms(on: str, push: bool, pr: bool) -> None:
    c = load_config(f"version: 1\n{on}\njobs:\n  a:\n    steps: [{{run: x}}]\n")
    assert not c.triggers.implicit
    assert (c.triggers.push is not None) is push
    assert (c.triggers.pull_request is not None) is pr
    if push:
        assert c.triggers.push == PushTrigger()


def test_on_is_a_key_not_a_boolean() -> None:
    doc = load_yaml("on: yes\noff: no\nx: true\ny: False\n")
    assert doc.data == {"on": "yes", "off": "no", "x": True, "y": False}


def test_defaults_resources_and_job_hardware_override() -> None:
    c = load_config(textwrap.dedent("""\
        version: 1
        defaults:
          resources: {cpu: 8, memory: 32GB}
        jobs:
          a:
            steps: [{run: x}]
          b:
            hardware: l4
            steps: [{run: x}]
        """))
    assert c.jobs["a"].resources == Resources(cpu=8, memory_gb=32.0)
    assert c.jobs["a"].hardware == ()
    assert c.jobs["b"].hardware == (HardwareSpec("l4", 1),) and c.jobs["b"].resources is None


def test_yaml_merge_keys_and_anchors() -> None:
    c = load_config(textwrap.dedent("""\
        version: 1
        x-common: &common
          hardware: l4
          timeout: 1h
        jobs:
          a:
            <<: *common
            steps: [{run: x}]
        """).replace("x-common: &common", "defaults: &common"))
    assert c.jobs["a"].hardware == (HardwareSpec("l4", 1),) and c.jobs["a"].timeout_s == 3600


def test_schema_passes_the_2020_12_metaschema() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA_PATH == ROOT / "schemas" / "ployd.schema.json"


def _walk(node: object, path: str = ""):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def test_schema_describes_every_key_and_closes_objects() -> None:
    schema = load_schema()
    defs = schema["$defs"]
    for path, node in _walk(schema):
        for key, sub in node.get("properties", {}).items() if isinstance(
                node.get("properties"), dict) else []:
            target = sub
            if "$ref" in sub and "description" not in sub:
                target = defs[sub["$ref"].split("/")[-1]]
            assert "description" in target, f"{path}/properties/{key} has no description"
        if node.get("type") == "object" and "properties" in node and path != "/$defs/matrix":
            assert node.get("additionalProperties") is False, f"{path} is not closed"


def test_fast_check_agrees_with_jsonschema() -> None:
    from jsonschema import Draft202012Validator

    reference = Draft202012Validator(load_schema())
    samples = [load_yaml(FULL).data, load_yaml((ROOT / ".ployd.example.yml").read_text()).data]
    bad_fragments = [
        {"version": True}, {"version": 1.0}, {"on": "pushh"}, {"on": {"push": None}},
        {"on": {"push": {"tags": "v*"}}}, {"jobs": {}},
        {"jobs": {"a b": {"steps": [{"run": "x"}]}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "retry": 6}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "retry": {"max": True}}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "hardware": []}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "resources": {"gpu": 0}}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "resources": {}}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "env": {"A": None}}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "matrix": {"x": []}}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "matrix": {"include": [{}]}}}},
        {"jobs": {"a": {"steps": [{"run": "x", "timeout": "5"}]}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "cache": {"key": "", "paths": []}}}},
        {"jobs": {"a": {"steps": [{"run": "x"}], "retry": {"exit_codes": [0]}}}},
        {"extra": 1},
    ]
    for frag in bad_fragments:
        data = {"version": 1, "jobs": {"a": {"steps": [{"run": "x"}]}}}
        data.update(frag)
        samples.append(data)
    for data in samples:
        assert is_valid(data) == reference.is_valid(data), json.dumps(data)[:200]


def test_example_file_validates() -> None:
    c = load_config_file(ROOT / ".ployd.example.yml")
    assert len(c.jobs) >= 8
    used = {k for j in c.jobs.values() for k in ("matrix", "cache", "artifacts", "resources")
            if getattr(j, k) is not None}
    assert used == {"matrix", "cache", "artifacts", "resources"}
    assert any(j.when is When.MANUAL for j in c.jobs.values())
    assert any(j.when is When.ALWAYS for j in c.jobs.values())
    assert {j.workload for j in c.jobs.values()} == set(Workload)
    assert {j.spot for j in c.jobs.values()} == set(SpotPolicy)
    assert c.jobs["train-smoke"].clean_machine and not c.jobs["lint"].clean_machine


def _rejected_fast(text: str, fragment: str) -> None:
    # CPU time, not wall time: the bound is on the loader's work, not on how busy the
    # machine is (a loaded CI host stretched wall time past the bound).
    t0 = time.process_time()
    with pytest.raises(ConfigInvalid) as info:
        load_config(text)
    elapsed = time.process_time() - t0
    # Reading up to the 100,000-node limit costs PyYAML 0.6-0.8 s of CPU here, more on a
    # contended host; unbounded work (what the limits stop) would take minutes.
    assert elapsed < 2.0, f"took {elapsed:.2f}s of CPU"
    assert any(fragment in e.message for e in info.value.errors), str(info.value)


def test_billion_laughs_is_rejected_quickly() -> None:
    lines = ["version: 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    _rejected_fast("\n".join(lines) + "\n", "aliases expand to more than 100000 YAML nodes")


def test_deep_nesting_is_rejected_quickly() -> None:
    _rejected_fast("version: 1\njobs: " + "[" * 50_000 + "]" * 50_000 + "\n",
                   "nested more than 64 levels deep")
    _rejected_fast("version: 1\njobs: " + "[" * 500 + "]" * 500 + "\n",
                   "nested more than 64 levels deep")
    _rejected_fast("version: 1\njobs:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)),
                   "nested more than 64 levels deep")


def test_recursive_alias_is_rejected() -> None:
    _rejected_fast("version: 1\njobs: &a {x: *a}\n", "alias *a refers to no anchor")


def test_big_file_is_rejected_quickly() -> None:
    _rejected_fast("version: 1\n" + "# padding\n" * 120_000, "larger than 1 MB")


def test_too_many_nodes_is_rejected_quickly() -> None:
    _rejected_fast("version: 1\nx: [" + "1," * 150_000 + "1]\n", "more than 100000 YAML nodes")


def test_binary_file(tmp_path: Path) -> None:
    p = tmp_path / "bin.yml"
    p.write_bytes(b"version: 1\n\xff\xfe\x00junk")
    with pytest.raises(ConfigInvalid) as info:
        load_config_file(p)
    e = info.value.errors[0]
    assert (e.line, e.column) == (2, 1) and "not UTF-8" in e.message


def test_clean_machine_from_defaults_and_overridden() -> None:
    c = load_config(
        "version: 1\ndefaults:\n  clean_machine: true\njobs:\n"
        "  a: {steps: [{run: x}]}\n  b: {clean_machine: false, steps: [{run: x}]}\n"
    )
    assert c.jobs["a"].clean_machine is True and c.jobs["b"].clean_machine is False


def test_pull_request_drafts_option() -> None:
    text = (
        "version: 1\non:\n  pull_request:\n    drafts: {v}\n"
        "jobs:\n  a:\n    steps: [{{run: x}}]\n"
    )
    off = load_config(text.format(v="false")).triggers.pull_request
    on = load_config(text.format(v="true")).triggers.pull_request
    assert off is not None and on is not None and (off.drafts, on.drafts) == (False, True)
    unset = load_config(text.replace("\n    drafts: {v}", " {{}}").format()).triggers.pull_request
    assert unset is not None and unset.drafts is True
    with pytest.raises(ConfigInvalid) as e:
        load_config(text.format(v="later"))
    assert "'on.pull_request.drafts' must be true or false, not a string" in str(e.value)


def test_retry_capacity_wait() -> None:
    text = (
        "version: 1\njobs:\n  a:\n    retry: {{when: [no_capacity], capacity_wait: {w}}}\n"
        "    steps: [{{run: x}}]\n"
    )
    retry = load_config(text.format(w="15m")).jobs["a"].retry
    assert retry.capacity_wait_s == 900 and RetryReason.NO_CAPACITY in retry.when
    assert load_config(text.replace(", capacity_wait: {w}", "").format()).jobs[
        "a"
    ].retry.capacity_wait_s is None
    with pytest.raises(ConfigInvalid) as e:
        load_config(text.format(w="soon"))
    assert "'retry.capacity_wait' must be a duration like 90s" in str(e.value)
    with pytest.raises(ConfigInvalid) as e:
        load_config(text.format(w="100h"))
    assert "longer than the maximum of 72h" in str(e.value)
