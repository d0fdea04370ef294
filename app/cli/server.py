"""`preflab migrate`, `serve` (with a local worker), `worker`, `train-reward`, `simulate`."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.auth.models import Role
from app.cli.base import _engine, _require_migrated, _session_scope, _settings, cli


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
