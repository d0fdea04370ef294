"""Labelers appear in exports as stable pseudonymous ids, never as usernames.

The id is an HMAC of the user id under the project's own random salt: stable across exports of one
project, unrelated across projects, and not reversible without the database.
"""

import hashlib
import hmac


def labeler_pseudonym(salt: str, user_id: int) -> str:
    digest = hmac.new(salt.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()
    return f"l-{digest[:8]}"
