"""forge reports, held pipelines, attempt hardware

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:15:23.230926
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forge_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("remote_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("forge", "key"),
    )
    op.add_column("attempts", sa.Column("hardware", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column(
        "pipelines", sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("pipelines", sa.Column("pr_author", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("pipelines", "pr_author")
    op.drop_column("pipelines", "held")
    op.drop_column("attempts", "hardware")
    op.drop_table("forge_reports")
