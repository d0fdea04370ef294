"""Engine, sessions and the declarative base shared by every domain's ORM models."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.storable import check_storable

# Stable constraint names, so Alembic migrations are identical on SQLite and Postgres.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON everywhere, JSONB on Postgres (indexable, compact).
JSONType = JSON().with_variant(JSONB(), "postgresql")
NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""JSON whose Python None is SQL NULL (JSONType stores it as the JSON value null), for `IS NULL` tests."""


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("json_serializer", _storable_json)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)
    event.listen(engine, "before_cursor_execute", _refuse_unstorable_text)
    return engine


def _storable_json(value: Any) -> str:
    """JSON columns: NaN, Infinity, NUL and absurd nesting refused alike on both databases."""
    check_storable(value, "a JSON value")
    return json.dumps(value, allow_nan=False)


def _refuse_unstorable_text(conn, cursor, statement, parameters, context, executemany) -> None:
    """Every statement's text parameters, checked for NUL (app.storable), named by their column."""
    if isinstance(parameters, dict) or not parameters:
        rows = [parameters or {}]
    else:  # a row of positional values, or (executemany) a sequence of rows
        rows = parameters if isinstance(parameters[0], list | tuple | dict) else [parameters]
    names = getattr(context.compiled, "positiontup", None) if context is not None else None
    for row in rows:
        pairs = row.items() if isinstance(row, dict) else zip(names or [""] * len(row), row, strict=False)
        for name, value in pairs:
            if isinstance(value, str) and "\x00" in value:
                check_storable(value, _column_name(name))


def _column_name(bind_name: str) -> str:
    """'text_m3' (a multi-row insert's bind name) → 'text'."""
    base, _, suffix = bind_name.rpartition("_")
    return base if base and suffix.removeprefix("m").isdigit() else (bind_name or "a text value")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys unless asked
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """SQLite has one writer at a time. A transaction that reads and then writes (claiming a task)
    would otherwise fail with "database is locked" when another writer got in between; taking the
    write lock at BEGIN makes every transaction serialisable, at the cost of running them one at a
    time. Postgres, for real deployments, has row locks instead."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block ends cleanly, roll back when it raises."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
