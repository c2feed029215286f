"""The agent against the in-test protocol server (tests/agent/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.agent.conftest import StubServer

from app.agent.agent import Agent
from app.agent.client import AgentClient
from app.agent.httpclient import Http
from tests.conftest import wait_no_process


@pytest.fixture
async def session() -> AsyncIterator[Http]:
    http = Http()
    yield http
    http.close()


def make_agent(stub: StubServer, session: Http, work: Path, **kw: Any) -> Agent:
    token = kw.pop("token", stub.agent_token)
    client = AgentClient(stub.url, token, http=session, backoff_s=0.01)
    return Agent(client, "test-1", work, claim_wait=kw.pop("claim_wait", 5), **kw)


async def test_runs_a_job_and_reports(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = repo
    att = stub.add_job(f"file://{path}", sha, [
        {"title": "Show", "run": "cat hello.txt; echo \"$PLOYD $STEPV\"", "env": {"STEPV": "sv"}},
        {"title": "Secret", "run": "echo token=$WANDB_API_KEY"},
    ], secrets={"WANDB_API_KEY": "wandb-abcdef-123"})
    agent = make_agent(stub, session, tmp_path / "work")
    assert await agent.run(once=True) == 0
    assert att.finish == {"result": "succeeded", "exit_code": 0, "failed_step": None,
                          "reason": None, "error": None}
    assert sorted(att.logs) == list(range(len(att.logs)))  # seq from 0, no gaps
    text = att.text
    assert "workspace: new clone" in text
    assert "hello from the repo" in text and "true sv" in text
    assert "token=***" in text and "wandb-abcdef-123" not in text
    assert [(s["index"], s["state"]) for s in att.steps] == [
        (0, "running"), (0, "succeeded"), (1, "running"), (1, "succeeded")]
    assert att.steps[1]["exit_code"] == 0
    assert att.heartbeats >= 1


async def test_second_job_reuses_the_workspace(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = repo
    first = stub.add_job(str(path), sha, [{"run": "touch ignored-by-nobody"}])
    second = stub.add_job(str(path), sha, [{"run": "true"}])
    agent = make_agent(stub, session, tmp_path / "work")
    await agent.run(once=True)
    await agent.run(once=True)
    assert "new clone" in first.text
    assert "workspace: reused" in second.text


async def test_a_forks_job_gets_a_workspace_of_its_own_removed_after(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    """A fork's job never reuses the repository's workspace (nor leaves one): what it
    plants is gone, and the next job of the repository does not see it."""
    path, sha = repo
    work = tmp_path / "work"
    base = stub.add_job(str(path), sha, [{"run": "echo base > base-was-here"}])
    fork = stub.add_job(str(path), sha, [
        {"run": "ls base-was-here || echo fresh-workspace; echo evil > planted; pwd"}],
        fork=True)
    after = stub.add_job(str(path), sha, [{"run": "ls planted || echo nothing-planted"}])
    agent = make_agent(stub, session, work)
    for _ in range(3):
        assert await agent.run(once=True) == 0
    assert base.finish and fork.finish and after.finish
    assert fork.finish["result"] == "succeeded", fork.text
    assert "new clone" in fork.text and "fresh-workspace" in fork.text
    fork_dir = next(ln for ln in fork.text.splitlines() if ln.startswith(str(work)))
    assert "fork-" in Path(fork_dir).name and not Path(fork_dir).exists()
    assert not list(work.glob("fork-*")) and not list((work / ".homes").glob("fork-*"))
    assert "workspace: reused" in after.text and "nothing-planted" in after.text


async def test_failed_step(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = repo
    att = stub.add_job(str(path), sha, [{"run": "true"}, {"run": "exit 4"}, {"run": "true"}])
    await make_agent(stub, session, tmp_path / "w").run(once=True)
    assert att.finish == {"result": "failed", "exit_code": 4, "failed_step": 1,
                          "reason": "script_failure", "error": None}
    assert {"index": 2, "state": "skipped"} in att.steps


async def test_workspace_failure_is_infrastructure(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = repo
    att = stub.add_job(str(path), "f" * 40, [{"run": "true"}])
    await make_agent(stub, session, tmp_path / "w").run(once=True)
    assert att.finish is not None
    assert att.finish["result"] == "failed" and att.finish["reason"] == "infrastructure"
    assert "f" * 40 in att.finish["error"]
    assert "error:" in att.text
    assert att.steps == []


async def test_cancel_through_heartbeat_kills_the_step(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path,
    wait_gone: Callable[[int], bool],
) -> None:
    path, sha = repo
    att = stub.add_job(str(path), sha, [
        {"run": "sleep 300 & echo $! > ../child.pid; echo ready; wait"}])
    att.cancel_on_log = "ready"  # the heartbeat in flight then answers cancel at once
    agent = make_agent(stub, session, tmp_path / "w", kill_grace_s=1)
    await asyncio.wait_for(agent.run(once=True), 20)
    assert att.finish is not None
    assert (att.finish["result"], att.finish["reason"]) == ("cancelled", "cancelled")
    assert {"index": 0, "state": "cancelled", "exit_code": att.finish["exit_code"]} in att.steps
    assert wait_gone(int((tmp_path / "w" / "child.pid").read_text()))


async def test_log_post_retried_without_doubling(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = repo
    stub.fail_next["log"] = 2
    stub.fail_next["steps"] = 1
    att = stub.add_job(str(path), sha, [{"run": "echo once-only"}])
    await make_agent(stub, session, tmp_path / "w").run(once=True)
    assert att.finish is not None and att.finish["result"] == "succeeded"
    assert att.text.count("once-only") == 1
    assert att.log_posts == len(att.logs) + 2
    assert sorted(att.logs) == list(range(len(att.logs)))


async def test_waits_for_a_job_queued_later(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = repo
    agent = make_agent(stub, session, tmp_path / "w", claim_wait=0.05)
    task = asyncio.create_task(agent.run(once=True))
    await stub.wait_claims("test-1", 3)  # two empty claims answered 204 already
    att = stub.add_job(str(path), sha, [{"run": "true"}])
    assert await asyncio.wait_for(task, 20) == 0
    assert att.finish is not None and att.finish["result"] == "succeeded"


async def test_claims_answered_empty_at_once_are_not_asked_again_in_a_tight_loop(
    stub: StubServer,
    session: Http,
    repo: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server shutting down answers every claim at once: the agent pauses between them,
    doubling up to a limit, and a claim that waited its time resets the pause."""
    path, sha = repo
    stub.answer_at_once = True
    agent = make_agent(stub, session, tmp_path / "w", claim_wait=25)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:  # recorded, not slept
        pauses.append(seconds)
        if len(pauses) == 6:
            stub.answer_at_once = False
            stub.add_job(str(path), sha, [{"run": "true"}])

    monkeypatch.setattr(agent, "_pause", pause)
    assert await asyncio.wait_for(agent.run(once=True), 30) == 0
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert stub.claims["test-1"] == 7


async def test_bad_agent_token(
    stub: StubServer, session: Http, tmp_path: Path
) -> None:
    agent = make_agent(stub, session, tmp_path / "w", token="wrong")
    assert await agent.run(once=True) == 2


async def test_terminate_lets_the_running_job_finish_then_takes_no_other(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path
) -> None:
    """SIGTERM (``terminate``) mid-job: the job runs to its end and is reported as it
    ended; no other job is claimed; ``run`` returns 0."""
    path, sha = repo
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    att = stub.add_job(str(path), sha, [{"run": f"echo ready; read line < {fifo}; echo $line"}])
    agent = make_agent(stub, session, tmp_path / "w", kill_grace_s=1)
    task = asyncio.create_task(agent.run())
    await att.wait_log("ready").wait()
    claims = stub.claims["test-1"]
    agent.terminate()
    await att.wait_log("the agent is stopping").wait()
    later = stub.add_job(str(path), sha, [{"run": "true"}])
    await asyncio.to_thread(fifo.write_text, "finished-after-sigterm\n")  # the step reads it
    assert await asyncio.wait_for(task, 20) == 0
    assert att.finish is not None and att.finish["result"] == "succeeded"
    assert "finished-after-sigterm" in att.text
    assert stub.claims["test-1"] == claims and later.agent_id is None


async def test_a_second_terminate_stops_the_job_reported_interrupted(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path,
    wait_gone: Callable[[int], bool],
) -> None:
    path, sha = repo
    att = stub.add_job(str(path), sha, [
        {"run": "sleep 300 & echo $! > ../child.pid; echo ready; wait"}])
    agent = make_agent(stub, session, tmp_path / "w", kill_grace_s=1)
    task = asyncio.create_task(agent.run())
    await att.wait_log("ready").wait()
    agent.terminate()
    await att.wait_log("the agent is stopping").wait()
    agent.terminate()
    assert await asyncio.wait_for(task, 20) == 0
    assert att.finish is not None
    assert (att.finish["result"], att.finish["reason"]) == ("interrupted", "infrastructure")
    assert "SIGTERM again" in (att.finish["error"] or "")
    assert wait_gone(int((tmp_path / "w" / "child.pid").read_text()))


async def test_the_grace_period_ending_stops_the_job(
    stub: StubServer, session: Http, repo: tuple[Path, str], tmp_path: Path,
    wait_gone: Callable[[int], bool],
) -> None:
    path, sha = repo
    att = stub.add_job(str(path), sha, [
        {"run": "sleep 300 & echo $! > ../child.pid; echo ready; wait"}])
    agent = make_agent(stub, session, tmp_path / "w", kill_grace_s=1, grace_s=0.3)
    task = asyncio.create_task(agent.run())
    await att.wait_log("ready").wait()
    agent.terminate()
    assert await asyncio.wait_for(task, 20) == 0
    assert att.finish is not None and att.finish["result"] == "interrupted"
    assert "grace period ended" in (att.finish["error"] or "")
    assert "the agent was stopped" in att.text
    assert wait_gone(int((tmp_path / "w" / "child.pid").read_text()))


async def test_agent_process_once_and_sigterm(
    stub: StubServer, repo: tuple[Path, str], tmp_path: Path,
    wait_gone: Callable[[int], bool],
) -> None:
    """`python -m app.agent` as a process: it registers with its token and claims with
    the credential it got; --once runs one job and exits 0; SIGTERM mid-job lets the job
    run, a second SIGTERM stops it (reported interrupted), and the agent exits 0."""
    path, sha = repo
    env = {**os.environ, "PLOYD_AGENT_TOKEN": stub.agent_token}
    args = [sys.executable, "-m", "app.agent", "--server", stub.url, "--agent-id", "p-1",
            "--work-dir", str(tmp_path / "w"), "--claim-wait", "5", "--kill-grace", "1",
            "--labels", "rack=b2"]
    done = stub.add_job(str(path), sha, [{"run": "echo from-process"}])
    proc = await asyncio.create_subprocess_exec(*args, "--once", env=env)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert done.finish is not None and done.finish["result"] == "succeeded"
    assert "from-process" in done.text
    (registration,) = stub.registrations
    assert registration["name"] == "p-1" and registration["labels"] == {"rack": "b2"}
    assert registration["version"] and registration["hardware"]["cpus"] >= 1
    assert stub.claim_tokens["p-1"] == "credential-1"  # not the registration token

    # Sandboxed (its own pid namespace): the sleep is found by its unusual argument.
    att = stub.add_job(str(path), sha, [{"run": "sleep 300.0417 & echo ready; wait"}])
    proc = await asyncio.create_subprocess_exec(*args, env=env)
    await asyncio.wait_for(att.wait_log("ready").wait(), 30)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(att.wait_log("the agent is stopping").wait(), 30)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert att.finish is not None and att.finish["result"] == "interrupted"
    assert wait_no_process("sleep 300.0417")


async def test_a_refused_registration_exits_2_without_claiming(
    stub: StubServer, session: Http, tmp_path: Path
) -> None:
    from app.protocol import Hardware, Registration

    client = AgentClient(stub.url, "used-up-token", http=session, backoff_s=0.01)
    agent = Agent(client, "r-1", tmp_path / "w", claim_wait=1,
                  registration=Registration("r-1", "0.1.0", Hardware(cpus=2, memory_mb=0,
                                                                      disk_gb=0)))
    assert await agent.run() == 2
    assert stub.claims == {}


def test_a_restart_into_a_new_version_gets_the_credential_on_a_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the self-update re-executes with: the arguments less the used-up token, and
    the agent's name and credential on an inherited pipe, read once."""
    from app.agent.__main__ import handover, parse_args, without_token

    argv = ["--server", "S", "--token", "T", "--agent-id", "a", "--token-fd=0", "--once"]
    assert without_token(argv) == ["--server", "S", "--agent-id", "a", "--once"]
    extra = handover(lambda: "lab-1", lambda: "the-credential")()
    assert extra[0] == "--credential-fd" and os.get_inheritable(int(extra[1]))
    monkeypatch.setenv("PLOYD_AGENT_TOKEN", "used-up")
    args = parse_args(["--server", "S", "--agent-id", "a", *extra])
    assert (args.agent_id, args.credential) == ("lab-1", "the-credential")
    assert "PLOYD_AGENT_TOKEN" not in os.environ  # gone from the environment either way
    with pytest.raises(OSError):
        os.fstat(int(extra[1]))  # read once, then closed
