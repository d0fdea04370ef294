"""The browser pages through the real app: login, roles, CSRF, the project form, versions, uploads, XSS."""

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from tests.conftest import CSRF_INPUT, CSRF_META, Account, browser_login, create_project

HTMX = {"HX-Request": "true"}
FORM_FIELDS = {
    "name": "summaries-v1",
    "instructions_md": "# Rank by faithfulness\r\n\r\nPrefer summaries that add nothing.",
    "completions_per_prompt": "3",
    "rankings_per_prompt": "2",
    "flags": "unsafe, made_up\nnonsense",
    "model": "default",
    "temperature": "0.7",
    "top_p": "0.9",
    "max_new_tokens": "96",
}


def login_form_token(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return CSRF_INPUT.search(page.text).group(1)


def post_login(client: TestClient, username: str, password: str, next_url: str = "/"):
    token = login_form_token(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


def projects_via_api(client: TestClient, admin: Account) -> list[dict]:
    response = client.get("/api/v1/projects", headers=admin.headers)
    assert response.status_code == 200
    return response.json()["items"]


def prompts_via_api(client: TestClient, admin: Account, project_id: int) -> list[dict]:
    response = client.get(f"/api/v1/projects/{project_id}/prompts", headers=admin.headers)
    assert response.status_code == 200
    return response.json()["items"]


def jsonl(*records: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


class _Tags(HTMLParser):
    """Every start tag (with its attributes) inside the element whose id is `scope`."""

    VOID = {"br", "hr", "img", "input", "meta", "link", "source", "wbr", "col", "area", "base", "embed"}

    def __init__(self, scope: str):
        super().__init__(convert_charrefs=True)
        self.scope = scope
        self.depth = 0
        self.found = False
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.tags.append((tag, dict(attrs)))
            if tag not in self.VOID:
                self.depth += 1
        elif dict(attrs).get("id") == self.scope:
            self.found = True
            self.depth = 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in self.VOID:
            self.depth -= 1


def tags_inside(html: str, element_id: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags(element_id)
    parser.feed(html)
    assert parser.found, f"no element with id={element_id!r} in the page"
    return parser.tags


def assert_inert(tags: list[tuple[str, dict[str, str | None]]]) -> None:
    assert tags, "the instructions rendered to nothing at all"
    for tag, attrs in tags:
        assert tag not in {"script", "iframe", "object", "embed", "style"}, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}=...> survived"
            if name in {"href", "src"}:
                assert not (value or "").strip().lower().startswith(("javascript:", "data:", "vbscript:"))


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
