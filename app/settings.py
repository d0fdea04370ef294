"""One place for configuration: every setting is an environment variable prefixed `PREFLAB_`."""

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Only ever acceptable in dev mode; `Settings` refuses it otherwise.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"

# The repository root: templates/, static/ and migrations/ live beside the packages.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREFLAB_", env_file=".env", extra="ignore")

    dev: bool = Field(False, description="Dev mode: allows the built-in secret key and plain-HTTP cookies.")
    data_dir: Path = Field(Path("data"), description="Holds the SQLite file, artefacts and model caches.")
    model_dirs: str = Field(
        "",
        description="Directories, separated by ',' (or the OS path separator), inside which admins may name "
        "a local Hugging Face model directory: a project's generation model, a reward backbone, a model "
        "imported as a version (POST /models/import). Empty: none; the bundled models and trained versions "
        "need no path",
    )
    database_url: str | None = Field(None, description="SQLAlchemy URL; default is SQLite in data_dir.")
    secret_key: str = Field(DEV_SECRET_KEY, description="Signs CSRF tokens. Required outside dev mode.")

    session_hours: int = Field(12, ge=1, description="How long a browser login lasts.")
    cookie_secure: bool | None = Field(None, description="Secure cookies; default: on outside dev mode.")
    max_upload_mb: float = Field(50, gt=0, description="Largest prompt upload accepted (413 beyond).")
    max_json_mb: float = Field(
        16, gt=0, description="Largest JSON or form body (413 beyond); uploads have max_upload_mb."
    )
    login_max_failures_per_user: int = Field(
        5, ge=1, description="Login attempts per username from one address per window (app/auth/throttle.py)."
    )
    login_max_failures_per_address: int = Field(20, ge=1, description="Failed logins per address per window.")
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (e.g. 127.0.0.1 behind nginx on the same host); empty: none, the "
        "connecting address is the client's.",
    )
    assignment_minutes: float = Field(
        30, gt=0, description="How long a labeler holds a task before it expires."
    )
    login_window_minutes: int = Field(15, ge=1, description="The rate-limit window for failed logins.")

    @model_validator(mode="after")
    def _refuse_default_key_in_production(self) -> "Settings":
        if not self.dev and self.secret_key == DEV_SECRET_KEY:
            raise ValueError(
                "PREFLAB_SECRET_KEY is not set. Set it to a long random string "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))'), "
                "or set PREFLAB_DEV=1 for a local development server."
            )
        if len(self.secret_key) < 16:
            raise ValueError("PREFLAB_SECRET_KEY must be at least 16 characters long.")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'preflab.sqlite3').resolve()}"

    @property
    def allowed_model_dirs(self) -> list[Path]:
        parts = self.model_dirs.replace(os.pathsep, ",").split(",")
        return [Path(part.strip()).expanduser().resolve() for part in parts if part.strip()]

    @property
    def secure_cookies(self) -> bool:
        return (not self.dev) if self.cookie_secure is None else self.cookie_secure

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1024 * 1024)


def normalise_database_url(url: str) -> str:
    """Map plain `postgres://` / `postgresql://` URLs onto the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
