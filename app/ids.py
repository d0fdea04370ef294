"""Ids as the database holds them, and the one way to read one from text.

Ids are INTEGER columns: Postgres refuses anything past 2^31 - 1 (and SQLite overflows at 2^63), so an
id outside 1..MAX_ID can name nothing and is refused at the edge with a 422, never sent to the
database. Text is read strictly: ASCII digits only, no sign, no leading zero. ``str.isdigit()``
accepts "²" and "٤٢" (which ``int()`` then rejects or reads), and "042" would be a second spelling of 42.
"""

from typing import Annotated

from annotated_types import Interval

MAX_ID = 2**31 - 1
Id = Annotated[int, Interval(ge=1, le=MAX_ID)]
"""A path, query or body field that names a row: 1..MAX_ID, so the API's schema says so too."""


def parse_id(text: str) -> int | None:
    """The id ``text`` spells canonically, or None: "42" → 42; "042", "+42", " 42", "²", "0" → None."""
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        return None
    value = int(text)
    return value if value <= MAX_ID else None
