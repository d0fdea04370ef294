"""Who may call what, for every route the app serves (API and pages), read from the app itself.

POLICY is the security policy as data: each route and the roles allowed on it. The first test makes a
new route fail until it is given an entry here; the others call every route as every role, and
anonymously, and check that the app enforces the entry (403 for a role not allowed, before any lookup
of the ids in the path; 401 or the login page for no credentials).
"""

import pytest

from tests.conftest import create_project
from tests.helpers import app_routes

ADMIN, RESEARCHER, LABELER, WORKER = "admin", "researcher", "labeler", "worker"
EVERYONE = {ADMIN, RESEARCHER, LABELER, WORKER}
READERS = {ADMIN, RESEARCHER}  # project settings and data
PUBLIC = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/healthz"),
    ("GET", "/api/v1/docs"),
    ("GET", "/api/v1/redoc"),
    ("GET", "/api/v1/openapi.json"),
}
API = "/api/v1"
POLICY: dict[tuple[str, str], set[str]] = {
    # users and tokens
    ("POST", f"{API}/users"): {ADMIN},
    ("GET", f"{API}/users"): {ADMIN},
    ("POST", f"{API}/users/{{user_id}}/tokens"): {ADMIN},
    ("PATCH", f"{API}/users/{{user_id}}"): {ADMIN},
    ("GET", f"{API}/users/{{user_id}}/tokens"): {ADMIN},
    ("DELETE", f"{API}/users/{{user_id}}/tokens/{{token_id}}"): {ADMIN},
    ("GET", f"{API}/me"): EVERYONE,
    # projects, prompts, imports, exports, agreement
    ("POST", f"{API}/projects"): {ADMIN},
    ("GET", f"{API}/projects"): READERS,
    ("GET", f"{API}/projects/{{project_id}}"): READERS,
    ("PATCH", f"{API}/projects/{{project_id}}"): {ADMIN},
    ("GET", f"{API}/projects/{{project_id}}/members"): READERS,
    ("POST", f"{API}/projects/{{project_id}}/members"): {ADMIN},
    ("DELETE", f"{API}/projects/{{project_id}}/members"): {ADMIN},
    ("DELETE", f"{API}/projects/{{project_id}}/members/{{user_id}}"): {ADMIN},
    ("GET", f"{API}/projects/{{project_id}}/instructions"): READERS,
    ("POST", f"{API}/projects/{{project_id}}/prompts"): {ADMIN},
    ("GET", f"{API}/projects/{{project_id}}/prompts"): {ADMIN, WORKER},
    ("POST", f"{API}/projects/{{project_id}}/import"): {ADMIN},
    ("GET", f"{API}/projects/{{project_id}}/export"): {ADMIN, RESEARCHER, WORKER},
    ("GET", f"{API}/projects/{{project_id}}/agreement"): READERS,
    ("GET", f"{API}/projects/{{project_id}}/labelers"): READERS,
    ("PATCH", f"{API}/projects/{{project_id}}/labelers/{{user_id}}"): {ADMIN},
    ("POST", f"{API}/rankings/{{ranking_id}}/gold"): {ADMIN},
    # labeling
    ("GET", f"{API}/tasks/next"): {LABELER},
    ("GET", f"{API}/tasks/progress"): {LABELER},
    ("POST", f"{API}/assignments/{{assignment_id}}/ranking"): {LABELER},
    ("POST", f"{API}/assignments/{{assignment_id}}/skip"): {LABELER},
    ("POST", f"{API}/assignments/{{assignment_id}}/demonstration"): {LABELER},
    # jobs and the worker protocol
    ("POST", f"{API}/projects/{{project_id}}/generate"): {ADMIN},
    ("POST", f"{API}/projects/{{project_id}}/train/reward"): {ADMIN},
    ("POST", f"{API}/projects/{{project_id}}/train/ppo"): {ADMIN},
    ("POST", f"{API}/projects/{{project_id}}/train/sft"): {ADMIN},
    ("POST", f"{API}/projects/{{project_id}}/train/dpo"): {ADMIN},
    ("GET", f"{API}/projects/{{project_id}}/jobs"): {ADMIN},
    ("GET", f"{API}/jobs/{{job_id}}"): {ADMIN, WORKER},
    ("GET", f"{API}/jobs/{{job_id}}/metrics"): {ADMIN, WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/cancel"): {ADMIN},
    ("POST", f"{API}/jobs/{{job_id}}/retry"): {ADMIN},
    ("POST", f"{API}/worker/claim"): {WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/events"): {WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/complete"): {WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/fail"): {WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/heartbeat"): {WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/release"): {WORKER},
    ("POST", f"{API}/jobs/{{job_id}}/completions"): {WORKER},
    # models and evaluation rounds
    ("GET", f"{API}/models"): {ADMIN, RESEARCHER, WORKER},
    ("GET", f"{API}/models/{{model_id}}"): {ADMIN, RESEARCHER, WORKER},
    ("POST", f"{API}/models/import"): {ADMIN},
    ("POST", f"{API}/projects/{{project_id}}/evaluations"): {ADMIN},
    ("GET", f"{API}/projects/{{project_id}}/evaluations"): READERS,
    ("GET", f"{API}/evaluations/{{evaluation_id}}"): READERS,
    ("POST", f"{API}/evaluations/{{evaluation_id}}/generate"): {ADMIN},
    # pages
    ("GET", "/"): EVERYONE,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/users"): {ADMIN},
    ("POST", "/users"): {ADMIN},
    ("POST", "/users/{user_id}/tokens"): {ADMIN},
    ("GET", "/users/{user_id}"): {ADMIN},
    ("POST", "/users/{user_id}"): {ADMIN},
    ("POST", "/users/{user_id}/tokens/{token_id}/revoke"): {ADMIN},
    ("GET", "/projects"): READERS,
    ("GET", "/projects/new"): {ADMIN},
    ("POST", "/projects/new"): {ADMIN},
    ("POST", "/projects/preview-instructions"): {ADMIN},
    ("GET", "/projects/{project_id}"): READERS,
    ("GET", "/projects/{project_id}/edit"): {ADMIN},
    ("POST", "/projects/{project_id}/edit"): {ADMIN},
    ("GET", "/projects/{project_id}/instructions/{version}"): READERS,
    ("POST", "/projects/{project_id}/generation-model"): {ADMIN},
    ("POST", "/projects/{project_id}/upload"): {ADMIN},
    ("POST", "/projects/{project_id}/members"): {ADMIN},
    ("POST", "/projects/{project_id}/members/{user_id}/remove"): {ADMIN},
    ("GET", "/projects/{project_id}/jobs"): {ADMIN},
    ("POST", "/projects/{project_id}/generate"): {ADMIN},
    ("POST", "/projects/{project_id}/jobs/{job_id}/{action}"): {ADMIN},
    ("POST", "/projects/{project_id}/train/reward"): {ADMIN},
    ("POST", "/projects/{project_id}/train/ppo"): {ADMIN},
    ("POST", "/projects/{project_id}/train/sft"): {ADMIN},
    ("POST", "/projects/{project_id}/train/dpo"): {ADMIN},
    ("GET", "/projects/{project_id}/agreement"): READERS,
    ("GET", "/projects/{project_id}/labelers"): READERS,
    ("POST", "/projects/{project_id}/labelers/{user_id}"): {ADMIN},
    ("GET", "/projects/{project_id}/demonstrations"): {ADMIN},
    ("GET", "/projects/{project_id}/export"): READERS,
    ("GET", "/projects/{project_id}/evaluations"): READERS,
    ("POST", "/projects/{project_id}/evaluations"): {ADMIN},
    ("GET", "/evaluations/{evaluation_id}"): READERS,
    ("POST", "/evaluations/{evaluation_id}/generate"): {ADMIN},
    ("GET", "/jobs/{job_id}"): READERS,
    ("GET", "/models"): READERS,
    ("POST", "/models/import"): {ADMIN},
    ("GET", "/label"): {LABELER},
    ("GET", "/projects/{project_id}/preview"): {ADMIN},
    ("POST", "/label/{assignment_id}/ranking"): {LABELER},
    ("POST", "/label/{assignment_id}/skip"): {LABELER},
    ("POST", "/label/{assignment_id}/demonstration"): {LABELER},
}
UNKNOWN_ID = 987654  # ids in paths that name nothing: a refused role must not learn that


def url(path: str, project_id: int) -> str:
    return path.format(
        project_id=project_id,
        user_id=UNKNOWN_ID,
        token_id=UNKNOWN_ID,
        ranking_id=UNKNOWN_ID,
        job_id=UNKNOWN_ID,
        model_id=UNKNOWN_ID,
        assignment_id=UNKNOWN_ID,
        evaluation_id=UNKNOWN_ID,
        version=1,
        action="retry",
    )


def test_every_route_has_a_role_policy(app) -> None:
    served = set(app_routes(app))
    assert served - PUBLIC - set(POLICY) == set(), "routes with no entry in POLICY: decide who may call them"
    assert set(POLICY) - served == set(), "POLICY names routes the app does not serve"


@pytest.mark.parametrize("role", sorted(EVERYONE))
def test_every_route_refuses_the_roles_it_does_not_allow(client, admin, make_account, role) -> None:
    project_id = create_project(client, admin)["id"]
    account = admin if role == ADMIN else make_account(role)
    wrong = []
    for (method, path), allowed in POLICY.items():
        response = client.request(method, url(path, project_id), headers=account.headers)
        refused = response.status_code == 403
        if (role in allowed) == refused or response.status_code == 401:
            wrong.append(f"{method} {path}: {response.status_code}")
        if refused and path.startswith(API):
            assert response.json()["error"]["code"] == "wrong_role", (method, path)
    assert not wrong, f"as {role}: " + ", ".join(wrong)


def test_every_route_but_the_public_ones_needs_credentials(client, admin) -> None:
    project_id = create_project(client, admin)["id"]
    for method, path in POLICY:
        response = client.request(method, url(path, project_id), follow_redirects=False)
        if path.startswith(API):
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["error"]["code"] in ("not_authenticated", "bad_token")
        else:  # a page sends the visitor to the login form (303), or refuses a write without a session
            assert response.status_code in (303, 401, 403), (method, path, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login"), (method, path)
