"""`ployd serve`'s progress lines: one when a pipeline starts, one when each of its jobs
ends, one when it ends, each with the page's URL (``/pipelines/{id}``, ``/runs/{job_id}``)
on the ``ployd.pipelines`` logger. With ``--log-format json`` (``app.logformat``) the
same facts are fields: ``event``, ``pipeline_id``, ``job_id``, ``state``, ``url``...

It follows the engine's ``PipelinesChanged`` events; for each pipeline it remembers the
jobs it announced since a watermark (their ``finished_at``), so a retried job that ends
again is announced again ("attempt 2") and its pipeline "running again"; what ended
before this process started is not announced (a restart does not repeat old news).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.engine.events import EventBus, PipelinesChanged
from app.store.db import Database
from app.store.progress import EndedJob, Progress, progress

log = logging.getLogger("ployd.pipelines")


@dataclass
class _Seen:
    mark: datetime | None = None
    announced: set[tuple[int, datetime]] = field(default_factory=set)
    ended: bool = False


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


def _took(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f" in {seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f" in {m}m{s:02d}s" if m < 60 else f" in {m // 60}h{m % 60:02d}m"


class ProgressLog:
    KEEP_ENDED = 1000  # ended pipelines remembered, so that a retry goes on from there

    def __init__(self, db: Database, base_url: Callable[[], str]) -> None:
        self.db = db
        self.base_url = base_url  # read at each line: `serve --port 0` learns its port late
        self.since = datetime.now(UTC)  # what ended before this process is not news
        self._seen: OrderedDict[int, _Seen] = OrderedDict()

    def attach(self, events: EventBus) -> ProgressLog:
        events.subscribe(PipelinesChanged, self.on_change)
        return self

    def pipeline_url(self, pid: int) -> str:
        return f"{self.base_url().rstrip('/')}/pipelines/{pid}"

    def job_url(self, job_id: int) -> str:
        return f"{self.base_url().rstrip('/')}/runs/{job_id}"

    def on_change(self, event: PipelinesChanged) -> None:
        for pid in sorted(event.pipeline_ids):
            try:
                self._update(pid)
            except Exception:  # a log line must never break the engine's publisher
                log.exception("could not report the progress of pipeline %d", pid)

    def _update(self, pid: int) -> None:
        seen = self._seen.get(pid)
        # the jobs are counted only for a "started" line (a pipeline may have thousands)
        news = seen is None or seen.ended
        p = progress(self.db, pid, seen.mark if seen is not None else None, count=news)
        if p is None:
            return
        if seen is None:
            seen = self._seen[pid] = _Seen()
            if p.created_at >= self.since or p.state == "running":
                self._started(p, again=False)
            else:  # ended before this process started: nothing to say
                seen.ended = True
        elif seen.ended and p.state == "running":  # a job of it was retried
            seen.ended = False
            self._started(p, again=True)
        self._seen.move_to_end(pid)
        for job in p.ended:
            key = (job.id, job.finished_at)
            if key not in seen.announced and job.finished_at >= self.since:
                self._job_ended(p, job)
            seen.announced.add(key)
        if p.ended and p.mark != seen.mark:
            seen.mark = p.mark
            last = p.ended[-1].finished_at
            seen.announced = {k for k in seen.announced if k[1] >= last}
        if p.state != "running" and not seen.ended:
            seen.ended = True
            self._ended(p)
        ended = [k for k, v in self._seen.items() if v.ended]
        for k in ended[: max(len(ended) - self.KEEP_ENDED, 0)]:
            del self._seen[k]

    def _emit(self, message: str, *args: Any, **fields: Any) -> None:
        log.info(message, *args, extra={"ployd": fields})

    def _started(self, p: Progress, *, again: bool) -> None:
        url = self.pipeline_url(p.id)
        self._emit(
            "pipeline %d %s: %s at %s (%s), %d job%s: %s",
            p.id, "running again" if again else "started", p.repo, p.ref, p.sha[:12], p.jobs,
            "" if p.jobs == 1 else "s", url,
            event="pipeline_restarted" if again else "pipeline_started", pipeline_id=p.id,
            repo=p.repo, ref=p.ref, sha=p.sha, jobs=p.jobs, url=url,
        )  # fmt: skip

    def _job_ended(self, p: Progress, job: EndedJob) -> None:
        url = self.job_url(job.id)
        took = _seconds(job.started_at, job.finished_at) if job.started_at else None
        why = [job.end_reason] if job.end_reason and job.state != "succeeded" else []
        if job.exit_code not in (None, 0):
            why.append(f"exit {job.exit_code}")
        if job.state == "skipped" and job.skip_reason:
            why.append(job.skip_reason)
        attempt = f", attempt {job.attempt}" if job.attempt > 1 else ""
        detail = f" ({', '.join(why)})" if why else ""
        self._emit(
            "job %d %s of pipeline %d %s%s%s%s: %s",
            job.id, job.name, p.id, job.state, _took(took), attempt, detail, url,
            event="job_ended", pipeline_id=p.id, job_id=job.id, job=job.name, state=job.state,
            attempt=job.attempt, duration_s=took, end_reason=job.end_reason,
            exit_code=job.exit_code, skip_reason=job.skip_reason, url=url,
        )  # fmt: skip

    def _ended(self, p: Progress) -> None:
        url = self.pipeline_url(p.id)
        took = _seconds(p.created_at, p.finished_at)
        self._emit(
            "pipeline %d %s%s: %s",
            p.id, p.state, _took(took), url,
            event="pipeline_ended", pipeline_id=p.id, repo=p.repo, ref=p.ref, sha=p.sha,
            state=p.state, duration_s=took, url=url,
        )  # fmt: skip
