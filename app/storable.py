"""What both databases can store, checked before a statement reaches them.

Postgres refuses NUL (U+0000) in text and in JSONB, and NaN or Infinity in JSON; SQLite stores them and
hands them back to exporters and other databases that cannot. Both are refused alike, as a 422 that
names the field, so a file or a request with one is fixed once, whatever the database. The database
layer (app.db) runs these checks on every statement, so no route can forget them.
"""

import math
from typing import Any

from starlette.requests import Request

from app.errors import InvalidInput

MAX_JSON_DEPTH = 32
"""Nesting of a stored JSON value (metadata, metrics): deep enough for any real record, and far from
the recursion limits of the parsers and serialisers on the way."""


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Raise InvalidInput if ``value`` (text, or a JSON value) cannot be stored; ``where`` names it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(
                f"{where}: the text contains a NUL character (U+0000), which cannot be stored; remove it.",
                code="unstorable_value",
                details={"field": where},
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(
                f"{where}: {value} is not a finite number; JSON cannot hold NaN or Infinity (send null).",
                code="unstorable_value",
                details={"field": where},
            )
    elif isinstance(value, dict | list | tuple):
        if depth >= MAX_JSON_DEPTH:
            raise InvalidInput(
                f"{where}: nested more than {MAX_JSON_DEPTH} levels deep.",
                code="unstorable_value",
                details={"field": where},
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                check_storable(key, where, depth + 1)
            check_storable(item, f"{where}.{key}", depth + 1)


async def refuse_unstorable_input(request: Request) -> None:
    """App-wide dependency: the query, a JSON body and form fields checked at the edge, so the 422 names
    the field as the caller sent it (app.db checks again on the way in, whatever the route)."""
    for key, value in request.query_params.multi_items():
        check_storable(value, key)
    content_type = request.headers.get("content-type", "")
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return
    if content_type.startswith("application/json"):
        try:
            body = await request.json()  # cached: the route's own parse already ran
        except (ValueError, RecursionError):
            return  # not JSON: the route's validation answers
        if isinstance(body, dict):
            for key, value in body.items():
                check_storable(value, str(key))
        else:
            check_storable(body, "body")
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached; files are the importers' to check
        for key, value in form.multi_items():
            if isinstance(value, str):
                check_storable(value, key)
