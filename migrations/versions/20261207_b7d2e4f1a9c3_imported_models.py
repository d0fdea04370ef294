"""imported models: a version's name, origin (trained or imported) and reward label

Revision ID: b7d2e4f1a9c3
Revises: c3f9a1d7e5b2
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7d2e4f1a9c3"
down_revision: str | None = "c3f9a1d7e5b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("origin", sa.String(length=16), nullable=False, server_default="trained")
        )
        batch.add_column(sa.Column("reward_label", sa.Integer(), nullable=True))
        batch.create_check_constraint("origin_known", "origin IN ('trained', 'imported')")


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint("origin_known", type_="check")
        batch.drop_column("reward_label")
        batch.drop_column("origin")
        batch.drop_column("name")
