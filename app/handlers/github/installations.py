"""Installations of the App and their repositories: each installation is a tenant."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from app.engine.engine import RepoRef
from app.handlers.github.context import FORGE, GitHubContext
from app.handlers.pipelines import audit
from app.store.handler_queries import set_tenant

router = routing.Router()

# Installations call GitHub for nothing: their context's forge is never used.
Context = GitHubContext[object]


def _tenant(ctx: Context, installation: dict[str, Any], active: bool) -> None:
    ext = str(installation["id"])
    login = str((installation.get("account") or {}).get("login") or ext)
    set_tenant(ctx.db, FORGE, ext, login, active=active)


def _add_repos(ctx: Context, installation: dict[str, Any], repos: list[Any]) -> None:
    account = installation.get("account") or {}
    ctx.engine.add_repositories(
        RepoRef(
            forge=FORGE,
            full_name=r["full_name"],
            clone_url=ctx.clone_url(r["full_name"]),
            tenant_external_id=str(installation["id"]),
            tenant_name=str(account.get("login") or installation["id"]),
        )
        for r in repos
    )


@router.register("installation", action="created")
@router.register("installation", action="unsuspend")
@router.register("installation", action="new_permissions_accepted")
async def installed(event: sansio.Event, ctx: Context, **_: Any) -> None:
    installation = event.data["installation"]
    _tenant(ctx, installation, active=True)
    _add_repos(ctx, installation, event.data.get("repositories") or [])
    audit(
        ctx.engine,
        event.data.get("sender", {}).get("login", "github"),
        "installation.created",
        f"installation:{installation['id']}",
        FORGE,
    )


@router.register("installation", action="deleted")
@router.register("installation", action="suspend")
async def uninstalled(event: sansio.Event, ctx: Context, **_: Any) -> None:
    installation = event.data["installation"]
    _tenant(ctx, installation, active=False)
    audit(
        ctx.engine,
        event.data.get("sender", {}).get("login", "github"),
        f"installation.{event.data['action']}",
        f"installation:{installation['id']}",
        FORGE,
    )


@router.register("installation_repositories", action="added")
async def repos_added(event: sansio.Event, ctx: Context, **_: Any) -> None:
    installation = event.data["installation"]
    _tenant(ctx, installation, active=True)
    _add_repos(ctx, installation, event.data.get("repositories_added") or [])


@router.register("installation_repositories", action="removed")
async def repos_removed(event: sansio.Event, ctx: Context, **_: Any) -> None:
    """GitHub sends no more events for them; what ran stays visible. Recorded."""
    names = [r["full_name"] for r in event.data.get("repositories_removed") or []]
    audit(
        ctx.engine,
        event.data.get("sender", {}).get("login", "github"),
        "installation.repos_removed",
        f"installation:{event.data['installation']['id']}",
        FORGE,
        repos=names,
    )
