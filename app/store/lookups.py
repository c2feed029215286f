"""Small lookups that code outside the store needs by id."""

from __future__ import annotations

from sqlalchemy import select

from app.store.db import Database
from app.store.models import Pipeline, Repository, Tenant


def repo_installation(db: Database, pipeline_id: int) -> tuple[str, int]:
    """(repository full name, GitHub installation id) of a GitHub pipeline."""
    with db.session() as s:
        row = s.execute(
            select(Repository.full_name, Tenant.external_id)
            .join(Pipeline, Pipeline.repository_id == Repository.id)
            .join(Tenant, Tenant.id == Repository.tenant_id)
            .where(Pipeline.id == pipeline_id)
        ).one()
        return row[0], int(row[1])
