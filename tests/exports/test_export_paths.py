"""Every way an export is written gives the same full rows: the Python rows (iter_rows), the JSONL lines
assembled from bytes (and on Postgres by COPY), and Parquet, for the same data with ties, flags on both
sides and a "none acceptable" ranking. The columns come from one definition (app/exports/rows.py)."""

import io
import json

import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session

from app.exports import rows as export_rows
from app.exports import service
from app.exports.encoder import Encoder
from app.exports.schemas import ExportFilters
from app.projects.models import Project
from tests.conftest import create_project
from tests.exports.test_export_api import export, jsonl
from tests.labeling.conftest import seed_ready_prompts


def rank(client, labeler, project_id, tiers_of, flags_of, none_acceptable=False) -> None:
    task = client.get("/api/v1/tasks/next", params={"project_id": project_id}, headers=labeler.headers).json()
    ids = [c["id"] for c in task["completions"]]
    body = {
        "ranking": tiers_of(ids),
        "flags": flags_of(ids),
        "none_acceptable": none_acceptable,
        "seconds_spent": 12.5,
    }
    response = client.post(
        f"/api/v1/assignments/{task['assignment_id']}/ranking", json=body, headers=labeler.headers
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def varied(client, admin, make_account) -> int:
    """Two prompts (K=3), each ranked by three labelers: a strict order with flags on both sides of a
    pair, a tie, and a ranking marked none acceptable."""
    project = create_project(
        client, admin, completions_per_prompt=3, rankings_per_prompt=3, flags=["unsafe", "nonsense"]
    )
    seed_ready_prompts(client, admin, project["id"], n=2, k=3)
    strict, tying, unhappy = (make_account("labeler") for _ in range(3))
    for _ in range(2):
        rank(
            client,
            strict,
            project["id"],
            lambda ids: [[ids[0]], [ids[1]], [ids[2]]],
            lambda ids: {str(ids[0]): ["nonsense"], str(ids[2]): ["unsafe", "nonsense"]},
        )
        rank(client, tying, project["id"], lambda ids: [[ids[0], ids[1]], [ids[2]]], lambda ids: {})
        rank(
            client,
            unhappy,
            project["id"],
            lambda ids: [[i] for i in ids],
            lambda ids: {},
            none_acceptable=True,
        )
    return project["id"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"include_ties": True},
        {"exclude_flags": ["unsafe"]},
        {"include_ties": True, "exclude_none_acceptable": True},
    ],
)
def test_every_path_writes_the_same_full_pair_rows(client, admin, engine, varied, params) -> None:
    with Session(engine) as session:
        plan = service.plan_export(
            session, project=session.get(Project, varied), filters=ExportFilters(kind="pairs", **params)
        )
    with engine.connect() as connection:
        python_rows = list(service.iter_rows(connection, plan))
    with engine.connect() as connection:
        byte_lines = b"".join(service._pair_lines(connection, plan, Encoder(plan)))
    query = {key: ",".join(v) if isinstance(v, list) else str(v).lower() for key, v in params.items()}
    served = jsonl(export(client, admin, varied, **query))  # on Postgres: COPY, then the tie rows
    parquet = pq.read_table(io.BytesIO(export(client, admin, varied, format="parquet", **query).content))

    assert python_rows, "the fixture has pairs"
    assert [list(row) for row in python_rows] == [list(export_rows.PAIR_NAMES)] * len(python_rows)
    assert [json.loads(line) for line in byte_lines.splitlines()] == python_rows
    assert served == python_rows
    assert parquet.column_names == list(export_rows.PAIR_NAMES)
    assert parquet.to_pylist() == python_rows

    flagged = [row for row in python_rows if row["chosen_flags"] and row["rejected_flags"]]
    assert ("exclude_flags" in params) != bool(flagged), "flags on both sides of a pair, unless excluded"
    assert any(row["none_acceptable"] for row in python_rows) != bool(params.get("exclude_none_acceptable"))
    assert any(row["tie"] for row in python_rows) == bool(params.get("include_ties"))


def test_every_path_writes_the_same_ranking_rows(client, admin, varied) -> None:
    served = jsonl(export(client, admin, varied, kind="rankings"))
    parquet = pq.read_table(
        io.BytesIO(export(client, admin, varied, kind="rankings", format="parquet").content)
    )
    assert parquet.column_names == list(export_rows.RANKING_NAMES) == list(served[0])
    assert parquet.to_pylist() == served  # flags too: a list of {completion_id, flags} in both
    assert any(row["flags"] for row in served)
    assert len(served) == 6 and sum(row["none_acceptable"] for row in served) == 2
