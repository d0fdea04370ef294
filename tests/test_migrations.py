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
