"""Project membership: with members, only they are handed the project's tasks and see it; with none the
project is open to every labeler. By API and on the project page."""

import pytest

from tests.conftest import browser_login, create_project
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts

API = "/api/v1"


@pytest.fixture
def ready_project(client, admin) -> dict:
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=3, k=4)
    return project


def members_url(project_id: int) -> str:
    return f"{API}/projects/{project_id}/members"


def next_task(client, labeler, project_id: int | None = None):
    params = {"project_id": project_id} if project_id else {}
    return client.get(f"{API}/tasks/next", params=params, headers=labeler.headers)


def test_a_team_keeps_the_project_to_its_members(client, admin, make_account, ready_project) -> None:
    pid = ready_project["id"]
    member, outsider = make_account("labeler"), make_account("labeler")
    assert client.get(members_url(pid), headers=admin.headers).json()["items"] == []
    added = client.post(members_url(pid), json={"user_id": member.user_id}, headers=admin.headers)
    assert added.status_code == 201 and added.json() == {"id": member.user_id, "username": member.username}
    again = client.post(members_url(pid), json={"user_id": member.user_id}, headers=admin.headers)
    assert (
        again.status_code == 201
        and len(client.get(members_url(pid), headers=admin.headers).json()["items"]) == 1
    )

    assert next_task(client, outsider).status_code == 204, "nothing for someone outside the team"
    assert_error(next_task(client, outsider, pid), 404)  # as if it did not exist
    assert_error(
        client.get(f"{API}/tasks/progress", params={"project_id": pid}, headers=outsider.headers), 404
    )
    assert next_task(client, member, pid).status_code == 200

    removed = client.request(
        "DELETE", members_url(pid), json={"user_id": member.user_id}, headers=admin.headers
    )
    assert removed.status_code == 204
    assert next_task(client, outsider, pid).status_code == 200, "no members: open to every labeler again"
    assert_error(client.delete(f"{members_url(pid)}/{member.user_id}", headers=admin.headers), 404)


def test_only_existing_labelers_join_a_team(client, admin, make_account, ready_project) -> None:
    pid = ready_project["id"]
    researcher = make_account("researcher")
    for user_id in (researcher.user_id, 987654):
        refused = client.post(members_url(pid), json={"user_id": user_id}, headers=admin.headers)
        assert_error(refused, 422)
        assert refused.json()["error"]["code"] == "not_a_labeler"
    assert_error(client.post(members_url(pid), json={"user": 1}, headers=admin.headers), 422)
    assert client.get(members_url(pid), headers=admin.headers).json()["items"] == []


def test_the_project_page_team_card_and_the_labelers_home(client, app, admin, make_account) -> None:
    from fastapi.testclient import TestClient

    mine = create_project(client, admin, name="team-only")
    theirs = create_project(client, admin, name="open-to-all")
    for project in (mine, theirs):
        seed_ready_prompts(client, admin, project["id"], n=2, k=4)
    member, outsider = make_account("labeler"), make_account("labeler")
    with TestClient(app) as browser:
        csrf = browser_login(browser, admin)
        page = browser.get(f"/projects/{mine['id']}")
        assert "No members: every labeler" in page.text
        added = browser.post(
            f"/projects/{mine['id']}/members", data={"csrf_token": csrf, "user_id": member.user_id}
        )
        assert added.status_code == 200 and f"Remove {member.username} from the team" in added.text
        refused = browser.post(
            f"/projects/{mine['id']}/members", data={"csrf_token": csrf, "user_id": admin.user_id}
        )
        assert refused.status_code == 422 and "is not a labeler" in refused.text
    with TestClient(app) as browser:
        browser_login(browser, outsider)
        home = browser.get("/").text
        assert "open-to-all" in home and "team-only" not in home
        assert browser.get(f"/label?project_id={mine['id']}").status_code == 404
    with TestClient(app) as browser:
        browser_login(browser, member)
        assert "team-only" in browser.get("/").text
    with TestClient(app) as browser:
        csrf = browser_login(browser, admin)
        removed = browser.post(
            f"/projects/{mine['id']}/members/{member.user_id}/remove", data={"csrf_token": csrf}
        )
        assert "No members: every labeler" in removed.text
