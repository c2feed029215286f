"""Several replicas on one database (each replica here is a ``Database`` of its own on
the same URL): inbox deliveries claimed under leases, handled once, retried then
dead-lettered; one pipeline per delivery; one starting machine per attempt; one leader;
SQLite's one-server lock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.handlers.inbox_worker import InboxWorker, retry_delay
from app.store import inbox, inbox_claims
from app.store.coord import (
    LOCK_POOL_OVERFLOW,
    LOCK_POOL_SIZE,
    AlreadyServing,
    Leadership,
    SingleProcess,
    deployment_id,
    is_postgres,
    serialized,
)
from app.store.db import Database
from app.store.instances import AlreadyStarting, NewInstance, add
from app.store.models import InboxEvent, utcnow


@pytest.fixture
def replicas(db_url: str) -> Iterator[tuple[Database, Database]]:
    a, b = Database.connect(db_url), Database.connect(db_url)
    try:
        yield a, b
    finally:
        a.dispose()
        b.dispose()


def record(db: Database, n: int, forge: str = "github") -> list[int]:
    return [inbox.record(db, forge, f"d-{i}", "push", {"n": i})[0] for i in range(n)]


def statuses(db: Database) -> dict[int, tuple[str, int, str | None]]:
    with db.session() as s:
        rows = s.scalars(select(InboxEvent)).all()
        return {r.id: (r.status, r.attempts, r.error) for r in rows}


async def test_two_replicas_handle_every_delivery_once(
    replicas: tuple[Database, Database],
) -> None:
    a, b = replicas
    ids = record(a, 40)
    handled: list[tuple[str, int]] = []

    def worker(db: Database, name: str) -> InboxWorker:
        async def dispatch(row: InboxEvent) -> None:
            handled.append((name, row.id))
            await asyncio.sleep(0)  # yield: the other replica claims meanwhile

        return InboxWorker(db, "github", dispatch, poll_s=0.05)

    wa, wb = worker(a, "a"), worker(b, "b")
    for i in ids:  # each replica's webhooks answered half of them
        (wa if i % 2 else wb).submit(i)
    await wa.start()
    await wb.start()
    try:
        await asyncio.wait_for(asyncio.gather(wa.drain(), wb.drain()), 60)
    finally:
        await wa.stop()
        await wb.stop()
    assert sorted(i for _, i in handled) == ids  # each once
    assert {name for name, _ in handled} == {"a", "b"}  # both took part
    assert {s for s, _, _ in statuses(a).values()} == {"processed"}


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_settle(
    replicas: tuple[Database, Database],
) -> None:
    a, b = replicas
    (only,) = record(a, 1)
    held = inbox_claims.claim(a, "github", lease_s=30)
    assert held is not None and held.id == only and held.attempts == 1
    assert inbox_claims.claim(b, "github", lease_s=30) is None  # leased: not b's
    assert inbox_claims.renew(a, held, 30)
    # a dies: nobody renews; once the lease is past, b's claim takes it over.
    with a.engine.begin() as conn:
        conn.execute(
            update(InboxEvent.__table__)  # type: ignore[arg-type]
            .where(InboxEvent.id == only)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
    taken = inbox_claims.claim(b, "github", lease_s=30)
    assert taken is not None and taken.id == only and taken.attempts == 2
    assert taken.token != held.token
    assert not inbox_claims.renew(a, held, 30)  # a, back from the dead, lost it
    assert not inbox_claims.done(a, held)
    assert inbox_claims.done(b, taken)
    assert statuses(a)[only][0] == "processed"


async def test_failed_handlers_are_retried_with_backoff_then_dead_lettered_and_replayed(
    db_url: str,
) -> None:
    db = Database.connect(db_url)
    try:
        ok, bad = record(db, 2)
        calls: list[int] = []
        healed = False

        async def dispatch(row: InboxEvent) -> None:
            calls.append(row.id)
            if row.id == bad and not healed:
                raise ValueError(f"boom {len(calls)}")

        w = InboxWorker(db, "github", dispatch, attempts=3, retry_base_s=0.01, poll_s=0.05)
        w.submit(ok)
        w.submit(bad)
        await w.start()
        try:
            await asyncio.wait_for(w.drain(), 30)
            assert calls.count(ok) == 1 and calls.count(bad) == 3
            rows = statuses(db)
            assert rows[ok] == ("processed", 1, None)
            status, attempts, error = rows[bad]
            assert (status, attempts) == ("failed", 3) and error and "ValueError: boom" in error
            failed = inbox_claims.deliveries(db, failed_only=True)
            assert [d.id for d in failed] == [bad]
            # Fixed (a bug, a forge that was down): the operator replays it.
            healed = True
            assert inbox_claims.replay(db, bad) == "failed"
            assert inbox_claims.replay(db, ok) == "processed"  # not failed: left alone
            assert inbox_claims.replay(db, 10**6) is None
            w.submit(bad)
            await asyncio.wait_for(w.drain(), 30)
            assert statuses(db)[bad][:2] == ("processed", 1)
            assert calls.count(ok) == 1
        finally:
            await w.stop()
    finally:
        db.dispose()


def test_retry_delays_double_and_are_capped() -> None:
    assert [retry_delay(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert retry_delay(30, 2.0) == 300.0


async def test_a_stopped_worker_hands_its_delivery_back_at_once(db_url: str) -> None:
    db = Database.connect(db_url)
    try:
        (only,) = record(db, 1)
        started = asyncio.Event()

        async def stuck(row: InboxEvent) -> None:
            started.set()
            await asyncio.Event().wait()  # until cancelled

        w = InboxWorker(db, "github", stuck, poll_s=0.05)
        w.submit(only)
        await w.start()
        await asyncio.wait_for(started.wait(), 10)
        await w.stop()
        again = inbox_claims.claim(db, "github", lease_s=30)  # no lease to wait out
        assert again is not None and again.id == only and again.attempts == 1
    finally:
        db.dispose()


async def test_more_lock_holders_than_lock_connections_all_get_their_turn(
    replicas: tuple[Database, Database],
) -> None:
    """300 pipelines' reports at once each hold their own advisory lock: past the lock
    pool's connections the next waits its turn (holding nothing) instead of timing out
    in the pool's checkout after 30 s and losing its report."""
    a, _ = replicas
    if not is_postgres(a):
        pytest.skip("advisory locks are PostgreSQL's (SQLite serves one process)")
    cap = LOCK_POOL_SIZE + LOCK_POOL_OVERFLOW
    go = asyncio.Event()
    inside: list[int] = []
    most = 0

    async def report(pid: int) -> None:
        nonlocal most
        async with serialized(a, "report:test", pid):
            inside.append(pid)
            most = max(most, len(inside))
            await go.wait()
            inside.remove(pid)

    tasks = [asyncio.create_task(report(pid)) for pid in range(cap + 40)]
    while len(inside) < cap:  # the first ``cap`` take theirs; the rest wait
        await asyncio.sleep(0.01)
    assert all(not t.done() for t in tasks)
    # ... and wait without a thread: work off the loop still runs (blocked in the pool's
    # checkout, 40 waiters would hold every worker thread for 30 s)
    assert await asyncio.wait_for(asyncio.to_thread(lambda: "ran"), 5) == "ran"
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)  # each got its turn, none failed
    assert most == cap


def test_one_starting_machine_per_attempt(db_url: str) -> None:
    db = Database.connect(db_url)
    try:

        def machine(agent: str, attempt: int | None) -> NewInstance:
            return NewInstance(
                pool="t4:1",
                instance_type="g4dn.xlarge",
                hardware="t4:1",
                market="on-demand",
                az="a",
                subnet_id="s",
                price_hourly=0.5,
                agent_id=agent,
                token_hash=agent.ljust(64, "0"),
                launched_for=attempt,
            )

        add(db, machine("ec2-one", 7))
        with pytest.raises(AlreadyStarting):
            add(db, machine("ec2-two", 7))  # a second launcher for attempt 7: refused
        add(db, machine("ec2-three", 8))
        add(db, machine("ec2-warm1", None))  # pool machines: for no attempt
        add(db, machine("ec2-warm2", None))
    finally:
        db.dispose()


def test_the_deployment_id_is_made_once_per_database(
    replicas: tuple[Database, Database],
) -> None:
    a, b = replicas
    assert deployment_id(a) == deployment_id(b)
    assert deployment_id(a).startswith("ployd-")


@pytest.mark.postgres
async def test_one_leader_and_the_next_takes_over_when_it_goes(
    replicas: tuple[Database, Database],
) -> None:
    a, b = replicas
    if a.engine.dialect.name != "postgresql":
        pytest.skip("leadership is elected on PostgreSQL only")
    la, lb = Leadership(a, retry_s=0.05), Leadership(b, retry_s=0.05)
    la.start()
    await asyncio.wait_for(la.wait(), 10)
    lb.start()
    try:
        # b tries for the lock (several rounds) and never gets it while a holds it
        await asyncio.wait_for(_rounds(lb, 5), 10)
        assert la.leading and not lb.leading
        await la.stop()  # its connection closes: the lock is free
        await asyncio.wait_for(lb.wait(), 10)
        assert lb.leading and lb.terms == 1
    finally:
        await la.stop()
        await lb.stop()


async def _rounds(leadership: Leadership, n: int) -> None:
    """Until ``leadership`` has tried for the lock ``n`` more times (polled state)."""
    goal = leadership.tries + n
    while leadership.tries < goal:
        await asyncio.sleep(0.01)


def test_sqlite_serves_one_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'ployd.db'}"
    first = SingleProcess.for_url(url)
    second = SingleProcess.for_url(url)
    assert first is not None and second is not None
    first.acquire()
    try:
        with pytest.raises(AlreadyServing, match="use PostgreSQL"):
            second.acquire()
    finally:
        first.release()
    second.acquire()  # free again once the first is gone
    second.release()
    assert SingleProcess.for_url("postgresql+psycopg://u@h/db") is None
    assert SingleProcess.for_url("sqlite://") is None
