"""`preflab create-user`, `set-password` and `demo`: accounts from the shell, and the demo project."""

from pathlib import Path
from typing import Annotated

import typer

from app.auth.models import Role
from app.cli.base import _engine, _require_migrated, _session_scope, _settings, cli


@cli.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="The username.")],
    role: Annotated[Role, typer.Option(help="admin, labeler, researcher or worker.")],
    password: Annotated[
        str | None, typer.Option(help="Password for browser login (omit for token-only).")
    ] = None,
    token: Annotated[bool, typer.Option("--token", help="Also print an API token (the last line).")] = False,
) -> None:
    """Create a user; with --token the last line of output is an API token for scripts."""
    from app.auth import service
    from app.errors import PrefLabError

    engine = _engine(_settings())
    _require_migrated(engine)
    try:
        with _session_scope(engine) as session:
            user = service.create_user(session, username=name, role=role, password=password)
            issued = service.issue_api_token(session, user=user) if token else None
    except PrefLabError as exc:
        typer.secho(exc.message, fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Created {role.value} '{name}' (id {user.id}).")
    if issued:
        typer.echo(issued)


@cli.command("set-password")
def set_password(
    name: Annotated[str, typer.Argument(help="The username.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set a user's password (and end their browser sessions)."""
    from sqlalchemy import select

    from app.auth import service
    from app.auth.models import User

    engine = _engine(_settings())
    _require_migrated(engine)
    with _session_scope(engine) as session:
        user = session.scalar(select(User).where(User.username == name))
        if user is None:
            typer.secho(f"No user named '{name}'.", fg="red", err=True)
            raise typer.Exit(1)
        service.set_password(session, user=user, password=password)
    typer.echo(f"Password of '{name}' changed.")


@cli.command()
def demo() -> None:
    """Seed a demo admin, a demo labeler and a demo project with a few prompts (idempotent)."""
    from app.demo import seed_demo

    settings = _settings()
    engine = _engine(settings)
    _require_migrated(engine)
    with _session_scope(engine) as session:
        accounts, project = seed_demo(session)
        if project is not None:
            from app.runs.generation.service import queue_generation

            queue_generation(
                session, project=project, created_by_id=None, model_dirs=settings.allowed_model_dirs
            )
            typer.echo(f"Queued generation of the demo project's completions (project {project.id}).")
    credentials = settings.data_dir / "demo-credentials.txt"
    _remember_new_passwords(credentials, accounts)
    typer.echo("Demo accounts (also in " + str(credentials) + "):")
    for line in credentials.read_text().splitlines():
        typer.echo("  " + line)


def _remember_new_passwords(path: Path, accounts) -> None:
    """Passwords are stored hashed, so the demo keeps the ones it generated in a private file."""
    new = [f"{a.role:<8} username: {a.username:<10} password: {a.password}" for a in accounts if a.password]
    if not new:
        return
    path.touch(mode=0o600, exist_ok=True)
    with path.open("a") as file:
        file.write("\n".join(new) + "\n")
