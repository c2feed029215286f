"""Keeps GitLab in step with the engine: a commit status per job (`ployd/JOB`: pending,
running, success, failed, canceled) for the pipeline's ref (``refs/merge-requests/N/head``
for a merge request: a fork's head is on no branch of the project), and one summary note
per merge request, edited in place. Each is sent on its own (``PipelineReporter.send``):
a refused status keeps neither the others nor the note from GitLab."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from app.adapters.gitlab.client import status_ref
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
        project, sha, ref = pipeline.full_name, pipeline.sha, status_ref(pipeline.ref)
        for view in views:
            state, description = status_for(view)
            body = {"state": state, "description": description, "target_url": view.log_url}
            key = f"status:job:{view.job_id}"
            known = self.known(key)
            if known is not None and known.digest == digest(body):
                continue
            name = f"ployd/{view.name}"
            status = self.client.set_status(
                project,
                sha,
                state,
                name,
                target_url=view.log_url,
                description=description,
                ref=ref,
            )
            call = f"status {name}={state} on {project}@{sha[:12]} ({ref})"
            sent, _ = await self.send(pid, call, status)
            if sent:
                self.remember(key, name, digest(body))
        iid = pipeline.pr_number
        if iid is None or self.newer_exists(pipeline):
            return
        extra = await asyncio.to_thread(result_lines, self.sources, pipeline, views)
        note = summary_comment(
            pipeline_view(pipeline),
            views,
            now=datetime.now(UTC),
            catalog=self.sources.catalog,
            extra=extra,
        )
        key = f"note:{project}:mr:{iid}"
        known = self.known(key)
        if known is None:
            call = f"summary note on {project}!{iid}"
            sent, note_id = await self.send(pid, call, self.client.create_note(project, iid, note))
            if sent:
                self.remember(key, str(note_id), digest(note))
        elif known.digest != digest(note):
            edit = self.client.edit_note(project, iid, int(known.remote_id), note)
            sent, _ = await self.send(
                pid, f"summary note {known.remote_id} on {project}!{iid}", edit
            )
            if sent:
                self.remember(key, known.remote_id, digest(note))
