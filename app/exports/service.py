"""Streamed exports of a project's comparisons (`pairs`), rankings and demonstrations, as JSONL or Parquet.

Rows are read with a server-side cursor and written as they come, so memory stays flat whatever the
size of the project. JSONL rows are assembled from pre-encoded pieces: a prompt's messages and a
completion's text are JSON-encoded once and reused by every pair they appear in.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from sqlalchemy import Connection, Select, Text, cast, func, or_, select, union
from sqlalchemy.orm import Session, aliased

from app.errors import InvalidInput
from app.exports import demonstrations, rows
from app.exports.encoder import Encoder
from app.exports.schemas import ExportFilters, ExportPlan
from app.labeling.expansion import tied_pairs
from app.labeling.models import Comparison, Demonstration, Ranking
from app.projects.models import InstructionVersion, Project
from app.projects.pseudonyms import labeler_pseudonym
from app.prompts.models import Completion, Prompt

FETCH_ROWS = 5000  # rows per round trip of the server-side cursor


def plan_export(session: Session, *, project: Project, filters: ExportFilters) -> ExportPlan:
    """Check the filters against the project (422 on unknown flags or labelers) before streaming."""
    unknown_flags = sorted(set(filters.exclude_flags) - set(project.flags))
    if unknown_flags:
        raise InvalidInput(
            f"exclude_flags: not flags of this project: {', '.join(unknown_flags)} (its flags: "
            f"{', '.join(project.flags) or 'none'}).",
            details={"field": "exclude_flags", "unknown": unknown_flags},
        )
    labeler_ids = None
    if filters.labelers:
        ids = session.scalars(
            union(
                *(
                    select(table.labeler_id).where(
                        table.project_id == project.id, table.labeler_id.is_not(None)
                    )
                    for table in (Ranking, Demonstration)
                )
            )
        )
        by_pseudonym = {labeler_pseudonym(project.export_salt, uid): uid for uid in ids}
        unknown = sorted(set(filters.labelers) - set(by_pseudonym))
        if unknown:
            raise InvalidInput(
                f"labelers: not labelers of this project: {', '.join(unknown)}. The project's Labelers page "
                "lists each labeler's pseudonym.",
                details={"field": "labelers", "unknown": unknown},
            )
        labeler_ids = frozenset(by_pseudonym[p] for p in filters.labelers)
    prompt_ids = None
    if filters.min_agreement is not None:
        from app.agreement.service import agreement_by_prompt

        agreement = agreement_by_prompt(session, project_id=project.id)
        prompt_ids = frozenset(pid for pid, value in agreement.items() if value >= filters.min_agreement)
    excluded = frozenset()
    if filters.exclude_labeler_status:
        from app.agreement.labelers import labeler_ids_with_status

        statuses = set(filters.exclude_labeler_status)
        excluded = frozenset(labeler_ids_with_status(session, project=project, statuses=statuses))
    return ExportPlan(project.id, project.export_salt, filters, labeler_ids, prompt_ids, excluded)


def count_rows(connection: Connection, plan: ExportPlan) -> int:
    """An upper bound for progress bars: rows before the filters applied in Python."""
    if plan.filters.kind == "demonstrations":
        return demonstrations.count(connection, plan)
    if plan.filters.kind == "rankings":
        query = select(func.count(Ranking.id)).where(*_ranking_conditions(plan))
    else:
        query = (
            select(func.count(Comparison.id))
            .join(Ranking, Ranking.id == Comparison.ranking_id)
            .where(*_ranking_conditions(plan))
        )
    return connection.scalar(query) or 0


def comparisons_per_prompt(connection: Connection, plan: ExportPlan) -> dict[int, int]:
    """How many comparisons each prompt has under the filters decided in SQL (time, labelers, "none
    acceptable", agreement); flags are decided per row, so this is an upper bound."""
    query = (
        select(Comparison.prompt_id, func.count(Comparison.id))
        .join(Ranking, Ranking.id == Comparison.ranking_id)
        .where(*_ranking_conditions(plan))
        .group_by(Comparison.prompt_id)
    )
    counts = {prompt_id: count for prompt_id, count in connection.execute(query)}
    return counts if plan.prompt_ids is None else {p: n for p, n in counts.items() if p in plan.prompt_ids}


def iter_rows(connection: Connection, plan: ExportPlan) -> Iterator[dict[str, Any]]:
    """Export rows as dicts (for Parquet and for code that wants objects)."""
    if plan.filters.kind == "demonstrations":
        yield from demonstrations.iter_rows(connection, plan)
        return
    encoder = Encoder(plan)
    if plan.filters.kind == "rankings":
        yield from (
            encoder.ranking_row(row, completions) for row, completions in _ranking_batches(connection, plan)
        )
        return
    for row in _stream(connection, _pairs_query(plan)):
        if encoder.keep_pair(row):
            yield encoder.pair_row(row)
    if plan.filters.include_ties:
        yield from _tie_rows(connection, plan, encoder)


def iter_jsonl(connection: Connection, plan: ExportPlan) -> Iterator[bytes]:
    """JSONL, one row a line, in chunks of many lines (fewer, larger writes)."""
    encoder = Encoder(plan)
    if plan.filters.kind == "demonstrations":
        lines: Iterable[bytes] = (
            orjson.dumps(row) + b"\n" for row in demonstrations.iter_rows(connection, plan)
        )
    elif plan.filters.kind == "rankings":
        lines = (
            orjson.dumps(encoder.ranking_row(row, completions)) + b"\n"
            for row, completions in _ranking_batches(connection, plan)
        )
    elif connection.dialect.name == "postgresql":
        from app.exports.postgres_copy import copy_pair_lines

        yield from copy_pair_lines(connection, plan)
        ties = _tie_rows(connection, plan, encoder) if plan.filters.include_ties else iter(())
        lines = (orjson.dumps(tie) + b"\n" for tie in ties)
    else:
        lines = _pair_lines(connection, plan, encoder)
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= 1000:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


def _pair_lines(connection: Connection, plan: ExportPlan, encoder: Encoder) -> Iterator[bytes]:
    """The hot path: raw driver tuples (no ORM rows); the columns a pair shares with its ranking are
    encoded once per ranking."""
    window = connection.execute(
        select(func.min(Ranking.id), func.max(Ranking.id)).where(*_ranking_conditions(plan))
    ).one()
    if window[0] is not None:
        current, keep, shared, flags = None, False, {}, {}
        for (
            ranking_id,
            prompt_id,
            chosen_id,
            rejected_id,
            chosen_tier,
            rejected_tier,
            messages,
            chosen_text,
            rejected_text,
            labeler_id,
            source,
            raw_flags,
            none_acceptable,
            created_at,
            version,
        ) in _raw_rows(connection, _pairs_query(plan, window=window)):
            if ranking_id != current:
                current = ranking_id
                when = rows.utc(created_at)
                keep = encoder.keep_ranking(prompt_id, when)
                flags = encoder.ranking_flags(ranking_id, raw_flags)
                shared = {
                    "prompt_id": str(prompt_id).encode(),
                    "prompt": encoder.encoded_prompt(prompt_id, messages),
                    "tie": b"false",
                    "none_acceptable": b"true" if none_acceptable else b"false",
                    "ranking_id": str(ranking_id).encode(),
                    "labeler": orjson.dumps(encoder.labeler(labeler_id, source)),
                    "instructions_version": orjson.dumps(version),
                    "created_at": orjson.dumps(rows.timestamp(when)),
                }
            if not keep or (flags and encoder.flagged(flags, chosen_id, rejected_id)):
                continue
            yield rows.pair_line(
                {
                    **shared,
                    "chosen": b'[{"role":"assistant","content":'
                    + encoder.encoded_text(chosen_id, chosen_text)
                    + b"}]",
                    "rejected": b'[{"role":"assistant","content":'
                    + encoder.encoded_text(rejected_id, rejected_text)
                    + b"}]",
                    "chosen_id": str(chosen_id).encode(),
                    "rejected_id": str(rejected_id).encode(),
                    "chosen_tier": str(chosen_tier).encode(),
                    "rejected_tier": str(rejected_tier).encode(),
                    "chosen_flags": orjson.dumps(flags.get(str(chosen_id), [])),
                    "rejected_flags": orjson.dumps(flags.get(str(rejected_id), [])),
                }
            )
    if plan.filters.include_ties:
        for tie in _tie_rows(connection, plan, encoder):
            yield orjson.dumps(tie) + b"\n"


def _raw_rows(connection: Connection, query: Select) -> Iterator[tuple]:
    """Run a query whose parameters are all integers on the driver's own cursor: a server-side cursor
    on Postgres, so memory stays flat. Skipping SQLAlchemy's per-row processing halves the export's
    time; the columns are converted by the caller."""
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT 1")  # make SQLAlchemy open the transaction the cursor needs
        cursor = driver.cursor(name="preflab_export")
        cursor.itersize = FETCH_ROWS
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch
    finally:
        cursor.close()


# --- queries -------------------------------------------------------------------------------------


def _ranking_conditions(plan: ExportPlan) -> list:
    conditions = [Ranking.project_id == plan.project_id, Ranking.gold.is_(False)]  # gold is never data
    if plan.filters.since is not None:
        conditions.append(Ranking.created_at >= plan.filters.since)
    if plan.filters.until is not None:
        conditions.append(Ranking.created_at < plan.filters.until)
    if plan.labeler_ids is not None:
        conditions.append(Ranking.labeler_id.in_(plan.labeler_ids))
    if plan.filters.exclude_none_acceptable:
        conditions.append(Ranking.none_acceptable.is_(False))
    if plan.excluded_labeler_ids:
        conditions.append(_not_excluded(Ranking.labeler_id, plan))
    return conditions


def _not_excluded(labeler_id, plan: ExportPlan):
    """Imported rankings (no labeler) are never a labeler's to exclude."""
    return or_(labeler_id.is_(None), labeler_id.not_in(sorted(plan.excluded_labeler_ids)))


def _pairs_query(plan: ExportPlan, window: tuple[int, int] | None = None) -> Select:
    """The pairs, joined with what a row shows. With `window` (the first and last ranking id the time
    filters allow) it filters on integers only, for `_raw_rows`; otherwise with bound parameters."""
    chosen, rejected = aliased(Completion), aliased(Completion)
    # Messages and flags as text: JSON-decoding them per row would dominate the export's time.
    query = (
        select(
            Comparison.ranking_id,
            Comparison.prompt_id,
            Comparison.chosen_id,
            Comparison.rejected_id,
            Comparison.chosen_tier,
            Comparison.rejected_tier,
            cast(Prompt.messages, Text).label("messages"),
            chosen.text.label("chosen_text"),
            rejected.text.label("rejected_text"),
            Ranking.labeler_id,
            Ranking.source,
            cast(Ranking.flags, Text).label("flags"),
            Ranking.none_acceptable,
            Ranking.created_at,
            InstructionVersion.version.label("instructions_version"),
        )
        .join(Ranking, Ranking.id == Comparison.ranking_id)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .join(chosen, chosen.id == Comparison.chosen_id)
        .join(rejected, rejected.id == Comparison.rejected_id)
        .outerjoin(InstructionVersion, InstructionVersion.id == Ranking.instructions_version_id)
        .order_by(Comparison.id)
    )
    if window is None:
        return query.where(*_ranking_conditions(plan))
    conditions = [
        Comparison.project_id == plan.project_id,
        Comparison.ranking_id.between(*window),
        Ranking.gold.is_(False),
    ]
    if plan.labeler_ids is not None:
        conditions.append(Ranking.labeler_id.in_(sorted(plan.labeler_ids)))
    if plan.filters.exclude_none_acceptable:
        conditions.append(Ranking.none_acceptable.is_(False))
    if plan.excluded_labeler_ids:
        conditions.append(_not_excluded(Ranking.labeler_id, plan))
    return query.where(*conditions)


def _rankings_query(plan: ExportPlan) -> Select:
    return (
        select(
            Ranking.id,
            Ranking.prompt_id,
            cast(Prompt.messages, Text).label("messages"),
            Ranking.tiers,
            Ranking.flags,
            Ranking.none_acceptable,
            Ranking.seconds_spent,
            Ranking.labeler_id,
            Ranking.source,
            Ranking.created_at,
            Ranking.shown_order,
            InstructionVersion.version.label("instructions_version"),
        )
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .outerjoin(InstructionVersion, InstructionVersion.id == Ranking.instructions_version_id)
        .where(*_ranking_conditions(plan))
        .order_by(Ranking.id)
    )


def _stream(connection: Connection, query: Select) -> Iterator[Any]:
    """A server-side cursor on Postgres; SQLite's cursor is lazy already."""
    result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(query)
    yield from result


def _ranking_batches(connection: Connection, plan: ExportPlan) -> Iterator[tuple[Any, dict[int, str]]]:
    """Rankings with the texts of their completions, fetched a batch of rankings at a time."""
    result = connection.execution_options(stream_results=True, yield_per=1000).execute(_rankings_query(plan))
    for batch in result.partitions():
        rows = [row for row in batch if plan.prompt_ids is None or row.prompt_id in plan.prompt_ids]
        ids = {cid for row in rows for tier in row.tiers for cid in tier}
        texts = dict(
            connection.execute(select(Completion.id, Completion.text).where(Completion.id.in_(ids))).all()
        )
        for row in rows:
            yield row, texts


def _tie_rows(connection: Connection, plan: ExportPlan, encoder: Encoder) -> Iterator[dict[str, Any]]:
    """Tied pairs are kept in rankings, not comparisons: expand them here when asked for."""
    for row, texts in _ranking_batches(connection, plan):
        for a, b in tied_pairs(row.tiers):
            if not encoder.flagged(row.flags, a, b):
                yield encoder.tie_row(row, texts, a, b)
