"""An admin runs the team's accounts: role, disable/enable (tokens and sessions stop at once), password
reset, token list and revoke, by API and browser; a new token is shown once, after a redirect."""

from dataclasses import replace

from app.auth.user_pages import NEW_TOKEN_COOKIE
from tests.conftest import CSRF_INPUT, PASSWORD, browser_login
from tests.helpers import assert_error

API = "/api/v1"


def patch_user(client, admin, user_id: int, **body):
    return client.patch(f"{API}/users/{user_id}", json=body, headers=admin.headers)


def test_disabling_stops_tokens_and_sessions_at_once_and_enabling_restores_the_tokens(
    client, app, admin, make_account
) -> None:
    from fastapi.testclient import TestClient

    labeler = make_account("labeler")
    with TestClient(app) as browser:
        browser_login(browser, labeler)
        assert browser.get("/label", follow_redirects=False).status_code == 200
        response = patch_user(client, admin, labeler.user_id, disabled=True)
        assert response.status_code == 200 and response.json()["is_active"] is False
        assert_error(client.get(f"{API}/me", headers=labeler.headers), 401)
        assert browser.get("/label", follow_redirects=False).status_code in (303, 401), "the session ended"
    assert patch_user(client, admin, labeler.user_id, disabled=False).json()["is_active"] is True
    assert client.get(f"{API}/me", headers=labeler.headers).status_code == 200


def test_role_change_and_password_reset(client, app, admin, make_account) -> None:
    from fastapi.testclient import TestClient

    account = make_account("labeler")
    assert patch_user(client, admin, account.user_id, role="researcher").json()["role"] == "researcher"
    assert client.get(f"{API}/projects", headers=account.headers).status_code == 200, "now a researcher"
    assert_error(patch_user(client, admin, account.user_id, password="short"), 422)
    assert patch_user(client, admin, account.user_id, password="a new passphrase").status_code == 200
    with TestClient(app) as browser:
        token = CSRF_INPUT.search(browser.get("/login").text).group(1)
        refused = browser.post(
            "/login", data={"username": account.username, "password": PASSWORD, "csrf_token": token}
        )
        assert "Wrong username or password." in refused.text, "the old password no longer works"
        browser_login(browser, replace(account, password="a new passphrase"))  # the new one does
    assert_error(patch_user(client, admin, account.user_id, role="overlord"), 422)
    assert_error(patch_user(client, admin, account.user_id, is_active=True), 422)


def test_admins_cannot_lock_themselves_or_the_server_out(client, admin, make_account) -> None:
    assert_error(patch_user(client, admin, admin.user_id, disabled=True), 409)
    assert_error(patch_user(client, admin, admin.user_id, role="labeler"), 409)
    other = make_account("admin")
    assert patch_user(client, other, admin.user_id, disabled=True).status_code == 200
    # `other` is now the only active admin: nobody may disable or demote them
    assert_error(patch_user(client, other, other.user_id, role="labeler"), 409)
    assert patch_user(client, other, admin.user_id, disabled=False).status_code == 200


def test_tokens_are_listed_without_secrets_and_revoked_one_by_one(client, admin, make_account) -> None:
    worker = make_account("worker")
    assert client.get(f"{API}/me", headers=worker.headers).status_code == 200  # the token is used
    listed = client.get(f"{API}/users/{worker.user_id}/tokens", headers=admin.headers).json()["items"]
    (token,) = listed
    assert set(token) == {"id", "prefix", "created_at", "last_used_at", "revoked_at"}
    assert worker.token.startswith(token["prefix"]) and token["last_used_at"] is not None
    other = make_account("labeler")
    stranger = client.delete(f"{API}/users/{other.user_id}/tokens/{token['id']}", headers=admin.headers)
    assert_error(stranger, 404)
    assert (
        client.delete(f"{API}/users/{worker.user_id}/tokens/{token['id']}", headers=admin.headers).status_code
        == 204
    )
    assert_error(client.get(f"{API}/me", headers=worker.headers), 401)
    again = client.get(f"{API}/users/{worker.user_id}/tokens", headers=admin.headers).json()["items"]
    assert again[0]["revoked_at"] is not None


def test_a_new_token_is_shown_once_after_a_redirect_and_works(client, app, admin, make_account) -> None:
    from fastapi.testclient import TestClient

    worker = make_account("worker")
    with TestClient(app) as browser:
        csrf = browser_login(browser, admin)
        minted = browser.post(
            f"/users/{worker.user_id}/tokens", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert minted.status_code == 303 and minted.headers["location"] == f"/users/{worker.user_id}"
        assert "new-token" not in minted.text
        page = browser.get(f"/users/{worker.user_id}")
        secret = page.text.split('id="new-token" type="text" value="')[1].split('"')[0]
        assert page.headers["cache-control"] == "no-store"
        assert client.get(f"{API}/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        assert NEW_TOKEN_COOKIE not in browser.cookies
        assert 'id="new-token"' not in browser.get(f"/users/{worker.user_id}").text, "shown once"
        tokens = client.get(f"{API}/users/{worker.user_id}/tokens", headers=admin.headers).json()["items"]
        assert len(tokens) == 2, "a refresh mints nothing"

        # a forged cookie shows nothing
        browser.cookies.set(
            NEW_TOKEN_COOKIE, f"{worker.user_id}.pl_forged.00", path=f"/users/{worker.user_id}"
        )
        assert 'id="new-token"' not in browser.get(f"/users/{worker.user_id}").text

        # revoke from the page, disable from the page
        newest = tokens[0]["id"]
        revoked = browser.post(f"/users/{worker.user_id}/tokens/{newest}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 200 and "revoked" in revoked.text
        assert_error(client.get(f"{API}/me", headers={"Authorization": f"Bearer {secret}"}), 401)
        disabled = browser.post(f"/users/{worker.user_id}", data={"csrf_token": csrf, "disabled": "true"})
        assert "Enable " in disabled.text
        refused = browser.post(f"/users/{admin.user_id}", data={"csrf_token": csrf, "disabled": "true"})
        assert refused.status_code == 409 and "cannot disable your own account" in refused.text
