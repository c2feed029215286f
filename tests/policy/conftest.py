"""An engine whose tenants' policy comes from a policy file written by the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.policy.enforce import PolicyBook
from app.policy.setup import attach
from app.secrets.crypto import Cipher, LocalKey
from app.secrets.store import SecretStore
from tests.e2e.conftest import serve  # noqa: F401
from tests.engine.conftest import driver, engine  # noqa: F401


@pytest.fixture
def with_policy(engine: Engine, tmp_path: Path) -> Callable[[str], PolicyBook]:  # noqa: F811
    """``with_policy(yaml)``: the engine enforces that policy file."""

    def make(text: str) -> PolicyBook:
        path = tmp_path / "policy.yml"
        path.write_text(text)
        book = PolicyBook(Catalog.default(), str(path))
        attach(engine, SecretStore(engine.db, Cipher(LocalKey(b"k" * 32))), book)
        return book

    return make
