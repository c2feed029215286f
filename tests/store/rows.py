"""Rows for the store's tests, written straight through the models: a tenant, its
repository, a pipeline, jobs and their attempts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from app.store.db import Database, Tx
from app.store.models import Attempt, Job, Pipeline, Repository, Tenant


@contextmanager
def connected(db_url: str) -> Iterator[Database]:
    db = Database.connect(db_url)
    try:
        yield db
    finally:
        db.dispose()


def tenant(tx: Tx, name: str, forge: str = "github") -> Tenant:
    row = Tenant(forge=forge, external_id=name, name=name)
    tx.add(row)
    tx.flush()
    return row


def repository(tx: Tx, owner: Tenant, full_name: str) -> Repository:
    row = Repository(
        tenant_id=owner.id,
        forge=owner.forge,
        full_name=full_name,
        clone_url=f"https://example.com/{full_name}.git",
    )
    tx.add(row)
    tx.flush()
    return row


def pipeline(
    tx: Tx, repo: Repository, ref: str = "refs/heads/main", *, held: bool = False
) -> Pipeline:
    row = Pipeline(
        repository_id=repo.id, forge=repo.forge, ref=ref, sha="0" * 40, trigger="push", held=held
    )
    tx.add(row)
    tx.flush()
    return row


def job(tx: Tx, p: Pipeline, name: str, hardware: list[Any] | None = None) -> Job:
    row = Job(
        pipeline=p,
        position=len(p.jobs),
        name=name,
        base_name=name,
        hardware=hardware or [],
        state="queued",
    )
    tx.add(row)
    tx.flush()
    return row


def attempt(
    tx: Tx,
    j: Job,
    state: str = "queued",
    *,
    claimed_at: datetime | None = None,
    cost: float | None = None,
    price_hourly: float | None = None,
) -> Attempt:
    row = Attempt(
        job=j,
        number=len(j.attempts) + 1,
        state=state,
        claimed_at=claimed_at,
        cost=cost,
        price_hourly=price_hourly,
    )
    tx.add(row)
    tx.flush()
    return row
