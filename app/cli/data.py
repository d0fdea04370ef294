"""`preflab export` and `preflab import`: a project's data out of and into the database, with progress."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from app.cli.base import _engine, _require_migrated, _session_scope, _settings, cli


@cli.command()
def export(
    project: Annotated[int, typer.Option(help="The project id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write ('-' for stdout).")],
    kind: Annotated[str, typer.Option(help="pairs, rankings or demonstrations.")] = "pairs",
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
    """Export a project's comparisons, rankings or demonstrations straight from the database, with a progress
    bar."""
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
