"""Fixtures for the adapter tests: a fake GitHub served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.github import FakeGitHub, serve_fake_github
from tests.fakes.gitlab import FakeGitLab, serve_fake_gitlab


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """A fresh fake GitHub; the test fails if a request GitHub would reject was made."""
    async with serve_fake_github() as fake:
        yield fake


@pytest.fixture
async def fake_gitlab() -> AsyncIterator[FakeGitLab]:
    """A fresh fake GitLab; the test fails if a request GitLab would reject was made."""
    async with serve_fake_gitlab() as fake:
        yield fake
