"""Values a database cannot store are refused alike on both, as a 422 that names them (they used to be
500s on Postgres): NUL in text, NaN and Infinity in JSON, absurd nesting, endless lines, long names."""

import gzip
import json

from sqlalchemy import select

from app.prompts.models import Prompt
from tests.conftest import create_project
from tests.helpers import CSV, JSONL, assert_error, upload
from tests.jobs.test_worker_protocol import CLAIM, queue
from tests.labeling.conftest import seed_ready_prompts

JSON = {"Content-Type": "application/json"}


def test_nul_in_a_name_or_instructions_is_a_422_and_changes_nothing(client, admin) -> None:
    body = {"name": "bad\u0000name", "completions_per_prompt": 2}
    error = assert_error(
        client.post("/api/v1/projects", json=body, headers=admin.headers), 422, "unstorable_value"
    )
    assert "NUL" in error["message"] and error["details"]["field"] == "name"
    project = create_project(client, admin)
    patch = client.patch(
        f"/api/v1/projects/{project['id']}", json={"instructions_md": "a\u0000b"}, headers=admin.headers
    )
    assert_error(patch, 422, "unstorable_value")
    assert client.get("/api/v1/projects", headers=admin.headers).json()["items"][0]["name"] == project["name"]


def test_unstorable_values_in_an_upload_name_their_line(client, admin) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    body = '{"prompt": "fine"}\n{"prompt": "a\\u0000b"}\n{"prompt": "x", "metadata": {"score": NaN}}\n'
    error = assert_error(upload(client, admin, project, body, JSONL), 422, "invalid_upload")
    assert [e["line"] for e in error["details"]["errors"]] == [2, 3]
    assert "NUL" in error["details"]["errors"][0]["message"]
    assert "finite" in error["details"]["errors"][1]["message"]
    deep = '{"prompt": "x", "metadata": ' + "[" * 50_000 + "]" * 50_000 + "}\n"
    error = assert_error(upload(client, admin, project, deep, JSONL), 422, "invalid_upload")
    assert "nested too deeply" in error["message"]
    nested = json.dumps({"prompt": "x", "metadata": {"a": json.loads("[" * 40 + "]" * 40)}}) + "\n"
    error = assert_error(upload(client, admin, project, nested, JSONL), 422, "invalid_upload")
    assert "nested more than 32 levels" in error["message"]
    csv_body = "prompt\nfine\nbad\u0000cell\n"
    error = assert_error(upload(client, admin, project, csv_body, CSV), 422, "invalid_upload")
    assert error["details"]["line"] == 3 and "NUL" in error["message"]
    listed = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers)
    assert listed.json()["items"] == []


def test_a_gzip_bomb_line_is_refused_without_being_read_whole(client, admin) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    bomb = gzip.compress(b'{"prompt": "' + b"a" * (40 * 2**20) + b'"}\n')
    assert len(bomb) < 100_000
    error = assert_error(
        upload(client, admin, project, bomb, {"Content-Type": "application/gzip"}, format="jsonl"),
        422,
        "invalid_upload",
    )
    assert "longer than 16 MiB" in error["message"]


def test_csv_and_jsonl_accept_the_same_text_lengths(client, admin) -> None:
    """csv's own limit (131,072 characters) used to refuse cells that JSONL accepted."""
    project = create_project(client, admin, completions_per_prompt=2)
    long = "w " * 75_000  # 150,000 characters
    assert upload(client, admin, project, f'prompt\n"{long}"\n', CSV).status_code == 201
    assert upload(client, admin, project, json.dumps({"prompt": long}) + "\n", JSONL).status_code == 201
    too_long = "w" * 200_001
    for body, headers in ((f"prompt\n{too_long}\n", CSV), (json.dumps({"prompt": too_long}) + "\n", JSONL)):
        error = assert_error(upload(client, admin, project, body, headers), 422, "invalid_upload")
        assert "200000 characters" in error["message"], error


def test_a_long_upload_file_name_is_cut_to_fit(client, admin, db) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    files = {"file": ("p" * 300 + ".jsonl", b'{"prompt": "hi"}\n', "application/x-ndjson")}
    response = client.post(f"/api/v1/projects/{project['id']}/prompts", files=files, headers=admin.headers)
    assert response.status_code == 201, response.text
    source = db.scalar(select(Prompt.source))
    assert source.startswith("upload:ppp") and len(source) == 255


def test_worker_reports_with_nan_or_nul_are_422(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=1, k=2)
    job_id = queue(client, admin, project)
    worker = make_account("worker")
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    url = f"/api/v1/jobs/{job_id}/events"
    for raw in (
        f'{{"attempt": {attempt}, "metrics": {{"loss": NaN}}}}',
        f'{{"attempt": {attempt}, "metrics": {{"loss": Infinity}}}}',
        f'{{"attempt": {attempt}, "log": "a\\u0000b"}}',
    ):
        response = client.post(url, content=raw, headers={**worker.headers, **JSON})
        assert_error(response, 422, "unstorable_value")
    ok = client.post(url, json={"attempt": attempt, "metrics": {"loss": 1.5}}, headers=worker.headers)
    assert ok.status_code == 204, ok.text


def test_json_bodies_have_a_size_limit(client, admin, settings) -> None:
    """A 62 MB ranking used to be parsed whole; now anything over PREFLAB_MAX_JSON_MB is a 413 unread."""
    big = b'{"name": "' + b"x" * (settings.max_json_bytes + 1) + b'"}'
    response = client.post("/api/v1/projects", content=big, headers={**admin.headers, **JSON})
    error = assert_error(response, 413, "payload_too_large")
    assert error["message"]
    assert client.get("/api/v1/projects", headers=admin.headers).json()["items"] == []
