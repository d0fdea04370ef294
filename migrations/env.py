"""Alembic environment: the URL comes from the caller (`preflab migrate`) or from PrefLab's settings."""

from typing import Any

from alembic import context

from app.db import UTCDateTime, make_engine
from app.migrate import sqlite_foreign_keys
from app.models import Base

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations should not import app code: write our UTC column type as the plain type it wraps.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import get_settings

    return get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # `alembic upgrade` run by hand: as app.migrate.upgrade_to does, foreign keys off on SQLite while its
    # batch mode copies and drops tables (the drop would cascade to every referencing row)
    engine = make_engine(database_url())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            sqlite_foreign_keys(connection, enforced=False)
        try:
            _run(connection)
        finally:
            if sqlite:
                sqlite_foreign_keys(connection, enforced=True)
    engine.dispose()


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only alter tables by copying them
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
