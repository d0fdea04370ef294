"""Tokens, roles and the error shape of the users API."""

import pytest

from tests.helpers import assert_error

ROLES = ["admin", "labeler", "researcher", "worker"]


def test_me_with_token(client, make_account) -> None:
    for role in ROLES:
        account = make_account(role)
        response = client.get("/api/v1/me", headers=account.headers)
        assert response.status_code == 200
        assert response.json() == {"id": account.user_id, "username": account.username, "role": role}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer pl_nope"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
)
def test_missing_or_bad_token_is_401(client, headers) -> None:
    error = assert_error(client.get("/api/v1/me", headers=headers), 401)
    assert error["code"] in {"not_authenticated", "bad_token"}


def test_admin_creates_user_and_token_shown_once_stored_hashed(client, admin, db) -> None:
    created = client.post(
        "/api/v1/users",
        json={"username": "ann", "password": "long enough pw", "role": "labeler"},
        headers=admin.headers,
    )
    assert created.status_code == 201
    assert created.json()["role"] == "labeler" and "password" not in created.json()
    token = client.post(f"/api/v1/users/{created.json()['id']}/tokens", headers=admin.headers)
    assert token.status_code == 201
    plain = token.json()["token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"}).json()["username"] == "ann"

    from sqlalchemy import text

    stored = db.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert plain not in stored and all(len(h) == 64 for h in stored)
    pw_hash = db.execute(text("SELECT password_hash FROM users WHERE username = 'ann'")).scalar_one()
    assert pw_hash.startswith("$argon2id$")


def test_duplicate_username_is_409_case_insensitive(client, admin) -> None:
    body = {"username": "Bea", "password": "long enough pw", "role": "researcher"}
    assert client.post("/api/v1/users", json=body, headers=admin.headers).status_code == 201
    body["username"] = "bea"
    assert_error(client.post("/api/v1/users", json=body, headers=admin.headers), 409, "username_taken")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "x", "password": "long enough pw", "role": "labeler"}, "username"),
        ({"username": "carl", "password": "short", "role": "labeler"}, "password"),
        ({"username": "carl", "password": "long enough pw", "role": "boss"}, "role"),
        ({"username": "carl", "role": "labeler", "extra": 1}, "extra"),
    ],
)
def test_bad_user_body_is_422_naming_the_field(client, admin, body, field) -> None:
    error = assert_error(client.post("/api/v1/users", json=body, headers=admin.headers), 422)
    assert error["details"]["field"] == field


def test_token_for_unknown_user_is_404(client, admin) -> None:
    assert_error(client.post("/api/v1/users/999/tokens", headers=admin.headers), 404, "user_not_found")


# Every route's roles, and 401 without credentials: tests/auth/test_roles.py.


def test_unknown_route_uses_error_shape(client, admin) -> None:
    assert_error(client.get("/api/v1/nothing-here", headers=admin.headers), 404)


def test_cookie_session_cannot_write_json_without_csrf(client, admin) -> None:
    from tests.conftest import browser_login

    csrf = browser_login(client, admin)
    body = {"name": "via-cookie"}
    assert_error(client.post("/api/v1/projects", json=body), 403, "csrf_failed")
    assert_error(
        client.post("/api/v1/projects", json=body, headers={"X-CSRF-Token": "wrong"}), 403, "csrf_failed"
    )
    ok = client.post("/api/v1/projects", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    names = [p["name"] for p in client.get("/api/v1/projects").json()["items"]]
    assert names == ["via-cookie"], "the rejected requests must have written nothing"
