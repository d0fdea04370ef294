"""Postgres only: the JSONL of `kind=pairs` produced by Postgres itself and streamed with COPY.

Building each line in Python costs more than the database's own work; here Postgres assembles each
JSON line and COPY streams them with no per-row round trips. The columns and their SQL are those of
app/exports/rows.py; the generic path in `service.py` produces the same rows on every backend (tests
compare them row by row); only the spacing and the order of keys inside a prompt message may differ, as
JSON allows.
"""

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Connection, select

from app.exports.rows import copy_select
from app.labeling.models import Ranking
from app.projects.pseudonyms import labeler_pseudonym

ROWS_PER_CHUNK = 2000

# One JSON line per pair, its pieces from app/exports/rows.py: concatenation with to_json() for
# escaping is as fast as a plain COPY of the same columns, about twice as fast as json_build_object().
COPY_SQL = """
COPY (
  SELECT {select}
  FROM comparisons c
  JOIN rankings r ON r.id = c.ranking_id
  JOIN prompts p ON p.id = c.prompt_id
  JOIN completions ch ON ch.id = c.chosen_id
  JOIN completions rj ON rj.id = c.rejected_id
  LEFT JOIN instruction_versions iv ON iv.id = r.instructions_version_id
  WHERE {conditions}
  ORDER BY c.id
) TO STDOUT
"""


def copy_pair_lines(connection: Connection, plan) -> Iterator[bytes]:
    """Chunks of JSONL, every filter of the plan applied in SQL. Nothing user-typed is interpolated:
    every literal below is an integer, a timestamp we format, or a flag/pseudonym checked against the
    project beforehand (and quoted)."""
    filters = plan.filters
    labeler_ids = connection.scalars(
        select(Ranking.labeler_id)
        .distinct()
        .where(Ranking.project_id == plan.project_id, Ranking.labeler_id.is_not(None))
    ).all()
    cases = " ".join(
        f"WHEN {int(uid)} THEN {_quote(labeler_pseudonym(plan.export_salt, uid))}" for uid in labeler_ids
    )
    labeler = (
        f"CASE r.labeler_id {cases} ELSE coalesce(r.source, 'import') END"
        if cases
        else "coalesce(r.source, 'import')"
    )
    conditions = [f"r.project_id = {int(plan.project_id)}", "NOT r.gold"]  # gold rankings are never data
    if filters.since is not None:
        conditions.append(f"r.created_at >= {_timestamp(filters.since)}")
    if filters.until is not None:
        conditions.append(f"r.created_at < {_timestamp(filters.until)}")
    if plan.labeler_ids is not None:
        conditions.append(f"r.labeler_id IN ({', '.join(str(int(i)) for i in plan.labeler_ids) or 'NULL'})")
    if plan.prompt_ids is not None:
        conditions.append(
            f"c.prompt_id = ANY(ARRAY[{', '.join(str(int(i)) for i in plan.prompt_ids)}]::int[])"
        )
    if filters.exclude_none_acceptable:
        conditions.append("NOT r.none_acceptable")
    if plan.excluded_labeler_ids:
        ids = ", ".join(str(int(i)) for i in sorted(plan.excluded_labeler_ids))
        conditions.append(f"(r.labeler_id IS NULL OR r.labeler_id NOT IN ({ids}))")
    if filters.exclude_flags:
        flags = "ARRAY[" + ", ".join(_quote(flag) for flag in filters.exclude_flags) + "]"
        for side in ("chosen_id", "rejected_id"):
            conditions.append(f"NOT coalesce(r.flags -> c.{side}::text, '[]'::jsonb) ?| {flags}")
    sql = COPY_SQL.format(select=copy_select(labeler), conditions=" AND ".join(conditions))
    connection.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(sql) as copy:
        batch: list[bytes] = []
        for row in copy:  # one COPY message per row
            batch.append(bytes(row))
            if len(batch) >= ROWS_PER_CHUNK:
                yield _unescape(b"".join(batch))
                batch = []
        if batch:
            yield _unescape(b"".join(batch))


def _unescape(data: bytes) -> bytes:
    """COPY's text format doubles backslashes; JSON text has no raw control characters, so undoing
    that is the only unescaping needed."""
    return data.replace(b"\\\\", b"\\")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _timestamp(value: datetime) -> str:
    return f"'{value.isoformat()}'::timestamptz"
