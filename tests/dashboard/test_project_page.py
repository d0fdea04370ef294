"""The project page: what it shows (escaped, inert Markdown), and uploads through its form."""

import json
import re

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from tests.conftest import Account, browser_login, create_project
from tests.helpers import (
    HTMX,
    assert_inert,
    jsonl,
    prompts_via_api,
    tags_inside,
)

# --- what the project page shows ------------------------------------------------------------------


def test_markdown_instructions_render_inert(client: TestClient, admin: Account) -> None:
    hostile = (
        "# Rules\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n"
        "<img src=x onerror=alert(1)>\n\n[ok](https://example.com) ![pic](javascript:alert(2))"
    )
    project = create_project(client, admin, instructions_md=hostile)
    browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}")
    assert page.status_code == 200
    assert_inert(tags_inside(page.text, "instructions"))
    area = page.text.split('id="instructions"', 1)[1].split("</section>", 1)[0]
    assert "<script" not in area
    assert 'href="javascript:' not in area
    assert "&lt;script&gt;" in area, "raw HTML is shown as text"
    assert 'href="https://example.com"' in area
    old = client.get(f"/projects/{project['id']}/instructions/1")
    assert_inert(tags_inside(old.text, "instructions"))


def test_user_and_model_text_is_escaped(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin, name="<b>bold</b>-project")
    response = client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
        content=jsonl({"prompt": "<script>alert('p')</script> what?"}),
    )
    assert response.status_code == 201
    browser_login(client, admin)
    for path in ("/projects", f"/projects/{project['id']}"):
        text = client.get(path).text
        assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
        assert "<script>alert" not in text


def test_the_project_page_lists_counts_versions_and_prompts(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
        content=jsonl({"prompt": "First prompt"}, {"prompt": "Second", "completions": ["a", "b"]}),
    )
    browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}")
    assert page.status_code == 200
    assert "First prompt" in page.text and "Second" in page.text
    assert "badge--status-ready" in page.text and "badge--status-pending" in page.text
    assert "Version 1" in page.text and admin.username in page.text
    assert f'action="/projects/{project["id"]}/upload"' in page.text
    assert 'accept=".jsonl,.ndjson,.csv,.gz"' in page.text
    listing = client.get("/projects").text
    assert "50%" in listing, "one of two prompts is ready"


# --- prompt upload -------------------------------------------------------------------------------


def test_uploading_jsonl_through_the_page_without_htmx(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    body = jsonl({"prompt": "Why is the sky blue?"}, {"prompt": "Name a prime.", "completions": ["2", "3"]})
    response = client.post(
        f"/projects/{project['id']}/upload",
        data={"csrf_token": csrf, "format": "auto"},
        files={"file": ("prompts.jsonl", body, "application/octet-stream")},
    )
    assert response.status_code == 201
    assert "<html" in response.text, "without htmx the whole project page comes back"
    assert re.search(
        r"Imported 2 prompts\s+\(2 completions\)\s+from <strong>prompts.jsonl</strong>", response.text
    )
    assert "Why is the sky blue?" in response.text
    assert len(prompts_via_api(client, admin, project["id"])) == 2


def test_uploading_through_htmx_returns_the_fragment(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    body = b"prompt,completion_1\nHello there,General Kenobi\nWhat is 2+2?,\n"
    response = client.post(
        f"/projects/{project['id']}/upload",
        headers={**HTMX, "X-CSRF-Token": csrf},
        data={"format": "csv"},
        files={"file": ("prompts.txt", body, "text/plain")},
    )
    assert response.status_code == 201
    assert "<html" not in response.text
    assert re.search(
        r"Imported 2 prompts\s+\(1 completion\)\s+from <strong>prompts.txt</strong>", response.text
    )
    assert 'id="project-counts" class="stats" hx-swap-oob="true"' in response.text
    assert "Hello there" in response.text
    assert len(prompts_via_api(client, admin, project["id"])) == 2


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_file_with_one_bad_line_imports_nothing(client: TestClient, admin: Account, headers: dict) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    body = jsonl({"prompt": "fine"}) + b'{"prompt": "broken"\n' + jsonl({"prompt": "also fine"})
    response = client.post(
        f"/projects/{project['id']}/upload",
        headers=headers,
        data={"csrf_token": csrf},
        files={"file": ("bad.jsonl", body, "application/x-ndjson")},
    )
    assert response.status_code == 422
    assert "Line 2" in response.text
    assert "not valid JSON" in response.text
    assert ("<html" in response.text) == (not headers)
    assert prompts_via_api(client, admin, project["id"]) == []


def test_an_upload_over_the_limit_is_413(client: TestClient, admin: Account, settings: Settings) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    line = json.dumps({"prompt": "x" * 1000}).encode() + b"\n"
    body = line * (settings.max_upload_bytes // len(line) + 10)
    response = client.post(
        f"/projects/{project['id']}/upload",
        headers={**HTMX, "X-CSRF-Token": csrf},
        files={"file": ("big.jsonl", body, "application/x-ndjson")},
    )
    assert response.status_code == 413
    assert "limit" in response.text
    assert prompts_via_api(client, admin, project["id"]) == []


def test_an_upload_without_a_file_says_so(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    response = client.post(
        f"/projects/{project['id']}/upload",
        headers={**HTMX, "X-CSRF-Token": csrf},
        data={"format": "auto"},
        files={"file": ("", b"", "application/octet-stream")},
    )
    assert response.status_code == 422
    assert "Choose a file" in response.text
