"""folded name keys: projects and usernames unique up to case and Unicode form

Revision ID: 5d1c0e7a9f21
Revises: b2d38265ff6b
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.names import NAME_KEY_LENGTH, name_key

revision: str = "5d1c0e7a9f21"
down_revision: str | None = "b2d38265ff6b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = (("projects", "name", "name_key"), ("users", "username", "username_key"))


def upgrade() -> None:
    connection = op.get_bind()
    for table, column, key in KEYED:
        op.add_column(table, sa.Column(key, sa.String(length=NAME_KEY_LENGTH), nullable=True))
        rows = sa.table(table, sa.column("id"), sa.column(column), sa.column(key))
        seen: set[str] = set()
        for row_id, name in connection.execute(sa.select(rows.c.id, rows.c[column]).order_by(rows.c.id)):
            folded = name_key(name)
            # names the old ASCII-only check let through twice ('Ärger', 'ärger') keep apart, marked
            folded = folded if folded not in seen else f"{folded}#{row_id}"
            seen.add(folded)
            connection.execute(sa.update(rows).where(rows.c.id == row_id).values({key: folded}))
        with op.batch_alter_table(table) as batch:
            batch.alter_column(key, existing_type=sa.String(length=NAME_KEY_LENGTH), nullable=False)
            batch.create_unique_constraint(f"uq_{table}_{key}", [key])


def downgrade() -> None:
    for table, _column, key in KEYED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_{key}", type_="unique")
            batch.drop_column(key)
