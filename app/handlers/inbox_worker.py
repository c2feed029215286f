"""Feeds one forge's inbox deliveries to its handlers, in order, after the webhook answered.

Deliveries left unprocessed when the server stopped are picked up again at start. A
delivery whose handler fails is marked failed with the error, and the next one goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from app.store import inbox
from app.store.db import Database
from app.store.models import InboxEvent

log = logging.getLogger("ployd.inbox")

Dispatch = Callable[[InboxEvent], Awaitable[None]]


class InboxWorker:
    def __init__(self, db: Database, forge: str, dispatch: Dispatch) -> None:
        self.db = db
        self.forge = forge
        self.dispatch = dispatch
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    def submit(self, inbox_id: int) -> None:
        self._queue.put_nowait(inbox_id)

    async def start(self) -> None:
        for inbox_id in inbox.pending(self.db, self.forge):
            self.submit(inbox_id)
        self._task = asyncio.create_task(self._loop(), name=f"{self.forge}-inbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self) -> None:
        """Wait until every submitted delivery has been handled (for tests and benches)."""
        await self._queue.join()

    async def _loop(self) -> None:
        while True:
            inbox_id = await self._queue.get()
            try:
                await self.handle(inbox_id)
            finally:
                self._queue.task_done()
            # Let waiting webhook requests be answered before the next delivery's work.
            await asyncio.sleep(0)

    async def handle(self, inbox_id: int) -> None:
        row = inbox.load(self.db, inbox_id)
        if row is None or row.status != "received":
            return
        try:
            await self.dispatch(row)
        except Exception as e:
            log.exception("%s delivery %s (%s) failed", self.forge, row.delivery_id, row.event)
            inbox.mark(self.db, inbox_id, "failed", f"{type(e).__name__}: {e}")
        else:
            inbox.mark(self.db, inbox_id, "processed")
        self.processed += 1
