"""The login and logout pages, sessions and CSRF, through the real app."""

from fastapi.testclient import TestClient

from app.settings import Settings
from tests.conftest import CSRF_INPUT, CSRF_META, Account, browser_login, create_project
from tests.helpers import FORM_FIELDS, post_login, projects_via_api

# --- login ---------------------------------------------------------------------------------------


def test_login_page_renders_a_form_with_its_csrf_field(client: TestClient) -> None:
    page = client.get("/login?next=/projects")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert CSRF_INPUT.search(page.text).group(1)
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert 'name="next" value="/projects"' in page.text
    assert "autofocus" in page.text
    assert '<form method="post" action="/login"' in page.text
    assert "preflab_login_csrf" in page.headers["set-cookie"]


def test_wrong_password_re_renders_the_form_with_401(client: TestClient, admin: Account) -> None:
    response = post_login(client, admin.username, "not the password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert CSRF_INPUT.search(response.text), "the form comes back, ready for another try"
    assert f'value="{admin.username}"' in response.text
    assert "preflab_session" not in response.cookies


def test_unknown_user_gets_401(client: TestClient) -> None:
    response = post_login(client, "nobody-here", "whatever")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


def test_login_without_its_csrf_token_is_refused(client: TestClient, admin: Account) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"username": admin.username, "password": admin.password}, follow_redirects=False
    )
    assert response.status_code == 403
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_login_then_the_project_list_shows_the_project(client: TestClient, admin: Account) -> None:
    project = create_project(client, admin)
    response = post_login(client, admin.username, admin.password, next_url="/projects")
    assert response.status_code == 303
    assert response.headers["location"] == "/projects"
    page = client.get("/projects")
    assert page.status_code == 200
    assert CSRF_META.search(page.text).group(1)
    assert project["name"] in page.text
    assert f'href="/projects/{project["id"]}"' in page.text
    assert 'href="/projects/new"' in page.text  # admins may create projects
    assert 'action="/logout"' in page.text


def test_anonymous_visitors_are_sent_to_login(client: TestClient) -> None:
    for path, target in [
        ("/projects", "/login?next=/projects"),
        ("/projects/3", "/login?next=/projects/3"),
        ("/", "/login?next=/"),
    ]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == target


def test_the_login_rate_limit_holds_even_with_the_right_password(
    client: TestClient, admin: Account, settings: Settings
) -> None:
    statuses = [post_login(client, admin.username, f"wrong {i}").status_code for i in range(6)]
    allowed = settings.login_max_failures_per_user
    assert statuses[:allowed] == [401] * allowed
    assert set(statuses[allowed:]) <= {429}
    response = post_login(client, admin.username, admin.password)
    assert response.status_code == 429
    assert "Too many failed logins" in response.text
    assert "preflab_session" not in response.cookies


# --- logout and CSRF -----------------------------------------------------------------------------


def test_logout_is_a_post_that_needs_csrf_and_ends_the_session(client: TestClient, admin: Account) -> None:
    csrf = browser_login(client, admin)
    assert client.get("/logout", follow_redirects=False).status_code == 405
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert client.get("/projects").status_code == 200, "a refused logout leaves the session alone"

    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_a_form_post_without_the_csrf_token_changes_nothing(client: TestClient, admin: Account) -> None:
    csrf = browser_login(client, admin)
    response = client.post("/projects/new", data=FORM_FIELDS, follow_redirects=False)
    assert response.status_code == 403
    assert "CSRF" in response.text
    response = client.post(
        "/projects/new", data={**FORM_FIELDS, "csrf_token": csrf + "x"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert projects_via_api(client, admin) == []
