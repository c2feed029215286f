"""several replicas on one database: inbox leases and retries, one pipeline per
delivery, one starting machine per attempt, the deployment's id

Revision ID: 0024_replicas
Revises: 0023_metrics
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0024_replicas"
down_revision = "0023_metrics"
branch_labels = None
depends_on = None

STARTING = "state IN ('requested', 'booting')"


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True))
    # A delivery that became two pipelines before this constraint (replicas racing)
    # keeps its first one as its own; the others stay, unlinked.
    op.execute(
        "UPDATE pipelines SET event_id = NULL WHERE event_id IS NOT NULL AND id NOT IN "
        "(SELECT MIN(id) FROM pipelines WHERE event_id IS NOT NULL GROUP BY event_id)"
    )
    with op.batch_alter_table("pipelines") as batch:
        batch.create_unique_constraint("uq_pipelines_event_id", ["event_id"])
    op.create_index(
        "uq_instances_starting_for",
        "instances",
        ["launched_for"],
        unique=True,
        sqlite_where=sa.text(STARTING),
        postgresql_where=sa.text(STARTING),
    )
    meta = op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("deployment_id", sa.String(length=64), nullable=False),
    )
    # This database's deployment id (PLOYD_DEPLOYMENT's default): made once, here, so
    # every replica on the database reads the same one.
    op.bulk_insert(meta, [{"id": 1, "deployment_id": f"ployd-{uuid.uuid4().hex[:12]}"}])


def downgrade() -> None:
    op.drop_table("deployment")
    op.drop_index("uq_instances_starting_for", table_name="instances")
    with op.batch_alter_table("pipelines") as batch:
        batch.drop_constraint("uq_pipelines_event_id", type_="unique")
    with op.batch_alter_table("inbox") as batch:
        for column in ("next_try_at", "lease_until", "claim_token", "attempts"):
            batch.drop_column(column)
