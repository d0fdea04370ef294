"""Reading PrefLab's exports (the contract between the server and the trainer, see API.md "Export").

The trainer never imports the server's code: it reads the files the export endpoint writes, so a
researcher can train on an export anywhere. `tests/test_export_contract.py` holds both sides to it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SCHEMA_VERSIONS = {1, 2}  # app/exports/schemas.py; pair rows are alike in both
PAIR_FIELDS = ("prompt_id", "prompt", "chosen", "rejected", "chosen_id", "rejected_id", "ranking_id")

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: `chosen` was preferred to `rejected` for `prompt` (a chat)."""

    prompt_id: int
    prompt: Chat
    chosen: str
    rejected: str
    chosen_id: int
    rejected_id: int
    ranking_id: int
    chosen_tier: int = 0
    rejected_tier: int = 1
    tie: bool = False


def read_rows(path: Path | str) -> Iterator[dict]:
    """Rows of a JSONL (optionally .gz) or Parquet export, as dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc


def load_pairs(path: Path | str, *, include_ties: bool = False) -> list[PreferencePair]:
    """The pairs of a `kind=pairs` export. Tied pairs (present when exported with include_ties) are
    left out unless asked for: a Bradley-Terry loss has no use for them."""
    pairs = []
    for number, row in enumerate(read_rows(path), start=1):
        missing = [name for name in PAIR_FIELDS if name not in row]
        if missing:
            raise ValueError(f"{path}: row {number} lacks {missing}; is this a kind=pairs export?")
        if row.get("tie") and not include_ties:
            continue
        pairs.append(
            PreferencePair(
                prompt_id=int(row["prompt_id"]),
                prompt=list(row["prompt"]),
                chosen=_assistant_text(row["chosen"]),
                rejected=_assistant_text(row["rejected"]),
                chosen_id=int(row["chosen_id"]),
                rejected_id=int(row["rejected_id"]),
                ranking_id=int(row["ranking_id"]),
                chosen_tier=int(row.get("chosen_tier", 0)),
                rejected_tier=int(row.get("rejected_tier", 1)),
                tie=bool(row.get("tie", False)),
            )
        )
    return pairs


@dataclass(frozen=True)
class Demonstration:
    """One written answer: `answer` is the ideal reply to the chat `prompt`."""

    prompt_id: int
    prompt: Chat
    answer: str
    demonstration_id: int = 0


def load_demonstrations(path: Path | str) -> list[Demonstration]:
    """The rows of a `kind=demonstrations` export (TRL's conversational format: `messages` ending with the
    assistant's answer)."""
    demonstrations = []
    for number, row in enumerate(read_rows(path), start=1):
        messages = row.get("messages")
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError(
                f"{path}: row {number} has no `messages` ending with an assistant answer; "
                "is this a kind=demonstrations export?"
            )
        demonstrations.append(
            Demonstration(
                prompt_id=int(row.get("prompt_id", number)),
                prompt=list(messages[:-1]),
                answer=str(messages[-1]["content"]),
                demonstration_id=int(row.get("demonstration_id") or number),
            )
        )
    return demonstrations


def _assistant_text(messages: list[dict] | str) -> str:
    """TRL's format: a completion is a list of assistant messages (usually one)."""
    if isinstance(messages, str):
        return messages
    return "".join(m["content"] for m in messages if m.get("role") == "assistant")


def _parquet_rows(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    metadata = parquet.schema_arrow.metadata or {}
    version = metadata.get(b"preflab.schema_version")
    if version is not None and int(version) not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(
            f"{path}: export schema version {int(version)} is newer than this trainer understands"
        )
    for batch in parquet.iter_batches(batch_size=10_000):
        yield from batch.to_pylist()
