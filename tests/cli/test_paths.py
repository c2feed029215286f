"""One path argument for `ployd run`, `validate`, `plan` and `trigger`: an optional
positional PATH (a file, or a directory holding .ployd.yml) with -f as its alias."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main as ployd

CONFIG = "version: 1\njobs:\n  unit:\n    steps:\n      - run: echo hi > ran.txt\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / ".ployd.yml").write_text(CONFIG)
    (tmp_path / "other.yml").write_text(CONFIG.replace("unit", "other"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_positional_file_directory_and_dash_f(
    command: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["proj"], ["proj/.ployd.yml"], ["-f", "proj"], ["--file", "proj/.ployd.yml"]):
        assert ployd([command, *argv]) == 0, argv
        assert "unit" in capsys.readouterr().out or command == "validate"
    assert ployd([command, "-f", "other.yml"]) == 0
    assert ployd([command, "proj", "-f", "proj/.ployd.yml"]) == 0  # the same file twice
    assert ployd([command, "proj", "-f", "other.yml"]) == 2
    assert "two paths given (proj and -f other.yml): give one" in capsys.readouterr().err


def test_validate_names_the_file_it_read(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ployd(["validate", "proj"]) == 0
    assert capsys.readouterr().out.startswith("proj/.ployd.yml: valid, 1 job")


def test_run_in_a_directory_runs_there(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ployd(["run", "proj"]) == 0
    assert (project / "proj" / "ran.txt").read_text() == "hi\n"
    assert not (project / "ran.txt").exists()
    assert ployd(["run", "-f", "other.yml", "--dry-run"]) == 0
    assert "other" in capsys.readouterr().out
    assert ployd(["run", "proj", "--file", "other.yml"]) == 2
