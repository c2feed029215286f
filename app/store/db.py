"""The database connection: SQLite (WAL) by default, PostgreSQL when configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, object_session, sessionmaker

# A unit of work, as code outside the store names it (it never imports SQLAlchemy).
Tx = Session

MIGRATIONS = Path(__file__).parent / "migrations"


def session_of(row: object) -> Tx | None:
    """The transaction a loaded row belongs to (None once detached)."""
    return object_session(row)


class RawJSON(str):
    """JSON text already encoded (a webhook's verified body): a JSON column stores it as
    it is, instead of parsing and encoding it again."""

    __slots__ = ()


def _json_serializer(value: Any) -> str:
    if isinstance(value, RawJSON):
        return str.__str__(value)
    try:  # orjson: 5-10x the standard library's speed (10,000 jobs are 60,000 values)
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # an integer over 64 bits, say
        return json.dumps(value)


def _json_deserializer(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what only the standard library reads (huge integers)
        return json.loads(text)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys. JSON
    columns take ``RawJSON`` text as it is."""
    kwargs.setdefault("json_serializer", _json_serializer)
    kwargs.setdefault("json_deserializer", _json_deserializer)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # No checkpoint inside a commit (it syncs to disk and stalls the server for
            # milliseconds): ``checkpoint()`` runs in the background instead.
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Run the Alembic migrations up to ``revision`` (default: every head, so that
    independently added migration branches all apply) on ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    url = engine.url.render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # replicas starting at once: one at a time
            conn.execute(text(f"SELECT pg_advisory_xact_lock({0x504C0003})"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class Database:
    """An engine and a session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def connect(cls, url: str, migrate: bool = True) -> Database:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction, committed at the end (rolled back on error)."""
        with self.sessions() as s, s.begin():
            yield s

    def ping(self) -> None:
        """A round trip to the database (``SELECT 1`` in a transaction); raises when it
        cannot be reached."""
        with self.session() as s:
            s.execute(text("SELECT 1"))

    def checkpoint(self) -> None:
        """Fold SQLite's write-ahead log into the database (blocking: run it in a thread).
        Nothing to do on PostgreSQL."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def dispose(self) -> None:
        self.engine.dispose()
