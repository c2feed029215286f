"""Keeps GitHub in step with the engine: one check run per job, one summary comment per
pull request, updated in order per pipeline, each sent only when it changed, and each on
its own (``PipelineReporter.send``): a refused check run keeps neither the others nor the
comment from GitHub."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from app.adapters.github.client import Repo
from app.adapters.ports import GitHubCheckRunCreator, GitHubCheckRuns, GitHubComments
from app.core.config.errors import ConfigError
from app.core.report import (
    JobView,
    annotation_batches,
    bigger_hardware,
    check_run,
    config_error_report,
    summary_comment,
)
from app.reporters.base import PipelineReporter, ReportSources, digest
from app.reporters.results import result_lines
from app.reporters.views import pipeline_view
from app.store.forge_reports import ReportPipeline


class ReporterForge(GitHubCheckRuns, GitHubComments, Protocol):
    """What the reporter does on GitHub: check runs, and the summary comment."""


async def report_config_errors(
    checks: GitHubCheckRunCreator, repo: Repo, sha: str, errors: Sequence[ConfigError]
) -> int:
    """One failed `ployd / config` check run listing every error, annotated at its line
    (the client sends annotations past GitHub's 50 per request in further updates)."""
    body = config_error_report(errors, sha)
    batches = annotation_batches(errors)
    if batches:
        body["output"]["annotations"] = [a for batch in batches for a in batch]
    return await checks.create_check_run(repo, **body)


class GitHubReporter(PipelineReporter):
    forge = "github"

    def __init__(self, sources: ReportSources, client: ReporterForge) -> None:
        super().__init__(sources)
        self.client = client

    async def sync(self, pid: int) -> None:
        loaded = await asyncio.to_thread(self.load_views, pid)  # log reads may be S3
        if loaded is None:
            return
        pipeline, views = loaded
        repo = Repo.parse(pipeline.full_name, int(pipeline.tenant_external_id))
        now = datetime.now(UTC)
        catalog = self.sources.catalog
        for view in views:
            first = view.hardware[0] if view.hardware else None
            bigger = bigger_hardware(first, catalog) if first else None
            body = check_run(view, now=now, bigger=bigger)
            key = f"check_run:job:{view.job_id}"
            sent = digest(body)
            known = self.known(key)
            what = f"check run {body.get('name')} on {repo.full_name}@{pipeline.sha[:12]}"
            if known is None:
                create = self.client.create_check_run(repo, head_sha=pipeline.sha, **body)
                ok, remote = await self.send(pid, what, create)
                if ok:
                    self.remember(key, str(remote), sent)
            elif known.digest != sent:
                update = self.client.update_check_run(repo, int(known.remote_id), **body)
                ok, _ = await self.send(pid, f"{what} ({known.remote_id})", update)
                if ok:
                    self.remember(key, known.remote_id, sent)
        if pipeline.pr_number is not None and not self.newer_exists(pipeline):
            await self._comment(pid, pipeline, views, repo, now)

    async def _comment(
        self, pid: int, pipeline: ReportPipeline, views: list[JobView], repo: Repo, now: datetime
    ) -> None:
        assert pipeline.pr_number is not None
        extra = await asyncio.to_thread(result_lines, self.sources, pipeline, views)
        body = summary_comment(
            pipeline_view(pipeline), views, now=now, catalog=self.sources.catalog, extra=extra
        )
        key = f"comment:{repo.full_name}:pr:{pipeline.pr_number}"
        known = self.known(key)
        what = f"summary comment on {repo.full_name}#{pipeline.pr_number}"
        if known is None:
            create = self.client.create_comment(repo, pipeline.pr_number, body)
            ok, remote = await self.send(pid, what, create)
            if ok:
                self.remember(key, str(remote), digest(body))
        elif known.digest != digest(body):
            edit = self.client.edit_comment(repo, int(known.remote_id), body)
            ok, _ = await self.send(pid, f"{what} ({known.remote_id})", edit)
            if ok:
                self.remember(key, known.remote_id, digest(body))
