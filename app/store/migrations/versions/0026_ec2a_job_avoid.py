"""what a job's machines failed on (instance type, market, AZ), avoided until an expiry

Revision ID: 0026_ec2a_job_avoid
Revises: 0024_replicas
"""

import sqlalchemy as sa
from alembic import op

revision = "0026_ec2a_job_avoid"
down_revision = "0024_replicas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_avoid",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("job_id", "key", name="uq_job_avoid_job_key"),
    )


def downgrade() -> None:
    op.drop_table("job_avoid")
