"""Validation speed: a 500-job `.ployd.yml` (some jobs via matrix) against a 1-job one.

Target: the 500-job config validates (load + matrix expansion) in under 100 ms more than
the 1-job config. Best of several repetitions of each, in the same run.

    .venv/bin/python bench/bench_validate.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.config.loader import load_config
from app.core.expand import expand
from app.core.hardware import Catalog

TARGET_MS = 100.0
REPEATS = 15

HEADER = """\
version: 1
on:
  push:
    branches: [main]
  pull_request:
    branches: [main]
defaults:
  timeout: 30m
  env:
    PYTHONUNBUFFERED: "1"
jobs:
"""

HARDWARE = ["cpu", "cpu:8", "l4", "a10g", "h100:8", "t4", "l40s", "cpu:32"]


def job_text(i: int, total: int) -> str:
    lines = [f"  job-{i}:"]
    if i % 10 == 5:
        # a matrix job: 2 x 2 children
        lines += [
            "    matrix:",
            '      python: ["3.11", "3.12"]',
            "      hardware: [l4, a10g]",
        ]
    else:
        lines.append(f"    hardware: {HARDWARE[i % len(HARDWARE)]}")
    if i > 0:
        second = f", job-{i // 2}" if i // 2 not in (i - 1, i) else ""
        lines.append(f"    needs: [job-{i - 1}{second}]")
    if i % 7 == 0:
        lines += ["    workload: train", "    spot: never", "    timeout: 2h"]
    if i % 11 == 0:
        lines += [
            "    cache:",
            f"      key: pip-{i}-${{{{ hashFiles('requirements.txt') }}}}",
            "      paths: [~/.cache/pip]",
        ]
    lines += [
        "    env:",
        f'      JOB: "{i}"',
        "    retry:",
        "      max: 1",
        "      when: [spot_interruption, no_capacity]",
        "    steps:",
        "      - name: Install",
        "        run: echo install",
        "      - run: |",
        f"          echo running job {i}",
        "          python3 -c 'print(1)'",
    ]
    if i % 10 == 5:
        lines += ["        env:", "          PY: ${{ matrix.python }}"]
    return "\n".join(lines) + "\n"


def config_text(n: int) -> str:
    return HEADER + "".join(job_text(i, n) for i in range(n))


def best_of(text: str, catalog: Catalog) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        cfg = load_config(text, catalog=catalog)
        count = len(expand(cfg, catalog))
        best = min(best, time.perf_counter() - t0)
    return best * 1000, count


def main() -> int:
    catalog = Catalog.default()
    small, big = config_text(1), config_text(500)
    # warm up: lazy imports, schema compilation
    load_config(small, catalog=catalog)
    t_small, n_small = best_of(small, catalog)
    t_big, n_big = best_of(big, catalog)
    diff = t_big - t_small
    print(f"1 job     ({n_small} after expansion, {len(small):>7} bytes): {t_small:7.1f} ms")
    print(f"500 jobs  ({n_big} after expansion, {len(big):>7} bytes): {t_big:7.1f} ms")
    verdict = "OK" if diff < TARGET_MS else "TOO SLOW"
    print(f"difference: {diff:.1f} ms (target < {TARGET_MS:.0f} ms): {verdict}")
    return 0 if diff < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
