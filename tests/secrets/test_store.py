"""Secrets in the database: encrypted at rest, scoped by branch, delivered only to the
jobs that declare them, never to forks; a missing one fails the job before it starts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.hardware import Catalog
from app.core.triggers import Event, EventKind
from app.engine.engine import Engine, RepoRef
from app.handlers.pipelines import plan
from app.secrets.crypto import DecryptError
from app.secrets.store import SecretError, SecretStore, branch_of, pick
from app.store.models import Attempt, AuditRecord, Pipeline, Secret
from tests.engine.conftest import Driver

VALUE = "Zq9-unique-secret-VALUE-41"


def _reveal(store: SecretStore, name: str) -> str:
    with store.db.session() as s:
        row = s.scalar(select(Secret).where(Secret.name == name))
        assert row is not None
        return store.reveal(row)


def _repo(make_repo: Any, config: str) -> tuple[Path, str]:
    path, sha = make_repo({".ployd.yml": config})
    return path, sha


def test_round_trip_and_the_database_never_holds_the_value(
    store: SecretStore, make_repo: Any, db_url: str
) -> None:
    repo, _ = make_repo({"README": "x"})
    info = store.set(str(repo), "API_TOKEN", VALUE)
    assert info.name == "API_TOKEN" and info.kind == "value" and info.branch == ""
    assert _reveal(store, "API_TOKEN") == VALUE
    with store.db.session() as s:
        row = s.scalar(select(Secret))
        assert row is not None and row.ciphertext is not None
        assert VALUE.encode() not in bytes(row.ciphertext)
    # nothing shown about it holds the value, nor does the audit trail
    assert VALUE not in repr(store.list(str(repo)))
    with store.db.session() as s:
        audit = [(a.action, a.details) for a in s.scalars(select(AuditRecord))]
    assert ("secret.set", audit[-1][1]) == audit[-1] and audit[-1][1]["name"] == "API_TOKEN"
    assert VALUE not in repr(audit)
    if db_url.startswith("sqlite"):
        store.db.checkpoint()
        store.db.dispose()
        path = Path(db_url.split("///", 1)[1])
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        blob = b"".join(p.read_bytes() for p in files)
        assert b"API_TOKEN" in blob  # the name is there...
        assert VALUE.encode() not in blob  # ...the value never is


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(
    store: SecretStore, make_repo: Any
) -> None:
    repo, _ = make_repo({"README": "x"})
    store.set(str(repo), "A_TOKEN", "value-of-a")
    store.set(str(repo), "B_TOKEN", "value-of-b")
    with store.db.session() as s:
        a = s.scalar(select(Secret).where(Secret.name == "A_TOKEN"))
        assert a is not None
        s.execute(update(Secret).where(Secret.name == "B_TOKEN").values(ciphertext=a.ciphertext))
    with pytest.raises(DecryptError):
        _reveal(store, "B_TOKEN")
    assert _reveal(store, "A_TOKEN") == "value-of-a"


def test_set_replaces_list_and_delete(store: SecretStore, make_repo: Any) -> None:
    repo, _ = make_repo({"README": "x"})
    store.set(str(repo), "TOKEN", "one")
    store.set(str(repo), "TOKEN", "two")
    store.set(str(repo), "DEPLOY_KEY", "deploy", branch="main")
    assert _reveal(store, "TOKEN") == "two"
    listed = [(i.name, i.branch) for i in store.list(str(repo))]
    assert listed == [("DEPLOY_KEY", "main"), ("TOKEN", "")]
    store.delete(str(repo), "DEPLOY_KEY", branch="main")
    assert [i.name for i in store.list(str(repo))] == ["TOKEN"]
    with pytest.raises(SecretError, match="no secret DEPLOY_KEY"):
        store.delete(str(repo), "DEPLOY_KEY")
    with pytest.raises(SecretError, match="not a secret name"):
        store.set(str(repo), "1BAD NAME", "x")
    with pytest.raises(SecretError, match="does not know the repository acme/models"):
        store.set("acme/models", "TOKEN", "x", forge="github")


def test_branch_patterns_pick_the_most_specific() -> None:
    rows = [
        SimpleNamespace(branch="", name="K"),
        SimpleNamespace(branch="release/*", name="K"),
        SimpleNamespace(branch="main", name="K"),
    ]
    assert pick(rows, "main").branch == "main"  # type: ignore[arg-type,union-attr]
    assert pick(rows, "release/1.2").branch == "release/*"  # type: ignore[arg-type,union-attr]
    assert pick(rows, "feature/x").branch == ""  # type: ignore[arg-type,union-attr]
    assert pick(rows, None).branch == ""  # a pull request: unscoped only  # type: ignore
    assert pick(rows[1:], None) is None  # type: ignore[arg-type]
    assert pick(rows[2:], "feature") is None  # type: ignore[arg-type]
    assert branch_of("refs/heads/main") == "main"
    assert branch_of("refs/pull/3/head") is None and branch_of("refs/tags/v1") is None


async def test_a_job_gets_only_the_secrets_it_declares_for_its_branch(
    store: SecretStore, driver: Driver, engine: Engine, make_repo: Any
) -> None:
    config = (
        "version: 1\njobs:\n"
        "  deploy:\n    secrets: [DEPLOY_KEY, TOKEN]\n    steps: [{run: 'true'}]\n"
        "  other:\n    steps: [{run: 'true'}]\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    store.set(str(repo), "TOKEN", "token-value")
    store.set(str(repo), "UNUSED", "unused-value")
    store.set(str(repo), "DEPLOY_KEY", "main-only-key", branch="main")
    store.set(str(repo), "DEPLOY_KEY", "release-key", branch="release/*")
    from app.handlers.pipelines import start_local

    start_local(engine, Catalog.default(), str(repo), "HEAD")
    claimed = {c.name: c for c in await driver.claim_all()}
    assert claimed["deploy"].job["secrets"] == {
        "DEPLOY_KEY": "main-only-key",
        "TOKEN": "token-value",
    }
    assert claimed["other"].job["secrets"] == {}
    with engine.db.session() as s:
        reads = [a for a in s.scalars(select(AuditRecord)) if a.action == "secret.read"]
    assert len(reads) == 1
    assert reads[0].details["names"] == ["DEPLOY_KEY", "TOKEN"]
    assert reads[0].target == f"job:{claimed['deploy'].job['job_id']}"
    assert "main-only-key" not in repr(reads[0].details)


def _pr_pipeline(engine: Engine, repo: Path, sha: str, config: str, *, fork: bool) -> int:
    ev = Event(
        EventKind.PULL_REQUEST, ref="refs/pull/1/head", sha=sha, base_branch="main", action="opened"
    )
    plans = plan(config, ev, Catalog.default())
    assert plans is not None
    return engine.create_pipeline(
        RepoRef("local", str(repo), repo.as_uri()),
        plans,
        ref=ev.ref,
        sha=sha,
        trigger="pull_request",
        pr_number=1,
        fork=fork,
        held=False,
        pr_author="mallory",
    )


async def test_a_fork_gets_no_secrets_and_a_pull_request_no_branch_scoped_ones(
    store: SecretStore, engine: Engine, make_repo: Any
) -> None:
    config = "version: 1\njobs:\n  t:\n    secrets: [TOKEN]\n    steps: [{run: 'true'}]\n"
    repo, sha = make_repo({".ployd.yml": config})
    store.set(str(repo), "TOKEN", "unscoped-token")
    _pr_pipeline(engine, repo, sha, config, fork=True)
    got = await engine.claim("a", 0)
    assert got is not None and got.job.secrets == {}  # a fork: none at all
    _pr_pipeline(engine, repo, sha, config, fork=False)
    got = await engine.claim("a", 0)
    assert got is not None and got.job.secrets == {"TOKEN": "unscoped-token"}
    # A secret scoped to main never reaches a pull request's code: the job fails.
    store.delete(str(repo), "TOKEN")
    store.set(str(repo), "TOKEN", "main-token", branch="main")
    pid = _pr_pipeline(engine, repo, sha, config, fork=False)
    assert await engine.claim("a", 0) is None
    with engine.db.session() as s:
        p = s.get(Pipeline, pid)
        assert p is not None and p.jobs[0].state == "failed"
        assert "only gets secrets without a branch pattern" in (p.jobs[0].attempts[0].error or "")
    # A fork declaring a secret that does not exist still runs (it gets none anyway).
    _pr_pipeline(engine, repo, sha, config.replace("TOKEN", "NOPE"), fork=True)
    assert await engine.claim("a", 0) is not None


async def test_a_missing_secret_fails_the_job_before_any_machine(
    store: SecretStore, driver: Driver, engine: Engine, make_repo: Any
) -> None:
    from app.executors.ec2 import EC2Executor

    config = (
        "version: 1\njobs:\n"
        "  train:\n    secrets: [WANDB_API_KEY]\n    steps: [{run: 'true'}]\n"
        "  report:\n    needs: [train]\n    when: always\n    steps: [{run: 'true'}]\n"
    )
    pid = driver.start(config)
    job = driver.job(pid, "train")
    assert job.state == "failed"
    (attempt,) = job.attempts
    assert attempt.state == "failed" and attempt.end_reason == "refused"
    assert attempt.claimed_at is None and attempt.agent_id is None
    assert attempt.started_at is None and job.started_at is None
    with engine.db.session() as s:
        p = s.get(Pipeline, pid)
        assert p is not None
        full_name = p.repository.full_name
    assert attempt.error == (
        f"secret WANDB_API_KEY not set for {full_name} (branch main): set it with "
        f"`ployd secrets set --repo {full_name} WANDB_API_KEY`"
    )
    # The EC2 executor sees nothing to start a machine for but the `always` job.
    executor = EC2Executor.__new__(EC2Executor)
    executor.services = SimpleNamespace(db=engine.db)  # type: ignore[assignment]
    executor.engine = engine
    queued = executor._queued()
    assert [q.job_id for q in queued] == [driver.job(pid, "report").id]
    (report,) = await driver.claim_all()
    assert report.name == "report"
    driver.finish(report)
    assert driver.pipeline_state(pid) == "failed"
    with engine.db.session() as s:
        assert s.scalar(select(Attempt).where(Attempt.id == attempt.id)) is not None


async def test_a_secret_set_after_the_failure_lets_a_retry_run(
    store: SecretStore, driver: Driver, engine: Engine, make_repo: Any
) -> None:
    config = "version: 1\njobs:\n  t:\n    secrets: [TOKEN]\n    steps: [{run: 'true'}]\n"
    pid = driver.start(config)
    job = driver.job(pid, "t")
    assert job.state == "failed"
    with engine.db.session() as s:
        p = s.get(Pipeline, pid)
        assert p is not None
        repo = p.repository.full_name
    store.set(repo, "TOKEN", "now-set")
    engine.retry_job(job.id, "alice")
    (c,) = await driver.claim_all()
    assert c.job["secrets"] == {"TOKEN": "now-set"}
