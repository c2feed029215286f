"""End to end through `ployd serve`: API -> engine -> local agents -> bash -> logs."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import host_pids, wait_no_process

from .conftest import Harness

CHAIN = """
version: 1
jobs:
  a:
    steps:
      - name: first
        run: echo "a ran"; echo hello from a
  b:
    needs: [a]
    steps:
      - run: echo "b ran"
  c:
    needs: [b]
    steps:
      - run: echo "c ran"
  broken:
    retry: {max: 0}
    steps:
      - run: echo before; false; echo unreached
  after-broken:
    needs: [broken]
    steps:
      - run: echo should not run
  bench:
    when: manual
    steps:
      - run: echo manual
"""


def with_out(text: str, out: Path) -> str:
    return text.replace("version: 1\n", f"version: 1\ndefaults:\n  env:\n    OUT: {out}\n", 1)


async def test_pipeline_runs_dag_order_logs_and_results(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    repo, sha = make_repo({".ployd.yml": CHAIN})
    async with serve(agents=2) as h:
        h: Harness
        pid = await h.start(repo)
        p = await h.finished(pid)
        states = {j.name: j.state for j in p.jobs}
        assert states == {
            "a": "succeeded",
            "b": "succeeded",
            "c": "succeeded",
            "broken": "failed",
            "after-broken": "skipped",
            "bench": "manual",
        }
        assert p.state == "failed" and p.sha == sha
        # needs: each ran after the one it needs had finished.
        a, b, c = (h.job(pid, n).attempts[0] for n in "abc")
        assert a.finished_at <= b.started_at and b.finished_at <= c.started_at
        assert all(f"{n} ran" in h.log(pid, n).splitlines() for n in "abc")
        assert "hello from a" in h.log(pid, "a")
        broken_log = h.log(pid, "broken")
        assert "before" in broken_log.splitlines()
        assert "unreached" not in broken_log.splitlines()
        broken = h.job(pid, "broken").attempts[0]
        assert broken.exit_code == 1 and broken.failed_step == 0
        assert broken.end_reason == "script_failure"
        status, body = await h.get(f"/api/v1/pipelines/{pid}")
        assert status == 200 and body["state"] == "failed"
        job_a = next(j for j in body["jobs"] if j["name"] == "a")
        status, text = await h.get(f"/api/v1/jobs/{job_a['id']}/log")
        assert status == 200 and "hello from a" in text
        # The manual job runs on request, and the pipeline follows.
        bench = h.job(pid, "bench")
        status, _ = await h.post(f"/api/v1/jobs/{bench.id}/retry")
        assert status == 201
        await h.until(lambda: h.job(pid, "bench").state == "succeeded", "the manual job")


async def test_workspace_is_reused_on_the_second_run(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = "version: 1\njobs:\n  t:\n    steps:\n      - run: cat version.txt\n"
    repo, _ = make_repo({".ployd.yml": config, "version.txt": "one\n"})
    async with serve(agents=1) as h:
        first = await h.start(repo)
        assert (await h.finished(first)).state == "succeeded"
        assert "one" in h.log(first, "t")
        make_repo({"version.txt": "two\n"}, path=repo)
        second = await h.start(repo)
        assert (await h.finished(second)).state == "succeeded"
        log1, log2 = h.log(first, "t"), h.log(second, "t")
        assert "two" in log2
        assert "workspace: new clone" in log1 and "workspace: reused" not in log1
        assert "workspace: reused" in log2 and "new clone" not in log2


async def test_cancel_mid_step_kills_the_process_group(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
    wait_gone: Callable[[int], bool],
) -> None:
    config = (
        "version: 1\njobs:\n  long:\n    steps:\n"
        "      - run: sleep 300.0431 & echo READY-$((6*7)); wait\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    async with serve(agents=1) as h:
        pid = await h.start(repo)
        await h.log_contains(pid, "long", "READY-42")
        assert host_pids("sleep 300.0431")
        status, _ = await h.post(f"/api/v1/pipelines/{pid}/cancel")
        assert status == 200
        p = await h.finished(pid)
        assert p.state == "cancelled"
        assert h.job(pid, "long").state == "cancelled"
        assert wait_no_process("sleep 300.0431")


async def test_step_timeout(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = (
        "version: 1\njobs:\n  slow:\n    retry: {max: 0}\n    steps:\n"
        "      - run: echo going; sleep 300\n        timeout: 1s\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    async with serve(agents=1) as h:
        pid = await h.start(repo)
        p = await h.finished(pid)
        assert h.job(pid, "slow").state == "timed_out"
        assert p.state == "failed"


async def test_killed_agent_interrupts_and_the_job_is_retried(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    config = (
        "version: 1\njobs:\n  t:\n    steps:\n"
        "      - run: |\n"
        '          if [ "$PLOYD_ATTEMPT" = 1 ]; then\n'
        "            echo WAITING-$((6*7)); sleep 300.0432\n"
        "          fi\n"
        "          echo second attempt\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    async with serve(agents=1) as h:
        pid = await h.start(repo)
        await h.log_contains(pid, "t", "WAITING-42")
        executor = h.server.executor
        assert executor is not None
        (agent_pid,) = executor.agents.values()  # type: ignore[attr-defined]
        os.kill(agent_pid, signal.SIGKILL)
        p = await h.finished(pid)
        # The killed agent's step was killed too, before its retry ran.
        assert wait_no_process("sleep 300.0432")
        assert p.state == "succeeded"
        first, second = h.job(pid, "t").attempts
        assert first.state == "interrupted" and first.end_reason == "infrastructure"
        assert second.state == "succeeded"
        assert second.reason == "retry 1 of 2: the machine or agent failed"
        assert "second attempt" in h.log(pid, "t")


async def test_secrets_are_masked_in_the_log(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    config = (
        "version: 1\njobs:\n  t:\n    secrets: [API_TOKEN]\n    steps:\n"
        '      - run: echo "token is $API_TOKEN"\n'
    )
    repo, _ = make_repo({".ployd.yml": config})
    value = "s3cr3t-value-xyz"
    async with serve(agents=1, secrets=lambda _p, _j: {"API_TOKEN": value}) as h:
        pid = await h.start(repo)
        assert (await h.finished(pid)).state == "succeeded"
        log = h.log(pid, "t")
        assert "token is ***" in log
        assert value not in log


async def test_restart_loses_no_queued_job(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": "version: 1\njobs:\n  t: {steps: [{run: echo ok}]}\n"})
    async with serve(agents=0) as h:
        pid = await h.start(repo)
        assert h.pipeline(pid).jobs[0].state == "queued"
    async with serve(agents=1) as h:
        assert (await h.finished(pid)).state == "succeeded"


async def test_api_errors(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]], tmp_path: Path
) -> None:
    bad, _ = make_repo(
        {".ployd.yml": "version: 1\njobs:\n  a:\n    needs: [nope]\n    steps: []\n"}
    )
    async with serve(agents=0) as h:
        status, body = await h.post("/api/v1/pipelines", {"repo": str(bad)})
        assert status == 422
        assert all({"file", "line", "column", "message"} <= set(e) for e in body["errors"])
        assert any("nope" in e["message"] for e in body["errors"])
        status, body = await h.post("/api/v1/pipelines", {"repo": str(tmp_path / "nothing")})
        assert status == 400 and "not a git repository" in body["error"]
        async with h.http.post(h.url + "/api/v1/pipelines", data=b"{not json") as r:
            assert r.status == 400 and "not JSON" in (await r.json())["error"]
        status, _ = await h.get("/api/v1/pipelines/999")
        assert status == 404
        status, body = await h.post("/api/v1/agent/claim", {"agent_id": "x"})
        assert status == 401
        status, body = await h.get("/healthz")
        assert status == 200 and body["status"] == "ok"


async def test_admin_token_guards_the_api(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    async with serve(agents=0, admin_token="let-me-in") as h:
        status, _ = await h.get("/api/v1/pipelines")
        assert status == 401
        status, body = await h.get(
            "/api/v1/pipelines", headers={"Authorization": "Bearer let-me-in"}
        )
        assert status == 200 and body == {"pipelines": []}


def test_settle_heap_puts_what_serves_out_of_the_collectors_sight() -> None:
    """What ``ployd serve`` does once started: the objects alive then are frozen (its
    full collections no longer walk them: a 176 ms pause at 200 deliveries/s before);
    cyclic garbage made before is collected first, not frozen with them."""
    import gc
    import weakref

    from app.server import settle_heap

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.collect()
    before = gc.get_freeze_count()
    garbage = weakref.ref(Cycle())  # unreachable, but a cycle: only the collector frees it
    try:
        settle_heap()
        assert gc.get_freeze_count() > before
        assert garbage() is None  # collected, not frozen
    finally:
        gc.unfreeze()
