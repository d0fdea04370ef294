"""Writing imported preference data: prompts, completions, rankings and their comparisons.

Imported rows are stored exactly like labeled ones, so exports and training treat them alike; they
differ only in having no labeler, assignment or instructions version, and a `source` instead.

All or nothing, and streaming like prompt uploads (app.prompts.importer): pass one reads the whole
upload and checks every line, pass two inserts in batches with Core `insert()`. Memory holds one batch,
plus bounded caches that let rows of one import share prompts and completions.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.imports.formats import ImportFormat, ImportRecord, read_records
from app.imports.schemas import ImportResult, SkippedLine
from app.labeling.expansion import expand_tiers
from app.labeling.models import Comparison, Ranking
from app.projects.models import Project
from app.prompts.importer import SOURCE_LENGTH, BadLine, Problems, rejection
from app.prompts.models import Completion, Prompt

BATCH_SIZE = 500
# Rows of one import share a prompt (same messages and metadata) and a completion (same prompt and
# text). The lookups behind that are capped so memory stays bounded: past the cap the oldest entries
# are forgotten, and a later row with that prompt gets a prompt of its own.
MAX_CACHED = 50_000


def import_source(fmt: ImportFormat, filename: str | None) -> str:
    """`import:<format>:<file name>`, or `import:<format>:api` for a raw request body."""
    return f"import:{fmt.value}:{filename or 'api'}"[:SOURCE_LENGTH]


def import_preferences(
    session: Session,
    *,
    project: Project,
    upload: IO[bytes],
    fmt: ImportFormat,
    source: str,
    skip_invalid: bool = False,
) -> ImportResult:
    """Check the whole upload, then store it; flushes, never commits (the caller owns the transaction).

    A bad line raises InvalidInput naming it, unless `skip_invalid`, which leaves bad lines out and
    lists them in the result. An upload that cannot be read (not UTF-8, corrupt gzip) is refused either
    way. Rows whose content hash the project already holds, or that repeat an earlier row, are counted
    as duplicates and skipped.
    """
    problems = Problems()
    valid = _count_valid(upload, fmt, problems)
    if problems.count and not skip_invalid:
        raise rejection(problems)
    if not valid:
        if problems.count:
            raise InvalidInput(
                f"No line of the upload can be imported ({problems.count} invalid); "
                f"the first: line {problems.errors[0].line}: {problems.errors[0].message}.",
                code="invalid_upload",
                details=rejection(problems).details,
            )
        raise InvalidInput(
            "The upload holds no rows: it is empty or has only blank lines.", code="empty_upload"
        )

    writer = _Writer(session, project=project, source=source)
    batch: list[ImportRecord] = []
    for record in read_records(upload, fmt, Problems()):
        batch.append(record)
        if len(batch) >= BATCH_SIZE:
            writer.write(batch)
            batch = []
    if batch:
        writer.write(batch)
    return ImportResult(
        imported=writer.rankings,
        prompts=writer.prompts,
        completions=writer.completions,
        comparisons=writer.comparisons,
        duplicates=writer.duplicates,
        skipped=problems.count,
        skipped_lines=[SkippedLine(line=e.line, message=e.message) for e in problems.errors],
        format=fmt,
        source=source,
    )


def _count_valid(upload: IO[bytes], fmt: ImportFormat, problems: Problems) -> int:
    try:
        return sum(1 for _ in read_records(upload, fmt, problems))
    except BadLine as exc:  # unreadable past this line: no flag can make such an upload importable
        problems.add(exc.line, exc.message)
        raise rejection(problems) from None


@dataclass
class _Writer:
    session: Session
    project: Project
    source: str
    rankings: int = 0
    prompts: int = 0
    completions: int = 0
    comparisons: int = 0
    duplicates: int = 0
    # prompt key -> prompt id; (prompt id, sha256 of the text) -> completion id
    prompt_ids: OrderedDict[str, int] = field(default_factory=OrderedDict)
    completion_ids: OrderedDict[tuple[int, bytes], int] = field(default_factory=OrderedDict)

    def write(self, batch: list[ImportRecord]) -> None:
        fresh = self._drop_duplicates(batch)
        if not fresh:
            return
        records = [record for record, _ in fresh]
        prompt_of = self._prompts_for(records)
        completion_of = self._completions_for(records, prompt_of)
        ranking_rows = []
        for record, content_hash in fresh:
            prompt_id = prompt_of[record.prompt_key]
            ids = [completion_of[(prompt_id, _digest(text))] for text in record.completions]
            ranking_rows.append(
                {
                    "project_id": self.project.id,
                    "prompt_id": prompt_id,
                    "labeler_id": None,
                    "assignment_id": None,
                    "instructions_version_id": None,
                    "source": self.source,
                    "content_hash": content_hash,
                    "tiers": [[ids[i] for i in tier] for tier in record.tiers],
                    "flags": {},
                    "none_acceptable": False,
                }
            )
        try:
            ranking_ids = list(
                self.session.scalars(
                    insert(Ranking).returning(Ranking.id, sort_by_parameter_order=True), ranking_rows
                )
            )
        except IntegrityError as exc:  # the safety net: a concurrent import stored the same rows first
            if "content_hash" not in str(exc.orig):
                raise
            raise Conflict(
                "Another import stored some of these rows at the same time; nothing of this one was kept. "
                "Retry it: rows already stored will be counted as duplicates.",
                code="import_conflict",
            ) from None
        comparison_rows = [
            {
                "ranking_id": ranking_id,
                "project_id": self.project.id,
                "prompt_id": row["prompt_id"],
                "chosen_id": pair.chosen_id,
                "rejected_id": pair.rejected_id,
                "chosen_tier": pair.chosen_tier,
                "rejected_tier": pair.rejected_tier,
            }
            for ranking_id, row in zip(ranking_ids, ranking_rows, strict=True)
            for pair in expand_tiers(row["tiers"])
        ]
        if comparison_rows:
            self.session.execute(insert(Comparison), comparison_rows)
        self.rankings += len(ranking_rows)
        self.comparisons += len(comparison_rows)

    def _drop_duplicates(self, batch: list[ImportRecord]) -> list[tuple[ImportRecord, str]]:
        """Rows whose hash is new to the project and to this import. Earlier batches are already
        flushed, so one query per batch finds repeats across the whole upload, without a set that
        grows with the file."""
        hashed = [(record, record.content_hash) for record in batch]
        stored = set(
            self.session.scalars(
                select(Ranking.content_hash).where(
                    Ranking.project_id == self.project.id,
                    Ranking.content_hash.in_(sorted({content_hash for _, content_hash in hashed})),
                )
            )
        )
        fresh = []
        for record, content_hash in hashed:
            if content_hash in stored:
                self.duplicates += 1
                continue
            stored.add(content_hash)
            fresh.append((record, content_hash))
        return fresh

    def _prompts_for(self, records: Iterable[ImportRecord]) -> dict[str, int]:
        wanted: dict[str, ImportRecord] = {}
        for record in records:
            wanted.setdefault(record.prompt_key, record)
        found = {key: self.prompt_ids[key] for key in wanted if key in self.prompt_ids}
        new = [(key, record) for key, record in wanted.items() if key not in found]
        if new:
            rows = [
                {
                    "project_id": self.project.id,
                    "messages": record.messages,
                    "metadata_": record.metadata,
                    "source": self.source,
                }
                for _, record in new
            ]
            ids = self.session.scalars(
                insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True), rows
            )
            for (key, _), prompt_id in zip(new, ids, strict=True):
                found[key] = prompt_id
                _remember(self.prompt_ids, key, prompt_id)
            self.prompts += len(new)
        return found

    def _completions_for(
        self, records: Iterable[ImportRecord], prompt_of: dict[str, int]
    ) -> dict[tuple[int, bytes], int]:
        wanted: dict[tuple[int, bytes], str] = {}
        for record in records:
            prompt_id = prompt_of[record.prompt_key]
            for text in record.completions:
                wanted.setdefault((prompt_id, _digest(text)), text)
        found = {key: self.completion_ids[key] for key in wanted if key in self.completion_ids}
        new = [(key, text) for key, text in wanted.items() if key not in found]
        if new:
            rows = [
                {"prompt_id": prompt_id, "text": text, "origin": "imported"} for (prompt_id, _), text in new
            ]
            ids = self.session.scalars(
                insert(Completion).returning(Completion.id, sort_by_parameter_order=True), rows
            )
            for (key, _), completion_id in zip(new, ids, strict=True):
                found[key] = completion_id
                _remember(self.completion_ids, key, completion_id)
            self.completions += len(new)
        return found


def _remember(cache: OrderedDict, key: object, value: int) -> None:
    cache[key] = value
    if len(cache) > MAX_CACHED:
        cache.popitem(last=False)  # the oldest goes first (O(1), unlike deleting a dict's first key)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()
