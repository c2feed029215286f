"""metrics per attempt, what became of each metrics file, notification deliveries

Revision ID: 0023_metrics
Revises: 0022_tok
"""

import sqlalchemy as sa
from alembic import op

revision = "0023_metrics"
down_revision = "0022_tok"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_values",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("attempt_id", sa.Integer(), sa.ForeignKey("attempts.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("step", sa.Float(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_index("ix_metric_values_attempt_id", "metric_values", ["attempt_id"])
    op.create_table(
        "metric_reports",
        sa.Column("attempt_id", sa.Integer(), sa.ForeignKey("attempts.id"), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("base_attempt_id", sa.Integer(), nullable=True),
        sa.Column("base_sha", sa.String(64), nullable=True),
        sa.Column("base_ref", sa.String(255), nullable=True),
        sa.Column("gate_failure", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_metric_reports_job_id", "metric_reports", ["job_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("pipeline_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("channel", sa.JSON(), nullable=False),
        sa.Column("dedupe", sa.String(255), nullable=False, unique=True),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_notifications_tenant_id", "notifications", ["tenant_id"])
    op.create_index("ix_notifications_pipeline_id", "notifications", ["pipeline_id"])
    op.create_index("ix_notifications_state_next_at", "notifications", ["state", "next_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("metric_reports")
    op.drop_table("metric_values")
