"""The audit trail's hash chain: it verifies, an edited or deleted record is found by
`ployd audit verify`, appends from many writers stay one chain, export since a date."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from app.audit.chain import verify
from app.cli import main as cli_main
from app.engine.engine import Engine
from app.store.db import Database
from app.store.models import AuditRecord
from tests.engine.conftest import Driver


def _activity(driver: Driver, engine: Engine) -> None:
    pid = driver.start("version: 1\njobs:\n  t: {steps: [{run: 'true'}]}\n")
    engine.cancel_pipeline(pid, "alice")
    job = driver.job(pid, "t")
    engine.retry_job(job.id, "bob")
    with engine.db.session() as s:
        engine.audit(s, "carol", "custom", "x", forge="github", n=1.5, nested={"b": [1, "2"]})


def _cli(monkeypatch: pytest.MonkeyPatch, db_url: str, *args: str) -> int:
    monkeypatch.setenv("PLOYD_DATABASE_URL", db_url)
    return cli_main(["audit", *args])


def test_the_chain_verifies(
    driver: Driver,
    engine: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _activity(driver, engine)
    with engine.db.session() as s:
        records = list(s.scalars(select(AuditRecord).order_by(AuditRecord.id)))
        n, broken = verify(s)
    assert [r.action for r in records] == [
        "pipeline.trigger",
        "pipeline.cancel",
        "job.retry",
        "custom",
    ]
    assert records[0].prev_hash == "" and all(len(r.hash) == 64 for r in records)
    assert all(b.prev_hash == a.hash for a, b in pairwise(records))
    assert (n, broken) == (4, None)
    assert _cli(monkeypatch, db_url, "verify") == 0
    assert "audit chain verified: 4 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "mallory"},
        {"details": {"trigger": "api", "ref": "refs/heads/evil"}},
        {"target": "pipeline:999"},
    ],
)
def test_an_edited_record_is_found(
    change: dict[str, Any],
    driver: Driver,
    engine: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _activity(driver, engine)
    with engine.db.session() as s:
        ids = list(s.scalars(select(AuditRecord.id).order_by(AuditRecord.id)))
        s.execute(update(AuditRecord).where(AuditRecord.id == ids[1]).values(**change))
    assert _cli(monkeypatch, db_url, "verify") == 1
    out = capsys.readouterr().out
    assert f"BROKEN at record {ids[1]}: its contents do not match its hash" in out


def test_a_deleted_record_is_found(
    driver: Driver,
    engine: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _activity(driver, engine)
    with engine.db.session() as s:
        ids = list(s.scalars(select(AuditRecord.id).order_by(AuditRecord.id)))
        s.execute(delete(AuditRecord).where(AuditRecord.id == ids[1]))
    assert _cli(monkeypatch, db_url, "verify") == 1
    out = capsys.readouterr().out
    assert (
        f"BROKEN at record {ids[2]}: its prev_hash does not match the hash of record {ids[0]}"
        in out
    )


def test_concurrent_writers_keep_one_chain(engine: Engine, db_url: str) -> None:
    def writer(n: int) -> None:
        db = Database.connect(db_url, migrate=False)
        try:
            for i in range(15):
                with db.session() as s:
                    engine.audit(s, f"w{n}", "test.append", f"{n}:{i}")
        finally:
            db.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.db.session() as s:
        n, broken = verify(s)
    assert (n, broken) == (60, None)


def test_export_since_a_date(
    driver: Driver,
    engine: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _activity(driver, engine)
    with engine.db.session() as s:
        records = list(s.scalars(select(AuditRecord).order_by(AuditRecord.id)))
        # the first two happened long ago (the export only filters; verify is not asked)
        old = records[0].at - timedelta(days=40)
        for r in records[:2]:
            r.at = old
    since = (records[2].at - timedelta(days=1)).date().isoformat()
    assert _cli(monkeypatch, db_url, "export", "--since", since) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["action"] for x in lines] == ["job.retry", "custom"]
    assert set(lines[1]) == {
        "id",
        "at",
        "actor",
        "forge",
        "action",
        "target",
        "details",
        "prev_hash",
        "hash",
    }
    assert lines[1]["details"] == {"n": 1.5, "nested": {"b": [1, "2"]}}
    assert _cli(monkeypatch, db_url, "export") == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    with pytest.raises(SystemExit):
        _cli(monkeypatch, db_url, "export", "--since", "last tuesday")
