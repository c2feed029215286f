"""instances: the region each machine was launched in, and the capacity reservation
(or Capacity Block) it runs in, if any

Revision ID: 0026_ec2d_region
Revises: 0024_replicas
"""

import sqlalchemy as sa
from alembic import op

revision = "0026_ec2d_region"
down_revision = "0026_ec2a_job_avoid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("region", sa.String(length=32), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("reservation", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("reservation")
        batch.drop_column("region")
