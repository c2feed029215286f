"""Caches end to end: a real server, real local agents, real git repos and bash.

Every run gets a fresh work dir for its agents (a new machine: the jobs' homes live
there), and the workspace is cleaned by git between runs, so a file found by a step can
only come from a restored cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.adapters import local_git
from app.core.triggers import Event, EventKind
from app.engine.engine import RepoRef
from app.handlers.pipelines import plan
from app.store.models import CacheEntry, Repository, utcnow
from app.web.artifacts_api import TRANSFERS
from tests.e2e.conftest import Harness

PROBE = """
      - run: |
          if [ -f ~/.cache/{d}/marker ]; then echo "HOME-HIT-$(cat ~/.cache/{d}/marker)"
          else echo "HOME-MISS-$((1+1))"; fi
          if [ -f vendor-{d}/lib.txt ]; then echo "WS-HIT-$(cat vendor-{d}/lib.txt)"
          else echo "WS-MISS-$((1+1))"; fi
          mkdir -p ~/.cache/{d} vendor-{d}
          echo "p$PLOYD_PIPELINE_ID" > ~/.cache/{d}/marker
          echo "p$PLOYD_PIPELINE_ID" > vendor-{d}/lib.txt
"""
CONFIG = (
    """
version: 1
jobs:
  exact:
    cache:
      key: exact-${{ hashFiles('requirements.txt') }}
      paths: [~/.cache/x, vendor-x]
    steps:"""
    + PROBE.format(d="x")
    + """
  prefix:
    cache:
      key: prefix-${{ hashFiles('requirements.txt') }}
      paths: [~/.cache/y, vendor-y]
      restore-keys: [prefix-]
    steps:"""
    + PROBE.format(d="y")
    + """
  fails:
    retry: {max: 0}
    cache:
      key: fails-${{ hashFiles('requirements.txt') }}
      paths: [~/.cache/z]
    steps:
      - run: mkdir -p ~/.cache/z && echo x > ~/.cache/z/marker && false
"""
)


class Runs:
    def __init__(self, serve: Callable[..., Any], tmp: Path, mp: pytest.MonkeyPatch, **kw: Any):
        self.serve, self.tmp, self.mp, self.kw = serve, tmp, mp, kw

    async def run(self, repo: Path, *, fork: bool = False) -> tuple[dict[str, str], int]:
        """One pipeline on a new machine (a fresh work dir, so fresh job homes): the jobs'
        logs, the pipeline id."""
        work = self.tmp / f"work-{uuid.uuid4().hex[:8]}"
        async with self.serve(agents=2, work_dir=work, **self.kw) as h:
            h: Harness
            pid = await (start_fork(h, repo) if fork else h.start(repo))
            p = await h.finished(pid)
            return {j.name: h.log(pid, j.name) for j in p.jobs}, pid

    async def entries(self) -> list[tuple[str, str]]:
        async with self.serve(agents=0, **self.kw) as h:
            with h.engine.db.session() as s:
                rows = s.execute(
                    select(Repository.full_name, CacheEntry.key)
                    .join(Repository, Repository.id == CacheEntry.repository_id)
                    .where(CacheEntry.state == "ready")
                ).all()
                return sorted((Path(r).name, k.split("-")[0]) for r, k in rows)


async def start_fork(h: Harness, repo: Path) -> int:
    """A pull request from a fork of ``repo``, as the forge handlers start one."""
    full_ref, sha = local_git.resolve(repo, "HEAD")
    text = local_git.read_file(repo, sha, ".ployd.yml")
    plans = plan(
        text,
        Event(EventKind.API, ref=full_ref, sha=sha, default_branch="main"),
        h.server.services.catalog,
    )
    assert plans is not None
    ref = RepoRef(forge="local", full_name=str(repo.resolve()), clone_url=repo.resolve().as_uri())
    return h.engine.create_pipeline(
        ref, plans, ref=full_ref, sha=sha, trigger="pull_request", pr_number=7, fork=True
    )


async def test_hit_miss_restore_keys_failure_scope_and_forks(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = Runs(serve, tmp_path, monkeypatch, secret_key="k" * 32)
    repo, _ = make_repo({".ployd.yml": CONFIG, "requirements.txt": "numpy==2.0\n"})

    # 1. Nothing saved yet: misses, then saved after success; never after a failure.
    logs, p1 = await runs.run(repo)
    assert "HOME-MISS-2" in logs["exact"] and "WS-MISS-2" in logs["exact"]
    assert "cache: miss for exact-" in logs["exact"]
    assert "cache: miss for prefix-" in logs["prefix"]
    assert "restore-keys matched nothing" in logs["prefix"]
    assert "cache: saved exact-" in logs["exact"] and "cache: saved prefix-" in logs["prefix"]
    assert "the job did not succeed" in logs["fails"] and "cache: saved" not in logs["fails"]
    assert await runs.entries() == [(repo.name, "exact"), (repo.name, "prefix")]

    # 2. Same hashed file, new machine: exact hits restore ~ and the workspace path.
    logs, _ = await runs.run(repo)
    assert f"HOME-HIT-p{p1}" in logs["exact"] and f"WS-HIT-p{p1}" in logs["exact"]
    assert "(exact hit)" in logs["exact"] and "not saved again" in logs["exact"]

    # 3. The hashed file changes: the exact key misses; restore-keys match by prefix.
    make_repo({"requirements.txt": "numpy==2.1\n"}, path=repo)
    logs, p3 = await runs.run(repo)
    assert "HOME-MISS-2" in logs["exact"] and "cache: miss for exact-" in logs["exact"]
    assert f"HOME-HIT-p{p1}" in logs["prefix"] and "(restore-key hit" in logs["prefix"]
    assert "cache: saved prefix-" in logs["prefix"]  # the exact key missed: saved anew

    # 4. Another repository with the very same files and keys: nothing is shared.
    other, _ = make_repo({".ployd.yml": CONFIG, "requirements.txt": "numpy==2.1\n"})
    logs, _ = await runs.run(other)
    assert "HOME-MISS-2" in logs["exact"] and "HOME-MISS-2" in logs["prefix"]
    assert "restore-keys matched nothing" in logs["prefix"]

    # 5. A fork's pull request neither reads nor writes the base repository's caches.
    before = await runs.entries()
    logs, _ = await runs.run(repo, fork=True)
    assert "cache: off for pull requests from forks" in logs["exact"]
    assert "HOME-MISS-2" in logs["exact"] and "HOME-MISS-2" in logs["prefix"]
    assert "cache: saved" not in logs["exact"] + logs["prefix"]
    assert await runs.entries() == before

    # Entries nobody restored for a week are dropped by the expiry pass.
    async with serve(agents=0, secret_key="k" * 32) as h:
        transfers = h.server.runner.app[TRANSFERS]
        assert transfers.expire(utcnow())[1] == 0
        assert transfers.expire(utcnow() + timedelta(days=8))[1] == len(before)
        assert not any((h.server.services.settings.data_dir / "caches").rglob("*.tar.gz"))
    assert p3 > p1


async def test_size_cap_is_said_in_the_log(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = Runs(serve, tmp_path, monkeypatch, secret_key="k" * 32, cache_max_bytes=64)
    repo, _ = make_repo({".ployd.yml": CONFIG, "requirements.txt": "x\n"})
    logs, _ = await runs.run(repo)
    assert "over the limit of 64 B per entry (PLOYD_CACHE_MAX_SIZE)" in logs["exact"]
    assert await runs.entries() == []


async def test_s3_store_through_presigned_urls(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_server: str,
) -> None:
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"ployd-cache-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    runs = Runs(
        serve,
        tmp_path,
        monkeypatch,
        secret_key="k" * 32,
        s3_bucket=bucket,
        aws_region="us-east-1",
        aws_endpoint_url=moto_server,
    )
    repo, _ = make_repo({".ployd.yml": CONFIG, "requirements.txt": "numpy\n"})
    logs, p1 = await runs.run(repo)
    assert "cache: saved exact-" in logs["exact"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="caches/")["Contents"]]
    assert len(keys) == 2 and all(k.endswith(".tar.gz") for k in keys)
    logs, _ = await runs.run(repo)
    assert f"HOME-HIT-p{p1}" in logs["exact"] and "(exact hit)" in logs["exact"]
