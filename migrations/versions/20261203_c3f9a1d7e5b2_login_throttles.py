"""login throttles: atomic per user+address and per address counters replace the failure log

Revision ID: c3f9a1d7e5b2
Revises: 8a4e2c6b1d37
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3f9a1d7e5b2"
down_revision: str | None = "8a4e2c6b1d37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The old rows only ever mattered for 15 minutes; they are dropped, not converted.
    op.drop_index("ix_login_failures_address_created_at", table_name="login_failures")
    op.drop_index("ix_login_failures_username_created_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )


def downgrade() -> None:
    op.drop_table("login_throttles")
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_username_created_at", "login_failures", ["username", "created_at"])
    op.create_index("ix_login_failures_address_created_at", "login_failures", ["address", "created_at"])
