"""Helpers shared by test modules: assertions, and the API or browser steps several tests take
(fixtures live in conftest.py)."""

import json
from html.parser import HTMLParser

from fastapi.testclient import TestClient

from tests.conftest import CSRF_INPUT, Account


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is an error in the API's shape (API.md "Errors"), with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    assert body["error"]["message"], "every error carries a sentence a person can act on"
    if code:
        assert body["error"]["code"] == code
    return body["error"]


# --- uploads (API) ---

JSONL = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}


def upload(client, admin, project, body: bytes | str, headers: dict, **params):
    data = body.encode() if isinstance(body, str) else body
    return client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        content=data,
        headers={**admin.headers, **headers},
        params=params,
    )


# --- training runs: the worker's part, played by the test ---


def finish_training_job(client, worker, kind: str, job_id: int, metrics: dict | None = None) -> dict:
    """Play the worker's part of a training job: claim it and complete it with its artifact path."""
    claimed = client.post(
        "/api/v1/worker/claim", json={"kinds": [kind], "worker": "test"}, headers=worker.headers
    ).json()
    assert claimed["id"] == job_id, claimed
    done = {"attempt": claimed["attempts"], "artifact": f"{kind}/job-{job_id}", "metrics": metrics or {}}
    finished = client.post(f"/api/v1/jobs/{job_id}/complete", json=done, headers=worker.headers).json()
    assert finished["status"] == "succeeded", finished
    return finished


# What a worker reports for a reward model that learned: held-out accuracy with its 95% interval above 0.5
LEARNED = {
    "accuracy/eval": 0.8,
    "accuracy/eval_low": 0.7,
    "accuracy/eval_high": 0.88,
    "eval/pairs": 120.0,
    "eval/prompts": 20.0,
}
AT_CHANCE = LEARNED | {"accuracy/eval": 0.55, "accuracy/eval_low": 0.41, "accuracy/eval_high": 0.68}


def registered_reward_model(client, admin, worker, project_id: int, metrics: dict = LEARNED) -> int:
    # forced: the project has no comparisons; only the registration is under test
    queued = client.post(
        f"/api/v1/projects/{project_id}/train/reward", json={"force": True}, headers=admin.headers
    )
    return finish_training_job(client, worker, "reward", queued.json()["job_id"], metrics)["model_id"]


# --- the login form ---


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


# --- pages ---

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


# --- the app's routes ---


def app_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, API and pages, with the prefixes routers were included at.
    FastAPI 0.165 keeps included routers as `_IncludedRouter` objects; older versions flatten them."""
    found: list[tuple[str, str]] = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif getattr(route, "methods", None) and hasattr(route, "endpoint"):
                found.extend((method, prefix + route.path) for method in route.methods if method != "HEAD")

    walk(app.router.routes, "")
    return found
