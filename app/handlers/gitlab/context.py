"""What every GitLab handler receives: the services, the GitLab client, and helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.adapters.gitlab.client import GitLabClient
from app.core.slash import Permission, gitlab_permission
from app.engine.engine import RepoRef
from app.services import Services

FORGE = "gitlab"


@dataclass
class GitLabContext:
    services: Services
    client: GitLabClient

    @staticmethod
    def path(payload: dict[str, Any]) -> str:
        """The project's ``namespace/path`` (the target project, for merge requests)."""
        return str(payload["project"]["path_with_namespace"])

    def clone_url(self, project: dict[str, Any]) -> str:
        base = self.services.settings.gitlab_git_url
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

    async def permission(self, project: str, user: int | str) -> Permission:
        return gitlab_permission(await self.client.access_level(project, user))
