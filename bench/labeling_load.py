"""Ranking submission under load: N concurrent simulated labelers against a real server, on the default
SQLite database (what `make run` starts) or on Postgres.

    .venv/bin/python bench/labeling_load.py [--labelers 50] [--prompts 2000] [--seconds 30] [--burst]
    PREFLAB_BENCH_POSTGRES_URL=postgresql://preflab@127.0.0.1:54329/preflab_bench \\
        .venv/bin/python bench/labeling_load.py --database postgres [...]

Each labeler "thinks" for a random time (exponential, mean --think seconds; real labelers take 10-60 s)
between receiving a task and submitting it; --think 0 is a closed loop that measures the server's
saturation throughput instead, and --burst sends every labeler's request in the same instant, round
after round (a team starting together, or a server back from a restart). Starts `preflab serve`
(production settings: not dev mode, a real secret key; `--workers` 1 on SQLite as `make run`, 2 on
Postgres) on a fresh database, seeds a project whose prompts already have K=4 completions, then runs
the labelers (asyncio + httpx, one connection each): GET /tasks/next, think, POST the ranking. Prints
throughput, p50/p99 latency per endpoint and every non-2xx answer, then checks the invariants in SQL:
no prompt over-assigned, one ranking per assignment, comparisons = expansion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PREFLAB = [sys.executable, "-m", "app.cli"]
SQLITE_DATA_DIR = Path("/tmp/preflab-bench-sqlite")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--rankings-per-prompt", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--web-workers", type=int, default=None, help="default: 1 on SQLite, 2 on Postgres")
    parser.add_argument(
        "--think",
        type=float,
        default=2.0,
        help="mean seconds a labeler spends on a task before submitting (0: closed loop)",
    )
    parser.add_argument(
        "--burst", action="store_true", help="all labelers request at the same instant, round after round"
    )
    args = parser.parse_args()
    env = {**os.environ, "PREFLAB_SECRET_KEY": "bench-" + "x" * 40, "PREFLAB_DEV": "0"}
    if args.database == "postgres":
        url = os.environ.get("PREFLAB_BENCH_POSTGRES_URL")
        if not url:
            sys.exit("Set PREFLAB_BENCH_POSTGRES_URL to an empty Postgres database (`make postgres`).")
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        env |= {"PREFLAB_DATABASE_URL": url, "PREFLAB_DATA_DIR": "/tmp/preflab-bench-data"}
    else:  # the default database of `make run`: SQLite in the data directory
        shutil.rmtree(SQLITE_DATA_DIR, ignore_errors=True)
        env.pop("PREFLAB_DATABASE_URL", None)
        env["PREFLAB_DATA_DIR"] = str(SQLITE_DATA_DIR)
        engine = create_engine(f"sqlite:///{SQLITE_DATA_DIR / 'preflab.sqlite3'}")
    args.web_workers = args.web_workers or (2 if args.database == "postgres" else 1)
    subprocess.run([*PREFLAB, "migrate"], env=env, check=True, cwd=ROOT, capture_output=True)
    admin = _token(env, "bench-admin", "admin")
    labelers = [_token(env, f"bench-labeler-{i}", "labeler") for i in range(args.labelers)]

    port = _free_port()
    server = subprocess.Popen(
        [*PREFLAB, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.web_workers)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base)
        project_id = _seed(base, admin, args.prompts, args.rankings_per_prompt)
        stats = asyncio.run(_run_labelers(base, labelers, project_id, args))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    _report(stats, args)
    _check_invariants(engine, args.rankings_per_prompt)


def _token(env: dict, name: str, role: str) -> str:
    out = subprocess.run(
        [*PREFLAB, "create-user", name, "--role", role, "--token"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    sys.exit("the server did not start")


def _seed(base: str, admin: str, prompts: int, rankings_per_prompt: int) -> int:
    headers = {"Authorization": f"Bearer {admin}"}
    project = httpx.post(
        base + "/api/v1/projects",
        headers=headers,
        timeout=30,
        json={"name": "load", "completions_per_prompt": 4, "rankings_per_prompt": rankings_per_prompt},
    ).json()
    body = "".join(
        json.dumps({"prompt": f"question {i}", "completions": [f"answer {i}.{j}" for j in range(4)]}) + "\n"
        for i in range(prompts)
    )
    response = httpx.post(
        f"{base}/api/v1/projects/{project['id']}/prompts",
        content=body.encode(),
        timeout=120,
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    response.raise_for_status()
    return project["id"]


async def _run_labelers(base: str, tokens: list[str], project_id: int, args: argparse.Namespace) -> dict:
    stats: dict[str, list[float]] = {"next": [], "rank": []}
    errors: list[str] = []
    clients = [
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        for token in tokens
    ]
    # Warm-up, not measured: every labeler connects once, so the server's connection pools and
    # query caches are filled as they would be on a server that has been up for a while.
    for _ in range(2):
        await asyncio.gather(
            *(http.get("/api/v1/tasks/progress", params={"project_id": project_id}) for http in clients)
        )
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    together = asyncio.Barrier(len(tokens)) if args.burst else None
    think = 0.0 if args.burst else args.think

    async def labeler(token: str, http: httpx.AsyncClient) -> None:
        rng = random.Random(token)
        if think:  # labelers arrive over a moment, not all in the same millisecond
            await asyncio.sleep(rng.uniform(0, think))
        while True:
            if together is not None:
                await together.wait()  # every labeler's request leaves in the same instant
            if time.monotonic() >= deadline:
                return
            t0 = time.perf_counter()
            response = await http.get("/api/v1/tasks/next", params={"project_id": project_id})
            stats["next"].append(time.perf_counter() - t0)
            if response.status_code == 204:
                errors.append("next 204: no task left (seed more prompts)")
                continue
            if response.status_code != 200:
                errors.append(f"next {response.status_code} {response.text[:200]}")
                continue
            task = response.json()
            ids = [c["id"] for c in task["completions"]]
            rng.shuffle(ids)
            tiers = [[ids[0]], [ids[1], ids[2]], [ids[3]]]  # one tie: 5 comparisons
            if think:
                await asyncio.sleep(rng.expovariate(1 / think))  # reading and ranking
            t0 = time.perf_counter()
            result = await http.post(
                f"/api/v1/assignments/{task['assignment_id']}/ranking",
                json={"ranking": tiers, "seconds_spent": 1.0},
            )
            stats["rank"].append(time.perf_counter() - t0)
            if result.status_code != 201:
                errors.append(f"rank {result.status_code} {result.text[:200]}")

    await asyncio.gather(*(labeler(token, http) for token, http in zip(tokens, clients, strict=True)))
    await asyncio.gather(*(http.aclose() for http in clients))
    return {"latencies": stats, "errors": errors, "elapsed": time.monotonic() - started}


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _report(stats: dict, args: argparse.Namespace) -> None:
    elapsed = stats["elapsed"]
    print(
        f"database={args.database} labelers={args.labelers} "
        f"{'burst' if args.burst else f'think={args.think}s'} web_workers={args.web_workers} "
        f"elapsed={elapsed:.1f}s errors={len(stats['errors'])}"
    )
    print(f"{'endpoint':<24}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, label in (("next", "GET /tasks/next"), ("rank", "POST .../ranking")):
        values = stats["latencies"][name]
        print(
            f"{label:<24}{len(values):>10}{len(values) / elapsed:>10.1f}"
            f"{_percentile(values, 50) * 1000:>10.1f}{_percentile(values, 99) * 1000:>10.1f}"
        )
    for error, count in sorted(Counter(stats["errors"]).items(), key=lambda item: -item[1])[:10]:
        print(f"  error x{count}: {error}")


def _check_invariants(engine, rankings_per_prompt: int) -> None:
    with engine.connect() as conn:
        over = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT prompt_id FROM assignments WHERE slot IS NOT NULL "
                "GROUP BY prompt_id HAVING count(*) > :n) t"
            ),
            {"n": rankings_per_prompt},
        ).scalar()
        twice = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT assignment_id FROM rankings GROUP BY assignment_id "
                "HAVING count(*) > 1) t"
            )
        ).scalar()
        rankings = conn.execute(text("SELECT count(*) FROM rankings")).scalar()
        comparisons = conn.execute(text("SELECT count(*) FROM comparisons")).scalar()
    ok = over == 0 and twice == 0 and comparisons == rankings * 5
    print(
        f"invariants: over-assigned prompts={over}, assignments ranked twice={twice}, "
        f"comparisons={comparisons} (expected {rankings * 5} for {rankings} rankings) -> "
        f"{'OK' if ok else 'VIOLATED'}"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
