"""The reporters' world: in-memory fakes of their forge ports (``tests/handlers/fakes``),
and a real engine on a fresh database driving the pipelines they report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.core.hardware import Catalog
from app.core.triggers import Event, EventKind
from app.engine.engine import Engine, RepoRef
from app.handlers.pipelines import plan
from app.protocol import FinishReport, StepReport
from app.reporters.base import ReportSources
from app.reporters.github import GitHubReporter
from app.reporters.gitlab import GitLabReporter
from app.settings import Settings
from tests.handlers.fakes import FakeGitHub, FakeGitLab

CONFIG = """
version: 1
jobs:
  unit:
    steps:
      - name: Test
        run: pytest
  gpu:
    needs: [unit]
    hardware: l4
    steps:
      - run: echo gpu
  bench:
    when: manual
    steps:
      - run: echo bench
"""
REPOS = {
    "github": RepoRef("github", "acme/models", "https://github.com/acme/models.git", "main", "42"),
    "gitlab": RepoRef(
        "gitlab", "ml/models", "https://gitlab.example.com/ml/models.git", "main", "ml"
    ),
}


def sha(n: int) -> str:
    return f"{n:040x}"


class World:
    def __init__(self, engine: Engine, tmp_path: Path) -> None:
        self.engine = engine
        self.catalog = Catalog.default()
        settings = Settings(public_url="http://ployd.test", secret_key="k", data_dir=tmp_path)
        self.sources = ReportSources(
            db=engine.db, logs=engine.logs, catalog=self.catalog, settings=settings
        )
        self.github = FakeGitHub()
        self.gitlab = FakeGitLab()

    def github_reporter(self) -> GitHubReporter:
        return GitHubReporter(self.sources, self.github)

    def gitlab_reporter(self) -> GitLabReporter:
        return GitLabReporter(self.sources, self.gitlab)

    def start(self, forge: str, *, pr: int | None = None, head: int = 1, **kw: Any) -> int:
        """A pipeline of ``CONFIG`` on ``forge``, for pull/merge request ``pr`` (None: a
        push to main)."""
        if pr is None:
            event = Event(
                EventKind.PUSH, ref="refs/heads/main", sha=sha(head), default_branch="main"
            )
        else:
            event = Event(
                EventKind.PULL_REQUEST,
                ref=f"refs/{'merge-requests' if forge == 'gitlab' else 'pull'}/{pr}/head",
                sha=sha(head),
                default_branch="main",
                base_branch="main",
                action="opened",
            )
        plans = plan(CONFIG, event, self.catalog)
        assert plans is not None
        return self.engine.create_pipeline(
            REPOS[forge],
            plans,
            ref=event.ref,
            sha=event.sha,
            trigger="pull_request" if pr else "push",
            pr_number=pr,
            **kw,
        )

    async def claim(self) -> tuple[int, str, str]:
        """(attempt id, token, job name) of the next queued job, now running its first
        step."""
        got = await self.engine.claim("agent-1", 0)
        assert got is not None
        attempt, token = got.attempt_id, got.job_token
        self.engine.record_step(attempt, token, StepReport(0, "running"))
        return attempt, token, got.job.name

    async def run_all(self, result: str = "succeeded", **kw: Any) -> None:
        while (got := await self.engine.claim("agent-1", 0)) is not None:
            self.engine.finish(got.attempt_id, got.job_token, FinishReport(result, **kw))
