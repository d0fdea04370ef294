"""Import the two shared Anthropic HH-RLHF test splits (4,666 pairs) through the import service.

    PREFLAB_BENCH_POSTGRES_URL=postgresql://preflab@127.0.0.1:54329/preflab_import_bench \\
        .venv/bin/python bench/import_hh.py [--repeat 3] [--data ../shared/data/hh-rlhf]

For each backend, a fresh database: a new SQLite file, and for Postgres the schema of the given database
dropped and recreated (so give it a database of its own), then migrated. A project is created, and the
two gzip files are imported in one transaction, as `preflab import --format hh --skip-invalid` does
(the splits hold 10 degenerate pairs: empty or identical answers). Timed: reading, checking and
inserting both files and the commit. Then the same files again, all duplicates. Each figure is the
median of --repeat runs, each on a fresh database. Without PREFLAB_BENCH_POSTGRES_URL only SQLite runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import make_engine, make_session_factory, session_scope  # noqa: E402
from app.imports import service  # noqa: E402
from app.imports.formats import ImportFormat  # noqa: E402
from app.labeling.models import Comparison, Ranking  # noqa: E402
from app.migrate import upgrade_to_head  # noqa: E402
from app.projects import service as project_service  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402
from app.settings import normalise_database_url  # noqa: E402

SPLITS = ("helpful-base-test.jsonl.gz", "harmless-base-test.jsonl.gz")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hh-rlhf")
    args = parser.parse_args()
    files = [args.data / name for name in SPLITS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        sys.exit(f"Missing HH-RLHF splits: {', '.join(missing)}")

    backends: list[tuple[str, callable]] = [("sqlite", _fresh_sqlite)]
    postgres = os.environ.get("PREFLAB_BENCH_POSTGRES_URL")
    if postgres:
        backends.append(("postgres", lambda: _fresh_postgres(normalise_database_url(postgres))))
    else:
        print("PREFLAB_BENCH_POSTGRES_URL is not set: Postgres skipped.")

    for name, fresh in backends:
        first, again, lines, stored = [], [], 0, None
        for _ in range(args.repeat):
            engine = fresh()
            try:
                seconds, lines, result = _import(engine, files)
                first.append(seconds)
                stored = _stored(engine)
                seconds_again, _, result_again = _import(engine, files, project_id=result["project_id"])
                again.append(seconds_again)
                assert result_again["imported"] == 0 and result_again["duplicates"] == result["imported"]
            finally:
                engine.dispose()
        t, t_again = statistics.median(first), statistics.median(again)
        rankings = result["imported"]
        print(
            f"{name:<8} import:   {t:6.2f} s  {lines / t:8.0f} lines/s  {rankings / t:8.0f} rankings/s  "
            f"({lines} lines: {rankings} rankings, {result['skipped']} invalid skipped; stored {stored})"
        )
        print(
            f"{name:<8} re-import: {t_again:5.2f} s  {lines / t_again:8.0f} lines/s  "
            f"(all {result_again['duplicates']} duplicates, nothing written)"
        )
        print(f"{name:<8} runs: import {_fmt(first)}; re-import {_fmt(again)}")


def _import(engine, files: list[Path], project_id: int | None = None) -> tuple[float, int, dict]:
    factory = make_session_factory(engine)
    if project_id is None:
        with factory() as session:
            project_id = project_service.create_project(
                session, data=ProjectCreate(name="hh-rlhf", completions_per_prompt=2), author=None
            ).id
            session.commit()
    totals = {"imported": 0, "duplicates": 0, "skipped": 0, "lines": 0}
    start = time.perf_counter()
    with _scope(factory) as session:
        project = project_service.get_project(session, project_id)
        for path in files:
            with path.open("rb") as upload:
                result = service.import_preferences(
                    session,
                    project=project,
                    upload=upload,
                    fmt=ImportFormat.hh,
                    source=service.import_source(ImportFormat.hh, path.name),
                    skip_invalid=True,
                )
            totals["imported"] += result.imported
            totals["duplicates"] += result.duplicates
            totals["skipped"] += result.skipped
            totals["lines"] += result.imported + result.duplicates + result.skipped
    seconds = time.perf_counter() - start
    return seconds, totals["lines"], {**totals, "project_id": project_id}


def _scope(factory):
    from contextlib import contextmanager

    return contextmanager(session_scope)(factory)


def _stored(engine) -> str:
    with make_session_factory(engine)() as session:
        rankings = session.scalar(select(func.count(Ranking.id)))
        comparisons = session.scalar(select(func.count(Comparison.id)))
    return f"{rankings} rankings, {comparisons} comparisons"


def _fresh_sqlite():
    directory = tempfile.mkdtemp(prefix="preflab-import-bench-")
    engine = make_engine(f"sqlite:///{directory}/bench.sqlite3")
    upgrade_to_head(engine)
    return engine


def _fresh_postgres(url: str):
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade_to_head(engine)
    return engine


def _fmt(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f} s" for s in seconds)


if __name__ == "__main__":
    main()
