"""The agent runs on the Pythons of the machines it ships to (3.9: Amazon Linux 2023;
3.10: Ubuntu 22.04), with the standard library alone: tests/agent/old_python_run.py's
three jobs under each older Python found here.

Interpreters: ``PLOYD_TEST_PYTHONS`` (paths, separated by ``os.pathsep``), else
``pythonX.Y`` on PATH, else pyenv's versions; a version not found is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("old_python_run.py")
VERSIONS = ["3.9", "3.10"]


def _version_of(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _candidates(version: str) -> list[str]:
    listed = os.environ.get("PLOYD_TEST_PYTHONS")
    if listed:
        return [p for p in listed.split(os.pathsep) if p]
    found = [shutil.which(f"python{version}") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found += [str(p / "bin" / "python3") for p in sorted(pyenv.glob(f"{version}.*"))]
    return [p for p in found if p]


def _interpreter(version: str) -> str | None:
    return next((exe for exe in _candidates(version) if _version_of(exe) == version), None)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_agent_runs_jobs_on_older_pythons(version: str, tmp_path: Path) -> None:
    exe = _interpreter(version)
    if exe is None:
        pytest.skip(f"no Python {version} here (set PLOYD_TEST_PYTHONS to point at one)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [exe, "-s", str(SCRIPT), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Python {version}." in proc.stdout


def test_the_script_itself_runs_here(tmp_path: Path) -> None:
    """The same jobs on this Python, so a failure under an old one is about the old one."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
