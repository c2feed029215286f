"""Bench: the overhead of `ployd run` over plain bash, for a 3-job echo pipeline a -> b -> c.

Times, N times each, (1) `python -m app run` in a temp dir holding a `.ployd.yml` with
three jobs a -> b -> c, each one step `echo`, and (2) the same three commands as three
`bash -c` invocations (what any runner must at least do). Prints both medians, the
overhead in seconds and the ratio. Target: overhead under 0.3 s.

Usage: python bench/bench_run.py [-n 15]
"""

from __future__ import annotations

import argparse
import os
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
    if overhead >= TARGET_OVERHEAD_S:
        print("  FAIL: overhead above target")
        return 1
    print("  ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
