"""Coordination between replicas, on the database itself (README "Run several replicas").

- ``Leadership``: one replica at a time runs the loops that need a single runner (the
  sweep, the EC2 launcher and reaper, artifact expiry). It is a PostgreSQL session-level
  advisory lock (``pg_try_advisory_lock``) held on a dedicated connection, with TCP
  keepalives: when the leader dies, PostgreSQL ends its session and the lock is free;
  the other replicas try for it every ``retry_s`` and the first to get it leads. The
  leader checks its connection every ``retry_s`` and steps down when it breaks. On
  SQLite there is one process (``SingleProcess``): it always leads.
- ``serialized``: one replica at a time does something about one key (a pipeline's
  reports), with a transaction-free advisory lock on a pooled connection.
- ``SingleProcess``: SQLite is the embedded, one-process default; a second server on the
  same database file refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import weakref
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from app.store.db import Database, make_engine
from app.store.models import Deployment

log = logging.getLogger("ployd.coord")

# Namespaces of the two-int advisory locks (first key): PloyD's, then what it locks.
LEADER = 0x504C0001
SERIAL = 0x504C0002

# Dead peers are noticed within seconds, not the kernel's two hours.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 8000,
}


def _key(name: str) -> int:
    """A name as a signed 32-bit advisory lock key."""
    value = zlib.crc32(name.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _schema(conn: Connection) -> str:
    return str(conn.execute(text("SELECT current_schema()")).scalar() or "")


def is_postgres(db: Database) -> bool:
    return db.engine.dialect.name == "postgresql"


class Leadership:
    """Whether this replica leads, kept up to date by ``run()`` (a task)."""

    def __init__(self, db: Database, name: str = "ployd", *, retry_s: float = 1.0) -> None:
        self.db = db
        self.name = name
        self.retry_s = retry_s
        self._single = not is_postgres(db)
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._lock = 0  # the advisory lock's second key: the name in this schema
        self._leading = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.terms = 0  # how many times this replica became leader
        self.tries = 0  # how many times it tried for the lock
        if self._single:
            self._leading.set()

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    async def wait(self) -> None:
        """Until this replica leads."""
        await self._leading.wait()

    def start(self) -> None:
        if not self._single and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"leader-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._drop)

    async def _run(self) -> None:
        while True:
            try:
                if self.leading:
                    await asyncio.to_thread(self._check)
                else:
                    got = await asyncio.to_thread(self._try)
                    self.tries += 1
                    if got:
                        self.terms += 1
                        log.info("this replica leads now (%s)", self.name)
                        self._leading.set()
            except Exception as e:  # the connection broke: step down, try again
                if self.leading:
                    log.warning("leadership lost (%s): stepping down", e)
                self._leading.clear()
                await asyncio.to_thread(self._drop)
            await asyncio.sleep(self.retry_s)  # a periodic try for the lock, not a wait

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._engine is None:
                url = self.db.engine.url.render_as_string(hide_password=False)
                self._engine = make_engine(url, poolclass=NullPool, connect_args=KEEPALIVES)
            self._conn = self._engine.connect()
            self._conn.execution_options(isolation_level="AUTOCOMMIT")
            # Advisory locks are per database: deployments (or tests) in other schemas
            # of the same database elect their own leaders.
            self._lock = _key(f"{self.name}@{_schema(self._conn)}")
        return self._conn

    def _try(self) -> bool:
        conn = self._connection()
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": LEADER, "b": self._lock}
        ).scalar()
        return bool(got)

    def _check(self) -> None:
        conn = self._connection()
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid = (:a)::oid AND objid = (:b)::oid"
            ),
            {"a": LEADER & 0xFFFFFFFF, "b": self._lock & 0xFFFFFFFF},
        ).scalar()
        if not held:
            raise RuntimeError("the advisory lock is no longer held")

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


async def every(leadership: Leadership, period_s: float, what: str, run: Any) -> None:
    """Run ``run()`` (a coroutine function) every ``period_s`` while this replica leads."""
    while True:
        await leadership.wait()
        try:
            await run()
        except Exception:  # keep going; report it
            log.exception("%s failed", what)
        await asyncio.sleep(period_s)  # a periodic pass, not a wait for something


_LOCK_ENGINES: weakref.WeakKeyDictionary[Database, Engine] = weakref.WeakKeyDictionary()
RETRY_LOCK_S = 0.05
LOCK_POOL_SIZE, LOCK_POOL_OVERFLOW = 2, 30
# Held locks per event loop and database, at most the lock pool's connections: the next
# one waits here, holding nothing (not in the pool's checkout, which gives up after 30 s:
# a burst of 300 pipelines' reports on PostgreSQL lost the ones past the 32nd).
_LOCK_SLOTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[Database, asyncio.Semaphore]
] = weakref.WeakKeyDictionary()


def _lock_slots(db: Database) -> asyncio.Semaphore:
    per_db = _LOCK_SLOTS.setdefault(asyncio.get_running_loop(), weakref.WeakKeyDictionary())
    slots = per_db.get(db)
    if slots is None:
        slots = per_db[db] = asyncio.Semaphore(LOCK_POOL_SIZE + LOCK_POOL_OVERFLOW)
    return slots


def _lock_engine(db: Database) -> Engine:
    """A pool of its own for held advisory locks: a holder never takes the connections
    the work under the lock needs."""
    engine = _LOCK_ENGINES.get(db)
    if engine is None:
        url = db.engine.url.render_as_string(hide_password=False)
        engine = _LOCK_ENGINES[db] = make_engine(
            url,
            pool_size=LOCK_POOL_SIZE,
            max_overflow=LOCK_POOL_OVERFLOW,
            connect_args=KEEPALIVES,
        )
    return engine


@contextlib.asynccontextmanager
async def serialized(db: Database, name: str, key: int) -> AsyncIterator[None]:
    """Hold ``(name, key)``'s advisory lock, whichever replica asks: one at a time. It is
    tried, not waited for (no thread and no connection is held while another replica
    has it). On SQLite (one process) it holds nothing."""
    if not is_postgres(db):
        yield
        return
    engine = _lock_engine(db)

    def take() -> tuple[Connection, dict[str, int]] | None:
        conn = engine.connect()
        try:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            args = {"a": SERIAL ^ _key(f"{name}@{_schema(conn)}"), "b": key & 0x7FFFFFFF}
            if conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), args).scalar():
                return conn, args
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None

    async with _lock_slots(db):
        while (held := await asyncio.to_thread(take)) is None:
            await asyncio.sleep(RETRY_LOCK_S)  # another replica holds it: try again shortly
        conn, args = held

        def give_back() -> None:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), args)
            finally:
                conn.close()

        try:
            yield
        finally:
            await asyncio.to_thread(give_back)


class AlreadyServing(RuntimeError):
    """Another server uses this SQLite database."""


class SingleProcess:
    """An exclusive lock on ``<database file>.serve-lock`` while a server runs on SQLite:
    the kernel drops it when the process ends, however it ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_url(cls, url: str) -> SingleProcess | None:
        """The lock for the database file at ``url``; None on PostgreSQL or an in-memory
        SQLite."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return None
        database = parsed.database
        if not database or database == ":memory:":
            return None
        return cls(Path(database).resolve().with_name(Path(database).name + ".serve-lock"))

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyServing(
                f"another PloyD server (pid {holder or '?'}) is running on the SQLite "
                f"database {self.path.with_suffix('')}: SQLite is for one process; to run "
                "several replicas, use PostgreSQL (PLOYD_DATABASE_URL=postgresql+psycopg://"
                '...; README "Run several replicas")'
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def deployment_id(db: Database) -> str:
    """This database's deployment id (made once, by the migrations)."""
    with db.engine.connect() as conn:
        found = conn.execute(select(Deployment.deployment_id).where(Deployment.id == 1)).scalar()
    if not found:
        raise RuntimeError("the deployment table has no row: run `ployd db upgrade`")
    return str(found)
