"""The log store, driven by the engine's events: finishing logs when attempts end, and
waking live tails.

* An attempt ends (``AttemptEnded``): its store's ``finish`` runs in a worker thread (the
  S3 store compacts the chunks into one object), and ``log_appended`` is notified so
  live tails (SSE) see the end at once.
* A pipeline changes (``PipelinesChanged``): ``log_appended`` too, so a page waiting for
  a queued job's first line learns that it started, was cancelled, or was retried.
* At start, logs left unfinished by a stopped replica are finished (``recover``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.engine.engine import Engine
from app.engine.events import AttemptEnded, PipelinesChanged
from app.logs.store import LogStore
from app.store.models import Attempt

log = logging.getLogger("ployd.logs")


class LogFinisher:
    def __init__(self, engine: Engine, store: LogStore) -> None:
        self.engine = engine
        self.store = store
        self.pending: set[asyncio.Future[None]] = set()
        self._subscriptions: list[Callable[[], None]] = []

    def attach(self) -> LogFinisher:
        """Subscribe to the engine's events (once)."""
        if not self._subscriptions:
            events = self.engine.events
            self._subscriptions = [
                events.subscribe(AttemptEnded, self._ended),
                events.subscribe(PipelinesChanged, lambda _e: self.engine.log_appended.notify()),
            ]
        return self

    def detach(self) -> None:
        """Stop following the engine (a replica that stops before finishing its logs)."""
        for unsubscribe in self._subscriptions:
            unsubscribe()
        self._subscriptions = []

    def _ended(self, event: AttemptEnded) -> None:
        self.engine.log_appended.notify()
        self.schedule(event.attempt_id)

    def schedule(self, attempt_id: int) -> None:
        if not self.store.needs_finish:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the server (a script, a sync test)
            self.finish_attempt(attempt_id)
            return
        task = loop.create_task(asyncio.to_thread(self.finish_attempt, attempt_id))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def finish_attempt(self, attempt_id: int) -> None:
        """Blocking: look the log up and finish it; failures are logged (retried at the
        next start by ``recover``)."""
        try:
            with self.engine.db.session() as s:
                attempt = s.get(Attempt, attempt_id)
                path = attempt.log_path if attempt is not None else None
            if path:
                self.store.finish(path)
        except Exception:
            log.exception("could not finish the log of attempt %d", attempt_id)

    def recover(self) -> None:
        """Finish the logs of attempts that ended while no one finished them."""
        unfinished = getattr(self.store, "unfinished", None)
        if unfinished is None:
            return
        for attempt_id in unfinished():
            self.schedule(attempt_id)

    async def drain(self) -> None:
        """Wait for the finishes under way (at shutdown, and in tests)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

