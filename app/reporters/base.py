"""What every forge reporter shares: one task per changed pipeline (so its reports go
out in order and coalesce), and the memory of what was last sent (``ForgeReport``), so
an unchanged report is not sent again."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from sqlalchemy import select

from app.services import Services
from app.store.models import ForgeReport, Pipeline, utcnow

log = logging.getLogger("ployd.reporter")


def digest(payload: Any) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class PipelineReporter:
    """Subclasses implement ``sync(pipeline_id)`` for their forge."""

    forge = ""

    def __init__(self, services: Services) -> None:
        self.services = services
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

    # -- what was sent ---------------------------------------------------------------

    def known(self, key: str) -> ForgeReport | None:
        with self.services.db.session() as s:
            return s.scalar(
                select(ForgeReport).where(ForgeReport.forge == self.forge, ForgeReport.key == key)
            )

    def remember(self, key: str, remote_id: str, digest: str) -> None:
        with self.services.db.session() as s:
            row = s.scalar(
                select(ForgeReport).where(ForgeReport.forge == self.forge, ForgeReport.key == key)
            )
            if row is None:
                s.add(ForgeReport(forge=self.forge, key=key, remote_id=remote_id, digest=digest))
            else:
                row.remote_id, row.digest, row.updated_at = remote_id, digest, utcnow()

    def newer_exists(self, pipeline: Pipeline) -> bool:
        """A newer pipeline of the same pull/merge request: it owns the summary comment."""
        with self.services.db.session() as s:
            newer = s.scalar(
                select(Pipeline.id)
                .where(
                    Pipeline.repository_id == pipeline.repository_id,
                    Pipeline.pr_number == pipeline.pr_number,
                    Pipeline.id > pipeline.id,
                )
                .limit(1)
            )
            return newer is not None

    def load_views(self, pid: int) -> tuple[Pipeline, list[Any], str] | None:
        """(pipeline, job views, tenant external id) of one of this forge's pipelines."""
        from app.reporters.views import job_view

        settings = self.services.settings
        key = settings.secret_key_bytes()
        with self.services.db.session() as s:
            p = s.get(Pipeline, pid)
            if p is None or p.forge != self.forge:
                return None
            tenant = p.repository.tenant
            views = [
                job_view(
                    j,
                    logs=self.services.logs,
                    base_url=settings.base_url,
                    key=key,
                    tenant_id=tenant.id,
                    held=p.held,
                )
                for j in p.jobs
            ]
            _ = p.repository.full_name
            return p, views, tenant.external_id
