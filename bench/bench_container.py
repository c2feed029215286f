"""Bench: a warm container start, the image already on the machine, against a host step.

Times, N times each, a one-step job (`echo`) through the runner (1) with the agent's
``ContainerLauncher`` on an image already present (the presence check, the container's
start until its first word, the step's `exec`, the container's removal) and (2) with
the host launcher (bash on the machine). Prints both medians, the container's start
alone (start() until the container is up) and the overhead. Target: the container is
up in under a second (issue 14: "warm machines start a container in under a second").

The image is made here from busybox (no registry needed): podman and busybox-static
must be installed. On this sandbox podman needs runc and no default ulimits; the bench
writes that containers.conf unless CONTAINERS_CONF is set.

Usage: python bench/bench_container.py [-n 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.agent import container, runner
from app.protocol import ImagePayload

TARGET_START_S = 1.0
IMAGE = "localhost/ployd-bench:1"
CONF = '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n'


def make_image(tmp: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("bench_container: busybox is not installed (apt-get install busybox-static)")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for cmd in ("sh", "echo", "cat", "kill", "sleep"):
        (root / "bin" / cmd).symlink_to("busybox")
    subprocess.run(["tar", "-C", str(root), "-cf", str(tmp / "root.tar"), "."], check=True)
    subprocess.run(
        ["podman", "import", "-q", str(tmp / "root.tar"), IMAGE],
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def one(ws: Path, launcher: runner.Launcher | None) -> float:
    async def sink(_text: str) -> None:
        return None

    t0 = time.perf_counter()
    result = await runner.run_steps(
        [runner.StepSpec(0, "echo", "echo hi")], cwd=ws, on_log=sink, launcher=launcher
    )
    took = time.perf_counter() - t0
    assert result.succeeded, result
    return took


class Timed(container.ContainerLauncher):
    """The ContainerLauncher, timing its start (until the container is up)."""

    started_in = 0.0

    async def start(self, out: runner.LogStream) -> str | None:
        t0 = time.perf_counter()
        error = await super().start(out)
        self.started_in = time.perf_counter() - t0
        return error


async def main(n: int) -> int:
    if shutil.which("podman") is None:
        print("bench_container: podman is not installed; skipped")
        return 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "CONTAINERS_CONF" not in os.environ:
            (tmp / "containers.conf").write_text(CONF)
            os.environ["CONTAINERS_CONF"] = str(tmp / "containers.conf")
        make_image(tmp)
        runtime = container.detect_runtime()
        assert runtime is not None, "podman does not answer"
        ws = tmp / "ws"
        ws.mkdir()
        host, boxed, starts = [], [], []
        await one(ws, None)  # warm both paths once
        for i in range(n + 1):
            lr = Timed(
                runtime, ImagePayload(IMAGE), name=f"ployd-bench-{os.getpid()}-{i}", workspace=ws
            )
            took = await one(ws, lr)
            if i == 0:
                continue  # the first start warms podman's own caches
            boxed.append(took)
            starts.append(lr.started_in)
            host.append(await one(ws, None))
        subprocess.run(
            ["podman", "rmi", "-f", IMAGE],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    h, b, s = (statistics.median(x) for x in (host, boxed, starts))
    print(f"host step (bash):                median {h * 1000:7.1f} ms")
    print(f"container job (warm, 1 step):    median {b * 1000:7.1f} ms")
    print(
        f"  of which the container's start: median {s * 1000:7.1f} ms "
        f"(max {max(starts) * 1000:.1f} ms; target < {TARGET_START_S * 1000:.0f} ms)"
    )
    print(f"overhead over the host:          {(b - h) * 1000:7.1f} ms")
    ok = s < TARGET_START_S
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    sys.exit(asyncio.run(main(parser.parse_args().n)))
