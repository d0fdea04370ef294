"""Export throughput and memory: 1,000,000 pairs from Postgres as JSONL and Parquet, against COPY.

    PREFLAB_BENCH_POSTGRES_URL=postgresql://preflab@127.0.0.1:54329/preflab_bench \\
        .venv/bin/python bench/export_pairs.py [--pairs 1000000]

Fills a fresh schema with synthetic labeled data by SQL (K=4, one strict ranking per prompt: 6 pairs
each, ~200-character completions), then measures, each in its own process so peak memory is its own:
- COPY: `COPY (SELECT <the export's join>) TO STDOUT`, read through psycopg and discarded;
- JSONL and Parquet: PrefLab's export code (the same generator the endpoint streams), bytes discarded.
Prints rows per second, MB/s and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COPY_QUERY = """
COPY (
  SELECT c.prompt_id, p.messages, ch.text, rj.text, c.chosen_id, c.rejected_id, c.chosen_tier,
         c.rejected_tier, c.ranking_id, r.labeler_id, r.source, r.flags, r.created_at, iv.version
  FROM comparisons c
  JOIN rankings r ON r.id = c.ranking_id
  JOIN prompts p ON p.id = c.prompt_id
  JOIN completions ch ON ch.id = c.chosen_id
  JOIN completions rj ON rj.id = c.rejected_id
  LEFT JOIN instruction_versions iv ON iv.id = r.instructions_version_id
  WHERE r.project_id = 1 ORDER BY c.id
) TO STDOUT
"""

FILL = """
INSERT INTO users (id, username, role, is_active, created_at)
  SELECT g, 'labeler' || g, 'labeler', true, now() FROM generate_series(1, 20) g;
INSERT INTO projects (id, name, completions_per_prompt, rankings_per_prompt, flags, generation, created_at,
                      export_salt)
  VALUES (1, 'bench', 4, 1, '["unsafe"]', '{"model": "default"}', now(), 'benchsalt');
INSERT INTO instruction_versions (id, project_id, version, body_md, created_at)
  VALUES (1, 1, 1, '# rank', now());
INSERT INTO prompts (id, project_id, messages, metadata, source, created_at)
  SELECT g, 1, jsonb_build_array(jsonb_build_object('role', 'user', 'content',
         'Question number ' || g || ': how would you explain the difference between weather and climate?')),
         '{}', 'bench', now() FROM generate_series(1, :prompts) g;
INSERT INTO completions (id, prompt_id, text, origin, created_at)
  SELECT (p - 1) * 4 + k, p,
         'Answer ' || k || ' to question ' || p || '. ' || repeat('Some plain text. ', 10), 'imported', now()
  FROM generate_series(1, :prompts) p, generate_series(1, 4) k;
INSERT INTO rankings (id, project_id, prompt_id, labeler_id, tiers, flags, none_acceptable, seconds_spent,
                      instructions_version_id, created_at)
  SELECT p, 1, p, 1 + p % 20,
         jsonb_build_array(jsonb_build_array((p-1)*4+1), jsonb_build_array((p-1)*4+2),
                           jsonb_build_array((p-1)*4+3), jsonb_build_array((p-1)*4+4)),
         '{}', false, 30, 1, now()
  FROM generate_series(1, :prompts) p;
INSERT INTO comparisons
  (ranking_id, project_id, prompt_id, chosen_id, rejected_id, chosen_tier, rejected_tier)
  SELECT p, 1, p, (p-1)*4 + a, (p-1)*4 + b, a - 1, b - 1
  FROM generate_series(1, :prompts) p, generate_series(1, 4) a, generate_series(1, 4) b WHERE a < b
  ORDER BY p, a, b;
ANALYZE;
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--measure", choices=["copy", "jsonl", "parquet"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = os.environ.get("PREFLAB_BENCH_POSTGRES_URL")
    if not url:
        sys.exit(
            "Set PREFLAB_BENCH_POSTGRES_URL to a Postgres database this script may wipe (make postgres)."
        )
    if args.measure:
        print(json.dumps(_measure(args.measure, url)))
        return
    _fill(url, prompts=args.pairs // 6)
    print(f"{'method':<10}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'MB/s':>8}{'peak RSS MB':>13}")
    results = {}
    for method in ("copy", "jsonl", "parquet"):
        out = subprocess.run(
            [sys.executable, __file__, "--measure", method],
            env=os.environ,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = results[method] = json.loads(out.strip().splitlines()[-1])
        print(
            f"{method:<10}{r['rows']:>12,}{r['seconds']:>10.1f}{r['rows'] / r['seconds']:>12,.0f}"
            f"{r['bytes'] / r['seconds'] / 1e6:>8.1f}{r['peak_rss_mb']:>13.0f}"
        )
    ratio = (results["jsonl"]["rows"] / results["jsonl"]["seconds"]) / (
        results["copy"]["rows"] / results["copy"]["seconds"]
    )
    print(f"JSONL rate / COPY rate = {ratio:.2f} (target >= 0.5)")


def _fill(url: str, prompts: int) -> None:
    from sqlalchemy import text

    from app.db import make_engine
    from app.migrate import upgrade_to_head
    from app.settings import normalise_database_url

    engine = make_engine(normalise_database_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade_to_head(engine)
    started = time.monotonic()
    with engine.begin() as conn:
        for statement in FILL.split(";"):
            if statement.strip():
                conn.execute(text(statement), {"prompts": prompts} if ":prompts" in statement else {})
        pairs = conn.execute(text("SELECT count(*) FROM comparisons")).scalar()
    print(f"filled {pairs:,} pairs ({prompts:,} rankings) in {time.monotonic() - started:.0f}s")
    engine.dispose()


def _measure(method: str, url: str) -> dict:
    """Imports happen before the clock starts; connecting and the whole transfer are timed."""
    import psycopg

    from app.db import make_engine
    from app.exports import service
    from app.exports.parquet import iter_parquet
    from app.exports.schemas import ExportFilters
    from app.settings import normalise_database_url

    rows = size = 0
    started = time.monotonic()
    if method == "copy":
        with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(COPY_QUERY) as copy:
            for chunk in copy:
                size += len(chunk)
                rows += bytes(chunk).count(b"\n")
    else:
        engine = make_engine(normalise_database_url(url))
        filters = ExportFilters(kind="pairs", format=method)
        plan = service.ExportPlan(1, "benchsalt", filters, None, None)
        with engine.connect() as conn:
            if method == "jsonl":
                for chunk in service.iter_jsonl(conn, plan):
                    size += len(chunk)
                    rows += chunk.count(b"\n")
            else:

                def counted(source):
                    nonlocal rows
                    for row in source:
                        rows += 1
                        yield row

                for chunk in iter_parquet(counted(service.iter_rows(conn, plan)), filters):
                    size += len(chunk)
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "bytes": size, "seconds": seconds, "peak_rss_mb": peak}


if __name__ == "__main__":
    main()
