"""pipeline lookup indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 23:37:16.102368
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_pipelines_repo_pr", "pipelines", ["repository_id", "pr_number"], unique=False
    )
    op.create_index("ix_pipelines_repo_sha", "pipelines", ["repository_id", "sha"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pipelines_repo_sha", table_name="pipelines")
    op.drop_index("ix_pipelines_repo_pr", table_name="pipelines")
