"""The export rows, defined once: every column's name, order, Arrow type and (for pairs) the Postgres
expression of its JSON text. The JSONL writer, the Postgres COPY statement, the Parquet schema and the
rows built in Python all come from these lists, so every path writes the same columns on every row, in
the same order, with the same types (tests/exports/test_export_paths.py compares them row by row).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    arrow: pa.DataType
    description: str
    copy_sql: str = ""
    """Postgres (pairs): an SQL expression whose text is the value's JSON (app/exports/postgres_copy.py
    names the tables: c comparisons, r rankings, p prompts, ch/rj the two completions, iv the
    instructions version; {labeler} is the pseudonym's CASE)."""


MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
FLAGS = pa.list_(pa.string())
TIMESTAMP_SQL = """to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def _answer_sql(table: str) -> str:
    return f"""'[{{"role":"assistant","content":' || to_json({table}.text)::text || '}}]'"""


PROMPT = Column("prompt", MESSAGES, "The prompt as chat messages", "p.messages::text")
RANKING_ID = Column("ranking_id", pa.int64(), "The ranking the row comes from", "c.ranking_id::text")
LABELER = Column("labeler", pa.string(), "The labeler's pseudonym (or the import's source)", "{labeler}")
VERSION = Column(
    "instructions_version",
    pa.int64(),
    "The instructions version the labeler saw (null for imports)",
    "coalesce(iv.version::text, 'null')",
)
CREATED_AT = Column(
    "created_at",
    pa.string(),
    "When it was ranked: ISO-8601 UTC, microseconds",
    f"to_json({TIMESTAMP_SQL})::text",
)

PAIR_COLUMNS: tuple[Column, ...] = (
    Column("prompt_id", pa.int64(), "The prompt's id", "c.prompt_id::text"),
    PROMPT,
    Column("chosen", MESSAGES, "The preferred completion, as one assistant message", _answer_sql("ch")),
    Column("rejected", MESSAGES, "The other completion", _answer_sql("rj")),
    Column("chosen_id", pa.int64(), "The preferred completion's id", "c.chosen_id::text"),
    Column("rejected_id", pa.int64(), "The other completion's id", "c.rejected_id::text"),
    Column("chosen_tier", pa.int64(), "The preferred completion's tier (0 is best)", "c.chosen_tier::text"),
    Column("rejected_tier", pa.int64(), "The other completion's tier", "c.rejected_tier::text"),
    Column("tie", pa.bool_(), "True when the two were ranked equal (only with include_ties)", "'false'"),
    Column(
        "none_acceptable",
        pa.bool_(),
        "The labeler marked none of the completions acceptable",
        "CASE WHEN r.none_acceptable THEN 'true' ELSE 'false' END",
    ),
    Column(
        "chosen_flags",
        FLAGS,
        "The labeler's flags on the preferred completion",
        "coalesce(r.flags -> c.chosen_id::text, '[]'::jsonb)::text",
    ),
    Column(
        "rejected_flags",
        FLAGS,
        "The labeler's flags on the other completion",
        "coalesce(r.flags -> c.rejected_id::text, '[]'::jsonb)::text",
    ),
    RANKING_ID,
    LABELER,
    VERSION,
    CREATED_AT,
)

RANKING_COLUMNS: tuple[Column, ...] = (
    Column("prompt_id", pa.int64(), "The prompt's id"),
    PROMPT,
    Column(
        "completions",
        pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string())])),
        "The completions in the order the labeler saw them",
    ),
    Column("ranking", pa.list_(pa.list_(pa.int64())), "Tiers of completion ids, best first"),
    Column(
        "flags",
        pa.list_(pa.struct([("completion_id", pa.int64()), ("flags", FLAGS)])),
        "The labeler's flags: one entry per flagged completion, in the order shown",
    ),
    Column("none_acceptable", pa.bool_(), "The labeler marked none of the completions acceptable"),
    Column("seconds_spent", pa.float64(), "Seconds the labeler spent on the task"),
    RANKING_ID,
    LABELER,
    VERSION,
    CREATED_AT,
)

DEMONSTRATION_COLUMNS: tuple[Column, ...] = (
    Column("prompt_id", pa.int64(), "The prompt's id"),
    Column(
        "messages",
        MESSAGES,
        "The prompt's messages and the labeler's answer as the last, assistant message (TRL's "
        "conversational SFT format)",
    ),
    Column("edited_from", pa.int64(), "The completion the answer was improved from; null: written anew"),
    Column("source", pa.string(), '"demonstrate" (a written answer) or "rewrite" (of a ranking\'s best)'),
    Column("demonstration_id", pa.int64(), "The demonstration's id"),
    Column("seconds_spent", pa.float64(), "Seconds the labeler spent on the task"),
    LABELER,
    VERSION,
    Column("created_at", pa.string(), "When it was written: ISO-8601 UTC, microseconds"),
)

COLUMNS = {"pairs": PAIR_COLUMNS, "rankings": RANKING_COLUMNS, "demonstrations": DEMONSTRATION_COLUMNS}
PAIR_NAMES = tuple(column.name for column in PAIR_COLUMNS)
DEMONSTRATION_NAMES = tuple(column.name for column in DEMONSTRATION_COLUMNS)
RANKING_NAMES = tuple(column.name for column in RANKING_COLUMNS)
_PAIR_KEYS = tuple(f'"{name}":'.encode() for name in PAIR_NAMES)


def arrow_schema(kind: str) -> pa.Schema:
    columns = COLUMNS[kind]
    return pa.schema([pa.field(c.name, c.arrow, metadata={"description": c.description}) for c in columns])


def pair_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """A pair row as a dict, its keys in the columns' order (a missing value is a KeyError)."""
    return {name: values[name] for name in PAIR_NAMES}


def ranking_row(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in RANKING_NAMES}


def demonstration_row(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in DEMONSTRATION_NAMES}


ANSWER_OPEN, ANSWER_CLOSE = b'[{"role":"assistant","content":', b"}]"
"""Around a completion's JSON text: the `chosen`/`rejected` message list."""


def pair_line(encoded: Mapping[str, bytes]) -> bytes:
    """A JSONL line from each column's JSON text, in the columns' order."""
    return (
        b"{"
        + b",".join([key + encoded[name] for key, name in zip(_PAIR_KEYS, PAIR_NAMES, strict=True)])
        + b"}\n"
    )


def copy_select(labeler_sql: str) -> str:
    """The SELECT list of the COPY statement: one JSON line per pair, assembled by Postgres."""
    pieces = [f"""'{"," if i else "{"}"{c.name}":' || {c.copy_sql}""" for i, c in enumerate(PAIR_COLUMNS)]
    return (" || ".join(pieces) + " || '}'").replace("{labeler}", f"to_json({labeler_sql})::text")


def utc(value: datetime | str) -> datetime:
    """A time as the driver returns it, an aware datetime (Postgres) or ISO text (SQLite), in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp(value: datetime | str) -> str:
    """A ranking's time as every path writes it: orjson would drop a zero fraction and Postgres its
    trailing zeros, so always six digits here (and in TIMESTAMP_SQL)."""
    return utc(value).isoformat(timespec="microseconds")
