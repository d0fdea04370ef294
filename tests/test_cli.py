"""The `preflab` command line, run as a user runs it (a subprocess with its environment)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth.security import hash_token


def preflab(*args: str, data_dir: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFLAB_DEV": "1", "PREFLAB_DATA_DIR": str(data_dir), **(extra_env or {})}
    env.pop("PREFLAB_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = preflab("serve", "--port", "1", data_dir=tmp_path)
    assert result.returncode == 1
    assert "Run `preflab migrate` first" in result.stderr


def test_refuses_default_secret_outside_dev_mode(tmp_path: Path) -> None:
    result = preflab("migrate", data_dir=tmp_path, extra_env={"PREFLAB_DEV": "0"})
    assert result.returncode == 2 and "PREFLAB_SECRET_KEY is not set" in result.stderr


def test_migrate_create_user_token_and_demo(tmp_path: Path) -> None:
    assert preflab("migrate", data_dir=tmp_path).returncode == 0
    created = preflab("create-user", "ops", "--role", "admin", "--token", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("pl_") and len(token) > 40

    import sqlite3

    with sqlite3.connect(tmp_path / "preflab.sqlite3") as conn:
        stored = [row[0] for row in conn.execute("SELECT token_hash FROM api_tokens")]
    assert stored == [hash_token(token)], "only the hash is stored"

    again = preflab("create-user", "ops", "--role", "admin", data_dir=tmp_path)
    assert again.returncode == 1 and "taken" in again.stderr

    first = preflab("demo", data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "username: admin" in first.stdout and "password:" in first.stdout
    assert "Queued generation" in first.stdout
    second = preflab("demo", data_dir=tmp_path)
    assert second.returncode == 0 and "Queued generation" not in second.stdout
    assert "username: admin" in second.stdout, "the demo logins are printed on every run"
    with sqlite3.connect(tmp_path / "preflab.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    assert oct((tmp_path / "demo-credentials.txt").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("role", ["boss"])
def test_unknown_role_is_refused(tmp_path: Path, role: str) -> None:
    preflab("migrate", data_dir=tmp_path)
    result = preflab("create-user", "x1", "--role", role, data_dir=tmp_path)
    assert result.returncode == 2 and "boss" in result.stderr
