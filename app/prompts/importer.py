"""Prompt uploads, all or nothing.

The upload is first spooled to a temporary file (bounded in memory), then read twice: pass one
validates every line and stops nothing until it has seen them all, pass two inserts in batches. So a
file with one bad line imports nothing, and a large file never sits in memory whole.
"""

import csv
import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Literal

from pydantic import ValidationError
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.prompts.schemas import ImportReport, PromptIn
from app.storable import check_storable

Format = Literal["jsonl", "csv"]
BATCH_SIZE = 500
MAX_REPORTED_ERRORS = 20
GZIP_MAGIC = b"\x1f\x8b"
MAX_LINE_BYTES = 16 * 2**20
"""Longest line read: above the longest valid record (a 200,000-character prompt and nine completions of
as many, in UTF-8), far below what would strain the server."""
MAX_INFLATED_BYTES = 4 * 2**30
"""Most a gzip upload may inflate to: it is read line by line, so this bounds time and disk, not memory."""
# CSV cells are bounded by the line, not by csv's default 131,072 characters, so that a long prompt gets
# the same answer (the schema's length limit, with its line number) as in JSONL. The limit is global to
# the csv module; nothing else in PrefLab reads CSV.
csv.field_size_limit(MAX_LINE_BYTES)


@dataclass
class LineError:
    line: int
    message: str


@dataclass
class ParsedPrompt:
    line: int
    prompt: PromptIn


@dataclass
class Problems:
    """The bad lines of an upload: all are counted, the first MAX_REPORTED_ERRORS are kept."""

    errors: list[LineError] = field(default_factory=list)
    count: int = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineError(line, message))


class BadLine(Exception):
    """The upload cannot be read past this line (not UTF-8, corrupt gzip)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


SOURCE_LENGTH: int = Prompt.__table__.c.source.type.length
"""Length of ``prompts.source`` (and of ``rankings.source``); a longer upload file name is cut to fit."""


def upload_source(filename: str | None, *, without_file: str) -> str:
    """``upload:<file name>`` (cut to the column), or ``without_file`` for a raw request body."""
    return f"upload:{filename}"[:SOURCE_LENGTH] if filename else without_file


def import_prompts(
    session: Session, *, project: Project, upload: IO[bytes], fmt: Format, source: str
) -> ImportReport:
    """Validate the whole upload, then insert it; raise InvalidInput naming the bad lines otherwise."""
    problems = Problems()
    valid = sum(1 for _ in _parse(upload, fmt, project.completions_per_prompt, problems))
    if problems.count:
        raise rejection(problems)
    if not valid:
        raise InvalidInput(
            "The upload holds no prompts: it is empty or has only blank lines.", code="empty_upload"
        )

    upload.seek(0)
    imported = completions = 0
    batch: list[PromptIn] = []
    for item in _parse(upload, fmt, project.completions_per_prompt, Problems()):
        batch.append(item.prompt)
        if len(batch) >= BATCH_SIZE:
            completions += _insert_batch(session, project=project, prompts=batch, source=source)
            imported += len(batch)
            batch = []
    if batch:
        completions += _insert_batch(session, project=project, prompts=batch, source=source)
        imported += len(batch)
    return ImportReport(imported=imported, completions=completions, format=fmt, source=source)


def rejection(problems: Problems) -> InvalidInput:
    """The 422 for an upload with bad lines: the first named in the message, up to 20 in `details`."""
    first = problems.errors[0]
    more = f" ({problems.count - 1} more problem(s) listed in details)" if problems.count > 1 else ""
    return InvalidInput(
        f"Line {first.line}: {first.message}. Nothing was imported; fix the file and upload it again{more}.",
        code="invalid_upload",
        details={
            "line": first.line,
            "problems": problems.count,
            "errors": [{"line": e.line, "message": e.message} for e in problems.errors],
        },
    )


def detect_format(*, filename: str | None, content_type: str | None, explicit: str | None) -> Format:
    if explicit:
        if explicit not in ("jsonl", "csv"):
            raise InvalidInput(
                f"Unknown format '{explicit}': use jsonl or csv.",
                code="unknown_format",
                details={"field": "format"},
            )
        return explicit  # type: ignore[return-value]
    name = (filename or "").lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("text/csv", "application/csv"):
        return "csv"
    if ctype in (
        "application/x-ndjson",
        "application/jsonl",
        "application/json-lines",
        "application/json",
        "application/x-jsonlines",
    ):
        return "jsonl"
    raise InvalidInput(
        "Cannot tell the upload's format: send Content-Type application/x-ndjson or text/csv, name the file "
        ".jsonl or .csv, or add ?format=jsonl|csv.",
        code="unknown_format",
    )


def _insert_batch(session: Session, *, project: Project, prompts: list[PromptIn], source: str) -> int:
    rows = [
        {"project_id": project.id, "messages": p.chat(), "metadata_": p.metadata or {}, "source": source}
        for p in prompts
    ]
    ids = list(session.scalars(insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True), rows))
    completion_rows = [
        {"prompt_id": prompt_id, "text": text, "origin": "imported"}
        for prompt_id, p in zip(ids, prompts, strict=True)
        for text in (p.completions or [])
    ]
    if completion_rows:
        completion_ids = list(
            session.scalars(
                insert(Completion).returning(Completion.id, sort_by_parameter_order=True), completion_rows
            )
        )
        _store_gold(session, ids, prompts, completion_ids)
    return len(completion_rows)


def _store_gold(
    session: Session, prompt_ids: list[int], prompts: list[PromptIn], completion_ids: list[int]
) -> None:
    """A gold line's tiers of indexes, as tiers of the completion ids just inserted (in the same order)."""
    position = 0
    for prompt_id, prompt in zip(prompt_ids, prompts, strict=True):
        ids = completion_ids[position : position + len(prompt.completions or [])]
        position += len(ids)
        if prompt.gold is not None:
            gold = [[ids[i] for i in tier] for tier in prompt.gold]
            session.execute(update(Prompt).where(Prompt.id == prompt_id).values(gold_tiers=gold))


# --- parsing -------------------------------------------------------------------------------------


def _parse(upload: IO[bytes], fmt: Format, k: int, problems: Problems) -> Iterator[ParsedPrompt]:
    lines = decoded_lines(upload)
    records = jsonl_records(lines) if fmt == "jsonl" else _csv_records(lines)
    try:
        for line, record in records:
            if isinstance(record, LineError):
                problems.add(record.line, record.message)
                continue
            try:
                prompt = PromptIn.model_validate(record)
            except ValidationError as exc:
                problems.add(line, _describe(exc))
                continue
            if prompt.completions and len(prompt.completions) > k:
                problems.add(
                    line, f"{len(prompt.completions)} completions given, but the project ranks K={k}"
                )
                continue
            if prompt.gold is not None and len(prompt.completions or []) != k:
                problems.add(line, f"a gold task needs all K={k} completions, ranked in its gold tiers")
                continue
            yield ParsedPrompt(line, prompt)
    except BadLine as exc:  # the file cannot be read past this line (bad encoding, broken gzip)
        problems.add(exc.line, exc.message)


def decoded_lines(upload: IO[bytes]) -> Iterator[tuple[int, str]]:
    """The upload's lines from its start as (line number, text), gunzipped when it is gzip data.

    Raises BadLine where the upload stops being readable (a line that is not UTF-8, corrupt gzip).
    """
    upload.seek(0)
    gzipped = upload.read(2) == GZIP_MAGIC
    upload.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=upload, mode="rb") if gzipped else upload
    number = inflated = 0
    try:
        # readline with a limit: a line (or a gzip bomb's one endless line) is never held whole beyond it
        while raw := stream.readline(MAX_LINE_BYTES + 1):
            number += 1
            inflated += len(raw)
            if len(raw) > MAX_LINE_BYTES:
                raise BadLine(number, f"the line is longer than {MAX_LINE_BYTES // 2**20} MiB")
            if inflated > MAX_INFLATED_BYTES:
                raise BadLine(number, f"the upload inflates to more than {MAX_INFLATED_BYTES // 2**30} GiB")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadLine(
                    number, f"not UTF-8 text (byte {exc.start + 1} of the line); save the file as UTF-8"
                ) from exc
            yield number, text.removeprefix("\ufeff") if number == 1 else text
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip body
        raise BadLine(number + 1, f"the gzip data is corrupt ({exc})") from exc


def jsonl_records(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict | LineError]]:
    """Each non-blank line parsed as a JSON object, or a LineError saying why it is not one."""
    for number, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, LineError(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield number, LineError(number, "the JSON is nested too deeply")
            continue
        try:
            check_storable(record, "the line")
        except InvalidInput as exc:
            yield number, LineError(number, exc.message.removeprefix("the line").lstrip(".: ").rstrip("."))
            continue
        if not isinstance(record, dict):
            yield number, LineError(number, 'each line must be a JSON object such as {"prompt": "..."}')
            continue
        yield number, record


def _unstorable(number: int, record: dict) -> LineError | None:
    """A LineError if the record holds what no database stores (NUL, NaN, deep nesting: app.storable)."""
    try:
        check_storable(record, "line")
    except InvalidInput as exc:
        return LineError(number, exc.message.removeprefix("line").lstrip(".: ").rstrip("."))
    return None


def _csv_records(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict | LineError]]:
    numbered = iter(lines)  # (csv itself refuses a NUL: "line contains NUL", a 422 naming the line)
    current = {"line": 0}

    def texts() -> Iterator[str]:
        for number, text in numbered:
            current["line"] = number
            yield text

    reader = csv.reader(texts())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield current["line"], LineError(current["line"], f"not valid CSV ({exc})")
        return
    columns = [name.strip().lower() for name in header]
    if "prompt" not in columns:
        found = ", ".join(repr(c) for c in columns) or "none"
        yield 1, LineError(1, f"the CSV header has no 'prompt' column (columns found: {found})")
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield current["line"], LineError(current["line"], f"not valid CSV ({exc})")
            return
        line = current["line"]
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield line, LineError(line, f"{len(row)} fields, but the header has {len(columns)}")
            continue
        record = _csv_row_to_record(dict(zip(columns, row, strict=True)))
        yield line, _unstorable(line, record) or record


def _csv_row_to_record(cells: dict[str, str]) -> dict:
    """`prompt` is required; `system` adds a system message; `completion_1..9` bring completions;
    any other column is kept as metadata."""
    completions = [cells[f"completion_{i}"] for i in range(1, 10) if cells.get(f"completion_{i}", "").strip()]
    metadata = {
        key: value
        for key, value in cells.items()
        if key not in {"prompt", "system"} and not key.startswith("completion_")
    }
    record: dict = {"metadata": metadata or None}
    if cells.get("system", "").strip():
        record["messages"] = [
            {"role": "system", "content": cells["system"]},
            {"role": "user", "content": cells["prompt"]},
        ]
    else:
        record["prompt"] = cells["prompt"]
    if completions:
        record["completions"] = completions
    return record


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown field '{where}' (allowed: prompt, messages, completions, metadata, gold)"
    return f"{where}: {message}" if where else message
