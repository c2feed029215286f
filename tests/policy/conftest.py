"""An engine whose tenants' policy comes from a policy file written by the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.hardware import Catalog
from app.engine.hooks import EngineHooks
from app.policy.enforce import PolicyBook
from app.policy.setup import Security
from app.secrets.crypto import Cipher, LocalKey
from app.secrets.store import SecretStore
from app.store.db import Database
from tests.e2e.conftest import serve  # noqa: F401
from tests.engine.conftest import driver, engine, engine_db  # noqa: F401


@pytest.fixture
def policy_book() -> PolicyBook:
    """The engine's policy book: no file until ``with_policy`` writes one."""
    return PolicyBook(Catalog.default())


@pytest.fixture
def engine_hooks(engine_db: Database, policy_book: PolicyBook) -> EngineHooks:  # noqa: F811
    return Security(SecretStore(engine_db, Cipher(LocalKey(b"k" * 32))), policy_book).hooks()


@pytest.fixture
def with_policy(policy_book: PolicyBook, tmp_path: Path) -> Callable[[str], PolicyBook]:
    """``with_policy(yaml)``: the engine enforces that policy file."""

    def make(text: str) -> PolicyBook:
        path = tmp_path / "policy.yml"
        path.write_text(text)
        policy_book.path = str(path)
        assert policy_book.reload(), "the test's policy file did not load"
        return policy_book

    return make
