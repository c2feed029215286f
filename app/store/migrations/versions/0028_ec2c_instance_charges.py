"""every instance-second attributed: the stretches of a machine's life (boot, run, idle)
and who pays for each; the open stretch of a live machine

Revision ID: 0026_ec2c_charges
Revises: 0024_replicas
"""

import sqlalchemy as sa
from alembic import op

revision = "0026_ec2c_charges"
down_revision = "0026_ec2d_region"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("meter_kind", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("metered_at", sa.DateTime(timezone=True), nullable=True))
    # Live machines start their meter now (what they cost before the upgrade was counted
    # the old way: their attempts' run time only).
    op.execute(
        "UPDATE instances SET metered_at = CURRENT_TIMESTAMP, meter_kind = CASE "
        "WHEN state IN ('requested', 'booting') THEN 'boot' "
        "WHEN state = 'busy' THEN 'run' ELSE 'idle' END "
        "WHERE state <> 'terminated'"
    )
    op.create_table(
        "instance_charges",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("instance_row_id", sa.Integer(), sa.ForeignKey("instances.id"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("instance_type", sa.String(length=64), nullable=False),
        sa.Column("az", sa.String(length=32), nullable=False),
        sa.Column("price_hourly", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
    )
    op.create_index("ix_instance_charges_instance_row_id", "instance_charges", ["instance_row_id"])
    op.create_index("ix_instance_charges_attempt_id", "instance_charges", ["attempt_id"])
    op.create_index(
        "ix_instance_charges_tenant_ended", "instance_charges", ["tenant_id", "ended_at"]
    )
    op.create_index("ix_instance_charges_ended", "instance_charges", ["ended_at"])


def downgrade() -> None:
    op.drop_table("instance_charges")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("metered_at")
        batch.drop_column("meter_kind")
