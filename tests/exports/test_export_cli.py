"""`preflab export` writes the same rows as the API, with a progress bar on stderr."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from tests.exports.test_export_api import export, jsonl, labeled  # noqa: F401 - the fixture


def test_cli_export_matches_the_api(client, admin, labeled, settings, tmp_path) -> None:  # noqa: F811
    env = {
        **os.environ,
        "PREFLAB_DEV": "1",
        "PREFLAB_DATA_DIR": str(tmp_path),
        "PREFLAB_DATABASE_URL": settings.resolved_database_url,
    }
    pid = str(labeled["project"]["id"])
    out = tmp_path / "pairs.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "export", "--project", pid, "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 5 pairs" in result.stderr and "[" in result.stderr
    from_cli = [json.loads(line) for line in out.read_text().splitlines()]
    assert from_cli == jsonl(export(client, admin, labeled["project"]["id"]))

    parquet = tmp_path / "r.parquet"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "export",
            "--project",
            pid,
            "--kind",
            "rankings",
            "--format",
            "parquet",
            "-o",
            str(parquet),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert pq.read_table(parquet).num_rows == 2

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "export",
            "--project",
            pid,
            "--exclude-flags",
            "rude",
            "-o",
            str(tmp_path / "x"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "not flags of this project" in bad.stderr
