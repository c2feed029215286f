"""The audit chain on both databases: appends link each record to the one before, the
chain verifies, a changed record is found, and records are read back in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.audit.chain import append, record_hash, verify
from app.store import audit as rows
from app.store.models import AuditRecord
from tests.store import rows as make

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _record(action: str, at: datetime) -> AuditRecord:
    return AuditRecord(actor="alice", forge="github", action=action, at=at, details={"n": 1})


def test_appends_chain_and_verify(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            assert rows.last_hash(s) is None and list(rows.records(s)) == []
            assert verify(s) == (0, None)
        for i, action in enumerate(("a", "b", "c")):  # one transaction each
            with db.session() as s:
                added = append(s, _record(action, T0 + timedelta(minutes=i)))
                assert rows.last_hash(s) == added.hash == record_hash(added)
        with db.session() as s:
            chain = list(rows.records(s))
            assert [r.action for r in chain] == ["a", "b", "c"]
            assert [r.prev_hash for r in chain] == ["", chain[0].hash, chain[1].hash]
            assert rows.last_hash(s) == chain[-1].hash
            assert [r.action for r in rows.records(s, T0 + timedelta(minutes=1))] == ["b", "c"]
            assert verify(s) == (3, None)


def test_a_changed_record_breaks_the_chain(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            for action in ("a", "b", "c"):
                append(s, _record(action, T0))
        with db.session() as s:
            second = list(rows.records(s))[1]
            second.details = {"n": 2}
        with db.session() as s:
            n, broken = verify(s)
            assert n == 2 and broken is not None and broken.record_id == second.id
            assert "contents do not match" in broken.reason


def test_lock_chain_keeps_the_callers_writes(db_url: str) -> None:
    with make.connected(db_url) as db:
        with db.session() as s:
            acme = make.tenant(s, "acme")
            rows.lock_chain(s)  # flushes first, then takes the lock (both databases)
            rows.add(s, _record("after-lock", T0))
        with db.session() as s:
            assert [r.action for r in rows.records(s)] == ["after-lock"]
            assert make.tenant(s, "acme2").id != acme.id
