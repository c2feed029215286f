"""What every forge reporter shares: one task per changed pipeline (so its reports go
out in order and coalesce; across replicas, one at a time per pipeline), the memory of
what was last sent (``ForgeReport``), so an unchanged report is not sent again, and
``send``: each forge call of a report on its own, so that one refused status or check
run never keeps the others or the summary from the forge."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from app.adapters.errors import ForgeError
from app.core.hardware import Catalog
from app.core.report import JobView
from app.logs.store import LogStore
from app.reporters.views import job_view
from app.settings import Settings
from app.store import forge_reports
from app.store.coord import serialized
from app.store.db import Database
from app.store.forge_reports import ReportPipeline, Sent

log = logging.getLogger("ployd.reporter")
T = TypeVar("T")


def digest(payload: Any) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ReportSources:
    """What reporters read: the store, the logs (a failed job's excerpt), the catalog (the
    bigger hardware to offer) and the settings (the base URL and key of log links)."""

    db: Database
    logs: LogStore
    catalog: Catalog
    settings: Settings


class PipelineReporter:
    """Subclasses implement ``sync(pipeline_id)`` for their forge."""

    forge = ""

    def __init__(self, sources: ReportSources) -> None:
        self.sources = sources
        self._dirty: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.errors = 0

    def on_change(self, pipeline_ids: set[int]) -> None:
        for pid in pipeline_ids:
            if pid in self._tasks:
                self._dirty.add(pid)
            else:
                self._tasks[pid] = asyncio.create_task(self._run(pid), name=f"report-{pid}")

    async def idle(self) -> None:
        """Wait until every pending report is sent (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, pid: int) -> None:
        try:
            while True:
                self._dirty.discard(pid)
                try:
                    # Replicas report what they changed: one at a time per pipeline, each
                    # reading its state once it holds the lock, so the last report sent
                    # is of the newest state.
                    async with serialized(self.sources.db, f"report:{self.forge}", pid):
                        await self.sync(pid)
                except Exception:  # the forge's client already retried; report and go on
                    self.errors += 1
                    log.exception("reporting pipeline %s to %s failed", pid, self.forge)
                if pid not in self._dirty:
                    return
        finally:
            self._tasks.pop(pid, None)

    async def sync(self, pid: int) -> None:
        raise NotImplementedError

    async def send(self, pid: int, call: str, request: Awaitable[T]) -> tuple[bool, T | None]:
        """One forge call of pipeline ``pid``'s report, on its own: the client has already
        retried what is transient (no answer, 5xx, rate limits); what the forge still
        refuses is logged with ``call`` (what was sent, and where), counted in
        ``errors`` (the client counts it in ``ployd_forge_api_errors_total``), and
        the report goes on with its other calls. Answers (sent, what the call returned).
        Nothing is remembered for a refused call: the next report sends it again."""
        try:
            return True, await request
        except ForgeError as err:
            self.errors += 1
            log.warning(
                "reporting pipeline %s to %s: %s refused: %s %s",
                pid,
                self.forge,
                call,
                err.status or "no answer",
                err.message,
            )
            return False, None

    # -- what was sent ---------------------------------------------------------------

    def known(self, key: str) -> Sent | None:
        return forge_reports.sent(self.sources.db, self.forge, key)

    def remember(self, key: str, remote_id: str, digest: str) -> None:
        forge_reports.remember(self.sources.db, self.forge, key, remote_id, digest)

    def newer_exists(self, pipeline: ReportPipeline) -> bool:
        """A newer pipeline of the same pull/merge request: it owns the summary comment."""
        return forge_reports.newer_exists(self.sources.db, pipeline)

    def load_views(self, pid: int) -> tuple[ReportPipeline, list[JobView]] | None:
        """One of this forge's pipelines, and its jobs' views (reads logs: run it in a
        thread)."""
        pipeline = forge_reports.report_pipeline(self.sources.db, self.forge, pid)
        if pipeline is None:
            return None
        settings = self.sources.settings
        key = settings.secret_key_bytes()
        views = [
            job_view(
                j,
                logs=self.sources.logs,
                base_url=settings.base_url,
                key=key,
                tenant_id=pipeline.tenant_id,
                held=pipeline.held,
            )
            for j in pipeline.jobs
        ]
        return pipeline, views
