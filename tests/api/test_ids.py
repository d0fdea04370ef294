"""Ids at the edge: bounded to what an INTEGER column holds, read strictly from text (app/ids.py).

Each case here was a 500 found by fuzzing the OpenAPI spec (ids past 2^31 on Postgres, "²" passing
``str.isdigit()``) or a way around ``exclude_flags`` ("042" stored beside "42")."""

import json

import pytest

from app.ids import MAX_ID, parse_id
from tests.conftest import create_project
from tests.exports.test_export_api import export, jsonl
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts

TOO_BIG = MAX_ID + 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("1", 1),
        (str(MAX_ID), MAX_ID),
        ("042", None),
        ("0", None),
        ("+42", None),
        (" 42", None),
        ("²", None),
        ("٤٢", None),
        ("4.2", None),
        ("", None),
        (str(TOO_BIG), None),
        ("-1", None),
    ],
)
def test_parse_id_is_strict(text: str, expected: int | None) -> None:
    assert parse_id(text) == expected


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/projects/{TOO_BIG}",
        f"/api/v1/jobs/{2**63}",
        f"/api/v1/models/{TOO_BIG}",
        f"/api/v1/evaluations/{TOO_BIG}",
        "/api/v1/projects/0",
        f"/api/v1/projects/1/prompts?cursor={TOO_BIG}",
        "/api/v1/projects/1/prompts?cursor=%C2%B2",  # "²"
    ],
)
def test_ids_past_the_column_are_refused_with_422(client, admin, path) -> None:
    create_project(client, admin)
    response = client.get(path, headers=admin.headers)
    assert response.status_code == 422, (path, response.status_code, response.text)
    assert response.json()["error"]["code"] in ("validation_failed", "bad_cursor")


def test_a_labeler_with_an_id_past_the_column_gets_422(client, make_account) -> None:
    labeler = make_account("labeler")
    response = client.get("/api/v1/tasks/next", params={"project_id": TOO_BIG}, headers=labeler.headers)
    assert_error(response, 422, "validation_failed")


def test_ranking_ids_and_flag_keys_must_be_canonical(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=2, flags=["unsafe"])
    seed_ready_prompts(client, admin, project["id"], n=1, k=2)
    labeler = make_account("labeler")
    task = client.get(
        "/api/v1/tasks/next", params={"project_id": project["id"]}, headers=labeler.headers
    ).json()
    first, second = (c["id"] for c in task["completions"])
    url = f"/api/v1/assignments/{task['assignment_id']}/ranking"
    for body in (
        {"ranking": [[first], [TOO_BIG]]},
        {"ranking": [[first], [second]], "flags": {f"0{second}": ["unsafe"]}},
        {"ranking": [[first], [second]], "flags": {f"{second}²": ["unsafe"]}},
        {"ranking": [[first], [second]], "flags": {f" {second}": ["unsafe"]}},
    ):
        assert_error(client.post(url, json=body, headers=labeler.headers), 422)
    stored = client.post(
        url,
        json={"ranking": [[first], [second]], "flags": {str(second): ["unsafe"]}},
        headers=labeler.headers,
    )
    assert stored.status_code == 201, stored.text
    assert jsonl(export(client, admin, project["id"], exclude_flags="unsafe")) == [], (
        "the flagged pair is gone"
    )
    assert len(jsonl(export(client, admin, project["id"]))) == 1


def test_generated_completions_with_a_seed_past_the_column_are_refused(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        content=json.dumps({"prompt": "q"}).encode() + b"\n",
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    job_id = client.post(f"/api/v1/projects/{project['id']}/generate", headers=admin.headers).json()["job_id"]
    worker = make_account("worker")
    claimed = client.post(
        "/api/v1/worker/claim", json={"kinds": ["generate"], "worker": "w"}, headers=worker.headers
    )
    prompt_id = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()[
        "items"
    ][0]["id"]
    body = {
        "attempt": claimed.json()["attempts"],
        "items": [{"prompt_id": prompt_id, "completions": [{"text": "a", "seed": 2**40}]}],
    }
    assert_error(client.post(f"/api/v1/jobs/{job_id}/completions", json=body, headers=worker.headers), 422)
