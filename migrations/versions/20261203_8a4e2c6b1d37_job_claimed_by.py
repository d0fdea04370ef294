"""job claimed_by: a job's reports are accepted only from the worker account holding its claim

Revision ID: 8a4e2c6b1d37
Revises: 5d1c0e7a9f21
Create Date: 2026-12-03 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8a4e2c6b1d37"
down_revision: str | None = "5d1c0e7a9f21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Running jobs claimed before this column existed have no holder on record; their worker's next
    # report gets 409 and it claims again, so no job is stranded.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claimed_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_jobs_claimed_by_id_users", "users", ["claimed_by_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_claimed_by_id_users", type_="foreignkey")
        batch.drop_column("claimed_by_id")
