"""kill -9 of a real `ployd serve` (a subprocess) while its local agent runs a long step,
then a restart on the same data directory and database: the running attempt is
interrupted and retried at once, on SQLite and on PostgreSQL (not after the 60 s
heartbeat timeout). Waits are polls on state with deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import host_pids, wait_no_process

ROOT = Path(__file__).resolve().parents[2]
MARKER = "sleep 300.0437"
CONFIG = (
    "version: 1\njobs:\n  t:\n    steps:\n"
    "      - run: |\n"
    '          if [ "$PLOYD_ATTEMPT" = 1 ]; then\n'
    f"            echo WAITING-$((6*7)); {MARKER}\n"
    "          fi\n"
    "          echo second attempt\n"
)
RETRIED_WITHIN_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`python -m app serve` in its own session, on a fixed port."""

    def __init__(self, data_dir: Path, db_url: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")}
        self.env.update(
            PLOYD_DATA_DIR=str(data_dir),
            PLOYD_DATABASE_URL=db_url,
            PLOYD_PORT=str(port),
            PLOYD_LOCAL_AGENTS="1",
            PYTHONPATH=str(ROOT),
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        ctype_json = raw[:1] in (b"{", b"[")
        return status, json.loads(raw) if ctype_json else raw.decode()

    def up(self) -> bool:
        try:
            return self.call("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGKILL every process group this started (servers, agents, their steps)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def until(check: Callable[[], Any], what: str, deadline_s: float) -> Any:
    """Poll ``check()`` until it returns something truthy; fail at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"timed out after {deadline_s}s waiting for {what}"
        time.sleep(0.05)  # a poll interval, not a wait for something to happen


@pytest.fixture
def serve_proc(db_url: str, tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path / "data", db_url, _free_port())
    try:
        yield s
    finally:
        s.stop()
        for pid in host_pids(MARKER):  # a step an orphaned agent left (ours)
            os.kill(pid, signal.SIGKILL)


def test_kill_9_then_restart_interrupts_and_retries_the_running_attempt(
    serve_proc: Serve, make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    first = serve_proc.start()
    until(serve_proc.up, "the server to answer /healthz", 60)
    status, body = serve_proc.call("POST", "/api/v1/pipelines", {"repo": str(repo)})
    assert status == 201, body
    pid = body["id"]
    job_id = body_job(serve_proc, pid)["id"]

    def step_running() -> bool:
        status, text = serve_proc.call("GET", f"/api/v1/jobs/{job_id}/log")
        return status == 200 and "WAITING-42" in text

    until(step_running, "the long step to start", 60)
    first.send_signal(signal.SIGKILL)  # the server only: its agent and step live on
    first.wait(timeout=10)

    serve_proc.start()
    until(serve_proc.up, "the restarted server to answer /healthz", 60)
    back = time.monotonic()

    def retried() -> list[dict[str, Any]] | None:
        status, job = serve_proc.call("GET", f"/api/v1/jobs/{job_id}")
        attempts: list[dict[str, Any]] = job["attempts"] if status == 200 else []
        return attempts if len(attempts) >= 2 else None

    attempts = until(retried, "a second attempt", RETRIED_WITHIN_S)
    took = time.monotonic() - back
    assert took < RETRIED_WITHIN_S
    one = attempts[0]
    assert one["state"] == "interrupted" and one["end_reason"] == "infrastructure"
    assert one["error"] == "the server restarted while the job ran"
    assert attempts[1]["reason"] == "retry 1 of 2: the machine or agent failed"

    def finished() -> dict[str, Any] | None:
        status, p = serve_proc.call("GET", f"/api/v1/pipelines/{pid}")
        return p if status == 200 and p["state"] != "running" else None

    p = until(finished, "the retried job to finish", 60)
    assert p["state"] == "succeeded"
    status, job = serve_proc.call("GET", f"/api/v1/jobs/{job_id}")
    assert [a["state"] for a in job["attempts"]] == ["interrupted", "succeeded"]
    status, log = serve_proc.call("GET", f"/api/v1/jobs/{job_id}/log")
    assert "second attempt" in log
    # The orphaned agent of the killed server heard 409 for its attempt and stopped
    # its step.
    assert wait_no_process(MARKER, deadline_s=30)


def body_job(s: Serve, pid: int) -> dict[str, Any]:
    status, p = s.call("GET", f"/api/v1/pipelines/{pid}")
    assert status == 200, p
    (job,) = p["jobs"]
    return dict(job)
