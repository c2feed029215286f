"""In-process wake-ups: a waiting claim or heartbeat returns as soon as there is news."""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait up to ``timeout`` seconds (None: no limit) for ``event``; False when the time
    ran out first.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 that swallows a
    cancellation arriving as the event is set, and a task being stopped then goes on
    (a server shutdown waiting on it for ever). ``asyncio.timeout`` keeps it."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(None if timeout is None else max(timeout, 0.0)):
            await event.wait()
        return True
    except TimeoutError:
        return False


class Broadcast:
    """Wakes every current waiter on ``notify()``; waiters then re-check their condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next ``notify()``; False when ``timeout`` passed first."""
        return await wait_set(self._event, timeout)
