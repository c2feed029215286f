"""Serving a fake forge on loopback: shared by the fake GitHub and the fake GitLab."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from aiohttp import web


class Fake(Protocol):
    base_url: str

    def make_app(self) -> web.Application: ...

    def assert_no_violations(self) -> None: ...


F = TypeVar("F", bound=Fake)


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start ``app`` on 127.0.0.1 (a random port): its runner (``cleanup()`` stops it)
    and its ``host:port``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"{host}:{port}"


@asynccontextmanager
async def serve(fake: F, *, assert_clean: bool = True) -> AsyncIterator[F]:
    """Serve ``fake`` on 127.0.0.1 (random port) for the block.

    On a clean exit, fails if requests the real service would reject were recorded
    (unless ``assert_clean=False``); call ``fake.take_violations()`` after provoking them.
    """
    runner, address = await start_app(fake.make_app())
    fake.base_url = f"http://{address}"
    try:
        yield fake
    finally:
        await runner.cleanup()
    if assert_clean:
        fake.assert_no_violations()


class ViolationLog:
    """What a fake records of requests the real service would reject."""

    service = "the service"
    violations: list[Any]

    def take_violations(self) -> list[Any]:
        """The violations so far, forgotten (for tests that provoke them on purpose)."""
        taken, self.violations = self.violations, []
        return taken

    def assert_no_violations(self) -> None:
        if self.violations:
            lines = "\n  ".join(str(v) for v in self.violations)
            raise AssertionError(f"requests {self.service} would reject:\n  {lines}")


def maybe_json(body: bytes) -> Any:
    """A request body as JSON when it is, else as text (None when empty)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
