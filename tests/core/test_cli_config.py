"""`ployd validate` and `ployd plan` through app.cli.main."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]

GOOD = textwrap.dedent("""\
    version: 1
    jobs:
      lint:
        steps: [{run: ruff check .}]
      unit:
        hardware: cpu:8
        steps: [{run: pytest}]
      gpu:
        needs: [unit]
        matrix: {hardware: [l4, a10g]}
        steps: [{run: pytest tests/gpu}]
      train:
        needs: [gpu]
        hardware: h100:8
        workload: train
        steps: [{run: python train.py}]
      bench:
        when: manual
        hardware: h100:8
        steps: [{run: python bench.py}]
    """)

BAD = textwrap.dedent("""\
    version: 1
    jobs:
      unit:
        steps: [{run: pytest}]
      gpu-tests:
        needs: [unti]
        timeout: 100h
        steps: [{run: x}]
    """)


def write(tmp_path: Path, text: str, name: str = ".ployd.yml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, GOOD)
    assert main(["validate", str(p)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"{p}: valid, 6 jobs after matrix expansion (1 manual), "
                   "hardware: cpu:2, cpu:8, l4:1, a10g:1, h100:8")


def test_validate_default_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.startswith(".ployd.yml: valid, 6 jobs")


def test_validate_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, BAD)
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[:2] == [
        ".ployd.yml:6:13: job 'gpu-tests' needs 'unti', which is not a job (did you mean 'unit'?)",
        ".ployd.yml:7:14: job 'gpu-tests': 'timeout' is 100h, longer than the maximum of 72h",
    ]


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, BAD)
    assert main(["validate", "--format", "json", str(p)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data[0] == {"file": str(p), "line": 6, "column": 13,
                       "message": "job 'gpu-tests' needs 'unti', which is not a job "
                                  "(did you mean 'unit'?)"}
    assert len(data) == 2


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_validate_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / ".ployd.example.yml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_plan_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, GOOD)
    assert main(["plan", str(p)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("  ")[0] == "JOB"
    for title in ("NEEDS", "WHEN", "HARDWARE", "SCHEDULER WOULD TRY", "WORKLOAD", "$/HOUR"):
        assert title in lines[0]
    # a training job stays on-demand (spot: auto), whole 8-GPU machines, list price
    train = next(line for line in lines if line.startswith("train "))
    assert "h100:8" in train and "p5.48xlarge on-demand $55.04" in train
    assert "spot" not in train.split("h100:8", 1)[1]
    assert train.rstrip().endswith("55.04")
    # a test job tries spot first, cheapest first, with the estimate marked
    gpu = next(line for line in lines if line.startswith("gpu (hardware=l4)"))
    assert "unit" in gpu
    col = lines[0].index("SCHEDULER WOULD TRY")
    assert gpu[col:].startswith("g6.xlarge spot $") and "*" in gpu[col:]
    assert "manual" in next(line for line in lines if line.startswith("bench "))


def test_plan_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, BAD)
    assert main(["plan", str(p)]) == 1
    assert "needs 'unti'" in capsys.readouterr().err
