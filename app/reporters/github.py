"""Keeps GitHub in step with the engine: one check run per job, one summary comment per
pull request, updated in order per pipeline, each sent only when it changed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.adapters.github.client import GitHubClient, Repo
from app.adapters.github.errors import GitHubError
from app.core.config.errors import ConfigError
from app.core.report import (
    annotation_batches,
    bigger_hardware,
    check_run,
    config_error_report,
    summary_comment,
)
from app.reporters.views import job_view, pipeline_view
from app.store.models import ForgeReport, Pipeline, utcnow
from app.web.common import Services

log = logging.getLogger("ployd.github.reporter")
FORGE = "github"


async def report_config_errors(
    client: GitHubClient, repo: Repo, sha: str, errors: Sequence[ConfigError]
) -> int:
    """One failed `ployd / config` check run listing every error, annotated at its line."""
    body = config_error_report(errors, sha)
    batches = annotation_batches(errors)
    if batches:
        body["output"]["annotations"] = [a for batch in batches for a in batch]
    return await client.create_check_run(repo, **body)


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class GitHubReporter:
    """Subscribes to the engine; reports each changed GitHub pipeline in its own task."""

    def __init__(self, services: Services, client: GitHubClient) -> None:
        self.services = services
        self.client = client
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
                except GitHubError as e:
                    self.errors += 1
                    log.warning("reporting pipeline %s to GitHub failed: %s", pid, e)
                except Exception:
                    self.errors += 1
                    log.exception("reporting pipeline %s failed", pid)
                if pid not in self._dirty:
                    return
        finally:
            self._tasks.pop(pid, None)

    def _load(self, pid: int) -> tuple[Pipeline, list[Any], Repo] | None:
        settings = self.services.settings
        key = settings.secret_key_bytes()
        with self.services.db.session() as s:
            p = s.get(Pipeline, pid)
            if p is None or p.forge != FORGE:
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
            repo = Repo.parse(p.repository.full_name, int(tenant.external_id))
            return p, views, repo

    def _known(self, key: str) -> ForgeReport | None:
        with self.services.db.session() as s:
            return s.scalar(
                select(ForgeReport).where(ForgeReport.forge == FORGE, ForgeReport.key == key)
            )

    def _remember(self, key: str, remote_id: str, digest: str) -> None:
        with self.services.db.session() as s:
            row = s.scalar(
                select(ForgeReport).where(ForgeReport.forge == FORGE, ForgeReport.key == key)
            )
            if row is None:
                s.add(ForgeReport(forge=FORGE, key=key, remote_id=remote_id, digest=digest))
            else:
                row.remote_id, row.digest, row.updated_at = remote_id, digest, utcnow()

    async def sync(self, pid: int) -> None:
        loaded = self._load(pid)
        if loaded is None:
            return
        pipeline, views, repo = loaded
        now = datetime.now(UTC)
        catalog = self.services.catalog
        for view in views:
            first = view.hardware[0] if view.hardware else None
            bigger = bigger_hardware(first, catalog) if first else None
            body = check_run(view, now=now, bigger=bigger)
            key = f"check_run:job:{view.job_id}"
            digest = _digest(body)
            known = self._known(key)
            if known is None:
                remote = await self.client.create_check_run(repo, head_sha=pipeline.sha, **body)
                self._remember(key, str(remote), digest)
            elif known.digest != digest:
                await self.client.update_check_run(repo, int(known.remote_id), **body)
                self._remember(key, known.remote_id, digest)
        if pipeline.pr_number is not None:
            await self._comment(pipeline, views, repo, now)

    def _newer_exists(self, pipeline: Pipeline) -> bool:
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

    async def _comment(
        self, pipeline: Pipeline, views: list[Any], repo: Repo, now: datetime
    ) -> None:
        body = summary_comment(
            pipeline_view(pipeline), views, now=now, catalog=self.services.catalog
        )
        key = f"comment:{repo.full_name}:pr:{pipeline.pr_number}"
        if self._newer_exists(pipeline):
            return  # the comment belongs to the pull request's latest pipeline
        digest = hashlib.sha256(body.encode()).hexdigest()
        known = self._known(key)
        assert pipeline.pr_number is not None
        if known is None:
            remote = await self.client.create_comment(repo, pipeline.pr_number, body)
            self._remember(key, str(remote), digest)
        elif known.digest != digest:
            await self.client.edit_comment(repo, int(known.remote_id), body)
            self._remember(key, known.remote_id, digest)
