"""log chunks: when each arrived (the log page's per-line timestamps for logs in S3)

Revision ID: 0025_chunk_times
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0025_chunk_times"
down_revision = "0005"  # the log_chunks branch
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_chunks") as batch:
        batch.add_column(sa.Column("received_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("log_chunks") as batch:
        batch.drop_column("received_ms")
