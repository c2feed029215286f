"""The inbox's group-commit writer on both databases: every delivery answered is stored,
once, with its body as it came; many deliveries share a transaction; a delivery's
future resolves only after its transaction committed; a failure reaches every waiter."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from sqlalchemy import select

from app.store import inbox
from app.store.inbox import Delivery, InboxWriter
from app.store.models import InboxEvent
from tests.store import rows as make


def _d(n: int | str, body: dict[str, Any] | None = None, forge: str = "github") -> Delivery:
    return Delivery(forge, f"d-{n}", "push", json.dumps(body or {"n": n}))


def test_record_many_stores_raw_bodies_and_dedupes(db_url: str) -> None:
    with make.connected(db_url) as db:
        # the text as it came (key order, spacing), parsed back the same on read
        raw = '{"z": 1,  "a": [1, 2], "s": "caf\\u00e9"}'
        first = inbox.record_many(db, [Delivery("github", "a", "push", raw), _d(1), _d(1)])
        assert [new for _, new in first] == [True, True, False]
        assert first[1][0] == first[2][0]  # a repeat in one batch: the same row
        again = inbox.record_many(db, [_d(1), _d(2), _d(1, forge="gitlab")])
        assert again[0] == (first[1][0], False)
        assert again[1][1] and again[2][1]  # another forge's d-1 is another delivery
        row = inbox.load(db, first[0][0])
        assert row is not None and row.payload == {"z": 1, "a": [1, 2], "s": "café"}
        with db.session() as s:
            assert len(s.scalars(select(InboxEvent.id)).all()) == 4


async def test_writer_groups_deliveries_and_answers_after_commit(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make.connected(db_url) as db:
        writer = InboxWriter(db)
        commits: list[int] = []
        gate = threading.Event()
        first_txn = threading.Event()
        commit = inbox._commit

        def _held(conn: Any) -> None:  # the first commit waits until the test says go
            commits.append(len(commits))
            first_txn.set()
            assert gate.wait(30)
            commit(conn)

        monkeypatch.setattr(inbox, "_commit", _held)

        try:
            one = asyncio.ensure_future(writer.record(_d(0)))
            await asyncio.to_thread(first_txn.wait, 30)
            rest = [asyncio.ensure_future(writer.record(_d(n))) for n in range(1, 201)]
            await asyncio.sleep(0)
            assert not one.done()  # its transaction has not committed yet: no answer
            gate.set()
            results = await asyncio.gather(one, *rest)
        finally:
            gate.set()
            await writer.aclose()
        assert all(new for _, new in results) and len({i for i, _ in results}) == 201
        # the 200 that queued while the first committed went in together
        assert writer.transactions <= 3 and len(commits) == writer.transactions
        with db.session() as s:
            assert len(s.scalars(select(InboxEvent.id)).all()) == 201


async def test_a_failed_transaction_fails_every_waiter_and_the_writer_goes_on(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make.connected(db_url) as db:
        writer = InboxWriter(db)
        gate = threading.Event()
        execute = inbox._execute

        def _fail(cursor: Any, statement: str, params: Any) -> list[Any]:
            if statement.lstrip().upper().startswith("INSERT") and not gate.is_set():
                raise db.engine.dialect.dbapi.OperationalError("disk I/O error")
            return execute(cursor, statement, params)

        monkeypatch.setattr(inbox, "_execute", _fail)

        try:
            results = await asyncio.gather(
                *(writer.record(_d(n)) for n in range(5)), return_exceptions=True
            )
            # nobody told "stored"; the writer's connection dropped, another opened after
            assert all("disk I/O error" in str(r) for r in results), results
            gate.set()
            inbox_id, new = await writer.record(_d(1))
            assert new and await writer.record(_d(1)) == (inbox_id, False)
        finally:
            await writer.aclose()
        with db.session() as s:
            assert s.scalars(select(InboxEvent.delivery_id)).all() == ["d-1"]
        with pytest.raises(RuntimeError, match="closed"):
            await writer.record(_d(2))
