"""The project pages: the form (create, edit, refusals naming the field), instruction versions and
their preview, and which roles see what."""

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account, browser_login, create_project
from tests.helpers import (
    FORM_FIELDS,
    HTMX,
    jsonl,
    projects_via_api,
    prompts_via_api,
)

# --- the project form ----------------------------------------------------------------------------


def test_creating_a_project_through_the_form(client: TestClient, admin: Account) -> None:
    csrf = browser_login(client, admin)
    form = client.get("/projects/new")
    assert form.status_code == 200
    assert 'hx-post="/projects/preview-instructions"' in form.text

    response = client.post("/projects/new", data={**FORM_FIELDS, "csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303, response.text
    [project] = projects_via_api(client, admin)
    assert response.headers["location"] == f"/projects/{project['id']}?notice=created"
    assert project["name"] == "summaries-v1"
    assert project["completions_per_prompt"] == 3
    assert project["rankings_per_prompt"] == 2
    assert project["flags"] == ["unsafe", "made_up", "nonsense"]
    assert project["generation"] == {
        "model": "default",
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 96,
        "retry_temperature": None,  # the form's field left empty
    }
    assert project["instructions_md"] == "# Rank by faithfulness\n\nPrefer summaries that add nothing."

    page = client.get(response.headers["location"])
    assert "Project created." in page.text
    assert "<h1>Rank by faithfulness</h1>" in page.text
    assert "summaries-v1" in client.get("/projects").text


def test_k_out_of_range_is_refused_naming_the_field(client: TestClient, admin: Account) -> None:
    csrf = browser_login(client, admin)
    response = client.post(
        "/projects/new",
        data={**FORM_FIELDS, "completions_per_prompt": "12", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 422
    assert "Completions per prompt (K)" in response.text
    assert "completions_per_prompt" in response.text
    assert "less than or equal to 9" in response.text
    assert 'id="completions_per_prompt-error"' in response.text
    assert 'value="summaries-v1"' in response.text, "the admin's input comes back"
    assert 'value="12"' in response.text
    assert projects_via_api(client, admin) == []


def test_bad_flags_and_blank_numbers_are_named(client: TestClient, admin: Account) -> None:
    csrf = browser_login(client, admin)
    response = client.post(
        "/projects/new", data={**FORM_FIELDS, "flags": "unsafe, Not A Flag", "csrf_token": csrf}
    )
    assert response.status_code == 422
    assert "&#39;Not A Flag&#39; is not a valid flag" in response.text
    response = client.post("/projects/new", data={**FORM_FIELDS, "temperature": "", "csrf_token": csrf})
    assert response.status_code == 422
    assert "Temperature (temperature)" in response.text
    assert projects_via_api(client, admin) == []


def test_a_taken_name_or_unknown_model_re_renders_the_form(client: TestClient, admin: Account) -> None:
    create_project(client, admin, name="summaries-v1")
    csrf = browser_login(client, admin)
    response = client.post("/projects/new", data={**FORM_FIELDS, "csrf_token": csrf})
    assert response.status_code == 409
    assert "already exists" in response.text
    assert 'id="name-error"' in response.text

    response = client.post(
        "/projects/new", data={**FORM_FIELDS, "name": "other", "model": "/no/such/model", "csrf_token": csrf}
    )
    assert response.status_code == 422
    assert 'id="model-error"' in response.text
    assert [p["name"] for p in projects_via_api(client, admin)] == ["summaries-v1"]


def test_editing_instructions_twice_keeps_every_version_viewable(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin, instructions_md="# Version one")
    pid = project["id"]
    csrf = browser_login(client, admin)
    edit = client.get(f"/projects/{pid}/edit")
    assert edit.status_code == 200
    assert f'value="{project["name"]}"' in edit.text
    assert "# Version one</textarea>" in edit.text

    fields = {
        "name": project["name"],
        "completions_per_prompt": "4",
        "rankings_per_prompt": "2",
        "flags": "unsafe, nonsense",
        "model": "default",
        "temperature": "0.8",
        "top_p": "0.95",
        "max_new_tokens": "64",
        "csrf_token": csrf,
    }
    for body in ("# Version two", "# Version three\r\n\r\nBe kind."):
        response = client.post(
            f"/projects/{pid}/edit", data={**fields, "instructions_md": body}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/projects/{pid}?notice=saved"
    # Saving again with the same text (as a browser sends it, CRLF) adds no version.
    client.post(
        f"/projects/{pid}/edit",
        data={**fields, "instructions_md": "# Version three\r\n\r\nBe kind.", "rankings_per_prompt": "3"},
    )

    versions = client.get(f"/api/v1/projects/{pid}/instructions", headers=admin.headers).json()["items"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions[0]["body_md"] == "# Version three\n\nBe kind."
    assert client.get(f"/api/v1/projects/{pid}", headers=admin.headers).json()["rankings_per_prompt"] == 3

    page = client.get(f"/projects/{pid}")
    assert "<h1>Version three</h1>" in page.text
    for number in (1, 2, 3):
        assert f'href="/projects/{pid}/instructions/{number}"' in page.text
    old = client.get(f"/projects/{pid}/instructions/1")
    assert old.status_code == 200
    assert "<h1>Version one</h1>" in old.text
    assert "This is an earlier version" in old.text
    current = client.get(f"/projects/{pid}/instructions/3")
    assert "This is the current version" in current.text
    assert client.get(f"/projects/{pid}/instructions/4").status_code == 404


def test_a_rejected_edit_changes_nothing(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin)
    pid = project["id"]
    csrf = browser_login(client, admin)
    response = client.post(
        f"/projects/{pid}/edit",
        data={
            "name": "renamed",
            "instructions_md": "# New",
            "completions_per_prompt": "4",
            "rankings_per_prompt": "2",
            "flags": "unsafe",
            "model": "default",
            "temperature": "5",
            "top_p": "0.95",
            "max_new_tokens": "64",
            "csrf_token": csrf,
        },
    )
    assert response.status_code == 422
    assert 'id="temperature-error"' in response.text
    after = client.get(f"/api/v1/projects/{pid}", headers=admin.headers).json()
    assert after["name"] == project["name"]
    assert after["instructions_version"] == 1


def test_the_instructions_preview_is_sanitised_markdown(client: TestClient, admin: Account) -> None:
    csrf = browser_login(client, admin)
    response = client.post(
        "/projects/preview-instructions",
        headers={**HTMX, "X-CSRF-Token": csrf},
        data={"instructions_md": "## Hi\n\n<script>alert(1)</script> [x](javascript:alert(1))"},
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert "<h2>Hi</h2>" in response.text
    assert "<script>" not in response.text
    assert 'href="javascript' not in response.text


# --- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["labeler", "researcher"])
def test_admin_pages_are_403_for_other_roles(
    client: TestClient, admin: Account, make_account: Callable[..., Account], role: str
) -> None:
    project = create_project(client, admin)
    pid = project["id"]
    csrf = browser_login(client, make_account(role))
    for path in ("/projects/new", f"/projects/{pid}/edit", "/users", "/projects/999/edit"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "This needs the admin role" in response.text
    posts = {
        "/projects/new": {"data": {**FORM_FIELDS, "csrf_token": csrf}},
        f"/projects/{pid}/edit": {"data": {**FORM_FIELDS, "csrf_token": csrf}},
        f"/projects/{pid}/upload": {
            "data": {"csrf_token": csrf},
            "files": {"file": ("p.jsonl", jsonl({"prompt": "hi"}), "text/plain")},
        },
        "/projects/999/upload": {
            "data": {"csrf_token": csrf},
            "files": {"file": ("p.jsonl", jsonl({"prompt": "hi"}), "text/plain")},
        },
        "/projects/preview-instructions": {"data": {"instructions_md": "# x", "csrf_token": csrf}},
        "/users": {
            "data": {"username": "sneaky", "password": "long enough pw", "role": "admin", "csrf_token": csrf}
        },
    }
    for path, kwargs in posts.items():
        assert client.post(path, **kwargs).status_code == 403, path
    assert [p["name"] for p in projects_via_api(client, admin)] == [project["name"]]
    assert prompts_via_api(client, admin, pid) == []


def test_a_researcher_reads_projects_without_admin_controls(
    client: TestClient, admin: Account, make_account: Callable[..., Account]
) -> None:
    project = create_project(client, admin)
    browser_login(client, make_account("researcher"))
    assert client.get("/", follow_redirects=False).headers["location"] == "/projects"
    listing = client.get("/projects")
    assert listing.status_code == 200 and project["name"] in listing.text
    assert 'href="/projects/new"' not in listing.text
    page = client.get(f"/projects/{project['id']}")
    assert page.status_code == 200
    assert "/edit" not in page.text and "/upload" not in page.text
    assert 'href="/users"' not in page.text
    assert client.get(f"/projects/{project['id']}/instructions/1").status_code == 200


def test_a_labeler_sees_project_names_only(
    client: TestClient, admin: Account, make_account: Callable[..., Account]
) -> None:
    project = create_project(client, admin)
    browser_login(client, make_account("labeler"))
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 200
    assert project["name"] in home.text
    assert "No tasks yet" in home.text
    assert "Rank by helpfulness" not in home.text, "no instructions or settings on the labeler's home"
    assert f'href="/projects/{project["id"]}"' not in home.text
    for path in (
        "/projects",
        f"/projects/{project['id']}",
        f"/projects/{project['id']}/instructions/1",
        "/projects/999",
    ):
        assert client.get(path).status_code == 403, path


def test_an_admin_home_redirects_to_projects(client: TestClient, admin: Account) -> None:
    browser_login(client, admin)
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/projects"


def test_static_files_are_served_locally(client: TestClient) -> None:
    page = client.get("/login").text
    for path in ("/static/css/app.css", "/static/js/htmx.min.js", "/static/js/app.js"):
        assert f'"{path}?v=' in page, "linked with its content version (app/static_files.py)"
        assert client.get(path).status_code == 200, path
    assert "://" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', page))


def test_the_labeler_quality_rules_are_edited_on_the_project_form(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin)
    pid = project["id"]
    csrf = browser_login(client, admin)
    edit = client.get(f"/projects/{pid}/edit").text
    assert 'id="gold_rate"' in edit and 'id="min_seconds"' in edit and 'value="3.0"' in edit
    fields = {
        "name": project["name"],
        "completions_per_prompt": "4",
        "rankings_per_prompt": "1",
        "flags": "unsafe, nonsense",
        "model": "default",
        "temperature": "0.8",
        "top_p": "0.95",
        "max_new_tokens": "64",
        "gold_rate": "0.2",
        "min_seconds": "5",
        "csrf_token": csrf,
    }
    saved = client.post(f"/projects/{pid}/edit", data=fields, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    after = client.get(f"/api/v1/projects/{pid}", headers=admin.headers).json()
    assert (after["gold_rate"], after["min_seconds"], after["gold_min_tasks"]) == (0.2, 5.0, 3)
    refused = client.post(f"/projects/{pid}/edit", data={**fields, "gold_rate": "0.9"})
    assert refused.status_code == 422 and "Gold task rate" in refused.text
