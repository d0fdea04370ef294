"""Assertions shared by test modules (fixtures live in conftest.py)."""


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is an error in the API's shape (API.md "Errors"), with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    assert body["error"]["message"], "every error carries a sentence a person can act on"
    if code:
        assert body["error"]["code"] == code
    return body["error"]
