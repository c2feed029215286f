"""Fixtures for the adapter tests: a fake GitHub served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.github import FakeGitHub, serve_fake_github


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """A fresh fake GitHub; the test fails if a request GitHub would reject was made."""
    async with serve_fake_github() as fake:
        yield fake
