"""The service commands (`ployd trigger/status/logs/retry/cancel/open`) against a real
PloyD: `ployd serve` as a process on loopback for `trigger --follow` and serve's log
lines, the in-process server (``serve`` fixture) for the others. The commands run in a
thread (they are synchronous HTTP clients; the server's loop keeps serving)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli import main as ployd
from app.core.links import verify_job

from .conftest import Harness

ROOT = Path(__file__).resolve().parents[2]

SMALL = """\
version: 1
jobs:
  build:
    steps:
      - name: compile
        run: echo compiled
  test:
    needs: [build]
    steps:
      - run: echo "tests pass"
  broken:
    retry: {max: 0}
    steps:
      - run: |
          echo before
          echo "FileNotFoundError: data.csv" >&2
          exit 3
  after-broken:
    needs: [broken]
    steps:
      - run: echo never
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLOYD_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _read_line(proc: subprocess.Popen[str], pattern: str, deadline_s: float = 60.0) -> str:
    """The first line of the process's standard output matching ``pattern``."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + deadline_s
    seen = []
    while time.monotonic() < end:
        if not sel.select(timeout=end - time.monotonic()):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r} from ployd serve: {seen}")


Served = Callable[..., tuple[str, "subprocess.Popen[str]"]]


@pytest.fixture
def served(tmp_path: Path, open_dir: Path) -> Iterator[Served]:
    """``served(*flags)`` -> (url, process): `ployd serve --port 0` running; stopped
    (SIGTERM) at the end of the test."""
    procs: list[subprocess.Popen[str]] = []
    files: list[Any] = []

    def start(*flags: str) -> tuple[str, subprocess.Popen[str]]:
        err = open(tmp_path / "serve.err", "w")  # noqa: SIM115 (closed at the end)
        files.append(err)
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", "0", "--data-dir",
             str(tmp_path / "data"), *flags],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=_env(PLOYD_LOCAL_AGENTS="2", PLOYD_WORK_DIR=str(open_dir / "work")),
            cwd=tmp_path,
        )  # fmt: skip
        procs.append(proc)
        line = _read_line(proc, r"listening on http://")
        return re.search(r"(http://\S+)", line).group(1), proc  # type: ignore[union-attr]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    for f in files:
        f.close()


def stop(proc: subprocess.Popen[str], tmp_path: Path) -> str:
    """Stop `ployd serve` and return what it wrote on standard error."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    return (tmp_path / "serve.err").read_text()


def test_trigger_follow_prints_states_result_and_url_and_serve_logs_each_end(
    served: Served,
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
) -> None:
    repo, sha = make_repo({".ployd.yml": SMALL})
    url, proc = served()
    p = subprocess.run(
        [sys.executable, "-m", "app", "trigger", str(repo), "--follow"],
        capture_output=True, text=True, timeout=180, env=_env(PLOYD_URL=url), cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 1, p.stderr  # the pipeline failed
    lines = p.stdout.splitlines()
    assert len(lines) > 3, p.stdout + p.stderr
    head = rf"started: {re.escape(str(repo))} at refs/heads/main \({sha[:12]}\)"
    assert re.fullmatch(rf"pipeline (\d+) {head}", lines[0]), p.stderr
    pid = int(lines[0].split()[1])
    assert lines[1].strip() == f"{url}/pipelines/{pid}"
    final = {}
    for line in lines[2:-1]:
        name, state, *rest = line.split()
        final[name] = (state, rest)
    assert {n: s for n, (s, _) in final.items()} == {
        "build": "succeeded", "test": "succeeded", "broken": "failed",
        "after-broken": "skipped",
    }  # fmt: skip
    # a finished job's line has its duration and its page
    state, rest = final["broken"]
    assert re.fullmatch(r"\d+\.\ds", rest[0]) and re.fullmatch(rf"{url}/runs/\d+", rest[1])
    assert "running" in p.stdout or "queued" in p.stdout  # states as they changed
    assert re.fullmatch(rf"pipeline {pid} failed in \S+: {url}/pipelines/{pid}", lines[-1])

    err = stop(proc, tmp_path)
    assert "alembic" not in err.lower()  # a quiet start
    assert re.search(rf"pipeline {pid} {head}, 4 jobs: {url}/pipelines/{pid}", err), err
    assert re.search(rf"job \d+ build of pipeline {pid} succeeded in \S+: {url}/runs/\d+", err)
    assert re.search(
        rf"job \d+ broken of pipeline {pid} failed in \S+ \(script_failure, exit 3\): "
        rf"{url}/runs/\d+", err)  # fmt: skip
    assert re.search(rf"job \d+ after-broken of pipeline {pid} skipped", err)
    assert re.search(rf"pipeline {pid} failed in \S+: {url}/pipelines/{pid}", err)
    assert len(re.findall(rf"of pipeline {pid} ", err)) == 4  # one line per job end


def test_trigger_follow_on_this_repository(served: Served, tmp_path: Path) -> None:
    """PloyD's own .ployd.yml, at this checkout's HEAD, through `ployd serve`."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    import yaml

    jobs = yaml.safe_load((ROOT / ".ployd.yml").read_text())["jobs"]
    url, proc = served()
    p = subprocess.run(
        [sys.executable, "-m", "app", "trigger", "--follow"],
        capture_output=True, text=True, timeout=300, env=_env(PLOYD_URL=url), cwd=ROOT / "app",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("pipeline ") and f" started: {ROOT} at " in lines[0]
    pid = int(lines[0].split()[1])
    ended = [line.split() for line in lines[2:-1] if "/runs/" in line]
    names = {line.strip().split("  ")[0] for line in lines[2:-1]}
    assert {n.split(" (")[0] for n in names} == set(jobs)  # every job, matrix children too
    assert all(row[-1].startswith(f"{url}/runs/") for row in ended)
    assert lines[-1].startswith(f"pipeline {pid} succeeded in ")
    assert lines[-1].endswith(f": {url}/pipelines/{pid}")
    stop(proc, tmp_path)


def test_serve_log_format_json(
    served: Served,
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
) -> None:
    one = "version: 1\njobs:\n  one:\n    steps:\n      - run: 'true'\n"
    repo, _ = make_repo({".ployd.yml": one})
    url, proc = served("--log-format", "json")
    p = subprocess.run(
        [sys.executable, "-m", "app", "trigger", str(repo), "--follow"],
        capture_output=True, text=True, timeout=180, env=_env(PLOYD_URL=url), cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    records = [json.loads(line) for line in stop(proc, tmp_path).splitlines()]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert not [r for r in records if r["logger"].startswith("alembic")]
    events = [r for r in records if r["logger"] == "ployd.pipelines"]
    assert [r["event"] for r in events] == ["pipeline_started", "job_ended", "pipeline_ended"]
    started, job, ended = events
    pid = started["pipeline_id"]
    assert started["url"] == f"{url}/pipelines/{pid}" and started["jobs"] == 1
    assert job["job"] == "one" and job["state"] == "succeeded"
    assert job["url"] == f"{url}/runs/{job['job_id']}" and job["duration_s"] >= 0
    assert ended["state"] == "succeeded" and ended["url"] == started["url"]


# ---- the other commands, against the in-process server ------------------------------


async def cli(h: Harness, *argv: str, token: str | None = None) -> int:
    os.environ["PLOYD_URL"] = h.url
    if token is not None:
        os.environ["PLOYD_ADMIN_TOKEN"] = token
    try:
        return await asyncio.to_thread(ployd, list(argv))
    finally:
        os.environ.pop("PLOYD_URL", None)
        os.environ.pop("PLOYD_ADMIN_TOKEN", None)


@pytest.fixture(autouse=True)
def _no_ployd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("PLOYD_URL", "PLOYD_ADMIN_TOKEN"):
        monkeypatch.delenv(k, raising=False)


async def test_status_logs_open_retry_cancel(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ployd.pipelines")
    repo, _ = make_repo({".ployd.yml": SMALL})
    async with serve(agents=2) as h:
        h: Harness
        pid = await h.start(repo)
        await h.finished(pid)
        broken = h.job(pid, "broken")

        assert await cli(h, "status") == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == ["ID", "STATE", "REPOSITORY", "REF", "SHA", "TOOK", "URL"]
        assert out[1].split()[:3] == [str(pid), "failed", str(repo)]
        assert out[1].split()[-1] == f"{h.url}/pipelines/{pid}"

        assert await cli(h, "status", str(pid)) == 1  # a failed pipeline
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(f"pipeline {pid} failed: {repo} at refs/heads/main")
        assert out[1].strip() == f"{h.url}/pipelines/{pid}"
        rows = {r.split()[1]: r.split() for r in out[3:]}
        assert rows["broken"][2] == "failed" and rows["broken"][-1] == f"{h.url}/runs/{broken.id}"
        assert rows["after-broken"][2] == "skipped"
        assert "(" in " ".join(rows["after-broken"])  # its reason

        # logs: by id, by PIPELINE/NAME, by its page's URL
        for ref in (str(broken.id), f"{pid}/broken", f"{h.url}/runs/{broken.id}"):
            assert await cli(h, "logs", ref) == 0
            assert "FileNotFoundError: data.csv" in capsys.readouterr().out
        assert await cli(h, "logs", f"{pid}/nope") == 1
        assert "has no job 'nope' (jobs: build, test, broken, after-broken)" in (
            capsys.readouterr().err
        )

        assert await cli(h, "open", "--print", str(broken.id)) == 0
        link = capsys.readouterr().out.strip()
        m = re.fullmatch(rf"{h.url}/runs/{broken.id}\?t=(\S+)", link)
        assert m, link
        status, page = await h.get(link[len(h.url):])
        assert status == 200 and "data.csv" in page  # the signed link opens the log page
        tenant = h.server.services.engine.db  # the token is this job's
        from app.store.runs import job_tenant

        verify_job(h.server.services.settings.secret_key_bytes(), m.group(1), broken.id,
                   job_tenant(tenant, broken.id) or 0)  # fmt: skip

        # retry the failed job; follow its new attempt's log until it ends
        assert await cli(h, "retry", f"{pid}/broken") == 0
        out = capsys.readouterr().out
        assert out.startswith(f"job {broken.id} (broken): attempt ") and "queued" in out
        assert await cli(h, "logs", "--follow", str(broken.id)) == 1  # it fails again
        followed = capsys.readouterr().out
        assert "FileNotFoundError: data.csv" in followed
        assert len(h.job(pid, "broken").attempts) == 2
        assert h.job(pid, "broken").attempts[-1].state == "failed"
        await h.finished(pid)
        # serve's lines: each job end once, the retried job's second end too
        said = [r.getMessage() for r in caplog.records if r.name == "ployd.pipelines"]
        url = f"{h.url}/runs/{broken.id}"
        ends = [m for m in said if m.startswith(f"job {broken.id} broken ")]
        assert ends[0].endswith(f"failed in {ends[0].split(' in ')[1].split()[0]} "
                                f"(script_failure, exit 3): {url}")  # fmt: skip
        assert ", attempt 2 (script_failure, exit 3)" in ends[1] and len(ends) == 2
        assert said.count(f"pipeline {pid} failed in " + said[-1].split(" in ")[1]) >= 1
        assert sum(m.startswith(f"pipeline {pid} started") for m in said) == 1
        assert sum(m.startswith(f"pipeline {pid} running again") for m in said) == 1
        # 4 job ends, then the retried job's and its dependent's (skipped again)
        assert sum(f"of pipeline {pid} " in m for m in said) == 6, said

        assert await cli(h, "cancel", str(pid)) == 0
        assert capsys.readouterr().out.strip() == f"pipeline {pid}: 0 jobs cancelled"
        assert await cli(h, "cancel", "--job", str(broken.id)) == 1
        assert "already finished" in capsys.readouterr().err
        assert await cli(h, "cancel", "x y") == 1
        assert "is not a job" in capsys.readouterr().err

        # retry on other hardware (a CUDA out of memory's way out): checked by the service
        assert await cli(h, "retry", str(broken.id), "--on", "h1000") == 1
        err = capsys.readouterr().err
        assert err.startswith("ployd retry: hardware: unknown hardware 'h1000'; did you mean")
        assert len(h.job(pid, "broken").attempts) == 2  # nothing was queued
        assert await cli(h, "retry", f"{pid}/broken", "--on", "L4") == 0
        out = capsys.readouterr().out
        assert out.startswith(f"job {broken.id} (broken): attempt ") and "queued on l4:1" in out
        again = h.job(pid, "broken")
        assert again.hardware == ["l4:1"] and again.attempts[-1].reason == "retried by api on l4:1"
        assert await cli(h, "cancel", str(pid)) == 0  # no l4 here: it (and after-broken) waits
        assert capsys.readouterr().out.strip() == f"pipeline {pid}: 2 jobs cancelled"


async def test_cancel_a_running_job_and_follow_its_pipeline(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = (
        "version: 1\njobs:\n  long:\n    steps:\n"
        "      - run: echo READY-$((6*7)); sleep 300\n"
        "  later:\n    when: manual\n    steps:\n      - run: echo later\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    async with serve(agents=1) as h:
        h: Harness
        pid = await h.start(repo)
        await h.log_contains(pid, "long", "READY-42")
        # a running job and pipeline: how long so far
        assert await cli(h, "status", str(pid)) == 0
        rows = {r.split()[1]: r for r in capsys.readouterr().out.splitlines()[3:]}
        assert re.search(r" running +\d+\.\ds so far +1 ", rows["long"]), rows["long"]
        assert re.search(r" manual +- +0 ", rows["later"]), rows["later"]
        assert await cli(h, "status") == 0
        (row,) = capsys.readouterr().out.splitlines()[1:]
        assert re.search(r" running .* \d+\.\ds so far +http://", row), row
        assert await cli(h, "logs", "--follow", f"{pid}/later") == 1  # it would wait forever
        assert "has no log yet: it is manual" in capsys.readouterr().err
        assert await cli(h, "cancel", f"{pid}/long") == 0
        assert capsys.readouterr().out.strip().startswith(f"job {h.job(pid, 'long').id} (long): ")
        await h.finished(pid)
        assert h.pipeline(pid).state == "cancelled"
        assert await cli(h, "status", str(pid)) == 1
        assert "long" in capsys.readouterr().out


async def test_the_admin_token(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with serve(agents=0, admin_token="s3cret-admin-token") as h:
        assert await cli(h, "status") == 1
        assert "set PLOYD_ADMIN_TOKEN" in capsys.readouterr().err
        assert await cli(h, "status", token="s3cret-admin-token") == 0
        assert "no pipelines yet" in capsys.readouterr().out


def test_unreachable_service_says_where(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("PLOYD_URL", "http://127.0.0.1:9")
    assert ployd(["status"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach PloyD at http://127.0.0.1:9" in err and "PLOYD_URL" in err


def test_trigger_needs_the_repository_top(
    make_repo: Callable[..., tuple[Path, str]], capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    repo, _ = make_repo({".ployd.yml": SMALL, "sub/other.yml": SMALL})
    assert ployd(["trigger", str(repo / "sub" / "other.yml")]) == 2
    assert "the service reads .ployd.yml at the top of the repository" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert ployd(["trigger", str(tmp_path / "plain")]) == 2
    assert "not in a git repository" in capsys.readouterr().err


def test_trigger_from_a_subdirectory_with_uncommitted_changes(
    make_repo: Callable[..., tuple[Path, str]], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo, _ = make_repo({".ployd.yml": SMALL, "src/a.py": "x = 1\n"})
    (repo / "src" / "a.py").write_text("x = 2\n")
    monkeypatch.chdir(repo / "src")
    monkeypatch.setenv("PLOYD_URL", "http://127.0.0.1:9")
    assert ployd(["trigger"]) == 1  # the repository found from here; no server there
    err = capsys.readouterr().err
    assert f"{repo} has uncommitted changes: the pipeline runs the commit at HEAD" in err
    assert "cannot reach PloyD at http://127.0.0.1:9" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from app import __version__

    with pytest.raises(SystemExit) as e:
        ployd(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"ployd {__version__}"
