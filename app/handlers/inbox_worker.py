"""Feeds one forge's inbox deliveries to its handlers, after the webhook answered.

Every replica runs one worker per forge; they share the inbox (``app.store.inbox_claims``):
each claims the oldest delivery nobody holds, with a lease it renews while the handler
runs, so a delivery is handled by one replica at a time, and one that died mid-delivery
loses it to the next claim once its lease expires. A webhook answered by this replica
wakes its worker at once; deliveries of other replicas, retries that came due and
replays (``ployd inbox replay``) are found by polling every ``poll_s``.

A handler that fails is retried with backoff (``retry_base_s``, doubling), ``attempts``
times in all, then dead-lettered: ``failed`` with the error. Handlers are safe to run
again for a delivery another replica half-handled: a pipeline is unique per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from app.engine.notify import wait_set
from app.settings import Settings
from app.store import inbox_claims
from app.store.db import Database
from app.store.inbox_claims import Claimed
from app.store.models import InboxEvent, utcnow

log = logging.getLogger("ployd.inbox")

Dispatch = Callable[[InboxEvent], Awaitable[None]]

RETRY_CAP_S = 300.0


def retry_delay(attempt: int, base_s: float) -> float:
    """Seconds before attempt ``attempt + 1`` of a failed delivery: doubling, capped."""
    return float(min(RETRY_CAP_S, base_s * 2 ** max(0, attempt - 1)))


def inbox_options(settings: Settings) -> dict[str, Any]:
    """The worker's lease and retries, as ``settings`` say (``InboxWorker``'s keywords)."""
    return {
        "lease_s": float(settings.inbox_lease_s),
        "attempts": settings.inbox_attempts,
        "retry_base_s": float(settings.inbox_retry_s),
    }


class InboxWorker:
    def __init__(
        self,
        db: Database,
        forge: str,
        dispatch: Dispatch,
        *,
        lease_s: float = 30.0,
        attempts: int = 5,
        retry_base_s: float = 2.0,
        poll_s: float = 1.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts: at least 1")
        self.db = db
        self.forge = forge
        self.dispatch = dispatch
        self.lease_s = lease_s
        self.attempts = attempts
        self.retry_base_s = retry_base_s
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._submitted: set[int] = set()  # by this replica's webhooks, not yet settled
        self._next_due: float | None = None  # loop time of the soonest retry we set
        self._task: asyncio.Task[None] | None = None
        self.processed = 0  # deliveries this worker settled (processed or dead-lettered)
        self.handled = 0  # handler runs, retries included

    def submit(self, inbox_id: int) -> None:
        self._submitted.add(inbox_id)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"{self.forge}-inbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self) -> None:
        """Wait until every delivery submitted here is settled, by this replica or
        another (for tests and benches)."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._submitted)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                claimed = await asyncio.to_thread(
                    inbox_claims.claim, self.db, self.forge, self.lease_s
                )
            except Exception:  # the database is away: keep trying
                log.exception("%s inbox: claiming failed", self.forge)
                claimed = None
            if claimed is not None:
                await self.handle(claimed)
                await asyncio.sleep(0)  # let waiting webhook requests be answered
                continue
            await self._prune()
            await wait_set(self._wake, self._idle_wait())

    def _idle_wait(self) -> float:
        wait = self.poll_s
        if self._next_due is not None:
            due = self._next_due - asyncio.get_running_loop().time()
            if due <= 0:
                self._next_due = None
            wait = max(0.0, min(wait, due))
        return wait

    async def _prune(self) -> None:
        """Forget submitted deliveries that are settled (another replica's doing)."""
        if not self._submitted:
            return
        try:
            gone = await asyncio.to_thread(inbox_claims.settled, self.db, set(self._submitted))
        except Exception:
            log.exception("%s inbox: reading what is settled failed", self.forge)
            return
        if gone:
            await self._settle(gone)

    async def _settle(self, ids: set[int]) -> None:
        async with self._changed:
            self._submitted -= ids
            self._changed.notify_all()

    async def _renew(self, c: Claimed) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)  # a periodic lease renewal, not a wait
            if not await asyncio.to_thread(inbox_claims.renew, self.db, c, self.lease_s):
                log.warning(
                    "%s delivery %s: its lease was lost (taken over by another replica)",
                    self.forge,
                    c.delivery_id,
                )
                return

    async def handle(self, c: Claimed) -> None:
        row = InboxEvent(
            id=c.id,
            forge=c.forge,
            delivery_id=c.delivery_id,
            event=c.event,
            payload=c.payload,
            status=inbox_claims.RECEIVED,
            attempts=c.attempts,
        )
        renewer = asyncio.create_task(self._renew(c), name=f"{self.forge}-lease-{c.id}")
        self.handled += 1
        settled = True
        try:
            try:
                await self.dispatch(row)
            finally:
                renewer.cancel()
        except asyncio.CancelledError:  # stopping: hand the delivery back at once
            await asyncio.shield(asyncio.to_thread(inbox_claims.release, self.db, c))
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            if c.attempts >= self.attempts:
                log.exception(
                    "%s delivery %s (%s) failed %d time(s): dead-lettered",
                    self.forge,
                    c.delivery_id,
                    c.event,
                    c.attempts,
                )
                await asyncio.to_thread(inbox_claims.failed, self.db, c, error, None)
            else:
                delay = retry_delay(c.attempts, self.retry_base_s)
                log.warning(
                    "%s delivery %s (%s) failed (attempt %d of %d: %s): retried in %.1fs",
                    self.forge,
                    c.delivery_id,
                    c.event,
                    c.attempts,
                    self.attempts,
                    error,
                    delay,
                    exc_info=True,
                )
                retry_at = utcnow() + timedelta(seconds=delay)
                await asyncio.to_thread(inbox_claims.failed, self.db, c, error, retry_at)
                due = asyncio.get_running_loop().time() + delay
                self._next_due = due if self._next_due is None else min(self._next_due, due)
                settled = False
        else:
            # Off the loop, as the claim: a commit must not hold up webhook answers.
            settled = await asyncio.to_thread(inbox_claims.done, self.db, c)
            if not settled:
                log.warning(
                    "%s delivery %s: handled, but its lease had been taken over",
                    self.forge,
                    c.delivery_id,
                )
        if settled:
            self.processed += 1
            await self._settle({c.id})
