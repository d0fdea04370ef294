"""Parquet export: rows in row groups, written to a sink that hands back bytes as they are produced."""

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from app.exports.rows import arrow_schema
from app.exports.schemas import SCHEMA_VERSION, ExportFilters

ROW_GROUP = 20_000


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
    schema = arrow_schema(filters.kind)  # app/exports/rows.py: the JSONL rows' columns and types
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
        batch.append(row)
        if len(batch) >= ROW_GROUP:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch = []
            yield sink.take()
    if batch:  # with no rows at all the file still carries the schema
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    writer.close()
    yield sink.take()
