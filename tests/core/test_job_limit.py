"""PLOYD_MAX_JOBS_PER_PIPELINE at validation: the jobs after matrix expansion are
counted before anything is expanded, and the error names the matrix that passes the
limit; `ployd validate` and `ployd run` apply the server's limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.core.config.errors import ConfigInvalid
from app.core.config.loader import load_config

BIG = """\
version: 1
jobs:
  lint:
    steps: [{run: ruff .}]
  unit:
    matrix:
      py: ["3.10", "3.11", "3.12"]
      shard: [1, 2, 3, 4]
      exclude: [{py: "3.10", shard: 4}]
    steps: [{run: pytest}]
  gpu:
    needs: [unit]
    matrix: {hardware: [l4, a10g], n: [1, 2, 3]}
    steps: [{run: pytest gpu}]
"""  # 1 + 11 + 6 = 18 jobs


def test_a_file_within_the_limit_loads() -> None:
    assert set(load_config(BIG, max_jobs=18).jobs) == {"lint", "unit", "gpu"}
    assert load_config(BIG).jobs  # no limit given: none applied


def test_the_error_names_the_matrix_that_passes_the_limit() -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_config(BIG, max_jobs=17)
    (err,) = info.value.errors
    assert (err.line, err.column) == (13, 13)  # gpu's matrix
    assert err.message == (
        "matrix of job 'gpu' (6 children) takes the pipeline to 18 jobs, over the limit "
        "of 17 jobs per pipeline (PLOYD_MAX_JOBS_PER_PIPELINE); the file gives 18 jobs "
        "in all: make the matrices smaller, or split the work across pipelines"
    )
    with pytest.raises(ConfigInvalid) as info:
        load_config(BIG, max_jobs=5)  # exclude counted: unit has 11 children, not 12
    assert "matrix of job 'unit' (11 children) takes the pipeline to 12 jobs" in str(info.value)


def test_a_plain_job_past_the_limit_is_named() -> None:
    text = "version: 1\njobs:\n" + "".join(f"  j{i}: {{steps: [{{run: x}}]}}\n" for i in range(4))
    with pytest.raises(ConfigInvalid) as info:
        load_config(text, max_jobs=3)
    (err,) = info.value.errors
    assert (err.line, err.column) == (6, 3)
    assert err.message.startswith("job 'j3' takes the pipeline to 4 jobs, over the limit of 3")


def test_25600_jobs_are_refused_quickly() -> None:
    import time

    side = ", ".join(str(i) for i in range(16))
    text = "version: 1\njobs:\n" + "".join(
        f"  t{j}:\n    matrix: {{a: [{side}], b: [{side}]}}\n    steps: [{{run: x}}]\n"
        for j in range(100)
    )
    t0 = time.process_time()
    with pytest.raises(ConfigInvalid) as info:
        load_config(text, max_jobs=10_000)
    assert time.process_time() - t0 < 2.0  # counted, never expanded
    assert "matrix of job 't39' (256 children) takes the pipeline to 10,240 jobs" in str(
        info.value
    )
    assert "the file gives 25,600 jobs in all" in str(info.value)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / ".ployd.yml"
    path.write_text(text)
    return str(path)


def test_validate_applies_the_servers_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, BIG)
    assert main(["validate", path]) == 0  # the default limit is 1,000
    monkeypatch.setenv("PLOYD_MAX_JOBS_PER_PIPELINE", "17")
    capsys.readouterr()
    assert main(["validate", path]) == 1
    err = capsys.readouterr().err
    assert ":13:13: matrix of job 'gpu' (6 children) takes the pipeline to 18 jobs" in err
    monkeypatch.setenv("PLOYD_MAX_JOBS_PER_PIPELINE", "lots")
    assert main(["validate", path]) == 2
    assert "PLOYD_MAX_JOBS_PER_PIPELINE='lots': expected a whole number" in capsys.readouterr().err


def test_run_applies_the_servers_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, BIG)
    monkeypatch.setenv("PLOYD_MAX_JOBS_PER_PIPELINE", "17")
    assert main(["run", "--file", path, "--dry-run"]) == 1
    assert "matrix of job 'gpu' (6 children)" in capsys.readouterr().err
    monkeypatch.setenv("PLOYD_MAX_JOBS_PER_PIPELINE", "0")
    assert main(["run", "--file", path, "--dry-run"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    monkeypatch.setenv("PLOYD_MAX_JOBS_PER_PIPELINE", "18")
    assert main(["run", "--file", path, "--dry-run"]) == 0
