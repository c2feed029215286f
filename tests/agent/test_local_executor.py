"""The local executor: warm agents, restarted (and reported) when one dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.executors import Executor, LocalExecutor
from tests.conftest import bwrap_or_skip, host_pids, wait_no_process

if TYPE_CHECKING:
    from tests.agent.conftest import StubServer


@pytest.mark.parametrize("isolation", ["sandbox", "none"])
async def test_warm_agents_restart_and_report(
    stub: StubServer, repo: tuple[Path, str], open_dir: Path, isolation: str,
    wait_gone: Callable[[int], bool],
) -> None:
    """Two warm agents; one is SIGKILLed mid-step: its step (in its sandbox, or a bare
    process group recorded in the work dir) is dead before the exit is reported, and the
    agent is restarted under the same id."""
    if isolation == "sandbox":
        bwrap_or_skip()
    exits: asyncio.Queue[tuple[str, int | None]] = asyncio.Queue()

    async def on_exit(agent_id: str, rc: int | None) -> None:
        await exits.put((agent_id, rc))

    ex = LocalExecutor(stub.url, stub.agent_token, open_dir / "agents", concurrency=2,
                       on_agent_exit=on_exit, python=sys.executable, claim_wait=5,
                       stop_grace_s=5, first_backoff_s=0.05, isolation=isolation)
    assert isinstance(ex, Executor)
    await ex.start()
    try:
        # Both agents are warm: each is long-polling for a job.
        await asyncio.wait_for(stub.wait_claims("local-1", 1), 30)
        await asyncio.wait_for(stub.wait_claims("local-2", 1), 30)
        assert set(ex.agents) == {"local-1", "local-2"}
        ex.notify_queued(1)

        # A job is picked up by one of them; kill that agent mid-job.
        path, sha = repo
        script = "sleep 300.0423 & echo ready; exec sleep 300.0424"
        att = stub.add_job(str(path), sha, [{"run": script}])
        await asyncio.wait_for(att.wait_log("ready").wait(), 30)
        victim = att.agent_id
        assert victim in ex.agents
        old_pid = ex.agents[victim]
        claims_before = stub.claims[victim]
        assert host_pids("sleep 300.0423") and host_pids("sleep 300.0424")
        os.kill(old_pid, signal.SIGKILL)

        assert await asyncio.wait_for(exits.get(), 30) == (victim, -signal.SIGKILL)
        # Killed before its death was reported (SIGKILLed: reaped by init a moment later).
        assert wait_no_process("sleep 300.0423") and wait_no_process("sleep 300.0424")
        # Restarted under the same id, claiming again.
        await asyncio.wait_for(stub.wait_claims(victim, claims_before + 1), 30)
        assert ex.agents[victim] != old_pid
        assert ex.restarts[victim] == 1
        assert att.finish is None  # the server's job: mark it interrupted
    finally:
        pids = list(ex.agents.values())
        await ex.stop()
    assert ex.agents == {}
    assert all(wait_gone(p) for p in pids)
    assert exits.empty()  # stop() is not reported as a crash


async def test_each_agent_start_gets_a_fresh_token_on_its_stdin(
    stub: StubServer, tmp_path: Path, wait_gone: Callable[[int], bool]
) -> None:
    """The token comes from ``agent_token()`` once per start, on a pipe: not in the
    agent's environment or command line; the server's PLOYD_* settings stay out too."""
    minted: list[str] = []

    def mint() -> str:
        minted.append(f"one-time-{len(minted)}")
        stub.registration_tokens.add(minted[-1])
        return minted[-1]

    os.environ["PLOYD_SECRET_KEY_FOR_TEST"] = "server-secret"
    try:
        ex = LocalExecutor(stub.url, mint, tmp_path / "agents", concurrency=1,
                           python=sys.executable, claim_wait=5, stop_grace_s=5,
                           first_backoff_s=0.05)
        await ex.start()
    finally:
        del os.environ["PLOYD_SECRET_KEY_FOR_TEST"]
    try:
        await asyncio.wait_for(stub.wait_claims("local-1", 1), 30)
        assert stub.registered_with == ["one-time-0"]
        assert stub.claim_tokens["local-1"] == "credential-1"
        pid = ex.agents["local-1"]
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"one-time-0" not in environ and b"PLOYD_" not in environ
        assert b"one-time-0" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        os.kill(pid, signal.SIGKILL)
        async with stub.registered:
            await asyncio.wait_for(
                stub.registered.wait_for(lambda: len(stub.registered_with) == 2), 30)
        await asyncio.wait_for(stub.wait_claims("local-1", 2), 30)
        assert stub.registered_with == ["one-time-0", "one-time-1"]
        assert stub.claim_tokens["local-1"] == "credential-2"
    finally:
        pids = list(ex.agents.values())
        await ex.stop()
    assert all(wait_gone(p) for p in pids)


def test_gpus_are_shared_out_in_disjoint_blocks() -> None:
    from app.executors.local import share_gpus

    assert share_gpus(8, 2) == {"local-1": "0,1,2,3", "local-2": "4,5,6,7"}
    assert share_gpus(3, 2) == {"local-1": "0,1", "local-2": "2"}
    assert share_gpus(1, 3) == {"local-1": "0", "local-2": "", "local-3": ""}
    assert share_gpus(0, 2) == {}
    assert share_gpus(8, 2, visible="6,7,9") == {"local-1": "6", "local-2": "7"}
    assert share_gpus(8, 2, visible="GPU-1234") == {"local-1": "0,1,2,3", "local-2": "4,5,6,7"}


def test_an_agent_reports_only_its_share() -> None:
    from app.agent.hardware import visible_gpus
    from app.protocol import Gpu

    gpus = tuple(Gpu(f"H100 #{i}", "h100", 81559) for i in range(4))
    assert visible_gpus(gpus, None) == gpus
    assert visible_gpus(gpus, "2,3") == gpus[2:]
    assert visible_gpus(gpus, "") == ()
    assert visible_gpus(gpus, "3,9") == (gpus[3],)
    assert visible_gpus(gpus, "MIG-abc") == gpus


async def test_two_local_agents_on_an_eight_gpu_machine_report_four_each(
    stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import nvidia_smi

    bin_dir = nvidia_smi.install(tmp_path / "gpu-bin", nvidia_smi.fixture("h100x8"))
    monkeypatch.setenv("PATH", nvidia_smi.path_with(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    ex = LocalExecutor(stub.url, stub.agent_token, tmp_path / "agents", concurrency=2,
                       python=sys.executable, claim_wait=5, stop_grace_s=5)
    await ex.start()
    try:
        assert ex.gpu_shares == {"local-1": "0,1,2,3", "local-2": "4,5,6,7"}
        await asyncio.wait_for(stub.wait_claims("local-1", 1), 30)
        await asyncio.wait_for(stub.wait_claims("local-2", 1), 30)
        hardware = {r["name"]: r["hardware"] for r in stub.registrations}
        assert {n: len(h["gpus"]) for n, h in hardware.items()} == {"local-1": 4, "local-2": 4}
    finally:
        await ex.stop()
