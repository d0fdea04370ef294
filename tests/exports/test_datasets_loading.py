"""Every export kind, in both formats, loads with Hugging Face `datasets`, and the JSONL and Parquet of one
export concatenate into one dataset.

`datasets` reads JSONL in batches of `chunksize` bytes (10 MB by default) and takes the types of the
first batch for the whole file: a key missing there fails a later batch ("column names don't match"),
and so does a column that is null or an empty list throughout the first batch but has values later
("Couldn't cast array of type string to null", huggingface/datasets#7222). Every row has every key;
for the second, docs/export-features.json declares the types (docs/exports.md). The tests shrink the
batch to a few kilobytes, so that files of a few hundred rows span dozens of batches, and put the rows
that differ (ties, flags, labeled rows after imported ones, improved answers after new ones) late.
"""

import json
from pathlib import Path

import datasets
import pytest

from app.exports import rows as export_rows
from tests.conftest import create_project
from tests.exports.test_export_api import export
from tests.exports.test_export_paths import rank
from tests.labeling.conftest import seed_ready_prompts
from tests.labeling.test_demonstrations import demonstrate, upload_bare_prompts
from tests.labeling.test_labeling_api import next_task

SMALL_BATCH = 4 << 10
"""Bytes per JSONL batch that `datasets` infers types from (its default is 10 MB)."""
FEATURES = json.loads((Path(__file__).parents[2] / "docs" / "export-features.json").read_text())


def test_the_documented_features_are_the_exports_columns() -> None:
    for kind in export_rows.COLUMNS:
        declared = datasets.Features.from_dict(FEATURES[kind])
        assert declared == datasets.Features.from_arrow_schema(export_rows.arrow_schema(kind)), kind


def imported_rankings(client, admin, project_id: int, n: int) -> None:
    """`n` imported rankings of four completions with one tie each: no labeler, no instructions
    version, no flags (nulls and empty lists early in the export)."""
    body = "".join(
        json.dumps(
            {
                "prompt": f"Imported question {i}?",
                "completions": [f"answer {i}.{j}" for j in range(4)],
                "ranking": [[0, 1], [2], [3]],
            }
        )
        + "\n"
        for i in range(n)
    )
    response = client.post(
        f"/api/v1/projects/{project_id}/import",
        params={"format": "rankings"},
        content=body.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def campaign(client, admin, make_account) -> int:
    """300 imported rankings, then labeled ones with flags on both sides and "none acceptable"."""
    project = create_project(
        client, admin, completions_per_prompt=4, rankings_per_prompt=1, flags=["unsafe", "nonsense"]
    )
    imported_rankings(client, admin, project["id"], 300)
    seed_ready_prompts(client, admin, project["id"], n=4, k=4)
    labeler = make_account("labeler")
    for index in range(4):
        rank(
            client,
            labeler,
            project["id"],
            lambda ids: [[i] for i in ids],
            lambda ids: {str(ids[0]): ["nonsense"], str(ids[3]): ["unsafe"]},
            none_acceptable=index % 2 == 1,
        )
    return project["id"]


def load_both(client, admin, tmp_path: Path, project_id: int, **params) -> tuple:
    """The export as JSONL and as Parquet, each loaded by `datasets` from a file."""
    loaded = []
    kind = params["kind"]
    jsonl_options = {"chunksize": SMALL_BATCH, "features": datasets.Features.from_dict(FEATURES[kind])}
    for fmt, builder, options in (("jsonl", "json", jsonl_options), ("parquet", "parquet", {})):
        response = export(client, admin, project_id, format=fmt, **params)
        assert response.status_code == 200, response.text
        path = tmp_path / f"export.{fmt}"
        path.write_bytes(response.content)
        cache = tmp_path / f"cache-{fmt}"
        loaded.append(
            datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache, **options)
        )
    return tuple(loaded)


def assert_one_schema(from_jsonl: datasets.Dataset, from_parquet: datasets.Dataset) -> None:
    assert from_jsonl.features == from_parquet.features
    both = datasets.concatenate_datasets([from_jsonl, from_parquet])
    assert both.num_rows == 2 * from_jsonl.num_rows
    assert from_jsonl.to_list() == from_parquet.to_list()


def test_pairs_with_ties_load_and_concatenate(client, admin, tmp_path, campaign) -> None:
    from_jsonl, from_parquet = load_both(client, admin, tmp_path, campaign, kind="pairs", include_ties="true")
    assert from_jsonl.num_rows == 300 * 6 + 4 * 6, "5 strict pairs and 1 tie per import, C(4,2) per ranking"
    assert sum(from_jsonl["tie"]) == 300, "the tie rows, last in the file"
    assert any(from_jsonl["chosen_flags"]) and any(from_jsonl["none_acceptable"])
    assert_one_schema(from_jsonl, from_parquet)


def test_rankings_load_and_concatenate(client, admin, tmp_path, campaign) -> None:
    from_jsonl, from_parquet = load_both(client, admin, tmp_path, campaign, kind="rankings")
    assert from_jsonl.num_rows == 304
    flagged = [row["flags"] for row in from_jsonl if row["flags"]]
    assert len(flagged) == 4 and {entry["flags"][0] for entry in flagged[0]} == {"nonsense", "unsafe"}
    assert_one_schema(from_jsonl, from_parquet)


def test_demonstrations_load_and_concatenate(client, admin, make_account, tmp_path) -> None:
    """Answers written anew (edited_from null) first, then answers improved from a completion."""
    project = create_project(
        client, admin, name="answers", task="demonstrate", rankings_per_prompt=1, completions_per_prompt=2
    )
    upload_bare_prompts(client, admin, project["id"], 60)
    seed_ready_prompts(client, admin, project["id"], n=4, k=2)
    labeler = make_account("labeler")
    for index in range(64):
        task = next_task(client, labeler, project)
        start = {"edited_from": task["completions"][0]["id"]} if task["completions"] else {}
        answer = f"Answer {index}: " + "a careful, complete explanation. " * 3
        assert demonstrate(client, labeler, task, text=answer, **start).status_code == 201
    from_jsonl, from_parquet = load_both(client, admin, tmp_path, project["id"], kind="demonstrations")
    assert from_jsonl.num_rows == 64
    assert from_jsonl["edited_from"].count(None) == 60
    assert_one_schema(from_jsonl, from_parquet)
