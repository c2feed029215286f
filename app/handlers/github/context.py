"""What every GitHub handler receives: its forge port, the engine, the hardware catalog,
and helpers.

``GitHubContext[F]`` is generic in the forge: each handler names, as ``F``, the Protocol
of the few GitHub operations it uses (built from ``app.adapters.ports``); the service
passes the ``GitHubClient``, tests an in-memory fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.adapters.github.client import Repo
from app.core.hardware import Catalog
from app.engine.engine import Engine, RepoRef
from app.store.db import Database
from app.store.lookups import repo_installation

FORGE = "github"

F = TypeVar("F", covariant=True)


@dataclass(frozen=True)
class GitHubContext(Generic[F]):
    forge: F
    engine: Engine
    catalog: Catalog
    git_url: str  # where agents clone from (Settings.github_git_url)

    @property
    def db(self) -> Database:
        return self.engine.db

    def repo(self, payload: dict[str, Any]) -> Repo:
        return Repo.parse(payload["repository"]["full_name"], int(payload["installation"]["id"]))

    def clone_url(self, full_name: str) -> str:
        base = self.git_url
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
        return repo_installation(self.db, pipeline_id)
