"""Secrets on an engine: a store with a test key, wired like `ployd serve` wires it."""

from __future__ import annotations

import pytest

from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.policy.enforce import PolicyBook
from app.policy.setup import attach
from app.secrets.crypto import Cipher, LocalKey
from app.secrets.store import SecretStore
from tests.e2e.conftest import serve  # noqa: F401  (the real server, for masking)
from tests.engine.conftest import driver, engine  # noqa: F401

KEY = b"test-master-key-0123456789abcdef"


@pytest.fixture
def store(engine: Engine) -> SecretStore:  # noqa: F811
    s = SecretStore(engine.db, Cipher(LocalKey(KEY)))
    attach(engine, s, PolicyBook(Catalog.default()))
    return s
