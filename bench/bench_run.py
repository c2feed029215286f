"""Bench: the overhead of `ployd run` over plain bash, for a 3-job echo pipeline a -> b -> c.

Times, N times each, (1) `python -m app run` in a temp dir holding a `.ployd.yml` with
three jobs a -> b -> c, each one step `echo`, and (2) the same three commands as three
`bash -c` invocations (what any runner must at least do). Prints both medians, the
overhead in seconds and the ratio. Target: overhead under 0.3 s. When npm is there, also
(3) gitlab-ci-local with its shell executor on the same pipeline (installed from the npm
registry into the temp dir), side by side.

Usage: python bench/bench_run.py [-n 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_OVERHEAD_S = 0.3

CONFIG = """\
version: 1
jobs:
  a:
    steps:
      - run: echo a
  b:
    needs: [a]
    steps:
      - run: echo b
  c:
    needs: [b]
    steps:
      - run: echo c
"""

COMMANDS = ["echo a", "echo b", "echo c"]


def time_ployd(cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "app", "run"], cwd=cwd, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - t0


def time_bash(cwd: Path) -> float:
    t0 = time.perf_counter()
    for cmd in COMMANDS:
        subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", cmd],
            cwd=cwd,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return time.perf_counter() - t0


GITLAB_CI = """\
stages: [a, b, c]
a: {stage: a, script: [echo a]}
b: {stage: b, needs: [a], script: [echo b]}
c: {stage: c, needs: [b], script: [echo c]}
"""
# The newest gitlab-ci-local needs Node.js 22; this one runs on the Node.js 20 here.
GITLAB_CI_LOCAL = "gitlab-ci-local@4.56.2"


def gitlab_ci_local(tmp: Path) -> Path | None:
    """gitlab-ci-local installed from the npm registry into ``tmp`` (None: no npm, or the
    install failed; the comparison is then left out)."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    done = subprocess.run(
        [
            npm,
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(tmp),
            GITLAB_CI_LOCAL,
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    exe = tmp / "node_modules" / ".bin" / "gitlab-ci-local"
    return exe if done.returncode == 0 and exe.exists() else None


def time_gitlab_ci_local(exe: Path, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [str(exe), "--shell-executor-no-image"],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="repetitions of each (default 15)")
    args = parser.parse_args()
    repo_root = Path(__file__).resolve().parent.parent
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p
    )
    with tempfile.TemporaryDirectory(prefix="ployd-bench-") as tmp:
        cwd = Path(tmp) / "repo"
        cwd.mkdir()
        (cwd / ".ployd.yml").write_text(CONFIG)
        # Measure an installed ployd: compiled bytecode cached (in the temp dir, so the
        # tree stays clean) even where PYTHONDONTWRITEBYTECODE is set.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        time_ployd(cwd)  # warm the OS caches and .pyc files once
        time_bash(cwd)
        ployd = [time_ployd(cwd) for _ in range(args.n)]
        bash = [time_bash(cwd) for _ in range(args.n)]
        gcl: list[float] = []
        exe = gitlab_ci_local(Path(tmp) / "npm")
        if exe is not None:  # the same pipeline, shell executor, in a git repository
            (cwd / ".gitlab-ci.yml").write_text(GITLAB_CI)
            git = ["git", "-C", str(cwd), "-c", "user.name=b", "-c", "user.email=b@b"]
            subprocess.run([*git, "init", "-q"], check=True)
            subprocess.run([*git, "add", "-A"], check=True)
            subprocess.run([*git, "commit", "-qm", "bench"], check=True)
            time_gitlab_ci_local(exe, cwd)
            gcl = [time_gitlab_ci_local(exe, cwd) for _ in range(max(args.n // 3, 3))]
    p, b = statistics.median(ployd), statistics.median(bash)
    overhead = p - b
    print(f"ployd run, 3-job echo pipeline a -> b -> c  (n={args.n})")
    print(f"  ployd run median:    {p * 1000:8.1f} ms  (min {min(ployd) * 1000:.1f} ms)")
    print(f"  plain bash median:   {b * 1000:8.1f} ms  (3 x bash -c)")
    print(
        f"  overhead:            {overhead * 1000:8.1f} ms  "
        f"(target < {TARGET_OVERHEAD_S * 1000:.0f} ms)"
    )
    print(f"  ratio:               {p / b:8.1f} x")
    if gcl:
        g = statistics.median(gcl)
        print(
            f"  {GITLAB_CI_LOCAL} (shell executor) median: {g * 1000:8.1f} ms  "
            f"-> ployd run is {g / p:.1f}x faster"
        )
    else:
        print("  gitlab-ci-local: not measured (no npm, or it could not be installed)")
    if overhead >= TARGET_OVERHEAD_S:
        print("  FAIL: overhead above target")
        return 1
    print("  ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
