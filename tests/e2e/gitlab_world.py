"""A world for GitLab end-to-end tests: the fake GitLab, real git repositories it mirrors
(same shas, same files), and PloyD serving with GitLab configured. Deliveries are
GitLab's documented payloads (tests/fixtures/gitlab/webhooks) with the test's project,
shas and users, sent with the headers GitLab sends."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.adapters.gitlab.config import GitLabConfig
from app.settings import Settings
from tests.conftest import git
from tests.e2e.conftest import Harness
from tests.e2e.github_world import commit_on
from tests.fakes.gitlab import FakeGitLab, delivery_headers, load_fixture

SECRET = "gitlab-hook-secret"


class GitLabWorld:
    def __init__(
        self,
        fake: FakeGitLab,
        git_root: Path,
        make_repo: Callable[..., Any],
        *,
        git_http: bool = False,
        clone_token: str = "",
    ) -> None:
        self.fake = fake
        self.git_root = git_root
        self.make_repo = make_repo
        self.h: Harness | None = None
        # git_http: agents fetch over HTTP from the fake (a deploy token, or clone_token
        # as PLOYD_GITLAB_CLONE_TOKEN); else from the repositories' files (file://).
        self.git_http = git_http
        self.clone_token = clone_token
        fake.git_root = git_root

    def settings(self, data_dir: Path, db_url: str, agents: int = 1) -> Settings:
        return Settings(
            host="127.0.0.1",
            port=0,
            data_dir=data_dir,
            database_url=db_url,
            local_agents=agents,
            public_url="http://ployd.test",
            secret_key="test-secret-key-0123456789abcdef",
            gitlab=GitLabConfig(url=self.fake.url, token=self.fake.token, webhook_secret=SECRET),
            gitlab_git_url=self.fake.base_url + "/_git"
            if self.git_http
            else self.git_root.as_uri(),
            gitlab_clone_token=self.clone_token,
        )

    def project(self, path: str, files: dict[str, str]) -> str:
        _, sha = self.make_repo(files, path=self.git_root / path)
        self.fake.add_project(path, files=dict(files), sha=sha)
        return sha

    def commit(self, path: str, files: dict[str, str], branch: str) -> str:
        base, sha = commit_on(self.git_root / path, files, branch, self.make_repo)
        self.fake.add_commit(path, dict(files), sha=sha, branch=branch, base=base)
        return sha

    def fork_commit(self, path: str, files: dict[str, str], iid: int) -> str:
        """A commit of a fork's merge request ``iid``: in the project only as
        ``refs/merge-requests/IID/head`` (as GitLab keeps it), on none of its branches."""
        repo, branch = self.git_root / path, f"fork-{iid}"
        base, sha = commit_on(repo, files, branch, self.make_repo)
        git(repo, "update-ref", f"refs/merge-requests/{iid}/head", sha)
        git(repo, "branch", "-q", "-D", branch)
        self.fake.add_commit(path, dict(files), sha=sha, base=base)
        return sha

    def _project(self, path: str) -> dict[str, Any]:
        return {
            "id": self.fake.project(path).id,
            "path_with_namespace": path,
            "git_http_url": f"https://gitlab.example.com/{path}.git",
            "default_branch": "main",
        }

    def push(self, path: str, before: str, after: str) -> dict[str, Any]:
        p = copy.deepcopy(load_fixture("push"))
        p.update(
            before=before,
            after=after,
            checkout_sha=after,
            ref="refs/heads/main",
            project=self._project(path),
            project_id=self.fake.project(path).id,
        )
        return p

    def merge_request(
        self, path: str, iid: int, sha: str, action: str = "open", author: str = "alice"
    ) -> dict[str, Any]:
        p = copy.deepcopy(load_fixture("merge_request.open"))
        attrs = p["object_attributes"]
        attrs.update(
            iid=iid,
            action=action,
            target_branch="main",
            source_branch=f"mr-{iid}",
            last_commit={"id": sha},
            oldrev="1" * 40 if action == "update" else None,
        )
        p.update(
            project=self._project(path), user={"id": self.fake.user_id(author), "username": author}
        )
        return p

    def note(self, path: str, iid: int, body: str, user: str) -> dict[str, Any]:
        note = self.fake.add_note(path, iid, body, author=user)
        p = copy.deepcopy(load_fixture("note.merge_request"))
        p["object_attributes"].update(
            id=note["id"], note=body, noteable_type="MergeRequest", action="create", system=False
        )
        p["merge_request"].update(iid=iid)
        p.update(
            project=self._project(path), user={"id": self.fake.user_id(user), "username": user}
        )
        return p

    async def deliver(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        key: str | None = None,
        token: str | None = SECRET,
    ) -> tuple[int, Any]:
        assert self.h is not None
        headers = delivery_headers(event, token, idempotency_key=key or str(uuid.uuid4()))
        async with self.h.http.post(
            self.h.url + "/webhooks/gitlab", data=json.dumps(payload), headers=headers
        ) as r:
            return r.status, await r.json(content_type=None)

    async def settle(self) -> None:
        assert self.h is not None and self.h.server.gitlab is not None
        parts = self.h.server.gitlab
        await parts.worker.drain()
        await self.h.until(self._all_done, "every pipeline to finish")
        await parts.reporter.idle()

    def _all_done(self) -> bool:
        assert self.h is not None
        from app.store.models import Pipeline

        with self.h.engine.db.session() as s:
            return all(p.held for p in s.query(Pipeline).filter(Pipeline.state == "running"))

    def statuses(self, path: str) -> dict[str, dict[str, Any]]:
        """The latest status of each name."""
        return {st["name"]: st for st in self.fake.project(path).statuses}

    def history(self, name: str) -> list[str]:
        """Every state PloyD posted for status ``name``, in order."""
        calls = self.fake.calls("POST", "/projects/:id/statuses/:sha")
        return [c.params["state"] for c in calls if c.params.get("name") == name]
