"""Secrets on an engine: a store with a test key, wired like `ployd serve` wires it."""

from __future__ import annotations

import pytest

from app.core.hardware import Catalog
from app.engine.hooks import EngineHooks
from app.policy.enforce import PolicyBook
from app.policy.setup import Security
from app.secrets.crypto import Cipher, LocalKey
from app.secrets.store import SecretStore
from app.store.db import Database
from tests.e2e.conftest import serve  # noqa: F401  (the real server, for masking)
from tests.engine.conftest import driver, engine, engine_db  # noqa: F401

KEY = b"test-master-key-0123456789abcdef"


@pytest.fixture
def store(engine_db: Database) -> SecretStore:  # noqa: F811
    return SecretStore(engine_db, Cipher(LocalKey(KEY)))


@pytest.fixture
def engine_hooks(store: SecretStore) -> EngineHooks:
    return Security(store, PolicyBook(Catalog.default())).hooks()
