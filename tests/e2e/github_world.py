"""A world for GitHub end-to-end tests: the fake GitHub, real git repositories it mirrors
(same shas, same files), and PloyD serving with the GitHub App configured.

Deliveries are built from the real payloads in tests/fixtures/github/webhooks, with the
repository, installation, shas and users of the test, and signed as GitHub signs them.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from app.adapters.github.config import GitHubAppConfig
from app.settings import Settings
from tests.conftest import git
from tests.e2e.conftest import Harness
from tests.fakes.github import FakeGitHub, delivery_headers, load_fixture

SECRET = "webhook-secret-for-tests"


def commit_on(
    path: Path, files: dict[str, str], branch: str, make_repo: Callable[..., Any]
) -> tuple[str, str]:
    """Commit ``files`` on ``branch`` of the git repository at ``path`` (the branch starts
    from main when new); returns (the parent's sha, the new sha). main stays checked out."""
    current = git(path, "rev-parse", "--abbrev-ref", "HEAD")
    if branch != current:
        exists = git(path, "branch", "--list", branch)
        git(path, "checkout", "-q", *([] if exists else ["-b"]), branch)
    base = git(path, "rev-parse", "HEAD")
    _, sha = make_repo(files, path=path)
    git(path, "checkout", "-q", "main")
    return base, sha


class GitHubWorld:
    def __init__(
        self,
        fake: FakeGitHub,
        git_root: Path,
        make_repo: Callable[..., Any],
        *,
        git_http: bool = False,
    ) -> None:
        self.fake = fake
        self.git_root = git_root
        self.make_repo = make_repo
        self.h: Harness | None = None
        # git_http: agents fetch over HTTP from the fake (tests/fakes/git_http.py), with
        # the installation token; else from the repositories' files (file://).
        self.git_http = git_http
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
            # Notification receivers (tests/fakes/receivers.py) listen on loopback.
            notify_allow_nets=("127.0.0.0/8",),
            github=GitHubAppConfig(
                app_id=self.fake.app_id,
                private_key_pem=self.fake.private_key_pem,
                api_url=self.fake.url,
                webhook_secret=SECRET,
            ),
            github_git_url=self.fake.base_url + "/_git"
            if self.git_http
            else self.git_root.as_uri(),
        )

    # -- repositories ----------------------------------------------------------------

    def repo(self, full_name: str, files: dict[str, str]) -> str:
        """A real git repository at git_root/OWNER/NAME and its mirror in the fake;
        returns the sha of its first commit (on main)."""
        owner, name = full_name.split("/")
        path = self.git_root / owner / name
        _, sha = self.make_repo(files, path=path)
        self.fake.add_repo(owner, name, files=dict(files), sha=sha)
        return sha

    def commit(self, full_name: str, files: dict[str, str], branch: str = "main") -> str:
        """A new commit on ``branch`` (created from main when new), in both places."""
        base, sha = commit_on(self.git_root / full_name, files, branch, self.make_repo)
        self.fake.add_commit(full_name, dict(files), sha=sha, branch=branch, base=base)
        return sha

    def installation(self, full_name: str) -> dict[str, Any]:
        repo = self.fake.repo(full_name)
        inst = self.fake.installations[repo.installation_id]
        return {"id": inst.id, "account": {"login": inst.account}}

    def _repository(self, full_name: str) -> dict[str, Any]:
        owner, name = full_name.split("/")
        return {
            "id": self.fake.repo(full_name).id,
            "name": name,
            "full_name": full_name,
            "owner": {"login": owner, "type": "Organization"},
            "default_branch": "main",
            "private": True,
        }

    # -- deliveries ------------------------------------------------------------------

    def push(
        self, full_name: str, before: str, after: str, ref: str = "refs/heads/main"
    ) -> dict[str, Any]:
        p = copy.deepcopy(load_fixture("push.1"))
        p.update(
            ref=ref,
            before=before,
            after=after,
            deleted=False,
            repository=self._repository(full_name),
            installation=self.installation(full_name),
        )
        return p

    def pull_request(
        self,
        full_name: str,
        number: int,
        head_sha: str,
        *,
        action: str = "opened",
        author: str = "alice",
        fork: bool = False,
        base: str = "main",
    ) -> dict[str, Any]:
        p = copy.deepcopy(load_fixture("pull_request.opened.1"))
        repo = self._repository(full_name)
        head_repo = dict(repo, full_name=f"{author}/{repo['name']}") if fork else repo
        pr = p["pull_request"]
        pr.update(number=number, state="open", user={"login": author, "type": "User"})
        pr["head"].update(sha=head_sha, ref=f"pr-{number}", repo=head_repo)
        pr["base"].update(ref=base, repo=repo)
        p.update(
            action=action,
            number=number,
            repository=repo,
            installation=self.installation(full_name),
            sender={"login": author},
        )
        return p

    def comment(self, full_name: str, number: int, body: str, user: str) -> dict[str, Any]:
        p = copy.deepcopy(load_fixture("issue_comment.created.1"))
        comment_id = self.fake.add_comment(full_name, number, body=body, user=user)["id"]
        p["issue"].update(number=number, pull_request={"url": "x"})
        p["comment"].update(id=comment_id, body=body, user={"login": user, "type": "User"})
        p.update(
            action="created",
            repository=self._repository(full_name),
            installation=self.installation(full_name),
            sender={"login": user, "type": "User"},
        )
        return p

    async def deliver(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        delivery: str | None = None,
        secret: str = SECRET,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        assert self.h is not None
        body = json.dumps(payload).encode()
        hdrs = delivery_headers(event, body, secret, delivery_id=delivery or str(uuid.uuid4()))
        hdrs.update(headers or {})
        async with self.h.http.post(self.h.url + "/webhooks/github", data=body, headers=hdrs) as r:
            return r.status, await r.json(content_type=None)

    async def settle(self) -> None:
        """Every delivery handled, every pipeline finished, every report sent."""
        assert self.h is not None
        gh = self.h.server.github
        assert gh is not None
        await gh.worker.drain()
        await self.h.until(self._all_done, "every pipeline to finish")
        await gh.reporter.idle()

    def _all_done(self) -> bool:
        assert self.h is not None
        from sqlalchemy import select

        from app.store.models import Pipeline

        with self.h.engine.db.session() as s:
            running = s.scalars(select(Pipeline).where(Pipeline.state == "running")).all()
            return all(p.held for p in running)

    # -- what GitHub saw -------------------------------------------------------------

    def check_runs(self, full_name: str | None = None) -> dict[str, dict[str, Any]]:
        """The latest check run of each name."""
        out: dict[str, dict[str, Any]] = {}
        for run in sorted(self.fake.check_runs.values(), key=lambda r: r["id"]):
            out[run["name"]] = run
        return out


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()
