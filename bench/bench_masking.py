"""Masking speed: a 4 MB job log through the agent's streaming ``Masker`` with 20 secrets.

The log is ordinary build output (pip, pytest, compiler lines, numbers, hashes), with a
few secrets and their encodings mixed in. It is fed as the pipe delivers it (64 KiB
reads) and as an interactive step writes it (one line at a time). Baseline: the same
feed with no secrets (the masker passes text through). Figures: MB/s, best of several
repetitions. Compare a checkout with the one it replaces (bench/README.md); the target
of issue 14 part 5 is "not noticeably slower than before".

    .venv/bin/python bench/bench_masking.py
"""

from __future__ import annotations

import base64
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.agent.runner import Masker

REPEATS = 5
LOG_MB = 4
SECRETS = 20

LINES = [
    "Collecting torch==2.3.1 (from -r requirements.txt (line 4))",
    "  Downloading torch-2.3.1-cp311-cp311-manylinux1_x86_64.whl (779.1 MB)",
    "tests/test_model.py::test_forward[fp16-batch32] PASSED                    [ 42%]",
    "gcc -O2 -fPIC -I/usr/include/python3.11 -c src/kernels.c -o build/kernels.o",
    "epoch 3/10 step 1200/5000 loss=0.48213 lr=3.0e-04 grad_norm=1.1875 tok/s=48211",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "WARNING: Running pip as the 'root' user can result in broken permissions",
    "",
    '  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1532',
    "2024-06-01T12:00:00.123456Z INFO  dataloader: 8 workers, prefetch 2, pin_memory=True",
]


def make_secrets(rng: random.Random) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    out = []
    for i in range(SECRETS):
        n = 12 + (i * 7) % 40
        out.append("".join(rng.choice(alphabet) for _ in range(n)))
    return out


def make_log(rng: random.Random, secrets: list[str]) -> str:
    lines: list[str] = []
    size = 0
    while size < LOG_MB * 1_000_000:
        if rng.random() < 0.001:
            s = rng.choice(secrets)
            b64 = base64.b64encode(s.encode()).decode()
            line = rng.choice([f"token={s}", b64, s.encode().hex()])
        else:
            line = rng.choice(LINES)
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


def feed(secrets: list[str], pieces: list[str]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        m = Masker(secrets)
        t0 = time.perf_counter()
        for piece in pieces:
            m.feed(piece)
        m.finish()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    rng = random.Random(14)
    secrets = make_secrets(rng)
    log = make_log(rng, secrets)
    mb = len(log) / 1e6
    chunked = [log[i : i + 65536] for i in range(0, len(log), 65536)]
    by_line = log.splitlines(keepends=True)
    print(f"masking {mb:.1f} MB with {SECRETS} secrets ({len(Masker(secrets).forms)} forms)")
    for name, pieces in (("64 KiB reads", chunked), ("line by line", by_line)):
        base = feed([], pieces)
        t = feed(secrets, pieces)
        print(
            f"  {name:13s} {mb / t:8.1f} MB/s  ({t * 1000:7.1f} ms;"
            f" no secrets: {base * 1000:.1f} ms)"
        )


if __name__ == "__main__":
    main()
