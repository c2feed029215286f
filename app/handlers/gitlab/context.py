"""What every GitLab handler receives: its forge port, the engine, the hardware catalog,
and helpers.

``GitLabContext[F]`` is generic in the forge: each handler names, as ``F``, the Protocol
of the few GitLab operations it uses (built from ``app.adapters.ports``); the service
passes the ``GitLabClient``, tests an in-memory fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.adapters.ports import GitLabMembers
from app.core.hardware import Catalog
from app.core.slash import Permission, Standing, gitlab_permission, gitlab_standing
from app.engine.engine import Engine, RepoRef
from app.store.db import Database

FORGE = "gitlab"

F = TypeVar("F", covariant=True)


@dataclass(frozen=True)
class GitLabContext(Generic[F]):
    forge: F
    engine: Engine
    catalog: Catalog
    git_url: str  # where agents clone from (Settings.gitlab_git_url; "": the project's)

    @property
    def db(self) -> Database:
        return self.engine.db

    @staticmethod
    def path(payload: dict[str, Any]) -> str:
        """The project's ``namespace/path`` (the target project, for merge requests)."""
        return str(payload["project"]["path_with_namespace"])

    def clone_url(self, project: dict[str, Any]) -> str:
        base = self.git_url
        if base:
            path = project["path_with_namespace"]
            return f"{base}/{path}" + (".git" if base.startswith("http") else "")
        return str(project.get("git_http_url") or project.get("http_url"))

    def repo_ref(self, payload: dict[str, Any]) -> RepoRef:
        """The project as PloyD stores it; its top-level group is the tenant."""
        project = payload["project"]
        path = self.path(payload)
        group = path.split("/", 1)[0]
        return RepoRef(
            forge=FORGE,
            full_name=path,
            clone_url=self.clone_url(project),
            default_branch=project.get("default_branch") or "main",
            tenant_external_id=group,
            tenant_name=group,
        )

    async def permission(
        self: GitLabContext[GitLabMembers], project: str, user: int | str
    ) -> Permission:
        return gitlab_permission(await self.forge.access_level(project, user))

    async def standing(
        self: GitLabContext[GitLabMembers], project: str, user: int | str
    ) -> Standing:
        """The user's permission and GitLab's name of their role (for refusals)."""
        return gitlab_standing(await self.forge.access_level(project, user))
