"""In-process wake-ups: a waiting claim or heartbeat returns as soon as there is news."""

from __future__ import annotations

import asyncio


class Broadcast:
    """Wakes every current waiter on ``notify()``; waiters then re-check their condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next ``notify()``; False when ``timeout`` passed first."""
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
