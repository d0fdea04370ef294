"""The migrations must build exactly the schema the ORM models describe, on SQLite and on Postgres."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from app.db import make_engine
from app.migrate import pending_migrations, upgrade_to_head
from app.models import Base
from tests.conftest import postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
        yield engine
        engine.dispose()
        return
    url = postgres_url()
    if url is None:
        pytest.skip("Postgres leg skipped: set PREFLAB_TEST_POSTGRES_URL (see .ci/run) to run it")
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS preflab_drift"))
        conn.execute(text("CREATE DATABASE preflab_drift"))
    engine = make_engine(admin.url.set(database="preflab_drift").render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS preflab_drift"))
    admin.dispose()


def test_migrations_match_models_without_drift(fresh_engine) -> None:
    assert pending_migrations(fresh_engine), "a fresh database must have migrations pending"
    upgrade_to_head(fresh_engine)
    assert pending_migrations(fresh_engine) == []
    with fresh_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_upgrade_is_idempotent(fresh_engine) -> None:
    upgrade_to_head(fresh_engine)
    upgrade_to_head(fresh_engine)
    assert pending_migrations(fresh_engine) == []


def test_upgrading_a_database_keeps_its_data(fresh_engine) -> None:
    """SQLite alters a table by copying it and dropping the old one. With foreign keys enforced that drop
    cascades to every row that references the table: upgrading across a migration that altered `projects`
    once deleted every project's instructions, prompts, rankings and jobs. One row in each table written
    at an older revision must all be there at head, and still linked."""
    from sqlalchemy import inspect

    from app.migrate import upgrade_to

    upgrade_to(fresh_engine, OLDER_REVISION)
    with fresh_engine.begin() as conn:
        inspector = inspect(conn)
        for table in SEEDED:
            row = {
                column["name"]: _value_for(table, column)
                for column in inspector.get_columns(table)
                if not column["nullable"] or column["name"] in LINKS.get(table, ())
            }
            names = ", ".join(row)
            conn.execute(
                text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})"), row
            )
    counts = "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in SEEDED)
    links = "SELECT " + ", ".join(
        f"(SELECT {column} FROM {table})" for table, cs in LINKS.items() for column in cs
    )
    with fresh_engine.connect() as conn:
        before, linked = conn.execute(text(counts)).one(), conn.execute(text(links)).one()
    upgrade_to_head(fresh_engine)
    with fresh_engine.connect() as conn:
        assert conn.execute(text(counts)).one() == before == (1,) * len(SEEDED)
        assert conn.execute(text(links)).one() == linked == (1,) * len(linked)


OLDER_REVISION = "c3f9a1d7e5b2"  # before the migrations that alter `model_versions` and `projects`
SEEDED = ["users", "projects", "instruction_versions", "prompts", "completions", "model_versions", "jobs"]
LINKS = {
    "jobs": ("model_id", "project_id"),
    "model_versions": ("project_id",),
    "projects": ("created_by_id",),
}
CHOSEN = {"role": "admin", "kind": "policy", "status": "succeeded", "origin": "imported"}


def _value_for(table: str, column: dict):
    """A value the column accepts: id 1 (so every foreign key points at the one row of its table)."""
    from datetime import UTC, datetime

    from sqlalchemy import JSON, Boolean, DateTime, Float, Integer

    kind = column["type"]
    if table == "jobs" and column["name"] == "kind":
        return "ppo"
    if column["name"] in CHOSEN:
        return CHOSEN[column["name"]]
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return 1
    if isinstance(kind, Float):
        return 1.0
    if isinstance(kind, DateTime):
        return datetime(2026, 12, 1, tzinfo=UTC)
    if isinstance(kind, JSON) or "JSON" in type(kind).__name__:
        return "{}"
    return f"{table}-{column['name']}"
