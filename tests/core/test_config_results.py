"""`metrics:`, `report:` and `notify:` in `.ployd.yml`: modelled, stored with the job, and
refused with a clear error when wrong."""

from __future__ import annotations

import textwrap

import pytest

from app.core.config.errors import ConfigInvalid
from app.core.config.loader import load_config
from app.core.config.model import NotifyChannel
from app.core.expand import expand
from app.core.hardware import Catalog
from app.core.jobspec import StoredJobSpec

YML = textwrap.dedent("""\
    version: 1
    notify:
      - slack: SLACK_WEBHOOK
        on: [failure, fixed]
        branches: [main]
      - webhook: https://hooks.example.com/ployd
        secret: HOOK_KEY
        on: [success, failure, started]
      - email: [ml@example.com, lead@example.com]
    jobs:
      train:
        steps: [{run: python train.py}]
        metrics:
          file: metrics.json
          keys: [accuracy, "eval.*"]
          higher_is_better: {accuracy: true, latency_ms: false}
          fail_if: {accuracy: "< -0.5%", latency_ms: "> +10%"}
        report: [plots/*.png, plots/*.svg]
        artifacts: {paths: [model.pt]}
      eval:
        steps: [{run: python eval.py}]
        metrics: metrics.txt
""")


def test_metrics_report_and_notify_are_modelled() -> None:
    cfg = load_config(YML)
    train = cfg.jobs["train"]
    assert train.metrics is not None and train.metrics.file == "metrics.json"
    assert train.metrics.keys == ("accuracy", "eval.*")
    assert dict(train.metrics.higher_is_better) == {"accuracy": True, "latency_ms": False}
    assert dict(train.metrics.fail_if) == {"accuracy": "< -0.5%", "latency_ms": "> +10%"}
    assert train.report == ("plots/*.png", "plots/*.svg")
    assert cfg.jobs["eval"].metrics is not None and cfg.jobs["eval"].metrics.keys is None
    assert cfg.notify == (
        NotifyChannel(
            "slack", "SLACK_WEBHOOK", on=frozenset({"failure", "fixed"}), branches=("main",)
        ),
        NotifyChannel(
            "webhook",
            "https://hooks.example.com/ployd",
            secret="HOOK_KEY",
            on=frozenset({"success", "failure", "started"}),
        ),
        NotifyChannel("email", "ml@example.com,lead@example.com"),
    )


def test_stored_spec_keeps_metrics_and_uploads_report_files_as_artifacts() -> None:
    cfg = load_config(YML)
    planned = next(j for j in expand(cfg, Catalog.default()) if j.name == "train")
    spec = StoredJobSpec.from_planned(planned)
    assert spec.artifacts is not None
    assert spec.artifacts.paths == ("model.pt", "plots/*.png", "plots/*.svg")
    again = StoredJobSpec.from_stored(spec.to_stored())
    assert again == spec
    assert again.metrics is not None and dict(again.metrics.fail_if)["accuracy"] == "< -0.5%"


def test_list_form_of_higher_is_better() -> None:
    cfg = load_config(
        "version: 1\njobs:\n  t:\n    steps: [{run: x}]\n"
        "    metrics: {file: m.json, higher_is_better: [accuracy, f1]}\n"
    )
    m = cfg.jobs["t"].metrics
    assert m is not None and dict(m.higher_is_better) == {"accuracy": True, "f1": True}


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('    metrics: {file: m.json, fail_if: {accuracy: "-0.5%"}}', "fail_if.accuracy"),
        ("    metrics: {keys: [a]}", "missing the required key 'file'"),
        ("    metrics: {file: m.json, fail_if: {}}", "must not be empty"),
        ("    metrics: {file: m.json, gates: {}}", "unknown key 'gates'"),
        ("    report: []", "must not be empty"),
    ],
)
def test_bad_metrics_keys_are_refused_naming_the_field(snippet: str, message: str) -> None:
    text = "version: 1\njobs:\n  t:\n    steps: [{run: x}]\n" + snippet + "\n"
    with pytest.raises(ConfigInvalid) as e:
        load_config(text)
    assert message in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("  - slack: https://hooks.slack.com/services/T/B/X", "must name a secret"),
        ("  - webhook: ftp://x", "must be an http(s) URL"),
        ("  - email: not-an-address", "must be an email address"),
        (
            "  - slack: S\n    on: [always]",
            "must be one of failure, fixed, success, started, budget",
        ),
        ("  - teams: T", "unknown key 'teams'"),
        ("  - on: [failure]", "exactly one of slack, webhook or email"),
        ("  - slack: S\n    webhook: http://x", "not slack and webhook"),
    ],
)
def test_bad_notify_entries_are_refused(snippet: str, message: str) -> None:
    text = "version: 1\nnotify:\n" + snippet + "\njobs:\n  t:\n    steps: [{run: x}]\n"
    with pytest.raises(ConfigInvalid) as e:
        load_config(text)
    assert message in str(e.value), str(e.value)
