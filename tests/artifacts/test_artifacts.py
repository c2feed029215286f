"""Artifacts end to end: a real server, a real local agent, real git and bash.

The agent uploads ``artifacts.paths`` after the steps (after a failure too), the log
page's ``artifacts_for_job`` lists them with sizes and signed download links, the link
needs the job's token, escapes from the workspace are refused, and the expiry pass
(driven with an explicit ``now``) deletes files and rows. The S3 variant runs against
moto's server: the agent PUTs to presigned URLs, the download redirects to a presigned GET.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.artifacts.access import BadRequest
from app.artifacts.service import _check_files, artifacts_for_job
from app.core.links import sign_job
from app.store.models import Artifact, utcnow
from app.web.artifacts_api import TRANSFERS
from tests.e2e.conftest import Harness

CONFIG = """
version: 1
jobs:
  build:
    retry: {max: 0}
    artifacts:
      paths: ["out/**", "../outside.txt", "/etc/passwd"]
      expire_in: 1d
    steps:
      - run: |
          mkdir -p out/sub
          echo "report $((6*7))" > out/report.txt
          echo deep > out/sub/deep.log
          ln -s /bin/sh out/escape
          (echo not-yours > ../outside.txt) 2>/dev/null || echo cannot write outside the workspace
  broken:
    retry: {max: 0}
    artifacts:
      paths: ["reports/*.xml"]
    steps:
      - run: mkdir -p reports && echo "<testsuite/>" > reports/junit.xml && false
"""
SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def token(h: Harness, job_id: int) -> str:
    with h.engine.db.session() as s:
        from app.store.models import Job

        job = s.get(Job, job_id)
        assert job is not None
        tenant = job.pipeline.repository.tenant_id
    return sign_job(h.server.services.settings.secret_key_bytes(), job_id, tenant)


async def fetch(h: Harness, url: str, **kw: Any) -> tuple[int, bytes, Any]:
    async with h.http.get(h.url + url, **kw) as r:
        return r.status, await r.read(), r.headers


async def test_upload_list_download_refuse_and_expire(
    serve: Callable[..., Any], make_repo: Callable[..., tuple[Path, str]]
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    async with serve(agents=2, secret_key="k" * 32) as h:
        h: Harness
        pid = await h.start(repo)
        p = await h.finished(pid)
        assert {j.name: j.state for j in p.jobs} == {"build": "succeeded", "broken": "failed"}
        build, broken = h.job(pid, "build"), h.job(pid, "broken")
        log = h.log(pid, "build")
        assert "artifacts: refused pattern '../outside.txt': outside the workspace" in log
        assert "artifacts: refused pattern '/etc/passwd': outside the workspace" in log
        assert "artifacts: refused out/escape: a symlink out of the workspace" in log
        assert "artifacts: uploaded 2 file(s), 15 B" in log

        t = token(h, build.id)
        views = artifacts_for_job(h.engine.db, build.id, t)
        assert [(v.path, v.size, v.size_text, v.attempt) for v in views] == [
            ("out/report.txt", 10, "10 B", 1),
            ("out/sub/deep.log", 5, "5 B", 1),
        ]
        assert views[0].expires_at is not None
        # The log page lists them, with sizes and the signed download links.
        status, page, _ = await fetch(h, f"/runs/{build.id}?t={urllib.parse.quote(t)}")
        assert status == 200
        assert "Artifacts" in page.decode() and "out/report.txt</a> 10 B" in page.decode()
        status, body, headers = await fetch(h, views[0].url)
        assert (status, body) == (200, b"report 42\n")
        assert headers["Content-Disposition"].startswith("attachment")
        assert headers["X-Content-Type-Options"] == "nosniff"

        # The link needs the job's token: none, a forged one, or another job's is 403.
        path = f"/runs/{build.id}/artifacts/out/report.txt"
        assert (await fetch(h, path))[0] == 403
        assert (await fetch(h, path + "?t=1.AAAA"))[0] == 403
        assert (await fetch(h, path + "?t=" + urllib.parse.quote(token(h, broken.id))))[0] == 403
        assert (await fetch(h, f"/runs/{build.id}/artifacts/nope.txt?t={t}"))[0] == 404

        # A failed job keeps its reports: uploaded after the failure.
        assert "artifacts: uploaded 1 file(s)" in h.log(pid, "broken")
        (junit,) = artifacts_for_job(h.engine.db, broken.id, token(h, broken.id))
        assert junit.path == "reports/junit.xml"

        # The agent calls need the job token.
        status, _ = await h.post(f"/api/v1/agent/attempts/{build.attempts[0].id}/artifacts", {})
        assert status == 401

        # Expiry: build's expire after 1 day, broken's after the default (30 days).
        data = h.server.services.settings.data_dir
        files = sorted(p for p in (data / "artifacts").rglob("*") if p.is_file())
        assert len(files) == 3
        transfers = h.server.runner.app[TRANSFERS]
        now = utcnow()
        assert transfers.expire(now) == (0, 0)
        assert transfers.expire(now + timedelta(days=1, minutes=1))[0] == 2
        assert artifacts_for_job(h.engine.db, build.id, t) == []
        assert (await fetch(h, views[0].url))[0] == 404
        assert sum(1 for p in files if p.exists()) == 1
        assert transfers.expire(now + timedelta(days=31))[0] == 1
        assert not any(p.exists() for p in files)
        with h.engine.db.session() as s:
            assert s.query(Artifact).count() == 0


@pytest.mark.parametrize(
    "files",
    [
        [{"path": "../x", "size": 1, "sha256": SHA_EMPTY}],
        [{"path": "/etc/passwd", "size": 1, "sha256": SHA_EMPTY}],
        [{"path": "a/../../x", "size": 1, "sha256": SHA_EMPTY}],
        [{"path": "a\\..\\x", "size": 1, "sha256": SHA_EMPTY}],
        [{"path": "ok.txt", "size": -1, "sha256": SHA_EMPTY}],
        [{"path": "ok.txt", "size": 1, "sha256": "nothex"}],
        [{"path": "x" * 2000, "size": 1, "sha256": SHA_EMPTY}],
        "not a list",
    ],
)
def test_the_server_refuses_bad_paths(files: Any) -> None:
    with pytest.raises(BadRequest):
        _check_files(files)


def test_the_server_normalizes_paths() -> None:
    assert _check_files([{"path": "./out//a.txt", "size": 0, "sha256": SHA_EMPTY}]) == [
        ("out/a.txt", 0, SHA_EMPTY)
    ]


@pytest.fixture
def s3_bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh bucket on moto, and dummy credentials for the server (never the agent's)."""
    import uuid

    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"ployd-art-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.bucket_name = name  # type: ignore[attr-defined]
    yield s3


async def test_s3_presigned_upload_and_download_redirect(
    serve: Callable[..., Any],
    make_repo: Callable[..., tuple[Path, str]],
    moto_server: str,
    s3_bucket: Any,
) -> None:
    repo, _ = make_repo({".ployd.yml": CONFIG})
    bucket = s3_bucket.bucket_name
    async with serve(
        agents=1,
        secret_key="k" * 32,
        s3_bucket=bucket,
        s3_prefix="ployd/",
        aws_region="us-east-1",
        aws_endpoint_url=moto_server,
    ) as h:
        pid = await h.start(repo)
        await h.finished(pid)
        build = h.job(pid, "build")
        assert "artifacts: uploaded 2 file(s)" in h.log(pid, "build")
        listed = s3_bucket.list_objects_v2(Bucket=bucket, Prefix="ployd/artifacts/")
        assert len(listed.get("Contents", [])) == 3  # build's two, broken's one
        assert not (h.server.services.settings.data_dir / "artifacts").exists()

        t = token(h, build.id)
        view = artifacts_for_job(h.engine.db, build.id, t)[0]
        status, _, headers = await fetch(h, view.url, allow_redirects=False)
        assert status == 302
        location = headers["Location"]
        assert location.startswith(moto_server) and "Signature" in location
        async with aiohttp.ClientSession() as plain, plain.get(location) as r:
            assert r.status == 200 and await r.read() == b"report 42\n"
        assert (
            await fetch(h, f"/runs/{build.id}/artifacts/out/report.txt", allow_redirects=False)
        )[0] == 403

        transfers = h.server.runner.app[TRANSFERS]
        assert transfers.expire(utcnow() + timedelta(days=31))[0] == 3
        listed = s3_bucket.list_objects_v2(Bucket=bucket, Prefix="ployd/artifacts/")
        assert listed.get("KeyCount", 0) == 0
