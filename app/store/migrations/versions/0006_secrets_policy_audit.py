"""secrets, tenant policies, the audit chain

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.String(length=255), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repository_id", "name", "branch"),
    )
    op.create_index("ix_secrets_tenant_id", "secrets", ["tenant_id"], unique=False)
    op.create_index("ix_secrets_repository_id", "secrets", ["repository_id"], unique=False)
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(
            sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=False, server_default=""))
    _chain_existing()


def _chain_existing() -> None:
    """Records written before the chain existed are chained now, oldest first."""
    from app.audit.chain import record_hash
    from app.store.models import AuditRecord

    conn = op.get_bind()
    table = AuditRecord.__table__
    rows = conn.execute(
        sa.select(
            table.c.id,
            table.c.at,
            table.c.actor,
            table.c.forge,
            table.c.action,
            table.c.target,
            table.c.details,
        ).order_by(table.c.id)
    ).all()
    prev = ""
    for row in rows:
        rec = AuditRecord(
            at=row.at,
            actor=row.actor,
            forge=row.forge,
            action=row.action,
            target=row.target or "",
            details=row.details or {},
            prev_hash=prev,
        )
        digest = record_hash(rec)
        conn.execute(table.update().where(table.c.id == row.id).values(prev_hash=prev, hash=digest))
        prev = digest


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    op.drop_table("tenant_policies")
    op.drop_index("ix_secrets_repository_id", table_name="secrets")
    op.drop_index("ix_secrets_tenant_id", table_name="secrets")
    op.drop_table("secrets")
