"""Feeds inbox deliveries to the GitHub handlers, in order, after the webhook answered.

Deliveries left unprocessed when the server stopped are picked up again at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gidgethub import routing, sansio

from app.handlers.github.context import GitHubContext
from app.store import inbox

log = logging.getLogger("ployd.github")


class GitHubWorker:
    def __init__(self, ctx: GitHubContext, router: routing.Router) -> None:
        self.ctx = ctx
        self.router = router
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    def submit(self, inbox_id: int) -> None:
        self._queue.put_nowait(inbox_id)

    async def start(self) -> None:
        for inbox_id in inbox.pending(self.ctx.services.db, "github"):
            self.submit(inbox_id)
        self._task = asyncio.create_task(self._loop(), name="github-worker")

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

    async def handle(self, inbox_id: int) -> None:
        db = self.ctx.services.db
        row = inbox.load(db, inbox_id)
        if row is None or row.status != "received":
            return
        event = sansio.Event(row.payload, event=row.event, delivery_id=row.delivery_id)
        try:
            await self.router.dispatch(event, ctx=self.ctx, inbox_id=inbox_id)
        except Exception as e:
            log.exception("delivery %s (%s) failed", row.delivery_id, row.event)
            inbox.mark(db, inbox_id, "failed", f"{type(e).__name__}: {e}")
        else:
            inbox.mark(db, inbox_id, "processed")
        self.processed += 1
