"""The agent's side of metrics: read the file's bytes, never outside the workspace, never
more than the limit."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from app.agent.metricsfile import read_metrics
from app.protocol import JobPayload, MetricsPayload


def test_reads_the_file_as_base64(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m.json").write_bytes(b'{"a": 1}')
    body = read_metrics(tmp_path, MetricsPayload("out/m.json"))
    assert base64.b64decode(body["data"]) == b'{"a": 1}'
    assert body["problem"] is None and body["size"] == 8


def test_missing_too_big_and_outside_are_problems_not_errors(tmp_path: Path) -> None:
    assert read_metrics(tmp_path, MetricsPayload("nope.json"))["problem"] == "missing"
    (tmp_path / "big.json").write_bytes(b" " * 101)
    big = read_metrics(tmp_path, MetricsPayload("big.json", max_bytes=100))
    assert big["problem"] == "too_big" and big["size"] == 101 and big["data"] is None
    outside = tmp_path.parent / "secret.txt"
    outside.write_text("x")
    os.symlink(outside, tmp_path / "link.json")
    assert read_metrics(tmp_path, MetricsPayload("link.json"))["problem"] == "outside"
    assert read_metrics(tmp_path, MetricsPayload("../secret.txt"))["problem"] == "outside"
    (tmp_path / "dir.json").mkdir()
    assert read_metrics(tmp_path, MetricsPayload("dir.json"))["problem"] == "missing"


def test_the_job_payload_carries_metrics_and_old_payloads_still_parse() -> None:
    base = {
        "pipeline_id": 1,
        "job_id": 2,
        "attempt_id": 3,
        "attempt_number": 1,
        "name": "t",
        "forge": "local",
        "repo": "r",
        "clone_url": "file:///r",
        "sha": "a" * 40,
        "ref": "refs/heads/main",
        "workspace_key": "k",
        "timeout_s": 60,
        "env": {},
        "secrets": {},
        "steps": [],
    }
    assert JobPayload.from_json(base).metrics is None
    job = JobPayload.from_json({**base, "metrics": {"file": "m.json", "max_bytes": 10}})
    assert job.metrics == MetricsPayload("m.json", 10)
    assert JobPayload.from_json(job.to_json()) == job
