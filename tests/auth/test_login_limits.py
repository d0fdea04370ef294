"""Login limits: atomic under concurrency, no lockout a stranger can cause, X-Forwarded-For only from a
trusted proxy (issue 13)."""

import threading

import httpx
from fastapi.testclient import TestClient

from tests.conftest import CSRF_INPUT, app_on
from tests.helpers import post_login


def client_at(app, address: str) -> TestClient:
    """A browser connecting from `address`."""
    return TestClient(app, base_url="http://testserver", client=(address, 40000))


def test_a_stranger_s_wrong_passwords_do_not_lock_the_user_out(app, admin, settings) -> None:
    limit = settings.login_max_failures_per_user
    with client_at(app, "203.0.113.9") as stranger:
        statuses = [post_login(stranger, admin.username, f"guess {i}").status_code for i in range(limit + 3)]
        assert statuses == [401] * limit + [429] * 3
        assert post_login(stranger, admin.username, admin.password).status_code == 429, (
            "the guesser's own address stays locked, right password or not"
        )
        # Spelled differently (case, width), it is the same user and the same limit.
        assert post_login(stranger, admin.username.upper(), "guess").status_code == 429
    with client_at(app, "198.51.100.7") as owner:
        response = post_login(owner, admin.username, admin.password)
        assert response.status_code == 303 and "preflab_session" in response.cookies


def test_a_successful_login_gives_its_pair_a_fresh_start(app, admin, settings) -> None:
    limit = settings.login_max_failures_per_user
    with client_at(app, "192.0.2.1") as browser:
        for i in range(limit - 1):
            assert post_login(browser, admin.username, f"typo {i}").status_code == 401
        assert post_login(browser, admin.username, admin.password).status_code == 303
        browser.cookies.clear()
        statuses = [post_login(browser, admin.username, f"typo {i}").status_code for i in range(limit)]
        assert statuses == [401] * limit


def test_one_address_trying_many_usernames_is_limited(app, make_account, settings) -> None:
    limit = settings.login_max_failures_per_address
    with client_at(app, "192.0.2.50") as sprayer:
        statuses = [post_login(sprayer, f"user{i}", "password").status_code for i in range(limit + 2)]
    assert statuses == [401] * limit + [429] * 2


def test_concurrent_wrong_passwords_are_counted_atomically(live_server, admin, settings) -> None:
    """100 guesses at once for one user from one address: only the first `limit` are checked at all
    (before, on Postgres, 34 of 100 were checked against a limit of 5)."""
    guesses = 100
    barrier = threading.Barrier(guesses)
    statuses: list[int] = []

    def guess(i: int) -> None:
        with httpx.Client(base_url=live_server, timeout=120) as http:
            form = http.get("/login")
            token = CSRF_INPUT.search(form.text).group(1)
            barrier.wait()
            response = http.post(
                "/login", data={"username": admin.username, "password": f"guess {i}", "csrf_token": token}
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(statuses) == guesses
    assert statuses.count(401) == settings.login_max_failures_per_user, sorted(statuses)
    assert statuses.count(429) == guesses - settings.login_max_failures_per_user


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(app, admin, settings, engine) -> None:
    limit = settings.login_max_failures_per_user

    def guesses_from(test_client: TestClient, forwarded: str) -> list[int]:
        test_client.headers["X-Forwarded-For"] = forwarded
        return [post_login(test_client, admin.username, "wrong").status_code for _ in range(limit)]

    # Off by default: a header any client can send does not give it a fresh address.
    with client_at(app, "127.0.0.1") as direct:
        assert guesses_from(direct, "10.0.0.1") == [401] * limit
        assert guesses_from(direct, "10.0.0.2") == [429] * limit

    proxied = app_on(settings.model_copy(update={"trusted_proxies": "127.0.0.2, 10.9.0.0/16"}), engine)
    with client_at(proxied, "10.9.3.4") as proxy:  # behind a trusted proxy: the client it names counts
        assert guesses_from(proxy, "10.0.0.3") == [401] * limit
        assert guesses_from(proxy, "10.0.0.4") == [401] * limit
        assert guesses_from(proxy, "10.0.0.4") == [429] * limit
    with client_at(proxied, "192.0.2.200") as untrusted:  # not one of the proxies: the header is ignored
        assert guesses_from(untrusted, "10.0.0.5") == [401] * limit
        assert guesses_from(untrusted, "10.0.0.6") == [429] * limit
