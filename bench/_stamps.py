"""Shared by the trigger -> first step benches: a repository whose one job's first step
prints the wall-clock time it started (into its log: steps run sandboxed, with an
environment built from nothing, so they cannot write a file beside the bench), a way to
start and time one pipeline, and the `bash -c` baseline."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from app.engine.events import PipelinesChanged

STEP = 'echo "stamp $(date +%s.%N)"'


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def stamped_repo(root: Path, config: str) -> tuple[Path, Path]:
    """(a git repository with ``config`` as its .ployd.yml, a scratch directory)."""
    stamps, repo = root / "stamps", root / "repo"
    stamps.mkdir()
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".ployd.yml").write_text(config)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    return repo, stamps


class Trigger:
    """Starts a pipeline through the API and waits (on the engine's news) for its end;
    returns the seconds from just before the POST to the first step's start."""

    def __init__(self, server: Any, http: Any, repo: Path, stamps: Path) -> None:
        self.server, self.http, self.repo, self.stamps = server, http, repo, stamps
        self.engine = server.services.engine
        self._news = asyncio.Event()
        self.engine.events.subscribe(PipelinesChanged, lambda _e: self._news.set())

    async def once(self) -> float:
        from app.store.models import Pipeline

        t0 = time.time()
        async with self.http.post(
            self.server.url + "/api/v1/pipelines", json={"repo": str(self.repo), "ref": "HEAD"}
        ) as r:
            body = await r.json()
            assert r.status == 201, body
        pid = body["id"]
        while True:
            with self.engine.db.session() as s:
                p = s.get(Pipeline, pid)
                assert p is not None
                if p.state != "running":
                    assert p.state == "succeeded", p.state
                    log_path = p.jobs[0].attempts[-1].log_path
                    break
            self._news.clear()
            await asyncio.wait_for(self._news.wait(), 60)
        assert log_path is not None
        log = self.engine.logs.read(log_path).decode()
        found = re.search(r"^stamp (\d+\.\d+)$", log, re.MULTILINE)
        assert found is not None, log
        return float(found.group(1)) - t0


def bash_baseline(n: int) -> list[float]:
    """Seconds from just before starting `bash -c` to the same step's start, n times."""
    out = []
    for _ in range(n):
        t0 = time.time()
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", "date +%s.%N"],
            check=True,
            capture_output=True,
            text=True,
        )
        out.append(float(done.stdout) - t0)
    return out
