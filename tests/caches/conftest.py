"""The end-to-end harness of tests/e2e (a real server, real local agents, real git)."""

from __future__ import annotations

from tests.e2e.conftest import serve

__all__ = ["serve"]
