"""The hostile-job suite: a job on the local executor (the embedded default) goes after
everything of the server, of its agent and of another repository that it must not reach.

The server holds an admin token, a secret key, a webhook secret and an AWS key in its
environment, and a stored secret of another repository; that repository's job ran first
on the same agent (its workspace, home, ``.git/config`` and cache exist). The hostile
step then reads every path it knows of, walks ``/proc``, and tries each token-like
string it found against the agent API. It prints what it got to its log (it cannot write
anywhere else): every read fails, no secret value appears, no claim succeeds.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.agent.workspace import workspace_dir
from tests.conftest import bwrap_or_skip

from .conftest import Harness
from .test_hostile_step import TRY_TOKEN

ADMIN = "hostile-suite-admin-token-0123456789abcdef"
WEBHOOK = "hostile-suite-webhook-secret-0123456789"
SECRET_KEY = "hostile-suite-secret-key-0123456789abcdefghij"
AWS_KEY = "hostile-suite-aws-secret-0123456789abcdefgh"
OTHER_SECRET = "other-repos-stored-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

OTHER_CONFIG = """\
version: 1
jobs:
  build:
    secrets: [OTHER_TOKEN]
    cache: {key: other-cache, paths: [.cache-dir, ~/.other-home]}
    steps:
      - run: |
          mkdir -p .cache-dir ~/.other-home
          echo "$OTHER_TOKEN" > private.txt
          echo "$OTHER_TOKEN" > .cache-dir/c
          echo "$OTHER_TOKEN" > ~/.other-home/h
          test -s private.txt && echo "other: wrote $(wc -c < private.txt) bytes"
"""

HUNT = r'''
import json, os, re, sys, urllib.error, urllib.request

targets = json.loads(os.environ["TARGETS"])
server = os.environ["SERVER"]
tokenish = re.compile(r"[A-Za-z0-9_.-]{24,}")
got, errors, found = {}, {}, set()

def read(path):
    try:
        if os.path.isdir(path):
            text = "\n".join(sorted(os.listdir(path)))
        else:
            with open(path, "rb") as f:
                text = f.read(1 << 16).replace(b"\0", b"\n").decode(errors="replace")
    except OSError as e:
        errors[path] = e.strerror or str(e)
        return
    got[path] = text
    found.update(tokenish.findall(text))

found.update(tokenish.findall("\n".join(f"{k}={v}" for k, v in os.environ.items())))
for path in targets:
    read(path)
pids = [p for p in os.listdir("/proc") if p.isdigit()]
for pid in pids:
    for name in ("environ", "cmdline"):
        read(f"/proc/{pid}/{name}")

''' + TRY_TOKEN + r'''
tried = {t: [post("/claim", t, {"agent_id": "thief", "wait": 0}),
             post("/register", t, {"name": "thief", "version": "x", "hardware": {"cpus": 1}})]
         for t in sorted(found)}
print("REPORT " + json.dumps({"env": dict(os.environ), "got": got, "errors": errors,
                              "pids": pids, "tried": tried, "uid": os.getuid()}))
'''


def _hunt_config(server: str, targets: list[str]) -> str:
    env = json.dumps({"SERVER": server, "TARGETS": json.dumps(targets)})
    return (
        "version: 1\njobs:\n  hunt:\n    retry: {max: 0}\n"
        f"    env: {env}\n"
        "    steps:\n      - run: python3 hunt.py\n"
    )


def _report(log: str) -> dict[str, Any]:
    line = next(ln for ln in log.splitlines() if ln.startswith("REPORT "))
    return dict(json.loads(line.removeprefix("REPORT ")))


async def test_a_hostile_job_on_the_local_executor_reaches_nothing(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    bwrap_or_skip()
    # What the server process has in its environment (the agents inherit the non-PLOYD_).
    monkeypatch.setenv("PLOYD_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("PLOYD_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("PLOYD_GITHUB_WEBHOOK_SECRET", WEBHOOK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_KEY)
    async with serve(agents=1, admin_token=ADMIN, secret_key=SECRET_KEY) as h:
        h: Harness
        settings = h.server.services.settings
        data_dir, work_dir = settings.data_dir.resolve(), settings.workspaces_dir.resolve()

        # Another repository, with a stored secret, runs first on the same agent.
        other, _ = make_repo({".ployd.yml": OTHER_CONFIG})
        put = {"repo": str(other), "name": "OTHER_TOKEN", "value": OTHER_SECRET}
        async with h.http.put(h.url + "/api/v1/secrets", json=put, headers=AUTH) as r:
            assert r.status == 200, await r.text()
        status, body = await h.post("/api/v1/pipelines", {"repo": str(other)}, headers=AUTH)
        assert status == 201, body
        first = await h.finished(int(body["id"]))
        assert first.state == "succeeded", h.log(first.id, "build")
        assert "other: wrote 43 bytes" in h.log(first.id, "build")  # it had its secret
        (other_ws,) = [p for p in work_dir.glob("local-*/*") if (p / "private.txt").exists()]
        other_home = other_ws.parent / ".homes" / other_ws.name
        assert (other_home / ".other-home" / "h").read_text().strip() == OTHER_SECRET

        # The hostile job, of another repository, on the same agent.
        agent_pid = next(iter(h.server.executor.agents.values()))  # type: ignore[union-attr]
        targets = [
            str(data_dir), str(data_dir / "secret_key"), str(data_dir / "ployd.db"),
            str(work_dir), str(other_ws), str(other_ws / "private.txt"),
            str(other_ws / ".git" / "config"), str(other_ws / ".cache-dir" / "c"),
            str(other_home), str(other_home / ".other-home" / "h"),
            f"/proc/{agent_pid}/environ", f"/proc/{os.getpid()}/environ",
            f"/proc/{agent_pid}/cmdline", "/root", str(Path.home() / ".ployd-agent"),
            str(tmp_path / "ployd.db"),  # the database, when it is SQLite
        ]
        repo, _ = make_repo({".ployd.yml": _hunt_config(h.url, targets), "hunt.py": HUNT})
        status, body = await h.post("/api/v1/pipelines", {"repo": str(repo)}, headers=AUTH)
        assert status == 201, body
        hunt = await h.finished(int(body["id"]))
        log = h.log(hunt.id, "hunt")
        assert hunt.state == "succeeded", log
        report = _report(log)

    # It ran as the step user, and every path of the server's, the agent's and the other
    # repository's failed to read (absent from its world, or refused).
    if os.geteuid() == 0:
        assert report["uid"] == pwd.getpwnam("ployd-job").pw_uid
    # (Directories above its own workspace and home show the names on that path only.)
    own = workspace_dir(work_dir, "local-" + str(repo).replace("/", "-")).name
    for path in targets:
        text = report["got"].get(path, "")
        assert set(text.split()) <= {"local-1", ".homes", own}, (path, text)
    # Its /proc holds its own processes only: the agent and the server are not there.
    assert str(agent_pid) not in report["pids"] and len(report["pids"]) < 10, report["pids"]
    # Its environment is the documented base and its job's: nothing of the server's.
    env = report["env"]
    assert not [k for k in env if k.startswith("PLOYD_") and k not in (
        "PLOYD", "PLOYD_PIPELINE_ID", "PLOYD_JOB", "PLOYD_JOB_ID", "PLOYD_ATTEMPT",
        "PLOYD_SHA", "PLOYD_REF", "PLOYD_REPOSITORY")], sorted(env)
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert set(env) - {"SERVER", "TARGETS"} <= {
        "PATH", "HOME", "LANG", "CI", "USER", "LOGNAME", "PWD", "SHLVL", "_", "OLDPWD",
        "PLOYD", "PLOYD_PIPELINE_ID", "PLOYD_JOB", "PLOYD_JOB_ID", "PLOYD_ATTEMPT",
        "PLOYD_SHA", "PLOYD_REF", "PLOYD_REPOSITORY"}, sorted(env)
    # No secret value in anything it read, or in its log.
    everything = json.dumps(report)
    for secret in (ADMIN, WEBHOOK, SECRET_KEY, AWS_KEY, OTHER_SECRET):
        assert secret not in everything
        assert secret not in log
    # Every token-like string it found was refused by the agent API.
    assert all(codes == [401, 401] for codes in report["tried"].values()), report["tried"]
