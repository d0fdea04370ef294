"""labeler quality: gold tasks, the project's rules, and admins' status overrides

Revision ID: a9d3f5c2e8b1
Revises: f2c8e1a4b6d9
Create Date: 2026-12-07 21:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a9d3f5c2e8b1"
down_revision: str | None = "f2c8e1a4b6d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("gold_rate", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("min_seconds", sa.Float(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("max_fast_share", sa.Float(), nullable=False, server_default="0.3"))
        batch.add_column(sa.Column("gold_min_agreement", sa.Float(), nullable=False, server_default="0.3"))
        batch.add_column(sa.Column("gold_min_tasks", sa.Integer(), nullable=False, server_default="3"))
    with op.batch_alter_table("prompts") as batch:
        json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
        batch.add_column(sa.Column("gold_tiers", json_type, nullable=True))
    with op.batch_alter_table("rankings") as batch:
        batch.add_column(sa.Column("gold", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "labeler_statuses",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('ok', 'flagged', 'excluded')", name=op.f("ck_labeler_statuses_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_labeler_statuses_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_labeler_statuses_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_labeler_statuses")),
    )


def downgrade() -> None:
    op.drop_table("labeler_statuses")
    with op.batch_alter_table("rankings") as batch:
        batch.drop_column("gold")
    with op.batch_alter_table("prompts") as batch:
        batch.drop_column("gold_tiers")
    with op.batch_alter_table("projects") as batch:
        for column in ("gold_min_tasks", "gold_min_agreement", "max_fast_share", "min_seconds", "gold_rate"):
            batch.drop_column(column)
