"""Secrets' rows and the repositories they belong to (``app.secrets.store`` seals,
picks and reveals them)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.store.db import Tx
from app.store.models import Repository, Secret, Tenant


def repositories_named(tx: Tx, full_name: str, forge: str | None = None) -> list[Repository]:
    """The repositories called ``full_name`` (on ``forge``, or on any forge)."""
    q = select(Repository).where(Repository.full_name == full_name)
    if forge is not None:
        q = q.where(Repository.forge == forge)
    return list(tx.scalars(q))


def add_local_repository(tx: Tx, path: str, clone_url: str) -> Repository:
    """Register the local repository at ``path`` under the ``local`` tenant (created on
    first use)."""
    tenant = tx.scalar(select(Tenant).where(Tenant.forge == "local", Tenant.external_id == "local"))
    if tenant is None:
        tenant = Tenant(forge="local", external_id="local", name="local")
        tx.add(tenant)
        tx.flush()
    row = Repository(tenant_id=tenant.id, forge="local", full_name=path, clone_url=clone_url)
    tx.add(row)
    tx.flush()
    return row


def find(tx: Tx, repository_id: int, name: str, branch: str) -> Secret | None:
    """The secret ``name`` of a repository for exactly the branch pattern ``branch``."""
    return tx.scalar(
        select(Secret).where(
            Secret.repository_id == repository_id, Secret.name == name, Secret.branch == branch
        )
    )


def of_repository(tx: Tx, repository_id: int) -> list[Secret]:
    """A repository's secrets by name, then branch pattern."""
    return list(
        tx.scalars(
            select(Secret)
            .where(Secret.repository_id == repository_id)
            .order_by(Secret.name, Secret.branch)
        )
    )


def by_name(tx: Tx, repository_id: int, names: Sequence[str]) -> dict[str, list[Secret]]:
    """Every branch pattern's row of each of ``names`` (a name with none: [])."""
    found: dict[str, list[Secret]] = {n: [] for n in names}
    if names:
        for row in tx.scalars(
            select(Secret).where(Secret.repository_id == repository_id, Secret.name.in_(names))
        ):
            found[row.name].append(row)
    return found


def save(tx: Tx, row: Secret) -> None:
    tx.add(row)
    tx.flush()


def remove(tx: Tx, row: Secret) -> None:
    tx.delete(row)
    tx.flush()
