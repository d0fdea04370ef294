"""Shared fixtures. Every test that uses `client` or `db` runs twice: on SQLite and on Postgres.

Postgres comes from PREFLAB_TEST_POSTGRES_URL (`.ci/run` starts a throwaway cluster and sets it).
Without it the Postgres leg is skipped with that reason, unless PREFLAB_REQUIRE_POSTGRES=1, which
turns the skip into a failure so CI cannot silently lose the leg.
"""

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth_service
from app.auth.models import Role, User
from app.db import make_engine, make_session_factory
from app.main import create_app
from app.migrate import upgrade_to_head
from app.models import Base
from app.settings import Settings, normalise_database_url

POSTGRES_ENV = "PREFLAB_TEST_POSTGRES_URL"
PASSWORD = "correct horse battery"


def postgres_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return normalise_database_url(url)
    if os.environ.get("PREFLAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PREFLAB_REQUIRE_POSTGRES=1 but {POSTGRES_ENV} is not set")
    return None


@pytest.fixture(scope="session")
def _migrated_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """One migrated database per backend for the whole run; tests empty the tables after themselves."""
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


def _engine_for(backend: str, engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Engine:
    if backend not in engines:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"
        else:
            url = postgres_url()
            if url is None:
                pytest.skip(f"Postgres leg skipped: set {POSTGRES_ENV} (see .ci/run) to run it")
        engine = make_engine(url)
        if backend == "postgres":
            with engine.begin() as conn:  # start from nothing, whatever an earlier run left
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade_to_head(engine)
        engines[backend] = engine
    return engines[backend]


def _empty_tables(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", "postgres"])
def engine(
    request: pytest.FixtureRequest,
    _migrated_engines: dict[str, Engine],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    engine = _engine_for(request.param, _migrated_engines, tmp_path_factory)
    yield engine
    _empty_tables(engine)


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session for arranging and inspecting data directly; commit what the app must see.

    On SQLite it uses a plain engine whose reads take no lock: the app's engine begins every
    transaction with the write lock (see app.db), and a test holding one open would block the app.
    """
    inspector = create_engine(engine.url) if engine.dialect.name == "sqlite" else engine
    with make_session_factory(inspector)() as session:
        yield session
    if inspector is not engine:
        inspector.dispose()


@pytest.fixture
def settings(engine: Engine, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        dev=True,
        database_url=engine.url.render_as_string(hide_password=False),
        data_dir=tmp_path / "data",
        max_upload_mb=1,
        # the tiny models tests build live in pytest's temporary directories
        model_dirs=str(tmp_path_factory.getbasetemp()),
    )


def app_on(settings: Settings, engine: Engine):
    """The app with these settings, on the test's database engine (shared, not a second pool)."""
    application = create_app(settings)
    application.state.engine.dispose()
    application.state.engine = engine
    application.state.session_factory = make_session_factory(engine)
    return application


@pytest.fixture
def app(settings: Settings, engine: Engine):
    return app_on(settings, engine)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@dataclass
class Account:
    user_id: int
    username: str
    password: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(session_factory: sessionmaker[Session]) -> Callable[..., Account]:
    """`make_account("admin")` creates a user with a password and an API token, committed."""
    counter = {"n": 0}

    def make(role: str, username: str | None = None) -> Account:
        counter["n"] += 1
        name = username or f"{role}{counter['n']}"
        with session_factory() as session:
            user: User = auth_service.create_user(session, username=name, role=Role(role), password=PASSWORD)
            token = auth_service.issue_api_token(session, user=user)
            session.commit()
            return Account(user.id, name, PASSWORD, role, token)

    return make


@pytest.fixture
def admin(make_account: Callable[..., Account]) -> Account:
    return make_account("admin")


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


def browser_login(client: TestClient, account: Account) -> str:
    """Log in through the real form (with its CSRF cookie) and return the session's CSRF token."""
    page = client.get("/login")
    login_csrf = CSRF_INPUT.search(page.text).group(1)
    response = client.post(
        "/login",
        data={
            "username": account.username,
            "password": account.password,
            "csrf_token": login_csrf,
            "next": "/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/", follow_redirects=True)
    return CSRF_META.search(home.text).group(1)


def create_project(client: TestClient, admin: Account, **overrides) -> dict:
    body = {
        "name": "helpfulness-v1",
        "instructions_md": "# Rank by helpfulness",
        "completions_per_prompt": 4,
        "rankings_per_prompt": 2,
        "flags": ["unsafe", "nonsense"],
        "generation": {"model": "default", "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64},
    }
    body.update(overrides)
    response = client.post("/api/v1/projects", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port, for concurrent clients and the browser."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


NOT_APPLICABLE = "not applicable on this backend"


def only_on(engine: Engine, dialect: str) -> None:
    """Skip a backend-specific test on the other backend (such skips are expected, even in CI)."""
    if engine.dialect.name != dialect:
        pytest.skip(f"{NOT_APPLICABLE}: needs {dialect}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With PREFLAB_FORBID_SKIPS=1 (CI), a skipped test fails the run: CI installs Postgres, Chromium
    and the trainer extras, so a skip there means a leg silently stopped running."""
    if os.environ.get("PREFLAB_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [
        report
        for report in (reporter.stats.get("skipped", []) if reporter else [])
        if NOT_APPLICABLE not in str(report.longrepr)
    ]
    if skipped:
        message = f"PREFLAB_FORBID_SKIPS=1: {len(skipped)} test(s) skipped; failing the run."
        reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
