"""Prompt uploads: JSONL and CSV, all or nothing, with errors naming the line."""

import gzip
import json

import pytest

from tests.conftest import create_project
from tests.helpers import CSV, JSONL, assert_error, upload


@pytest.fixture
def project(client, admin) -> dict:
    return create_project(client, admin, completions_per_prompt=2)


def prompts_of(client, admin, project, **params) -> list[dict]:
    response = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def lines(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_jsonl_upload_plain_chat_and_completions(client, admin, project) -> None:
    body = (
        lines(
            {"prompt": "Why is the sky blue?", "metadata": {"topic": "physics"}},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
            {"prompt": "Pick one", "completions": ["A", "B"]},
        )
        + "\n"
    )  # a trailing blank line is fine
    response = upload(client, admin, project, body, JSONL)
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 3, "completions": 2, "format": "jsonl", "source": "api"}

    items = prompts_of(client, admin, project)
    assert [p["messages"] for p in items] == [
        [{"role": "user", "content": "Why is the sky blue?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Pick one"}],
    ]
    assert items[0]["metadata"] == {"topic": "physics"}
    assert [p["status"] for p in items] == ["pending", "pending", "ready"]
    assert [c["text"] for c in items[2]["completions"]] == ["A", "B"]
    assert items[2]["completions"][0]["origin"] == "imported"
    assert [p["id"] for p in prompts_of(client, admin, project, status="ready")] == [items[2]["id"]]
    counts = client.get(f"/api/v1/projects/{project['id']}", headers=admin.headers).json()["counts"]
    assert counts == {"prompts": 3, "completions": 2, "prompts_ready": 1}


def test_csv_upload_with_system_completions_and_metadata(client, admin, project) -> None:
    body = (
        "\ufeffPrompt,system,completion_1,completion_2,source_id\n"
        '"Say ""hi""",,,,row-1\n'
        '"Two\nlines",You are kind.,yes,no,row-2\n'
    )
    response = upload(client, admin, project, body, CSV)
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 2 and response.json()["format"] == "csv"
    first, second = prompts_of(client, admin, project)
    assert first["messages"] == [{"role": "user", "content": 'Say "hi"'}]
    assert first["metadata"] == {"source_id": "row-1"}
    assert second["messages"][0] == {"role": "system", "content": "You are kind."}
    assert second["messages"][1]["content"] == "Two\nlines"
    assert [c["text"] for c in second["completions"]] == ["yes", "no"]


@pytest.mark.parametrize(
    "body, headers, line, fragment",
    [
        ('{"prompt": "ok"}\n{"prompt": "broken"\n', JSONL, 2, "not valid JSON"),
        ('{"prompt": "ok"}\n["a list"]\n', JSONL, 2, "JSON object"),
        ('{"prompt": "ok"}\n\n{"promt": "typo"}\n', JSONL, 3, "unknown field 'promt'"),
        ('{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}\n', JSONL, 1, "exactly one"),
        (
            '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n',
            JSONL,
            1,
            'role "user"',
        ),
        ('{"messages": [{"role": "wizard", "content": "q"}]}\n', JSONL, 1, "messages.0.role"),
        ('{"prompt": "x", "completions": ["same", "same"]}\n', JSONL, 1, "twice"),
        ('{"prompt": "x", "completions": ["a", "b", "c"]}\n', JSONL, 1, "K=2"),
        ('{"prompt": "   "}\n', JSONL, 1, "blank"),
        ("question,answer\nhi,there\n", CSV, 1, "no 'prompt' column"),
        ("prompt,other\nhi,there\nonly-one-field\n", CSV, 3, "fields"),
    ],
)
def test_one_bad_line_imports_nothing(client, admin, project, body, headers, line, fragment) -> None:
    error = assert_error(upload(client, admin, project, body, headers), 422, "invalid_upload")
    assert error["details"]["line"] == line
    assert fragment in error["message"], error["message"]
    assert f"Line {line}" in error["message"]
    assert prompts_of(client, admin, project) == []


def test_every_bad_line_is_listed(client, admin, project) -> None:
    body = lines({"prompt": "fine"}) + "nope\n" + lines({"prompt": "fine"}) + "{]\n"
    error = assert_error(upload(client, admin, project, body, JSONL), 422)
    assert [e["line"] for e in error["details"]["errors"]] == [2, 4]
    assert error["details"]["problems"] == 2


def test_non_utf8_upload_is_422(client, admin, project) -> None:
    body = b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n'
    error = assert_error(upload(client, admin, project, body, JSONL), 422)
    assert error["details"]["line"] == 2 and "UTF-8" in error["message"]
    csv_body = b"prompt\ncaf\xe9\n"
    assert assert_error(upload(client, admin, project, csv_body, CSV), 422)["details"]["line"] == 2
    assert prompts_of(client, admin, project) == []


@pytest.mark.parametrize("body, headers", [("", JSONL), ("\n\n  \n", JSONL), ("", CSV), ("prompt\n", CSV)])
def test_empty_upload_is_422(client, admin, project, body, headers) -> None:
    assert_error(upload(client, admin, project, body, headers), 422, "empty_upload")


def test_upload_over_the_limit_is_413(client, admin, project) -> None:
    big = lines(*({"prompt": "x" * 1000} for _ in range(1200)))  # ~1.2 MB; the test limit is 1 MB
    assert_error(upload(client, admin, project, big, JSONL), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit must hold while streaming too
        for _ in range(12):
            yield lines(*({"prompt": "y" * 1000} for _ in range(100))).encode()

    response = client.post(
        f"/api/v1/projects/{project['id']}/prompts", content=chunks(), headers={**admin.headers, **JSONL}
    )
    assert_error(response, 413)
    assert prompts_of(client, admin, project) == []


def test_gzip_multipart_and_explicit_format(client, admin, project) -> None:
    body = gzip.compress(lines({"prompt": "zipped"}).encode())
    response = upload(
        client, admin, project, body, {"Content-Type": "application/octet-stream"}, format="jsonl"
    )
    assert response.status_code == 201 and response.json()["imported"] == 1
    files = {"file": ("prompts.csv", b"prompt\nfrom a file\n", "text/csv")}
    response = client.post(f"/api/v1/projects/{project['id']}/prompts", files=files, headers=admin.headers)
    assert response.status_code == 201, response.text
    assert response.json()["source"] == "upload:prompts.csv"
    assert len(prompts_of(client, admin, project)) == 2


def test_unknown_format_is_422(client, admin, project) -> None:
    assert_error(upload(client, admin, project, "x", {"Content-Type": "text/plain"}), 422, "unknown_format")
    assert_error(upload(client, admin, project, "x", JSONL, format="xml"), 422, "unknown_format")


def test_large_upload_streams_in_batches(client, admin, project) -> None:
    many = lines(*({"prompt": f"question {i}"} for i in range(2500)))
    response = upload(client, admin, project, many, JSONL)
    assert response.status_code == 201 and response.json()["imported"] == 2500
    page = client.get(
        f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers, params={"limit": 500}
    )
    assert len(page.json()["items"]) == 500
    cursor, seen = page.json()["next_cursor"], 500
    while cursor:
        page = client.get(
            f"/api/v1/projects/{project['id']}/prompts",
            headers=admin.headers,
            params={"limit": 500, "cursor": cursor},
        )
        seen += len(page.json()["items"])
        cursor = page.json()["next_cursor"]
    assert seen == 2500


def test_pagination_validates(client, admin, project) -> None:
    url = f"/api/v1/projects/{project['id']}/prompts"
    assert_error(client.get(url, headers=admin.headers, params={"limit": 0}), 422)
    assert_error(client.get(url, headers=admin.headers, params={"cursor": "abc"}), 422, "bad_cursor")
    assert_error(client.get(url, headers=admin.headers, params={"status": "weird"}), 422)
