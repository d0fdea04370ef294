"""Streamed exports of a project's comparisons (`pairs`) and rankings, as JSONL or Parquet.

Rows are read with a server-side cursor and written as they come, so memory stays flat whatever the
size of the project. JSONL rows are assembled from pre-encoded pieces: a prompt's messages and a
completion's text are JSON-encoded once and reused by every pair they appear in.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, Text, cast, func, select
from sqlalchemy.orm import Session, aliased

from app.errors import InvalidInput
from app.exports.pseudonyms import labeler_pseudonym
from app.exports.schemas import ExportFilters
from app.labeling.expansion import tied_pairs
from app.labeling.models import Comparison, Ranking
from app.projects.models import InstructionVersion, Project
from app.prompts.models import Completion, Prompt

FETCH_ROWS = 5000  # rows per round trip of the server-side cursor
CACHE_LIMIT = 20_000  # encoded prompts/completions kept; cleared beyond (ids come roughly in order)


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: the project, its filters, and what the filters resolved to."""

    project_id: int
    export_salt: str
    filters: ExportFilters
    labeler_ids: frozenset[int] | None  # None: everyone
    prompt_ids: frozenset[int] | None  # None: every prompt (min_agreement unset)


def plan_export(session: Session, *, project: Project, filters: ExportFilters) -> ExportPlan:
    """Check the filters against the project (422 on unknown flags or labelers) before streaming."""
    unknown_flags = sorted(set(filters.exclude_flags) - set(project.flags))
    if unknown_flags:
        raise InvalidInput(
            f"exclude_flags: {unknown_flags} are not flags of this project ({project.flags}).",
            details={"field": "exclude_flags"},
        )
    labeler_ids = None
    if filters.labelers:
        ids = session.scalars(
            select(Ranking.labeler_id)
            .distinct()
            .where(Ranking.project_id == project.id, Ranking.labeler_id.is_not(None))
        )
        by_pseudonym = {labeler_pseudonym(project.export_salt, uid): uid for uid in ids}
        unknown = sorted(set(filters.labelers) - set(by_pseudonym))
        if unknown:
            raise InvalidInput(
                f"labelers: {unknown} are not labelers of this project.", details={"field": "labelers"}
            )
        labeler_ids = frozenset(by_pseudonym[p] for p in filters.labelers)
    prompt_ids = None
    if filters.min_agreement is not None:
        from app.agreement.service import agreement_by_prompt

        agreement = agreement_by_prompt(session, project_id=project.id)
        prompt_ids = frozenset(pid for pid, value in agreement.items() if value >= filters.min_agreement)
    return ExportPlan(project.id, project.export_salt, filters, labeler_ids, prompt_ids)


def count_rows(connection: Connection, plan: ExportPlan) -> int:
    """An upper bound for progress bars: rows before the filters applied in Python."""
    if plan.filters.kind == "rankings":
        query = select(func.count(Ranking.id)).where(*_ranking_conditions(plan))
    else:
        query = (
            select(func.count(Comparison.id))
            .join(Ranking, Ranking.id == Comparison.ranking_id)
            .where(*_ranking_conditions(plan))
        )
    return connection.scalar(query) or 0


def iter_rows(connection: Connection, plan: ExportPlan) -> Iterator[dict[str, Any]]:
    """Export rows as dicts (for Parquet and for code that wants objects)."""
    encoder = _Encoder(plan)
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
    encoder = _Encoder(plan)
    if plan.filters.kind == "rankings":
        rows: Iterable[bytes] = (
            orjson.dumps(encoder.ranking_row(row, completions)) + b"\n"
            for row, completions in _ranking_batches(connection, plan)
        )
    elif connection.dialect.name == "postgresql":
        from app.exports.postgres_copy import copy_pair_lines

        yield from copy_pair_lines(connection, plan)
        ties = _tie_rows(connection, plan, encoder) if plan.filters.include_ties else iter(())
        rows = (orjson.dumps(tie) + b"\n" for tie in ties)
    else:
        rows = _pair_lines(connection, plan, encoder)
    chunk: list[bytes] = []
    for line in rows:
        chunk.append(line)
        if len(chunk) >= 1000:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


def _pair_lines(connection: Connection, plan: ExportPlan, encoder: "_Encoder") -> Iterator[bytes]:
    """The hot path: raw driver tuples (no ORM rows), per-ranking work done once per ranking."""
    window = connection.execute(
        select(func.min(Ranking.id), func.max(Ranking.id)).where(*_ranking_conditions(plan))
    ).one()
    if window[0] is not None:
        current, head, tail, keep = None, b"", b"", False
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
            flags,
            created_at,
            version,
        ) in _raw_rows(connection, _pairs_query(plan, window=window)):
            if ranking_id != current:
                current = ranking_id
                created = _utc(created_at)
                keep = encoder.keep_ranking(prompt_id, created)
                flags = orjson.loads(flags) if (encoder.excluded and flags) else None
                head = (
                    b'{"prompt_id":'
                    + str(prompt_id).encode()
                    + b',"prompt":'
                    + encoder.encoded_prompt(prompt_id, messages)
                    + b',"chosen":[{"role":"assistant","content":'
                )
                tail = (
                    b',"ranking_id":'
                    + str(ranking_id).encode()
                    + b',"labeler":'
                    + orjson.dumps(encoder.labeler(labeler_id, source))
                    + b',"instructions_version":'
                    + orjson.dumps(version)
                    + b',"created_at":'
                    + orjson.dumps(created)
                    + b"}\n"
                )
            if not keep or (flags and encoder.flagged(flags, chosen_id, rejected_id)):
                continue
            yield b"".join(
                (
                    head,
                    encoder.encoded_text(chosen_id, chosen_text),
                    b'}],"rejected":[{"role":"assistant","content":',
                    encoder.encoded_text(rejected_id, rejected_text),
                    b'}],"chosen_id":',
                    str(chosen_id).encode(),
                    b',"rejected_id":',
                    str(rejected_id).encode(),
                    b',"chosen_tier":',
                    str(chosen_tier).encode(),
                    b',"rejected_tier":',
                    str(rejected_tier).encode(),
                    tail,
                )
            )
    if plan.filters.include_ties:
        for tie in _tie_rows(connection, plan, encoder):
            yield orjson.dumps(tie) + b"\n"


def _utc(value: datetime | str) -> datetime:
    """Timestamps as the driver returns them: aware datetimes (Postgres) or ISO text (SQLite)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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
    conditions = [Ranking.project_id == plan.project_id]
    if plan.filters.since is not None:
        conditions.append(Ranking.created_at >= plan.filters.since)
    if plan.filters.until is not None:
        conditions.append(Ranking.created_at < plan.filters.until)
    if plan.labeler_ids is not None:
        conditions.append(Ranking.labeler_id.in_(plan.labeler_ids))
    return conditions


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
    conditions = [Comparison.project_id == plan.project_id, Comparison.ranking_id.between(*window)]
    if plan.labeler_ids is not None:
        conditions.append(Ranking.labeler_id.in_(sorted(plan.labeler_ids)))
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


def _tie_rows(connection: Connection, plan: ExportPlan, encoder: "_Encoder") -> Iterator[dict[str, Any]]:
    """Tied pairs are kept in rankings, not comparisons: expand them here when asked for."""
    for row, texts in _ranking_batches(connection, plan):
        for a, b in tied_pairs(row.tiers):
            if encoder.flagged(row.flags, a, b):
                continue
            tier = next(i for i, ids in enumerate(row.tiers) if a in ids)
            yield {
                **encoder.common(
                    row.prompt_id,
                    row.messages,
                    row.labeler_id,
                    row.source,
                    row.created_at,
                    row.instructions_version,
                    row.id,
                ),
                "chosen": [{"role": "assistant", "content": texts[a]}],
                "rejected": [{"role": "assistant", "content": texts[b]}],
                "chosen_id": a,
                "rejected_id": b,
                "chosen_tier": tier,
                "rejected_tier": tier,
                "tie": True,
            }


# --- row assembly --------------------------------------------------------------------------------


class _Encoder:
    """Turns query rows into export rows, caching what repeats (prompts, completions, labelers)."""

    def __init__(self, plan: ExportPlan):
        self.plan = plan
        self.excluded = frozenset(plan.filters.exclude_flags)
        self._prompt_json: dict[int, bytes] = {}
        self._prompt_messages: dict[int, list] = {}
        self._text_json: dict[int, bytes] = {}
        self._labeler: dict[int | None, str] = {}
        self._flags: dict[int, dict] = {}

    # filters that need the row
    def keep_pair(self, row: Any) -> bool:
        if self.plan.prompt_ids is not None and row.prompt_id not in self.plan.prompt_ids:
            return False
        return not (self.excluded and self.flagged(self._ranking_flags(row), row.chosen_id, row.rejected_id))

    def flagged(self, flags: dict | str | None, *completion_ids: int) -> bool:
        if not self.excluded or not flags:
            return False
        flags = orjson.loads(flags) if isinstance(flags, str) else flags
        return any(self.excluded.intersection(flags.get(str(cid), ())) for cid in completion_ids)

    def _ranking_flags(self, row: Any) -> dict:
        if row.ranking_id not in self._flags:
            self._bounded(self._flags)
            self._flags[row.ranking_id] = orjson.loads(row.flags) if row.flags else {}
        return self._flags[row.ranking_id]

    # pieces
    def labeler(self, labeler_id: int | None, source: str | None) -> str:
        if labeler_id is None:
            return source or "import"
        if labeler_id not in self._labeler:
            self._labeler[labeler_id] = labeler_pseudonym(self.plan.export_salt, labeler_id)
        return self._labeler[labeler_id]

    def messages(self, prompt_id: int, raw: str) -> list:
        if prompt_id not in self._prompt_messages:
            self._bounded(self._prompt_messages)
            self._prompt_messages[prompt_id] = orjson.loads(raw)
        return self._prompt_messages[prompt_id]

    def common(
        self,
        prompt_id: int,
        raw_messages: str,
        labeler_id: int | None,
        source: str | None,
        created_at: datetime,
        instructions_version: int | None,
        ranking_id: int,
    ) -> dict[str, Any]:
        return {
            "prompt_id": prompt_id,
            "prompt": self.messages(prompt_id, raw_messages),
            "ranking_id": ranking_id,
            "labeler": self.labeler(labeler_id, source),
            "instructions_version": instructions_version,
            "created_at": created_at,
        }

    # rows
    def pair_row(self, row: Any) -> dict[str, Any]:
        return {
            **self.common(
                row.prompt_id,
                row.messages,
                row.labeler_id,
                row.source,
                row.created_at,
                row.instructions_version,
                row.ranking_id,
            ),
            "chosen": [{"role": "assistant", "content": row.chosen_text}],
            "rejected": [{"role": "assistant", "content": row.rejected_text}],
            "chosen_id": row.chosen_id,
            "rejected_id": row.rejected_id,
            "chosen_tier": row.chosen_tier,
            "rejected_tier": row.rejected_tier,
            "tie": False,
        }

    def ranking_row(self, row: Any, texts: dict[int, str]) -> dict[str, Any]:
        order = row.shown_order or [cid for tier in row.tiers for cid in tier]
        return {
            **self.common(
                row.prompt_id,
                row.messages,
                row.labeler_id,
                row.source,
                row.created_at,
                row.instructions_version,
                row.id,
            ),
            "completions": [{"id": cid, "text": texts[cid]} for cid in order],
            "ranking": row.tiers,
            "flags": row.flags or {},
            "none_acceptable": row.none_acceptable,
            "seconds_spent": row.seconds_spent,
        }

    def keep_ranking(self, prompt_id: int, created_at: datetime) -> bool:
        """The filters decided per ranking on the fast path (the SQL window is by id, not by time)."""
        filters = self.plan.filters
        if filters.since is not None and created_at < filters.since:
            return False
        if filters.until is not None and created_at >= filters.until:
            return False
        return self.plan.prompt_ids is None or prompt_id in self.plan.prompt_ids

    def encoded_prompt(self, prompt_id: int, raw: str) -> bytes:
        if prompt_id not in self._prompt_json:
            self._bounded(self._prompt_json)
            self._prompt_json[prompt_id] = orjson.dumps(orjson.loads(raw))  # compact and canonical
        return self._prompt_json[prompt_id]

    def encoded_text(self, completion_id: int, text: str) -> bytes:
        if completion_id not in self._text_json:
            self._bounded(self._text_json)
            self._text_json[completion_id] = orjson.dumps(text)
        return self._text_json[completion_id]

    @staticmethod
    def _bounded(cache: dict) -> None:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
