"""registration tokens can be revoked before they are used

Revision ID: 0022_tok
Revises: 0021_reg
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_tok"
down_revision = "0021_reg"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "agent_registration_tokens",
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("agent_registration_tokens") as batch:
        batch.drop_column("revoked_at")
