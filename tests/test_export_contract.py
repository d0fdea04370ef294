"""The contract between server and trainer: what the export endpoint writes, the trainer's loader reads."""

from pathlib import Path

import pytest

from tests.exports.test_export_api import export, labeled  # noqa: F401 - the fixture
from trainer.data import load_pairs


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_trainer_reads_the_export(client, admin, labeled, tmp_path: Path, fmt: str) -> None:  # noqa: F811
    response = export(client, admin, labeled["project"]["id"], kind="pairs", format=fmt, include_ties="true")
    path = tmp_path / f"pairs.{fmt}"
    path.write_bytes(response.content)
    pairs = load_pairs(path)
    assert len(pairs) == 5, "ties are left out by default"
    assert len(load_pairs(path, include_ties=True)) == 6
    texts = {c["id"]: c["text"] for c in labeled["strict"]["task"]["completions"]}
    for pair in pairs:
        assert pair.chosen == texts[pair.chosen_id] and pair.rejected == texts[pair.rejected_id]
        assert pair.prompt == [{"role": "user", "content": "question 0"}]
        assert pair.chosen_tier < pair.rejected_tier
