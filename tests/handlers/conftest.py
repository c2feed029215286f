"""Fixtures of the handler tests: a real engine on a fresh database, and each forge's
world around it (``tests/handlers/world.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.engine import Engine
from app.logs.disk import DiskLogStore
from app.store.db import Database
from tests.handlers.world import GitHubWorld, GitLabWorld


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    db = Database.connect(db_url)
    yield Engine(db, DiskLogStore(tmp_path / "logs"))
    db.dispose()


@pytest.fixture
def github(engine: Engine) -> GitHubWorld:
    return GitHubWorld(engine)


@pytest.fixture
def gitlab(engine: Engine) -> GitLabWorld:
    return GitLabWorld(engine)
