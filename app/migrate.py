"""Apply and check Alembic migrations from code (the CLI and the tests use these)."""

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from app.settings import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    upgrade_to(engine, "head")


def upgrade_to(engine: Engine, revision: str) -> None:
    """Apply the migrations up to ``revision``, in one transaction.

    SQLite alters a table by copying it and dropping the old one (Alembic's batch mode). With foreign keys
    enforced, that drop would cascade to every row referencing the table, as ``ON DELETE CASCADE`` says:
    altering ``projects`` would delete every project's prompts, rankings and jobs. So on SQLite foreign
    keys are off while migrating (a pragma that only takes effect outside a transaction) and checked
    before the transaction commits: a migration that broke a reference fails and changes nothing.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            sqlite_foreign_keys(connection, enforced=False)
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"the migration to {revision} broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                sqlite_foreign_keys(connection, enforced=True)


def sqlite_foreign_keys(connection: Connection, *, enforced: bool) -> None:
    """Set on the driver's connection itself: through SQLAlchemy the statement would begin a transaction,
    inside which SQLite ignores the pragma."""
    cursor = connection.connection.dbapi_connection.cursor()
    cursor.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
    cursor.close()


def pending_migrations(engine: Engine) -> list[str]:
    """Revisions not yet applied to this database, oldest first (empty when up to date)."""
    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    pending = []
    for revision in script.walk_revisions():
        if revision.revision in current:
            break
        pending.append(revision.revision)
    return list(reversed(pending))
