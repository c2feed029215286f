"""self-hosted agents and their registration tokens; machines' own credentials

Revision ID: 0021_reg
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_reg"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_registration_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("tenants", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_agent_registration_tokens_pool", "agent_registration_tokens", ["pool"])
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("tenants", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("credential_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["agent_registration_tokens.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("credential_hash"),
    )
    op.create_index("ix_agents_pool", "agents", ["pool"])
    op.add_column("instances", sa.Column("credential_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_instances_credential_hash", "instances", ["credential_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_instances_credential_hash", table_name="instances")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("credential_hash")
    op.drop_index("ix_agents_pool", table_name="agents")
    op.drop_table("agents")
    op.drop_index("ix_agent_registration_tokens_pool", table_name="agent_registration_tokens")
    op.drop_table("agent_registration_tokens")
