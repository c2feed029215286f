"""A fake ``nvidia-smi`` to put on an agent's PATH: it answers the agent's query
(``--query-gpu=name,memory.total --format=csv,noheader,nounits``) with a fixture of real
output (tests/agent/fixtures/nvidia-smi-*.txt), and anything else with exit code 2."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "agent" / "fixtures"
# What nvidia-smi prints, and its exit code, on a machine whose driver is not loaded.
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n",
    9,
)


def fixture(name: str) -> str:
    """The text of ``nvidia-smi-NAME.txt`` (h100x8, a100-sxm4-40gb, l4, unknown...)."""
    return (FIXTURES / f"nvidia-smi-{name}.txt").read_text()


def install(bin_dir: Path, output: str, exit_code: int = 0) -> Path:
    """Write ``bin_dir/nvidia-smi`` printing ``output`` (to stderr too when it fails);
    returns ``bin_dir``, to put first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    data = bin_dir / "nvidia-smi.out"
    data.write_text(output)
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" != "--query-gpu=name,memory.total" ] || '
        '[ "$2" != "--format=csv,noheader,nounits" ]; then\n'
        "  echo \"fake nvidia-smi: unexpected arguments: $*\" >&2; exit 2\n"
        "fi\n"
        f"cat {shlex.quote(str(data))}\n"
        + (f"cat {shlex.quote(str(data))} >&2\n" if exit_code else "")
        + f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return bin_dir


def path_with(bin_dir: Path, path: str | None = None) -> str:
    """``PATH`` with ``bin_dir`` first."""
    return os.pathsep.join([str(bin_dir), path if path is not None else os.environ["PATH"]])
