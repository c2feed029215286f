"""instances and job waiting reasons

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 23:43:16.771429
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=True),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("instance_type", sa.String(length=64), nullable=False),
        sa.Column("hardware", sa.String(length=64), nullable=False),
        sa.Column("market", sa.String(length=16), nullable=False),
        sa.Column("az", sa.String(length=32), nullable=False),
        sa.Column("subnet_id", sa.String(length=64), nullable=False),
        sa.Column("price_hourly", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("launched_for", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("clean_after", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idle_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id"),
        sa.UniqueConstraint("instance_id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_instances_state", "instances", ["state"], unique=False)
    op.add_column("jobs", sa.Column("waiting_reason", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "waiting_since")
    op.drop_column("jobs", "waiting_reason")
    op.drop_index("ix_instances_state", table_name="instances")
    op.drop_table("instances")
