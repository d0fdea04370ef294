"""The `preflab` command line: migrate, serve, create users, seed the demo."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from app.auth.models import Role

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


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from app.migrate import upgrade_to_head

    engine = _engine(_settings())
    upgrade_to_head(engine)
    typer.echo(f"Database is up to date: {engine.url.render_as_string(hide_password=True)}")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Web worker processes.")] = 1,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="Also run a job worker beside it.")
    ] = False,
) -> None:
    """Serve the web app and the JSON API (and, with --with-worker, one job worker)."""
    import uvicorn

    settings = _settings()
    engine = _engine(settings)
    _require_migrated(engine)
    worker = None
    if with_worker:
        worker = _start_local_worker(engine, f"http://{_loopback(host)}:{port}", settings.data_dir)
    typer.echo(f"PrefLab on http://{host}:{port}  (API docs: http://{host}:{port}/api/v1/docs)")
    # Uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that would kill
    # this process before the `finally` below stops the worker. Turn it into a normal exit instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            proxy_headers=False,  # PREFLAB_TRUSTED_PROXIES decides (app/main.py), not uvicorn's default
            log_level="info",
        )
    finally:
        if worker is not None:
            worker.terminate()  # SIGTERM: it hands its job back to the queue and exits
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def worker(ctx: typer.Context) -> None:
    """Run a job worker: `preflab worker --server URL --token T [--kinds generate] [--once]`.

    The worker is the `trainer` package; it talks to the server only over the HTTP API.
    """
    raise typer.Exit(subprocess.call([sys.executable, "-m", "trainer.worker", *ctx.args]))


@cli.command(
    "train-reward",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def train_reward(ctx: typer.Context) -> None:
    """Train a reward model without a server: `preflab train-reward --data pairs.jsonl --out DIR [options]`.

    Any pairs file in the export format (JSONL or Parquet) works; `--help` lists the options.
    """
    raise typer.Exit(subprocess.call([sys.executable, "-m", "trainer.reward_cli", *ctx.args]))


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def simulate(ctx: typer.Context) -> None:
    """Simulated labelers for dry runs: `preflab simulate --server URL --token T --project ID
    (--scorer module:function | --reward-model ID) [--labelers N] [--noise S]`; `--help` lists the rest.

    They rank the project's tasks through the HTTP API, following the scorer with Bradley-Terry noise.
    """
    raise typer.Exit(subprocess.call([sys.executable, "-m", "trainer.simulate", *ctx.args]))


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if the server process dies without stopping it (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


LOCAL_WORKER = "local-worker"


def _start_local_worker(engine, server: str, data_dir: Path) -> subprocess.Popen:
    """A worker process beside the server, with a fresh token for a `local-worker` account (the token
    travels in the environment, not on the command line)."""
    from sqlalchemy import select

    from app.auth import service
    from app.auth.models import User
    from app.jobs import service as jobs

    with _session_scope(engine) as session:
        user = session.scalar(select(User).where(User.username == LOCAL_WORKER))
        if user is None:
            user = service.create_user(session, username=LOCAL_WORKER, role=Role.worker)
        service.revoke_tokens(session, user=user)
        token = service.issue_api_token(session, user=user)
        # The last local worker is gone (it lives and dies with its server): its jobs resume now, from
        # their checkpoints, rather than when their lease runs out.
        if resumed := jobs.release_all_held_by(session, holder_id=user.id):
            typer.echo(f"Handing back job(s) {', '.join(map(str, resumed))} of the previous local worker")
    env = {**os.environ, "PREFLAB_WORKER_TOKEN": token, "PREFLAB_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "trainer.worker", "--server", server, "--name", LOCAL_WORKER],
        env=env,
        preexec_fn=_die_with_parent,
    )


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
def export(
    project: Annotated[int, typer.Option(help="The project id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write ('-' for stdout).")],
    kind: Annotated[str, typer.Option(help="pairs or rankings.")] = "pairs",
    format: Annotated[str, typer.Option(help="jsonl or parquet.")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="Rankings created at or after (ISO-8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Rankings created before (ISO-8601).")] = None,
    min_agreement: Annotated[
        float | None, typer.Option(help="Prompts whose rankings agree this much.")
    ] = None,
    exclude_flags: Annotated[str, typer.Option(help="Comma-separated flags whose pairs are dropped.")] = "",
    labelers: Annotated[str, typer.Option(help="Comma-separated pseudonymous labeler ids.")] = "",
    include_ties: Annotated[bool, typer.Option("--include-ties", help="Add tied pairs (tie: true).")] = False,
) -> None:
    """Export a project's comparisons or rankings straight from the database, with a progress bar."""
    from app.errors import PrefLabError
    from app.exports import service
    from app.exports.parquet import iter_parquet
    from app.exports.schemas import ExportFilters
    from app.projects.service import get_project

    engine = _engine(_settings())
    _require_migrated(engine)
    try:
        filters = ExportFilters(
            kind=kind,
            format=format,
            since=since,
            until=until,
            min_agreement=min_agreement,
            exclude_flags=exclude_flags,
            labelers=labelers,
            include_ties=include_ties,
        )
        with _session_scope(engine) as session:
            plan = service.plan_export(session, project=get_project(session, project), filters=filters)
    except ValidationError as exc:
        typer.secho(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), fg="red", err=True
        )
        raise typer.Exit(2) from None
    except PrefLabError as exc:
        typer.secho(exc.message, fg="red", err=True)
        raise typer.Exit(1) from None
    with engine.connect() as connection:
        total = service.count_rows(connection, plan)
        progress = _Progress(total, unit=kind)
        if format == "jsonl":
            chunks = service.iter_jsonl(connection, plan)
        else:
            chunks = iter_parquet(progress.count(service.iter_rows(connection, plan)), filters)
        sink = sys.stdout.buffer if str(output) == "-" else output.open("wb")
        try:
            for chunk in chunks:
                if format == "jsonl":
                    progress.advance(chunk.count(b"\n"))
                sink.write(chunk)
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()
        progress.done()


class _Progress:
    """A progress bar on stderr (stdout may be the export itself)."""

    def __init__(self, total: int, unit: str):
        self.total, self.unit, self.n = total, unit, 0
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def count(self, rows):
        for row in rows:
            self.advance(1)
            yield row

    def advance(self, n: int) -> None:
        import time

        self.n += n
        now = time.monotonic()
        if now - self._last >= (0.1 if self.tty else 2.0):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        share = min(1.0, self.n / self.total) if self.total else 1.0
        bar = "#" * int(share * 30)
        end = "\r" if self.tty else "\n"
        sys.stderr.write(f"exporting {self.unit}: [{bar:<30}] {self.n:,}/{self.total:,}{end}")
        sys.stderr.flush()

    def done(self) -> None:
        self._draw()
        sys.stderr.write(f"\nwrote {self.n:,} {self.unit}\n")


@cli.command("import")
def import_(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="JSONL files, optionally gzip-compressed.")
    ],
    project: Annotated[int, typer.Option("--project", help="The project's id.")],
    format: Annotated[str, typer.Option("--format", help="pairs (TRL), hh (Anthropic HH-RLHF) or rankings.")],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Leave out invalid lines and list them instead of failing.")
    ] = False,
) -> None:
    """Import existing preference data into a project, all files in one transaction (all or nothing)."""
    from app.errors import PrefLabError
    from app.imports import service
    from app.imports.formats import ImportFormat
    from app.projects.service import get_project

    try:
        fmt = ImportFormat(format)
    except ValueError:
        typer.secho(f"Unknown format '{format}': use pairs, hh or rankings.", fg="red", err=True)
        raise typer.Exit(2) from None
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        typer.secho(f"No such file: {', '.join(missing)}", fg="red", err=True)
        raise typer.Exit(2)
    engine = _engine(_settings())
    _require_migrated(engine)
    results = []
    current: Path | None = None  # the file being imported, to name it in an error
    try:
        with _session_scope(engine) as session:
            target = get_project(session, project)
            for current in files:
                with current.open("rb") as upload:
                    results.append(
                        service.import_preferences(
                            session,
                            project=target,
                            upload=upload,
                            fmt=fmt,
                            source=service.import_source(fmt, current.name),
                            skip_invalid=skip_invalid,
                        )
                    )
    except PrefLabError as exc:
        typer.secho(f"{current}: {exc.message}" if current else exc.message, fg="red", err=True)
        for error in exc.details.get("errors", [])[1:]:
            typer.secho(f"  line {error['line']}: {error['message']}", fg="red", err=True)
        if "Nothing was imported" not in exc.message:
            typer.secho("Nothing was imported.", fg="red", err=True)
        raise typer.Exit(1) from None
    for path, result in zip(files, results, strict=True):
        typer.echo(
            f"{path.name}: {result.imported} rankings imported ({result.prompts} prompts, "
            f"{result.completions} completions, {result.comparisons} comparisons), "
            f"{result.duplicates} duplicates, {result.skipped} invalid lines skipped."
        )
        for skipped in result.skipped_lines:
            typer.echo(f"  skipped line {skipped.line}: {skipped.message}")
    if len(results) > 1:
        total = {key: sum(getattr(r, key) for r in results) for key in ("imported", "duplicates", "skipped")}
        typer.echo(
            f"Total: {total['imported']} rankings imported, {total['duplicates']} duplicates, "
            f"{total['skipped']} invalid lines skipped, into project {project}."
        )


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

            queue_generation(session, project=project, created_by_id=None)
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


def main() -> None:
    cli(prog_name="preflab")


if __name__ == "__main__":
    sys.exit(main())
