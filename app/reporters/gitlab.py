"""Keeps GitLab in step with the engine: a commit status per job (`ployd/JOB`: pending,
running, success, failed, canceled), and one summary note per merge request, edited in
place."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from app.adapters.ports import GitLabNotes, GitLabStatuses
from app.core.report import status_for, summary_comment
from app.reporters.base import PipelineReporter, ReportSources, digest
from app.reporters.results import result_lines
from app.reporters.views import pipeline_view


class ReporterForge(GitLabStatuses, GitLabNotes, Protocol):
    """What the reporter does on GitLab: commit statuses, and the summary note."""


class GitLabReporter(PipelineReporter):
    forge = "gitlab"

    def __init__(self, sources: ReportSources, client: ReporterForge) -> None:
        super().__init__(sources)
        self.client = client

    async def sync(self, pid: int) -> None:
        loaded = await asyncio.to_thread(self.load_views, pid)  # log reads may be S3
        if loaded is None:
            return
        pipeline, views = loaded
        project = pipeline.full_name
        for view in views:
            state, description = status_for(view)
            body = {"state": state, "description": description, "target_url": view.log_url}
            key = f"status:job:{view.job_id}"
            known = self.known(key)
            if known is not None and known.digest == digest(body):
                continue
            name = f"ployd/{view.name}"
            await self.client.set_status(
                project,
                pipeline.sha,
                state,
                name,
                target_url=view.log_url,
                description=description,
            )
            self.remember(key, name, digest(body))
        if pipeline.pr_number is None or self.newer_exists(pipeline):
            return
        extra = await asyncio.to_thread(result_lines, self.sources, pipeline, views)
        note = summary_comment(
            pipeline_view(pipeline),
            views,
            now=datetime.now(UTC),
            catalog=self.sources.catalog,
            extra=extra,
        )
        key = f"note:{project}:mr:{pipeline.pr_number}"
        known = self.known(key)
        if known is None:
            note_id = await self.client.create_note(project, pipeline.pr_number, note)
            self.remember(key, str(note_id), digest(note))
        elif known.digest != digest(note):
            await self.client.edit_note(project, pipeline.pr_number, int(known.remote_id), note)
            self.remember(key, known.remote_id, digest(note))
