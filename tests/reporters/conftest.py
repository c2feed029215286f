"""Fixtures of the reporter tests: a real engine on a fresh database, and the world
around it (``tests/reporters/world.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.engine import Engine
from app.logs.disk import DiskLogStore
from app.store.db import Database
from tests.reporters.world import World


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    db = Database.connect(db_url)
    yield Engine(db, DiskLogStore(tmp_path / "logs"))
    db.dispose()


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    return World(engine, tmp_path)
