"""The handlers' worlds: in-memory fakes of their forge ports (``tests/handlers/fakes``)
and a real engine on a fresh database. Deliveries go through the inbox and the handlers'
own routing, as in the service, but no HTTP server and no HTTP fake."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from gidgethub import routing, sansio

from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.handlers.github import events, installations, slash
from app.handlers.github.context import GitHubContext
from app.handlers.gitlab import events as gitlab_events
from app.handlers.gitlab import notes
from app.handlers.gitlab.context import GitLabContext
from app.protocol import FinishReport
from app.store import inbox
from app.store.models import AuditRecord, Job, Pipeline, Tenant
from tests.handlers.fakes import FakeGitHub, FakeGitLab

ZERO = "0" * 40
CONFIG_FILE = ".ployd.yml"
CONFIG = """
version: 1
jobs:
  unit:
    steps:
      - run: echo unit
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
INVALID = "version: 1\njobs:\n  unit:\n    needs: [unti]\n    steps: [{run: 'true'}]\n  x: 3\n"


def sha(n: int) -> str:
    return f"{n:040x}"


@dataclass(frozen=True)
class PipelineRow:
    id: int
    sha: str
    ref: str
    trigger: str
    state: str
    pr_number: int | None
    fork: bool
    held: bool
    pr_author: str | None
    jobs: dict[str, str]  # name -> state
    attempts: dict[str, int]  # name -> how many


class World:
    """What both forges' worlds share: the engine, the store as the tests read it, and
    an agent that runs what is queued."""

    forge = ""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.catalog = Catalog.default()
        self._deliveries = itertools.count(1)

    def record(self, event: str, payload: dict[str, Any]) -> int:
        inbox_id, _ = inbox.record(
            self.engine.db, self.forge, f"d-{next(self._deliveries)}", event, payload
        )
        return inbox_id

    def pipelines(self) -> list[PipelineRow]:
        with self.engine.db.session() as s:
            return [
                PipelineRow(
                    id=p.id,
                    sha=p.sha,
                    ref=p.ref,
                    trigger=p.trigger,
                    state=p.state,
                    pr_number=p.pr_number,
                    fork=p.fork,
                    held=p.held,
                    pr_author=p.pr_author,
                    jobs={j.name: j.state for j in p.jobs},
                    attempts={j.name: len(j.attempts) for j in p.jobs},
                )
                for p in s.query(Pipeline).order_by(Pipeline.id)
            ]

    def pipeline(self) -> PipelineRow:
        """The only pipeline."""
        (only,) = self.pipelines()
        return only

    def job_id(self, pid: int, name: str) -> int:
        with self.engine.db.session() as s:
            return int(s.query(Job.id).filter_by(pipeline_id=pid, name=name).one()[0])

    def hardware(self, pid: int, name: str) -> list[str]:
        with self.engine.db.session() as s:
            return list(s.query(Job.hardware).filter_by(pipeline_id=pid, name=name).one()[0])

    def audit(self) -> list[tuple[str, str, str]]:
        with self.engine.db.session() as s:
            return [(r.actor, r.action, r.target) for r in s.query(AuditRecord).order_by("id")]

    def tenants(self) -> dict[str, tuple[str, bool]]:
        with self.engine.db.session() as s:
            return {t.external_id: (t.name, t.active) for t in s.query(Tenant)}

    async def run_queued(self, result: str = "succeeded", **kw: Any) -> list[str]:
        """Claim every queued job and end it with ``result``; the names, in order."""
        names = []
        while (got := await self.engine.claim("agent-1", 0)) is not None:
            names.append(got.job.name)
            self.engine.finish(got.attempt_id, got.job_token, FinishReport(result, **kw))
        return names


# -- GitHub -----------------------------------------------------------------------------

REPO = "acme/models"
INSTALLATION = 42


class GitHubWorld(World):
    forge = "github"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.fake = FakeGitHub()
        self.ctx = GitHubContext(
            forge=self.fake, engine=engine, catalog=self.catalog, git_url="https://github.com"
        )
        self.router = routing.Router(installations.router, events.router, slash.router)
        self._comment_ids = itertools.count(500)

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        inbox_id = self.record(event, payload)
        delivery = sansio.Event(payload, event=event, delivery_id=str(inbox_id))
        await self.router.dispatch(delivery, ctx=self.ctx, inbox_id=inbox_id)

    def commit(self, n: int, config: str | None = CONFIG) -> str:
        """A commit of REPO whose `.ployd.yml` is ``config`` (None: none)."""
        if config is not None:
            self.fake.add_file(REPO, sha(n), CONFIG_FILE, config)
        return sha(n)

    # payloads, as GitHub sends them (the parts the handlers read)

    @staticmethod
    def _base() -> dict[str, Any]:
        return {
            "repository": {
                "full_name": REPO,
                "default_branch": "main",
                "owner": {"login": "acme"},
            },
            "installation": {"id": INSTALLATION, "account": {"login": "acme"}},
        }

    def push(self, after: str, before: str = ZERO, ref: str = "refs/heads/main") -> dict[str, Any]:
        return {
            **self._base(),
            "ref": ref,
            "before": before,
            "after": after,
            "pusher": {"name": "alice"},
            "sender": {"login": "alice"},
        }

    def check_suite(self, head: str, branch: str = "main") -> dict[str, Any]:
        return {
            **self._base(),
            "action": "requested",
            "check_suite": {"head_sha": head, "head_branch": branch, "before": ZERO},
            "sender": {"login": "alice"},
        }

    def pull_request(
        self,
        number: int,
        head: str,
        *,
        author: str = "alice",
        action: str = "opened",
        fork: bool = False,
        sender: str | None = None,
        draft: bool = False,
        merged: bool = False,
    ) -> dict[str, Any]:
        head_repo = {"full_name": "mallory/models" if fork else REPO}
        return {
            **self._base(),
            "action": action,
            "number": number,
            "pull_request": {
                "number": number,
                "user": {"login": author},
                "head": {"sha": head, "ref": f"pr-{number}", "repo": head_repo},
                "base": {"ref": "main", "repo": {"full_name": REPO}},
                "draft": draft,
                "merged": merged,
            },
            "sender": {"login": sender or author},
        }

    def comment(
        self, number: int, body: str, user: str, *, bot: bool = False, on_issue: bool = False
    ) -> dict[str, Any]:
        kind = "Bot" if bot else "User"
        issue: dict[str, Any] = {"number": number}
        if not on_issue:
            issue["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
        return {
            **self._base(),
            "action": "created",
            "issue": issue,
            "comment": {
                "id": next(self._comment_ids),
                "body": body,
                "user": {"login": user, "type": kind},
            },
            "sender": {"login": user, "type": kind},
        }

    def check_run(self, job_id: int, user: str, identifier: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            **self._base(),
            "action": "requested_action" if identifier else "rerequested",
            "check_run": {"id": 1, "external_id": str(job_id)},
            "sender": {"login": user},
        }
        if identifier:
            payload["requested_action"] = {"identifier": identifier}
        return payload

    def replies(self) -> list[str]:
        return [c.body for c in self.fake.comments.values()]


# -- GitLab -----------------------------------------------------------------------------

PROJECT = "ml/models"
DEVELOPER, REPORTER, MAINTAINER = 30, 20, 40
# The hooks and their handlers, as the service routes them.
HOOKS = {
    "Push Hook": gitlab_events.on_push,
    "Tag Push Hook": gitlab_events.on_push,
    "Merge Request Hook": gitlab_events.on_merge_request,
    "Note Hook": notes.on_note,
}


class GitLabWorld(World):
    forge = "gitlab"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.fake = FakeGitLab()
        self.ctx = GitLabContext(forge=self.fake, engine=engine, catalog=self.catalog, git_url="")
        self._note_ids = itertools.count(700)
        self._users = {"alice": 1, "rita": 2, "dev": 3, "mallory": 4, "maint": 5}

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        inbox_id = self.record(event, payload)
        await HOOKS[event](payload, self.ctx, inbox_id)

    def commit(self, n: int, config: str | None = CONFIG) -> str:
        if config is not None:
            self.fake.add_file(PROJECT, sha(n), CONFIG_FILE, config)
        return sha(n)

    def member(self, user: str, level: int) -> None:
        """``user`` has role ``level`` (the members API is asked by id or username)."""
        self.fake.set_member(PROJECT, self._users[user], level)
        self.fake.set_member(PROJECT, user, level)

    @staticmethod
    def _project() -> dict[str, Any]:
        return {
            "path_with_namespace": PROJECT,
            "default_branch": "main",
            "git_http_url": f"https://gitlab.example.com/{PROJECT}.git",
        }

    def push(self, after: str, before: str = ZERO, ref: str = "refs/heads/main") -> dict[str, Any]:
        return {
            "object_kind": "push",
            "ref": ref,
            "before": before,
            "after": after,
            "user_username": "alice",
            "project": self._project(),
        }

    def merge_request(
        self,
        iid: int,
        head: str,
        *,
        author: str = "alice",
        action: str = "open",
        fork: bool = False,
        changes: dict[str, Any] | None = None,
        draft: bool = False,
    ) -> dict[str, Any]:
        """A Merge Request Hook; an ``update`` without ``changes`` is a push (``oldrev``),
        with them an edit of those attributes (as GitLab's ``changes``)."""
        self.fake.add_mr(PROJECT, iid, sha=head, author=author, fork=fork)
        pushed = action == "update" and changes is None
        return {
            "object_kind": "merge_request",
            "user": {"username": author},
            "project": self._project(),
            "object_attributes": {
                "iid": iid,
                "action": action,
                "target_branch": "main",
                "last_commit": {"id": head},
                "oldrev": sha(999) if pushed else None,
                "draft": draft,
            },
            "changes": changes or {},
        }

    def note(self, iid: int, body: str, user: str, *, system: bool = False) -> dict[str, Any]:
        return {
            "object_kind": "note",
            "user": {"id": self._users[user], "username": user},
            "project": self._project(),
            "merge_request": {"iid": iid},
            "object_attributes": {
                "id": next(self._note_ids),
                "note": body,
                "system": system,
                "noteable_type": "MergeRequest",
            },
        }

    def replies(self) -> list[str]:
        return [n.body for n in self.fake.notes.values()]
