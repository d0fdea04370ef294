"""`preflab import`: run as a user runs it, without a server, against a fresh SQLite data directory."""

import gzip
import json
import sqlite3
from pathlib import Path

from app.db import make_engine, make_session_factory
from app.projects import service as project_service
from app.projects.schemas import ProjectCreate
from tests.test_cli import preflab


def make_project(data_dir: Path) -> int:
    engine = make_engine(f"sqlite:///{data_dir / 'preflab.sqlite3'}")
    try:
        with make_session_factory(engine)() as session:
            project = project_service.create_project(
                session, data=ProjectCreate(name="imported", completions_per_prompt=2), author=None
            )
            session.commit()
            return project.id
    finally:
        engine.dispose()


def table_counts(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(data_dir / "preflab.sqlite3") as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("prompts", "completions", "rankings", "comparisons")
        }


def hh(prompt: str, chosen: str, rejected: str) -> str:
    return (
        json.dumps(
            {
                "chosen": f"\n\nHuman: {prompt}\n\nAssistant: {chosen}",
                "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {rejected}",
            }
        )
        + "\n"
    )


def test_import_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert preflab("migrate", data_dir=data).returncode == 0
    project_id = make_project(data)
    first = tmp_path / "first.jsonl"
    first.write_text(hh("2+2?", "4", "5") + hh("Capital of France?", "Paris", "Lyon"))
    second = tmp_path / "second.jsonl.gz"
    second.write_bytes(gzip.compress((hh("Hi", "Hello!", "Go away.") + hh("2+2?", "4", "5")).encode()))

    result = preflab(
        "import", "--project", str(project_id), "--format", "hh", str(first), str(second), data_dir=data
    )
    assert result.returncode == 0, result.stderr
    assert (
        "first.jsonl: 2 rankings imported (2 prompts, 4 completions, 2 comparisons), 0 duplicates"
        in result.stdout
    )
    assert "second.jsonl.gz: 1 rankings imported" in result.stdout and "1 duplicates" in result.stdout
    assert "Total: 3 rankings imported, 1 duplicates" in result.stdout
    assert table_counts(data) == {"prompts": 3, "completions": 6, "rankings": 3, "comparisons": 3}
    with sqlite3.connect(data / "preflab.sqlite3") as conn:
        sources = {row[0] for row in conn.execute("SELECT source FROM rankings")}
        assert conn.execute("SELECT count(*) FROM rankings WHERE labeler_id IS NOT NULL").fetchone()[0] == 0
    assert sources == {"import:hh:first.jsonl", "import:hh:second.jsonl.gz"}

    again = preflab("import", "--project", str(project_id), "--format", "hh", str(first), data_dir=data)
    assert again.returncode == 0 and "0 rankings imported" in again.stdout and "2 duplicates" in again.stdout

    # All or nothing across files: a bad line in the second file keeps nothing of the first either.
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text(hh("New question", "yes", "no"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(hh("Fine", "a", "b") + hh("Same", "x", "x"))
    failed = preflab(
        "import", "--project", str(project_id), "--format", "hh", str(fresh), str(bad), data_dir=data
    )
    assert failed.returncode == 1
    assert "bad.jsonl: Line 2:" in failed.stderr and "same transcript" in failed.stderr
    assert "Nothing was imported" in failed.stderr
    assert table_counts(data) == {"prompts": 3, "completions": 6, "rankings": 3, "comparisons": 3}

    skipped = preflab(
        "import", "--project", str(project_id), "--format", "hh", "--skip-invalid", str(bad), data_dir=data
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "1 rankings imported" in skipped.stdout and "skipped line 2:" in skipped.stdout


def test_import_command_refusals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    file = tmp_path / "pairs.jsonl"
    file.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n")
    unmigrated = preflab("import", "--project", "1", "--format", "pairs", str(file), data_dir=data)
    assert unmigrated.returncode == 1 and "preflab migrate" in unmigrated.stderr
    assert preflab("migrate", data_dir=data).returncode == 0
    no_project = preflab("import", "--project", "7", "--format", "pairs", str(file), data_dir=data)
    assert no_project.returncode == 1 and "No project with id 7" in no_project.stderr
    assert "Nothing was imported." in no_project.stderr
    project_id = str(make_project(data))
    wrong_format = preflab("import", "--project", project_id, "--format", "csv", str(file), data_dir=data)
    assert wrong_format.returncode == 2 and "pairs, hh or rankings" in wrong_format.stderr
    missing = preflab(
        "import", "--project", project_id, "--format", "pairs", str(tmp_path / "nope"), data_dir=data
    )
    assert missing.returncode == 2 and "No such file" in missing.stderr
    ok = preflab("import", "--project", project_id, "--format", "pairs", str(file), data_dir=data)
    assert ok.returncode == 0 and "1 rankings imported" in ok.stdout
