"""Projects API: create, read, update, instruction versions, validation."""

import pytest

from tests.conftest import create_project
from tests.helpers import assert_error


def test_create_and_read_project(client, admin, make_account) -> None:
    project = create_project(client, admin)
    assert project["name"] == "helpfulness-v1"
    assert project["completions_per_prompt"] == 4 and project["rankings_per_prompt"] == 2
    assert project["flags"] == ["unsafe", "nonsense"]
    assert project["generation"] == {
        "model": "default",
        "temperature": 0.8,
        "top_p": 0.95,
        "max_new_tokens": 64,
        "retry_temperature": None,  # the same temperature for the passes that re-draw twins
    }
    assert project["instructions_version"] == 1
    assert project["counts"] == {"prompts": 0, "completions": 0, "prompts_ready": 0}
    assert project["progress"] == 0.0

    researcher = make_account("researcher")
    fetched = client.get(f"/api/v1/projects/{project['id']}", headers=researcher.headers)
    assert fetched.status_code == 200 and fetched.json() == project
    listed = client.get("/api/v1/projects", headers=researcher.headers).json()
    assert listed["items"] == [project] and listed["next_cursor"] is None


def test_defaults_fill_missing_settings(client, admin) -> None:
    response = client.post("/api/v1/projects", json={"name": "minimal"}, headers=admin.headers)
    assert response.status_code == 201
    body = response.json()
    assert body["completions_per_prompt"] == 4 and body["generation"]["model"] == "default"
    assert body["flags"] == ["unsafe", "factually_wrong", "nonsense", "off_topic"]


@pytest.mark.parametrize(
    "override, field",
    [
        ({"completions_per_prompt": 1}, "completions_per_prompt"),
        ({"completions_per_prompt": 10}, "completions_per_prompt"),
        ({"rankings_per_prompt": 0}, "rankings_per_prompt"),
        ({"flags": ["Not Snake"]}, "flags.0"),
        ({"flags": ["a", "a"]}, "flags"),
        ({"generation": {"temperature": 0}}, "generation.temperature"),
        ({"generation": {"top_p": 1.5}}, "generation.top_p"),
        ({"generation": {"max_new_tokens": 0}}, "generation.max_new_tokens"),
        ({"name": "   "}, "name"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_settings_out_of_range_are_422_naming_the_field(client, admin, override, field) -> None:
    body = {"name": "p", **override}
    error = assert_error(client.post("/api/v1/projects", json=body, headers=admin.headers), 422)
    assert error["details"]["field"] == field
    assert client.get("/api/v1/projects", headers=admin.headers).json()["items"] == []


def test_unknown_model_is_422(client, admin, tmp_path) -> None:
    for model in [str(tmp_path / "nowhere"), 7]:
        body = {"name": "p", "generation": {"model": model}}
        error = assert_error(
            client.post("/api/v1/projects", json=body, headers=admin.headers), 422, "unknown_model"
        )
        assert error["details"]["field"] == "generation.model"
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    body = {"name": "p", "generation": {"model": str(local)}}
    assert client.post("/api/v1/projects", json=body, headers=admin.headers).status_code == 201


def test_duplicate_name_is_409(client, admin) -> None:
    create_project(client, admin, name="same")
    error = assert_error(client.post("/api/v1/projects", json={"name": "SAME"}, headers=admin.headers), 409)
    assert error["code"] == "project_name_taken"


def test_names_are_unique_up_to_unicode_case_and_form(client, admin) -> None:
    """The old check folded with Python's lower() but compared with the database's ASCII-only lower():
    'Ärger' twice was a 500 (the unique index) instead of a 409."""
    create_project(client, admin, name="Ärger")
    for twin in ("Ärger", "ärger", "A\u0308RGER"):  # the last: A + combining diaeresis
        error = assert_error(client.post("/api/v1/projects", json={"name": twin}, headers=admin.headers), 409)
        assert error["code"] == "project_name_taken"
    pid = create_project(client, admin, name="Straße")["id"]
    rename = client.patch(f"/api/v1/projects/{pid}", json={"name": "ärger"}, headers=admin.headers)
    assert_error(rename, 409, "project_name_taken")
    assert (
        client.patch(f"/api/v1/projects/{pid}", json={"name": "STRASSE"}, headers=admin.headers).status_code
        == 200
    )


def test_patch_keeps_instruction_versions(client, admin) -> None:
    pid = create_project(client, admin)["id"]
    url = f"/api/v1/projects/{pid}"
    for text in ["# v2", "# v2", "# v3"]:  # the repeated text must not add a version
        response = client.patch(url, json={"instructions_md": text}, headers=admin.headers)
        assert response.status_code == 200
    body = response.json()
    assert body["instructions_version"] == 3 and body["instructions_md"] == "# v3"
    versions = client.get(f"{url}/instructions", headers=admin.headers).json()["items"]
    assert [(v["version"], v["body_md"]) for v in versions] == [
        (3, "# v3"),
        (2, "# v2"),
        (1, "# Rank by helpfulness"),
    ]


def test_patch_merges_generation_and_validates(client, admin) -> None:
    pid = create_project(client, admin)["id"]
    url = f"/api/v1/projects/{pid}"
    response = client.patch(
        url, json={"generation": {"temperature": 1.1}, "rankings_per_prompt": 5}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["generation"]["temperature"] == 1.1
    assert response.json()["generation"]["max_new_tokens"] == 64
    assert response.json()["rankings_per_prompt"] == 5
    error = assert_error(client.patch(url, json={"generation": {"top_p": 0}}, headers=admin.headers), 422)
    assert error["details"]["field"] == "generation.top_p"
    assert_error(client.patch(url, json={"completions_per_prompt": 12}, headers=admin.headers), 422)
    assert client.get(url, headers=admin.headers).json()["rankings_per_prompt"] == 5


def test_patch_rename_conflict_and_unknown_project(client, admin) -> None:
    create_project(client, admin, name="one")
    pid = create_project(client, admin, name="two")["id"]
    assert_error(client.patch(f"/api/v1/projects/{pid}", json={"name": "one"}, headers=admin.headers), 409)
    assert_error(client.get("/api/v1/projects/9999", headers=admin.headers), 404, "project_not_found")
    assert_error(client.patch("/api/v1/projects/9999", json={}, headers=admin.headers), 404)
