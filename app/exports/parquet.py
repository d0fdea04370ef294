"""Parquet export: rows in row groups, written to a sink that hands back bytes as they are produced."""

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from app.exports.schemas import SCHEMA_VERSION, ExportFilters

ROW_GROUP = 20_000

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
COMMON = [
    ("prompt_id", pa.int64()),
    ("prompt", MESSAGES),
    ("ranking_id", pa.int64()),
    ("labeler", pa.string()),
    ("instructions_version", pa.int32()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
PAIRS = pa.schema(
    [
        *COMMON[:2],
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("chosen_id", pa.int64()),
        ("rejected_id", pa.int64()),
        ("chosen_tier", pa.int32()),
        ("rejected_tier", pa.int32()),
        *COMMON[2:],
        ("tie", pa.bool_()),
    ]
)
RANKINGS = pa.schema(
    [
        *COMMON[:2],
        ("completions", pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string())]))),
        ("ranking", pa.list_(pa.list_(pa.int64()))),
        ("flags", pa.string()),  # JSON: {"<id>": ["flag"]}
        ("none_acceptable", pa.bool_()),
        ("seconds_spent", pa.float64()),
        *COMMON[2:],
    ]
)


class _Sink:
    """A write-only file object whose bytes are collected and handed out with `take()`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def iter_parquet(rows: Iterable[dict[str, Any]], filters: ExportFilters) -> Iterator[bytes]:
    schema = PAIRS if filters.kind == "pairs" else RANKINGS
    metadata = {
        b"preflab.schema_version": str(SCHEMA_VERSION).encode(),
        b"preflab.kind": filters.kind.encode(),
        b"preflab.filters": orjson.dumps(filters.as_metadata()),
    }
    schema = schema.with_metadata(metadata)
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    batch: list[dict[str, Any]] = []
    for row in rows:
        if filters.kind == "rankings":
            row = {**row, "flags": orjson.dumps(row["flags"]).decode()}
        batch.append(row)
        if len(batch) >= ROW_GROUP:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch = []
            yield sink.take()
    if batch:  # with no rows at all the file still carries the schema
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    writer.close()
    yield sink.take()
