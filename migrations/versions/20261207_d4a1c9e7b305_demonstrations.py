"""demonstrations: a project's task (rank or demonstrate) and the answers labelers write

Revision ID: d4a1c9e7b305
Revises: b7d2e4f1a9c3
Create Date: 2026-12-07 17:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d4a1c9e7b305"
down_revision: str | None = "b7d2e4f1a9c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("task", sa.String(length=16), nullable=False, server_default="rank"))
        batch.create_check_constraint("task_known", "task IN ('rank', 'demonstrate')")
    op.create_table(
        "demonstrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("labeler_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("edited_from_id", sa.Integer(), nullable=True),
        sa.Column("original_text", sa.Text(), nullable=True),
        sa.Column("seconds_spent", sa.Float(), nullable=True),
        sa.Column("instructions_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignments.id"],
            name=op.f("fk_demonstrations_assignment_id_assignments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["edited_from_id"],
            ["completions.id"],
            name=op.f("fk_demonstrations_edited_from_id_completions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["instructions_version_id"],
            ["instruction_versions.id"],
            name=op.f("fk_demonstrations_instructions_version_id_instruction_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["labeler_id"], ["users.id"], name=op.f("fk_demonstrations_labeler_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_demonstrations_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompts.id"],
            name=op.f("fk_demonstrations_prompt_id_prompts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demonstrations")),
        sa.UniqueConstraint("assignment_id", name=op.f("uq_demonstrations_assignment_id")),
    )
    op.create_index("ix_demonstrations_project_id_id", "demonstrations", ["project_id", "id"])
    op.create_index(op.f("ix_demonstrations_prompt_id"), "demonstrations", ["prompt_id"])
    op.create_index(op.f("ix_demonstrations_labeler_id"), "demonstrations", ["labeler_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_demonstrations_labeler_id"), table_name="demonstrations")
    op.drop_index(op.f("ix_demonstrations_prompt_id"), table_name="demonstrations")
    op.drop_index("ix_demonstrations_project_id_id", table_name="demonstrations")
    op.drop_table("demonstrations")
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("task_known", type_="check")
        batch.drop_column("task")
