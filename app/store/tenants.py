"""Tenants as the admin API and the dashboard list them: frozen values read in one short
transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from app.store.db import Database
from app.store.models import Tenant


@dataclass(frozen=True)
class TenantView:
    id: int
    forge: str
    external_id: str
    name: str


def all_tenants(db: Database, order: Literal["id", "name"] = "id") -> list[TenantView]:
    """Every tenant, by id or by name."""
    key = Tenant.id if order == "id" else Tenant.name
    with db.session() as s:
        return [
            TenantView(t.id, t.forge, t.external_id, t.name)
            for t in s.scalars(select(Tenant).order_by(key))
        ]
