"""Agents report their hardware and get only the jobs it satisfies, for real: agent
processes (`python -m app.agent`) with a fake `nvidia-smi` on their PATH, against
`ployd serve` on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import nvidia_smi

from .conftest import Harness

TRAIN = (
    "version: 1\njobs:\n"
    "  train:\n    hardware: h100:8\n    workload: train\n"
    "    steps: [{run: 'echo trained-$((6*7)) on $(nvidia-smi --query-gpu=name,memory.total "
    "--format=csv,noheader,nounits | wc -l) GPUs'}]\n"
)
NO_H100 = "waiting: no agent with h100:8 is connected (connected: "


@contextlib.asynccontextmanager
async def agent(
    h: Harness, name: str, tmp_path: Path, output: str, exit_code: int = 0
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A self-hosted-style agent process whose machine's nvidia-smi prints ``output``."""
    bin_dir = nvidia_smi.install(tmp_path / f"{name}-bin", output, exit_code)
    env = {
        **os.environ,
        "PATH": nvidia_smi.path_with(bin_dir),
        # a self-hosted agent: a pool's one-time registration token (every tenant)
        "PLOYD_AGENT_TOKEN": h.server.services.pools.create_token("lab", ["*"]).token,
        "PYTHONUNBUFFERED": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.agent", "--server", h.url, "--agent-id", name,
        "--work-dir", str(tmp_path / name), "--claim-wait", "5",
        env=env, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


def reason(h: Harness, pid: int) -> str:
    return h.job(pid, "train").waiting_reason or ""


async def test_the_h100_job_goes_to_the_agent_with_eight_h100s_never_the_cpu_one(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    repo, _ = make_repo({".ployd.yml": TRAIN})
    async with serve(agents=0) as h:
        h: Harness
        # The CPU agent alone, and this the only job queued: it waits, and says why.
        no_driver, code = nvidia_smi.NO_DRIVER
        async with agent(h, "cpu-1", tmp_path, no_driver, code):
            pid = await h.start(repo)
            await h.until(lambda: reason(h, pid).startswith(NO_H100), "the waiting message")
            assert reason(h, pid).startswith(f"{NO_H100}cpu-1 cpu:")
            job = h.job(pid, "train")
            assert job.state == "queued" and job.attempts[0].agent_id is None
            # An A100 machine joins: still not it, and the message names both.
            async with agent(h, "lab-a100", tmp_path, nvidia_smi.fixture("a100-sxm4-40gb")):
                await h.until(lambda: "lab-a100 a100:1" in reason(h, pid), "both agents named")
                assert reason(h, pid).startswith(f"{NO_H100}cpu-1 cpu:")
                assert h.job(pid, "train").state == "queued"
                # Eight H100s join: the job is theirs.
                async with agent(h, "lab-h100", tmp_path, nvidia_smi.fixture("h100x8")):
                    p = await h.finished(pid)
        job = next(j for j in p.jobs if j.name == "train")
        assert job.state == "succeeded"
        assert [a.agent_id for a in job.attempts] == ["lab-h100"]
        assert job.waiting_reason is None
        assert "trained-42 on 8 GPUs" in h.log(pid, "train")


@pytest.fixture
def no_gpu_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has no GPU, whatever it has: its nvidia-smi finds no driver."""
    bin_dir = nvidia_smi.install(tmp_path / "no-gpu-bin", *nvidia_smi.NO_DRIVER)
    monkeypatch.setenv("PATH", nvidia_smi.path_with(bin_dir))


async def test_under_ployd_serve_a_gpu_job_waits_on_a_machine_without_gpus(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    no_gpu_machine: None,
) -> None:
    config = TRAIN + "  unit:\n    steps: [{run: 'echo unit ran'}]\n"
    repo, _ = make_repo({".ployd.yml": config})
    async with serve(agents=1) as h:
        h: Harness
        pid = await h.start(repo)
        await h.until(lambda: h.job(pid, "unit").state == "succeeded", "the CPU job")
        await h.until(lambda: reason(h, pid).startswith(NO_H100), "the waiting message")
        assert reason(h, pid).startswith(f"{NO_H100}local-1 cpu:")
        assert reason(h, pid).endswith(")")
        assert h.job(pid, "train").state == "queued"
