"""Wiring the log store to the engine: finishing logs when attempts end, and waking
live tails.

* An attempt ends (``engine.end_listeners``): its store's ``finish`` runs in a worker
  thread (the S3 store compacts the chunks into one object), and ``log_appended`` is
  notified so live tails (SSE) see the end at once.
* A pipeline changes (``engine.listeners``): ``log_appended`` too, so a page waiting for
  a queued job's first line learns that it started, was cancelled, or was retried.
* At start, logs left unfinished by a stopped replica are finished.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from app.engine.engine import Engine
from app.logs.store import LogStore
from app.store.models import Attempt

log = logging.getLogger("ployd.logs")


class LogFinisher:
    def __init__(self, engine: Engine, store: LogStore) -> None:
        self.engine = engine
        self.store = store
        self.pending: set[asyncio.Future[None]] = set()

    def attach(self) -> LogFinisher:
        self.engine.end_listeners.append(self._ended)
        self.engine.listeners.append(lambda _ids: self.engine.log_appended.notify())
        _FINISHERS[self.engine] = self
        return self

    def _ended(self, _agent_id: str, attempt_id: int, _state: str, _fork: bool) -> None:
        self.engine.log_appended.notify()
        self.schedule(attempt_id)

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


_FINISHERS: weakref.WeakKeyDictionary[Engine, LogFinisher] = weakref.WeakKeyDictionary()


def attach_logs(engine: Engine, store: LogStore) -> LogFinisher:
    """Connect ``store`` to ``engine`` (once per engine)."""
    found = _FINISHERS.get(engine)
    return found if found is not None else LogFinisher(engine, store).attach()


def finisher_for(engine: Engine) -> LogFinisher | None:
    return _FINISHERS.get(engine)


async def drain_logs(engine: Engine) -> None:
    finisher = _FINISHERS.get(engine)
    if finisher is not None:
        await finisher.drain()
