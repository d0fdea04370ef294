"""The `preflab` command line's `Typer` and what its commands share: settings, engine, a transaction,
the check that the database is migrated. The commands are in this package's other modules."""

import typer
from pydantic import ValidationError

cli = typer.Typer(
    help="PrefLab: human-preference annotation for RLHF.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _settings():
    from app.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        messages = "; ".join(err["msg"].removeprefix("Value error, ") for err in exc.errors())
        typer.secho(f"Configuration error: {messages}", fg="red", err=True)
        raise typer.Exit(2) from None


def _engine(settings):
    from app.db import make_engine

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)


def _session_scope(engine):
    from contextlib import contextmanager

    import app.models  # noqa: F401 - every table mapped, so foreign keys resolve whatever a command imported
    from app.db import make_session_factory, session_scope

    return contextmanager(session_scope)(make_session_factory(engine))


def _require_migrated(engine) -> None:
    from app.migrate import pending_migrations

    pending = pending_migrations(engine)
    if pending:
        typer.secho(
            f"The database at {engine.url.render_as_string(hide_password=True)} is not migrated "
            f"({len(pending)} migration(s) pending). Run `preflab migrate` first.",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
