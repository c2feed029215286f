"""What every GitHub handler receives: the services, the GitHub client, and helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.adapters.github.client import GitHubClient, Repo
from app.engine.engine import RepoRef
from app.services import Services
from app.store.lookups import repo_installation

FORGE = "github"


@dataclass
class GitHubContext:
    services: Services
    client: GitHubClient

    def repo(self, payload: dict[str, Any]) -> Repo:
        return Repo.parse(payload["repository"]["full_name"], int(payload["installation"]["id"]))

    def clone_url(self, full_name: str) -> str:
        base = self.services.settings.github_git_url
        return f"{base}/{full_name}" + (".git" if base.startswith("http") else "")

    def repo_ref(self, payload: dict[str, Any]) -> RepoRef:
        repository, installation = payload["repository"], payload["installation"]
        account = installation.get("account") or repository.get("owner") or {}
        return RepoRef(
            forge=FORGE,
            full_name=repository["full_name"],
            clone_url=self.clone_url(repository["full_name"]),
            default_branch=repository.get("default_branch") or "main",
            tenant_external_id=str(installation["id"]),
            tenant_name=str(account.get("login") or installation["id"]),
        )

    def installation_of(self, pipeline_id: int) -> tuple[str, int]:
        """(repository full name, installation id) of a pipeline."""
        return repo_installation(self.services.db, pipeline_id)
